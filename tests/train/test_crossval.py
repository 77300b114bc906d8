"""Cross-validation end to end on a tiny folder dataset of real (PyAV-written) videos: fold runs,
crossval.json against the fold summaries read back, resume, and the command line."""

from __future__ import annotations

import json
import re
import statistics

import numpy as np
import pytest
from conftest import SMALL_TRAIN, write_video

from respike_nm.cli.main import main
from respike_nm.config import apply_overrides, load_config
from respike_nm.train.crossval import run_crossval
from respike_nm.train.evaluate import evaluate_run

PATTERN = r"P(\d+)"
FAST = SMALL_TRAIN + ["train.epochs=1", "train.amp=false"]


@pytest.fixture
def gestures(tmp_path):
    """2 classes x 2 persons x 2 trials of 8 frames at 32x32; class 1 moves a bright bar."""
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for label, cls in enumerate(("raise", "wave")):
        (root / cls).mkdir(parents=True)
        for person in (1, 2):
            for trial in (1, 2):
                frames = rng.integers(0, 60, (8, 32, 32, 3), dtype=np.uint8)
                if label:
                    for t in range(8):
                        frames[t, :, 4 * t: 4 * t + 4] = 250
                write_video(root / cls / f"PS7A{label + 1}P{person}T{trial}.mov", frames)
    return root


def _cfg(root, *extra):
    return apply_overrides(load_config("tiny"), FAST + ["data.dataset=folder", f"data.data_root={root}",
                                                        *extra])


def test_crossval_trains_every_fold_and_reports_their_mean(gestures, tmp_path):
    out = tmp_path / "cv"
    cfg = _cfg(gestures, "data.folds=-1", f"data.group_pattern={json.dumps(PATTERN)}")
    result = run_crossval(cfg, "ann", out)
    written = json.loads((out / "crossval.json").read_text())
    assert written == json.loads(json.dumps(result.to_dict()))
    summaries = [json.loads((out / f"fold-{i}" / "summary.json").read_text()) for i in range(2)]
    for metric in ("test_top1", "test_top1_video"):
        values = [s[metric] for s in summaries]
        assert written["summary"][metric]["mean"] == pytest.approx(sum(values) / 2)
        assert written["summary"][metric]["std"] == pytest.approx(statistics.stdev(values))
        assert written["summary"][metric]["n"] == 2
        assert [r[metric] for r in written["rows"]] == values
    files = sorted(p.relative_to(gestures).as_posix() for p in gestures.glob("*/*.mov"))
    assert sorted(written["assignment"]) == files
    for row in written["rows"]:
        person = row["test_groups"]
        tested = [f for f, fold in written["assignment"].items() if fold == row["fold"]]
        assert len(person) == 1 and row["test_videos"] == 4 == len(tested) and row["train_videos"] == 4
        assert all(re.search(PATTERN, f).group(1) == person[0] for f in tested)
        assert row["epochs"] == 1 and row["seconds"] > 0
    assert {tuple(r["test_groups"]) for r in written["rows"]} == {("1",), ("2",)}
    # a fold folder is an ordinary run: eval reads it and finds the fold's own test set again
    ev = evaluate_run(out / "fold-1")
    assert ev.result.videos == 4 and ev.result.top1 == pytest.approx(summaries[1]["test_top1"])


def test_crossval_command_resumes_and_refuses_a_used_folder(gestures, tmp_path, capsys):
    out = tmp_path / "cv"
    args = ["crossval", "--model", "ann", "--data-root", str(gestures), "--folds", "2",
            "--group-pattern", PATTERN, "--out", str(out), "--quiet", *sum((["--set", s] for s in FAST), [])]
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "fold 1/2 (fold-0)" in err and "fold 2/2 (fold-1)" in err
    first = json.loads((out / "crossval.json").read_text())
    assert main(args) == 2
    assert "is not empty; pass --resume" in capsys.readouterr().err
    # fold-1 interrupted after its checkpoint, before its summary; fold-0 finished
    (out / "fold-1" / "summary.json").unlink()
    (out / "crossval.json").unlink()
    kept = (out / "fold-0" / "checkpoint.pt").stat().st_mtime_ns
    assert main(["crossval", "--out", str(out), "--resume", "--model", "ann", "--quiet", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert (out / "fold-0" / "checkpoint.pt").stat().st_mtime_ns == kept  # read back, not retrained
    assert (out / "fold-1" / "summary.json").is_file()
    assert again["assignment"] == first["assignment"]
    assert [r["test_top1"] for r in again["rows"]] == [r["test_top1"] for r in first["rows"]]


def test_crossval_bad_pattern_is_one_line_and_writes_nothing(gestures, tmp_path, capsys):
    out = tmp_path / "cv"
    rc = main(["crossval", "--data-root", str(gestures), "--folds", "2", "--group-pattern", r"Q(\d+)",
               "--out", str(out)])
    assert rc == 2 and not out.exists()
    assert re.search(r"does not match 8 of 8 file names: PS7A1P1T1.mov", capsys.readouterr().err)


@pytest.mark.parametrize("case", ["one class", "used folder"])
def test_crossval_dry_run_refuses_what_the_run_refuses(gestures, tmp_path, capsys, case):
    out = tmp_path / "cv"
    if case == "one class":
        root = tmp_path / "one"
        root.mkdir()
        (gestures / "raise").rename(root / "raise")  # 4 videos of one class
    else:
        root = gestures
        out.mkdir()
        (out / "notes.txt").write_text("mine\n")
    args = ["crossval", "--data-root", str(root), "--folds", "2", "--out", str(out), "--quiet",
            *sum((["--set", s] for s in FAST), [])]
    lines = []
    for extra in (["--dry-run"], []):
        assert main([*args, *extra]) == 2
        err = capsys.readouterr()
        assert err.out == "" and len(err.err.strip().splitlines()) == 1
        lines.append(err.err)
    assert lines[0] == lines[1]  # the same refusal, word for word
    if case == "one class":
        assert f"{root}: 1 class(es) (raise); a classifier needs at least 2" in lines[0]
        assert not out.exists()
    else:
        assert "is not empty" in lines[0] and [p.name for p in out.iterdir()] == ["notes.txt"]
