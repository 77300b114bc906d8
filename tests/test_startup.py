"""Start-up of the command line: a wrong path is refused before torch is imported, and what third-party
imports print at start-up stays off the terminal unless ``--debug``. Each in a fresh interpreter."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from conversion.manifest import MANIFEST_NAME
from respike_nm import cli
from respike_nm.cli.main import build_parser
from respike_nm.train.run import CHECKPOINT

ROOT = Path(__file__).resolve().parents[1]
MISSING = "/nonexistent/respike"
PATH_COMMANDS = [
    ["eval", MISSING],
    ["export", MISSING, "--out", "/tmp/respike-never"],
    ["simulate", MISSING],
    ["map", MISSING],
    ["nir", MISSING, "--out", "/tmp/respike-never"],
    ["energy", MISSING, "--out", "/tmp/respike-never"],
    ["predict", MISSING, "clip.mp4"],
    ["train", "--config", f"{MISSING}.yaml", "--out", "/tmp/respike-never"],
    ["train", "--data-root", MISSING, "--dataset", "folder", "--out", "/tmp/respike-never"],
    ["crossval", "--data-root", MISSING, "--folds", "2", "--out", "/tmp/respike-never"],
    ["data", "cache", "--dataset", "folder", "--data-root", MISSING, "--out", "/tmp/respike-never.h5"],
]
REFUSE = """
import contextlib, io, json, sys
from respike_nm.cli.main import main
rows = []
for argv in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        rc = main(argv)
    rows.append([rc, err.getvalue(), "torch" in sys.modules])
print(json.dumps(rows))
"""


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=300)


def test_a_missing_path_is_refused_before_torch_is_imported():
    proc = _run("-c", REFUSE, json.dumps(PATH_COMMANDS))
    assert proc.returncode == 0, proc.stderr
    for argv, (rc, err, torch_loaded) in zip(PATH_COMMANDS, json.loads(proc.stdout), strict=True):
        assert rc == 2 and not torch_loaded, (argv, rc, err)
        assert err.count("\n") == 1 and err.startswith(f"respike-nm: error: {MISSING}"), (argv, err)


def test_every_input_path_of_every_command_is_checked():
    """A new path option must join the pre-import check (or be an output, or data inspect's list)."""
    checked = {*cli.RUN_DIRS, *cli.EXPORT_DIRS, *cli.EXISTING, "config"}
    seen = set()

    def walk(parser: argparse.ArgumentParser) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    walk(sub)
            elif action.type is Path or action.dest in ("data_root", "config"):
                seen.add(action.dest)

    walk(build_parser())
    assert seen - {"out", "paths"} <= checked, seen - checked
    assert (cli.CHECKPOINT, cli.MANIFEST) == (CHECKPOINT, MANIFEST_NAME)


def test_lava_dl_start_up_messages_show_only_with_debug(tmp_path):
    """A command that imports lava-dl (simulate, then refusing a manifest that is not JSON): one line."""
    (tmp_path / "manifest.json").write_text("{not json")
    quiet = _run("-m", "respike_nm.cli.main", "simulate", str(tmp_path))
    assert quiet.returncode == 2 and quiet.stdout == ""
    assert quiet.stderr.splitlines() == [quiet.stderr.strip()], quiet.stderr
    assert "manifest.json" in quiet.stderr and "Prophesee" not in quiet.stderr
    assert "CUDA" not in quiet.stderr

    loud = _run("-m", "respike_nm.cli.main", "--debug", "simulate", str(tmp_path))
    assert loud.returncode == 2 and loud.stdout == ""
    noise = [line for line in loud.stderr.splitlines() if line.startswith("DEBUG respike_nm.lavadl:")]
    assert any("Prophesee" in line for line in noise), loud.stderr  # lava-dl 0.6.0, no toolbox


def test_reading_a_manifest_or_a_mapping_does_not_load_lava():
    """Only the modules that run or write netx load lava-dl; and they print nothing while they do."""
    light = ("conversion.manifest", "conversion.mapping", "conversion.netx_check", "conversion.nir_export")
    code = (f"import sys; [__import__(m) for m in {light!r}]; "
            "print(sorted(m for m in sys.modules if m == 'lava' or m.startswith('lava.')))")
    proc = _run("-c", code)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", (proc.stdout, proc.stderr)
    loads = "assert 'lava.lib.dl.netx.hdf5' in sys.modules and 'lava.lib.dl.slayer' in sys.modules"
    heavy = _run("-c", f"import sys, conversion.lava_sim, conversion.export; {loads}")
    assert heavy.returncode == 0 and heavy.stdout == "", (heavy.stdout, heavy.stderr)


FIGURES = """
import sys, matplotlib
matplotlib.use("pdf")  # a caller's own backend (a notebook's inline one, say)
import respike_nm.cli.demo, respike_nm.data.figures, respike_nm.energy.report
from respike_nm.train.figures import plot_curves
png = plot_curves([{"epoch": 1, "train_loss": 1.0, "train_top1": 0.5, "test_top1": 0.25}], sys.argv[1])
print(png.read_bytes()[:4] == bytes([137, 80, 78, 71]), matplotlib.get_backend())
"""


def test_figures_leave_the_callers_matplotlib_backend_alone(tmp_path):
    """Figures are drawn with matplotlib's object API (``Figure``), never through pyplot's global state
    or ``matplotlib.use`` (norse, a dependency, imports pyplot itself; importing it switches nothing)."""
    proc = _run("-c", FIGURES, str(tmp_path / "curves.png"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["True", "pdf"]  # a PNG written, the caller's backend kept
    for folder in ("respike_nm", "conversion"):
        for path in (ROOT / folder).rglob("*.py"):
            text = path.read_text()
            assert "matplotlib.use(" not in text and "pyplot" not in text, path
