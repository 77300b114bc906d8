"""Every notebook in notebooks/ is stored without outputs and runs, at small settings, in CI.

Each notebook ends with a code cell tagged ``check`` that asserts its key result and prints it as one
JSON line; the execution test re-checks known notebooks' results here (``EXPECTED``), so deleting the
notebook's own asserts does not hide a regression. Notebook metadata ``respike.markers`` (e.g.
``["lava"]``) become pytest marks, so a new notebook needs no new test code. The kernel is this
interpreter (a kernelspec written to a temporary folder), so a fresh clone with no Jupyter set-up works.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "respike-nm-test"
CELL_TIMEOUT_S = 600


def _params(with_marks: bool) -> list:
    out = []
    for path in NOTEBOOKS:
        marks = []
        if with_marks:
            names = nbformat.read(path, as_version=4).metadata.get("respike", {}).get("markers", [])
            marks = [getattr(pytest.mark, name) for name in names] + [pytest.mark.slow]
        out.append(pytest.param(path, id=path.stem, marks=marks))
    return out


def _check_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and "check" in code[-1].metadata.get("tags", []), \
        "the last code cell must be tagged 'check' (it asserts the notebook's key result)"
    return code[-1]


def test_notebooks_exist():
    assert len(NOTEBOOKS) >= 3, f"expected the notebooks in {NOTEBOOK_DIR}"


@pytest.mark.parametrize("path", _params(with_marks=False))
def test_notebook_is_stored_clean(path: Path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{path.name}: cell {i} has outputs"
    assert "widgets" not in nb.metadata, f"{path.name}: stored widget state"
    _check_cell(nb)


def _result_nb1(r: dict) -> None:
    assert r["identity_error"] == 0.0 and r["recompose_error"] < 1e-5
    t, s = 16, 4  # the clip spec the notebook states
    assert r["key_shape"][:2] == [1, t // s] and r["residual_shape"][:3] == [1, t // s, s - 1]
    assert r["decoded_frames"] >= t and r["residual_energy"] > 0


def _result_nb2(r: dict) -> None:
    top1 = r["top1"]
    assert set(top1) == {"hybrid", "ann", "snn"} and r["classes"] == r["appearances"] * r["motions"]
    # each baseline can reach 1/M (key frames) or 1/A (residuals); the hybrid must clear the better
    # baseline by the margin measured over seeds (tests/train/test_learning.py) and both ceilings
    assert top1["hybrid"] >= max(top1["ann"], top1["snn"]) + 0.078
    assert top1["hybrid"] > max(1 / r["appearances"], 1 / r["motions"])


def _result_nb3(r: dict) -> None:
    assert r["spike_mismatch"] == 0 and all(m == 0 for st in r["layer_mismatch"] for m in st)
    assert r["prediction_agreement"] == 1.0 and r["clips"] >= 1 and r["stages"] >= 1
    # clips run back to back: at least clips x T' steps per stage (T' = 3 at every setting here)
    assert r["lava_steps"] >= r["clips"] * 2 * 3
    assert len(r["layer_rates"]) == 9 and all(0.002 < x < 0.9 for x in r["layer_rates"])  # none silent


def _result_nb4(r: dict) -> None:
    # the notebook's own recount of every SNN layer agreed with the counters (it asserts that); here:
    # something was counted, and plan c's energy recomputed by hand equals the reported one
    assert r["clips"] >= 1 and r["layers_recounted"] >= 5 and r["snn_synops"] > 0
    assert r["plan_c_recomputed_uj"] == pytest.approx(r["plan_c_h100_loihi_uj"], rel=1e-9)
    assert 0 < r["plan_c_h100_loihi_uj"] and 0 < r["plan_a_h100_uj"]


EXPECTED = {
    "01_decode_and_decompose": _result_nb1,
    "02_train_hybrid_and_baselines": _result_nb2,
    "03_export_simulate_verify": _result_nb3,
    "04_energy_per_target_and_plan": _result_nb4,
}


@pytest.fixture(scope="module")
def kernel_dirs(tmp_path_factory) -> list[str]:
    """A kernelspec that starts this very interpreter (with ipykernel) as the notebook kernel."""
    root = tmp_path_factory.mktemp("kernels")
    spec = root / KERNEL_NAME
    spec.mkdir()
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps(
        {"argv": argv, "display_name": "respike-nm test", "language": "python"}))
    return [str(root)]


def run_notebook(path: Path, workdir: Path, kernel_dirs: list[str]) -> nbformat.NotebookNode:
    nb = nbformat.read(path, as_version=4)
    specs = KernelSpecManager(kernel_dirs=kernel_dirs)
    km = KernelManager(kernel_name=KERNEL_NAME, kernel_spec_manager=specs)
    try:
        NotebookClient(nb, km=km, timeout=CELL_TIMEOUT_S,
                       resources={"metadata": {"path": str(workdir)}}).execute()
    finally:  # nbclient leaves a kernel manager it was given running
        if km.has_kernel:
            km.shutdown_kernel(now=True)
    return nb


def _stdout(cell: nbformat.NotebookNode) -> str:
    streams = [o for o in cell.outputs if o.output_type == "stream" and o.name == "stdout"]
    return "".join(o.text for o in streams)


@pytest.mark.parametrize("path", _params(with_marks=True))
def test_notebook_executes(path: Path, tmp_path, monkeypatch, kernel_dirs):
    monkeypatch.setenv("RESPIKE_NB_QUICK", "1")
    start = time.perf_counter()
    nb = run_notebook(path, tmp_path, kernel_dirs)  # raises CellExecutionError on any failing cell
    seconds = time.perf_counter() - start
    check = _check_cell(nb)
    assert check.execution_count is not None
    assert not [o for o in check.outputs if o.output_type == "error"]
    result = json.loads(_stdout(check).strip().splitlines()[-1])
    assert result["quick"] is True  # the notebook saw RESPIKE_NB_QUICK (a missing key fails)
    EXPECTED[path.stem](result)  # every notebook has its expectation here
    print(f"{path.name}: executed in {seconds:.1f} s")
