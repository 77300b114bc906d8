"""The command line as a tester uses it: bad input, runs that must not be lost, silent nonsense.

Each test reproduces one failure the command line had (one error line and exit 2 instead of a
traceback, a refusal instead of a lost run, an error or warning instead of a silent number).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
from dataclasses import replace

import numpy as np
import pytest
import torch
from conftest import SMALL_TRAIN, frame_pattern, write_video

from respike_nm.cli import discover
from respike_nm.cli.main import main
from respike_nm.config import apply_overrides, load_config
from respike_nm.hardware import ProfileError, load_profile, parse_profile
from respike_nm.models import list_models
from respike_nm.train import loop as train_loop
from respike_nm.train import run as train_run
from respike_nm.train.builder import build_model
from respike_nm.train.loop import train

SMALL = SMALL_TRAIN + ["train.epochs=1"]
SETS = [a for s in SMALL for a in ("--set", s)]


def _err_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert err, "no error message"
    assert "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("run") / "run"
    train(apply_overrides(load_config("tiny"), SMALL), "hybrid", run)
    return run


# ---- one error boundary ----------------------------------------------------------------------

def test_zero_or_negative_epochs_are_refused_before_anything_is_written(tmp_path, capsys):
    for bad in ("0", "-1"):
        out = tmp_path / f"run{bad}"
        assert main(["train", "--out", str(out), "--set", f"train.epochs={bad}"]) == 2
        line = _err_line(capsys)
        assert "train.epochs" in line and "at least 1" in line
        assert not out.exists()


def test_out_that_is_a_regular_file_is_named(tmp_path, capsys):
    target = tmp_path / "taken"
    target.write_text("mine")
    assert main(["train", "--out", str(target), *SETS]) == 2
    assert str(target) in _err_line(capsys) and target.read_text() == "mine"
    assert main(["data", "inspect", "--synthetic", "1", "--out", str(target)]) == 2
    assert str(target) in _err_line(capsys) and target.read_text() == "mine"


def test_clip_counts_below_one_are_refused_by_option(tmp_path, capsys):
    for argv in (["simulate", str(tmp_path), "--clips", "0"], ["simulate", str(tmp_path), "--clips", "-3"],
                 ["energy", str(tmp_path), "--out", str(tmp_path / "e"), "--clips", "0"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "--clips" in err and "at least 1" in err and "Traceback" not in err


def test_checkpoint_with_a_mistyped_field_is_refused_by_name(small_run, tmp_path, capsys):
    raw = torch.load(small_run / "checkpoint.pt", weights_only=True)
    bad = tmp_path / "bad"
    bad.mkdir()
    raw["classes"] = 3
    torch.save(raw, bad / "checkpoint.pt")
    assert main(["eval", str(bad)]) == 2
    line = _err_line(capsys)
    assert "checkpoint.pt" in line and "'classes'" in line


def test_internal_errors_exit_1_with_the_traceback_only_on_request(monkeypatch, capsys):
    def broken(what):
        raise TypeError("a bug")

    monkeypatch.setattr(discover, "entries", broken)
    assert main(["list", "models"]) == 1
    line = _err_line(capsys)
    assert "internal error" in line and "TypeError: a bug" in line and "--debug" in line
    assert main(["--debug", "list", "models"]) == 1
    assert "Traceback" in capsys.readouterr().err
    monkeypatch.setenv("RESPIKE_DEBUG", "1")
    assert main(["list", "models"]) == 1
    assert "Traceback" in capsys.readouterr().err


def test_a_value_error_from_inside_a_library_is_internal_and_the_projects_own_errors_are_the_users(
        monkeypatch, capsys):
    """Only the project's errors (and path errors) are the user's: a ``ValueError`` raised deep in
    numpy or torch is a bug, reported as one, with its place in the code."""
    import numpy as np

    from respike_nm.errors import RespikeError, UsageError

    def deep(what):
        return np.zeros(3).reshape(2, 2)  # numpy's own ValueError

    monkeypatch.setattr(discover, "entries", deep)
    assert main(["list", "models"]) == 1
    line = _err_line(capsys)
    assert "internal error: ValueError: cannot reshape" in line and ".py:" in line
    mine = (UsageError("data.size must be at least 8 pixels, not 4"), RespikeError("x.h5: not a cache"))
    for error in mine:
        monkeypatch.setattr(discover, "entries", lambda what, error=error: (_ for _ in ()).throw(error))
        assert main(["list", "models"]) == 2
        assert _err_line(capsys) == f"respike-nm: error: {error}"


# ---- no lost runs ----------------------------------------------------------------------------

def test_train_refuses_a_folder_holding_a_run_or_other_files(small_run, tmp_path, capsys):
    before = (small_run / "summary.json").read_bytes()
    assert main(["train", "--out", str(small_run), *SETS]) == 2
    assert "--overwrite" in _err_line(capsys) and (small_run / "summary.json").read_bytes() == before
    other = tmp_path / "papers"
    other.mkdir()
    (other / "thesis.tex").write_text("x")
    assert main(["train", "--out", str(other), "--overwrite", *SETS]) == 2
    assert "thesis.tex" in _err_line(capsys) and sorted(p.name for p in other.iterdir()) == ["thesis.tex"]


def test_overwrite_replaces_a_run(small_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for name in ("summary.json", "metrics.jsonl", "checkpoint.pt"):
        (run / name).write_bytes((small_run / name).read_bytes())
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n' * 5)
    assert main(["train", "--out", str(run), "--overwrite", "--quiet", *SETS]) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1


def test_overwrite_keeps_the_old_run_until_the_new_one_has_a_checkpoint(small_run, tmp_path, monkeypatch,
                                                                       capsys):
    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    before = {p.name: p.read_bytes() for p in run.iterdir()}

    def terminated(path, ck):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler raises here, before a checkpoint exists
        raise AssertionError("SIGTERM was not delivered")

    def full(path, ck):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    monkeypatch.setattr(train_loop, "save_checkpoint", terminated)
    assert main(["train", "--out", str(run), "--overwrite", "--quiet", *SETS]) == 143
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before
    monkeypatch.setattr(train_loop, "save_checkpoint", full)
    assert main(["train", "--out", str(run), "--overwrite", "--quiet", *SETS]) == 2
    line = _err_line(capsys)
    assert f"{run / 'checkpoint.pt'}: no space left on device" in line and ".tmp-" not in line
    assert {p.name: p.read_bytes() for p in run.iterdir()} == before


def test_a_signal_while_the_first_checkpoint_moves_in_finishes_the_move(small_run, tmp_path, monkeypatch):
    """The new run's checkpoint is in, the replaced run's metrics and summary not yet out: the folder
    must not be left mixing the two runs."""
    from types import SimpleNamespace

    from respike_nm.stopping import Terminated

    run = tmp_path / "run"
    shutil.copytree(small_run, run)
    (run / "metrics.jsonl").write_text('{"epoch": 1}\n' * 5)
    moves = []

    def replace_then_stop(src, dst):
        os.replace(src, dst)
        moves.append(dst)
        if len(moves) == 1:
            raise Terminated()

    monkeypatch.setattr(train_run, "os", SimpleNamespace(replace=replace_then_stop, getpid=os.getpid))
    with pytest.raises(Terminated):
        train(apply_overrides(load_config("tiny"), [*SMALL, "seed=5"]), "hybrid", run, overwrite=True)
    assert moves == [run / "checkpoint.pt", run / "metrics.jsonl"]
    assert sorted(p.name for p in run.iterdir()) == ["checkpoint.pt", "metrics.jsonl"]
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 1
    assert train_loop.load_checkpoint(run / "checkpoint.pt").config["seed"] == 5


def test_a_run_killed_before_its_first_checkpoint_leaves_no_folder(tmp_path, monkeypatch, capsys):
    def terminated(path, ck):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM was not delivered")

    monkeypatch.setattr(train_loop, "save_checkpoint", terminated)
    out = tmp_path / "runs" / "a"
    assert main(["train", "--out", str(out), "--quiet", *SETS]) == 143
    assert list(tmp_path.iterdir()) == []  # neither the run folder nor the folder made for it
    monkeypatch.undo()
    assert main(["train", "--out", str(out), "--quiet", *SETS]) == 0
    assert sorted(p.name for p in out.iterdir()) == sorted(train_run.RUN_FILES)


def test_resume_of_a_missing_run_is_an_error_and_creates_nothing(tmp_path, capsys):
    out = tmp_path / "nothing"
    assert main(["train", "--out", str(out), "--resume", *SETS]) == 2
    assert "no run to resume" in _err_line(capsys) and not out.exists()


def test_a_failed_start_leaves_no_folder(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--dataset", "folder", "--data-root", str(tmp_path / "no"),
                 *SETS]) == 2
    _err_line(capsys)
    assert not out.exists()


def test_one_class_dataset_is_an_error(tmp_path, capsys):
    root = tmp_path / "clips"
    (root / "wave").mkdir(parents=True)
    for i in range(4):
        write_video(root / "wave" / f"v{i}.mov", frame_pattern(10, 40, 48))
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--dataset", "folder", "--data-root", str(root), *SETS]) == 2
    line = _err_line(capsys)
    assert "1 class" in line and "at least 2" in line and not out.exists()


def test_resume_reads_the_runs_config_extends_it_and_removes_stale_temps(small_run, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    for p in small_run.iterdir():
        (run / p.name).write_bytes(p.read_bytes())
    stale = run / ".checkpoint.tmp-99999.pt"
    stale.write_bytes(b"half a checkpoint")
    stage = run / ".run.tmp-99999"  # what a new run killed before its first checkpoint leaves
    stage.mkdir()
    (stage / "metrics.jsonl").write_text("")
    assert main(["train", "--out", str(run), "--resume", "--quiet", "--set", "train.epochs=2"]) == 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert json.loads((run / "summary.json").read_text())["full_config"]["data"]["size"] == 32
    assert not stale.exists() and not stage.exists()


def test_metrics_never_claim_an_epoch_whose_checkpoint_failed(tmp_path, monkeypatch):
    calls = []
    save = train_loop.save_checkpoint

    def failing_save(path, ck):
        calls.append(ck.epoch)
        if ck.epoch == 2:
            raise OSError(28, "No space left on device", str(path))
        save(path, ck)

    monkeypatch.setattr(train_loop, "save_checkpoint", failing_save)
    run = tmp_path / "run"
    with pytest.raises(OSError):
        train(apply_overrides(load_config("tiny"), [*SMALL, "train.epochs=2"]), "hybrid", run)
    assert calls == [1, 2]
    assert [json.loads(row)["epoch"] for row in (run / "metrics.jsonl").read_text().splitlines()] == [1]
    assert train_loop.load_checkpoint(run / "checkpoint.pt").epoch == 1


def test_a_config_file_without_a_preset_or_not_yaml_is_one_line(tmp_path, capsys):
    for text, words in (("train:\n  epochs: 2\n", "base: <preset>"), ("", "base: <preset>"),
                        ("base: tiny\ntrain: [1, 2\n", "line 3, column 1")):
        cfg = tmp_path / "exp.yaml"
        cfg.write_text(text)
        assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "run"), "--dry-run"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and str(cfg) in err[0] and words in err[0], err


# ---- no silent nonsense ----------------------------------------------------------------------

def _figure(value):
    return {"value": value, "unit": "pJ", "source": "s", "kind": "measured"}


def test_non_finite_profile_figures_are_errors():
    for value in (float("nan"), float("inf")):
        with pytest.raises(ProfileError, match="costs.synop.value"):
            parse_profile({"name": "n", "target": "neuromorphic", "costs": {"synop": _figure(value)}}, "p")


def test_half_of_the_active_inactive_pair_is_an_error():
    from respike_nm.energy.plans import PlanCounts, Work, plan_energy

    chip = parse_profile({"name": "n", "target": "neuromorphic", "costs": {
        "synop": _figure(1.0), "neuron_update_inactive": _figure(0.1)}}, "chip.yaml")
    plan = PlanCounts("c", "t", (4,), "hand", layers=[Work("l", "chip", "synop", 10.0),
                                                      Work("l", "chip", "neuron_update", 4.0)])
    with pytest.raises(ProfileError, match="neuron_update_active missing"):
        plan_energy(plan, load_profile("h100"), chip, load_profile("cmos45nm"))


def test_inspect_warns_on_truncated_and_too_short_clips(tmp_path, capsys):
    rng = np.random.default_rng(0)
    full = tmp_path / "full.avi"
    write_video(full, rng.integers(0, 255, (60, 48, 64, 3), dtype=np.uint8), codec="mpeg4", pix_fmt="yuv420p")
    cut = tmp_path / "cut.avi"
    cut.write_bytes(full.read_bytes()[: full.stat().st_size // 3])
    short = tmp_path / "short.mov"
    write_video(short, frame_pattern(1, 40, 48))
    assert main(["data", "inspect", str(full), str(cut), str(short), "--json", "--size", "32"]) == 0
    clips = {c["path"].rsplit("/", 1)[-1]: c for c in json.loads(capsys.readouterr().out)["clips"]}
    assert clips["full.avi"]["warnings"] == []
    assert clips["cut.avi"]["header_frames"] == 60 > clips["cut.avi"]["frames"]
    assert any("of the 60 frames" in w for w in clips["cut.avi"]["warnings"])
    assert any("fewer than a clip" in w for w in clips["short.mov"]["warnings"])
    assert main(["data", "inspect", str(cut), "--size", "32"]) == 0
    assert "WARNING" in capsys.readouterr().out


def test_energy_warns_when_the_snn_is_silent_and_prints_the_caveats(small_run, tmp_path, capsys):
    from respike_nm.energy.report import CAVEATS
    from respike_nm.train.checkpoint import load_checkpoint, save_checkpoint

    ck = load_checkpoint(small_run / "checkpoint.pt")
    mute = ("snn.", "fusion.")  # no weight, bias or fused input: no SNN neuron is driven
    muted = (".weight", ".bias")
    silent = replace(ck, model={k: torch.zeros_like(v) if k.startswith(mute) and k.endswith(muted) else v
                                for k, v in ck.model.items()})
    run = tmp_path / "silent"
    run.mkdir()
    save_checkpoint(run / "checkpoint.pt", silent)
    assert main(["energy", str(run), "--out", str(tmp_path / "e1"), "--clips", "2"]) == 0
    captured = capsys.readouterr()
    assert "near-silent" in captured.err
    assert CAVEATS[0] in captured.out
    assert main(["energy", str(small_run), "--out", str(tmp_path / "e2"), "--clips", "2"]) == 0
    assert "near-silent" not in capsys.readouterr().err


# ---- discovery -------------------------------------------------------------------------------

def test_list_reads_the_registries(capsys):
    from respike_nm.config import PRESETS
    from respike_nm.data.factory import DATASETS
    from respike_nm.hardware import builtin_profiles

    for what, names in (("presets", list(PRESETS)), ("datasets", list(DATASETS)),
                        ("profiles", builtin_profiles()), ("models", list(list_models()))):
        assert main(["list", what, "--json"]) == 0
        rows = json.loads(capsys.readouterr().out)
        assert [r["name"] for r in rows] == names and all(r["description"] for r in rows)


def test_dry_run_prints_the_model_and_trains_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--out", str(out), "--dry-run", "--json", *SETS]) == 0
    got = json.loads(capsys.readouterr().out)
    cfg = apply_overrides(load_config("tiny"), SMALL)
    model = build_model(cfg, "hybrid", 4)
    assert got["config"] == cfg.to_dict() and got["classes"] == 4
    assert got["params"] == sum(p.numel() for p in model.parameters())
    for branch in ("ann", "snn", "fusion", "head"):
        params = sum(p.numel() for p in getattr(model, branch).parameters())
        assert got["branches"][branch]["params"] == params
    head, groups = model.head, cfg.data.frames // cfg.data.stride  # the head runs once per key-frame group
    assert got["branches"]["head"]["dense_macs"] == groups * head.in_features * head.out_features
    assert not out.exists()


def test_train_writes_its_training_curves(small_run):
    assert (small_run / "training_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
