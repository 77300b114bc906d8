"""A verification that cannot pass falsely: every layer's spikes count, a tampered export fails with
exit code 3 naming the layer (in ``simulate``, the demo's gate and ``predict --lava``), silent layers are
named, and a run that does not fit the export is refused before Lava runs.

The exports are of a one-epoch run whose SNN layers were given random weights (:func:`liven_run`), so
that every layer fires and a comparison tests them all.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from conftest import SMALL_TRAIN, frame_pattern, liven_run, write_video

from conversion.pipeline import read_simulation_report
from conversion.verify import compare_export
from respike_nm.cli import demo
from respike_nm.cli.deploy import VERIFY_FAILED
from respike_nm.cli.main import main
from respike_nm.config import apply_overrides, load_config
from respike_nm.models.fixed_point import DEFAULT_SPEC
from respike_nm.train.checkpoint import load_checkpoint, save_checkpoint
from respike_nm.train.loop import train
from respike_nm.train.run import load_run

SMALL = SMALL_TRAIN + ["train.epochs=1"]
pytestmark = pytest.mark.lava


@pytest.fixture(scope="module")
def live(tmp_path_factory) -> tuple[Path, Path]:
    """``(run, export)``: a one-epoch multi-scale hybrid with every SNN layer firing, and its export."""
    root = tmp_path_factory.mktemp("verification")
    run, export = root / "run", root / "export"
    train(apply_overrides(load_config("tiny"), SMALL), "hybrid", run)
    liven_run(run)
    assert main(["export", str(run), "--out", str(export)]) == 0
    return run, export


def _tamper(export: Path, out: Path, stage: int = 0, layer: int = 1) -> Path:
    """A copy of ``export`` whose ``layer`` of ``stage`` holds other valid weight integers (each one
    step of 2 up, the largest one down: still even and inside Loihi's range), with the manifest's
    sha256 updated to match, so that every structural check passes."""
    shutil.copytree(export, out)
    manifest = json.loads((out / "manifest.json").read_text())
    path = out / manifest["stages"][stage]["hdf5"]
    lo, hi = DEFAULT_SPEC.weight_int_range
    with h5py.File(path, "r+") as f:
        ds = f[f"layer/{layer}/weight"]
        w = ds[()]
        changed = np.where(w + 2 > hi, w - 2, w + 2)
        assert changed.min() >= lo and changed.max() <= hi and (changed != w).all()
        ds[...] = changed
    manifest["stages"][stage]["sha256"] = hashlib.sha256(path.read_bytes()).hexdigest()
    (out / "manifest.json").write_text(json.dumps(manifest))
    return out


def test_a_live_export_matches_its_run_and_passes(live, capsys):
    run, export = live
    model, _, _ = load_run(run, quantize=True)
    from conversion.netx_check import check_export

    assert compare_export(model.eval(), check_export(export), export) == ()
    capsys.readouterr()
    assert main(["simulate", str(export), "--clips", "2"]) == 0
    out, err = capsys.readouterr()
    report = read_simulation_report(export / "verify.json")
    assert report.passed and report.problems == () and report.spike_mismatch == 0
    assert report.layers == report.layers_fired == 9 and report.silent_layers == ()
    # the headline counts every layer: the sum of the per-layer counts, each layer compared
    assert all(len(s.layer_mismatch) == len(s.layers) for s in report.stages)
    assert "verification passed" in out and "never fired" not in err


def test_a_tampered_export_fails_simulate_with_its_exit_code_and_names_the_layer(live, tmp_path, capsys):
    run, export = live
    bad = _tamper(export, tmp_path / "tampered")
    layer = json.loads((bad / "manifest.json").read_text())["stages"][0]["layers"][0]
    capsys.readouterr()
    assert main(["simulate", str(bad), "--clips", "2", "--json"]) == VERIFY_FAILED == 3
    out, err = capsys.readouterr()
    report = json.loads(out)
    assert report == json.loads((bad / "verify.json").read_text())
    stage0 = report["stages"][0]
    assert stage0["layer_mismatch"][0] > 0, stage0
    assert report["spike_mismatch"] == sum(n for s in report["stages"] for n in s["layer_mismatch"])
    assert not report["passed"]
    assert f"stage0 {layer}: {stage0['layer_mismatch'][0]} mismatched spikes" in report["problems"]
    assert any(layer in d and "weight" in d for d in report["export_differences"])
    assert "verification failed" in err and f"stage0 {layer}" in err


def test_the_demo_gate_fails_on_a_tampered_export_and_names_the_layer(live, tmp_path):
    _, export = live
    bad = _tamper(export, tmp_path / "tampered", stage=1, layer=2)
    layer = json.loads((bad / "manifest.json").read_text())["stages"][1]["layers"][1]
    with pytest.raises(demo.DemoError, match=f"stage1 {layer}"):
        demo._simulate(bad, 2)
    assert demo._simulate(export, 2)["spike_mismatch"] == 0


def test_predict_lava_refuses_an_export_that_differs_from_the_run(live, tmp_path, capsys):
    run, export = live
    bad = _tamper(export, tmp_path / "tampered", stage=2, layer=1)
    layer = json.loads((bad / "manifest.json").read_text())["stages"][2]["layers"][0]
    video = write_video(tmp_path / "clip.mov", frame_pattern(8, 40, 48))
    capsys.readouterr()
    assert main(["predict", str(run), str(video), "--lava", str(bad)]) == 2
    err = capsys.readouterr().err
    assert f"stage2.net {layer}: weight" in err and "export the run again" in err, err


def test_a_layer_that_never_fires_is_named_and_not_counted_as_tested(live, tmp_path, capsys):
    """A run whose last SNN layer is silenced (BN scale 0, shift -1), exported: the check passes,
    since Lava and PyTorch agree, but says that one layer was not tested and names it."""
    run, _ = live
    quiet = tmp_path / "run"
    shutil.copytree(run, quiet)
    ck = load_checkpoint(quiet / "checkpoint.pt")
    state = dict(ck.model)
    last = [k for k in state if k.startswith("snn.") and k.endswith("bn.bias")][-1]  # in layer order
    gamma = last.removesuffix("bias") + "weight"
    state[gamma], state[last] = torch.zeros_like(state[gamma]), torch.full_like(state[last], -1.0)
    save_checkpoint(quiet / "checkpoint.pt", ck.__class__(**{**ck.__dict__, "model": state}))
    export = tmp_path / "export"
    assert main(["export", str(quiet), "--out", str(export)]) == 0
    capsys.readouterr()
    assert main(["simulate", str(export), "--clips", "2"]) == 0
    _, err = capsys.readouterr()
    report = read_simulation_report(export / "verify.json")
    assert report.passed and report.layers == 9 and report.layers_fired == 8
    (silent,) = report.silent_layers
    assert silent.startswith("stage2 ") and silent in err and "8 layer(s) actually tested" in err


def _no_lava(monkeypatch) -> None:
    import conversion.pipeline

    def refuse(*args, **kwargs):
        raise AssertionError("Lava ran")

    monkeypatch.setattr(conversion.pipeline, "_run_clips", refuse)


def test_simulate_with_a_run_of_another_shape_is_refused_before_lava(live, tmp_path, capsys, monkeypatch):
    _, export = live
    other = tmp_path / "wider"
    train(apply_overrides(load_config("tiny"), SMALL + ["model.snn_width=0.25"]), "hybrid", other)
    capsys.readouterr()
    _no_lava(monkeypatch)
    assert main(["simulate", str(export), "--run", str(other), "--clips", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not this run's export" in err[0] and "manifest.json" in err[0], err


def test_simulate_into_a_read_only_export_is_refused_before_lava(live, tmp_path, capsys, monkeypatch):
    _, export = live
    ro = tmp_path / "ro"
    ro.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(ro)]
    if subprocess.run(mount, capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        shutil.copytree(export, ro / "export")
        (ro / "export" / "verify.json").unlink(missing_ok=True)
        subprocess.run(["mount", "-o", "remount,ro", str(ro)], check=True)
        capsys.readouterr()
        _no_lava(monkeypatch)
        assert main(["simulate", str(ro / "export"), "--clips", "1"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(ro / "export") in err[0] and "cannot write verify.json" in err[0], err
    finally:
        subprocess.run(["umount", str(ro)], check=True)


@pytest.mark.parametrize("command", ["export", "nir"])
@pytest.mark.parametrize("options, problem", [("ro,size=1m", "read-only file system"),
                                              ("size=16k", "no space left on device")])
def test_an_export_into_a_read_only_or_full_folder_is_one_line_and_leaves_nothing(live, tmp_path, capsys,
                                                                                   command, options, problem):
    """Both HDF5 writers (netx, NIR) build their files in memory and write them with Python's own I/O:
    inside HDF5 a full disk left a file h5py could not close (tracebacks from its destructors)."""
    run, _ = live
    disk = tmp_path / "disk"
    disk.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)]
    if subprocess.run(mount, capture_output=True).returncode:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        capsys.readouterr()
        assert main([command, str(run), "--out", str(disk / "out")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and problem in err[0] and str(disk) in err[0] and ".tmp-" not in err[0], err
        assert list(disk.iterdir()) == []  # no output folder, no temporary one
    finally:
        subprocess.run(["umount", str(disk)], check=True)
