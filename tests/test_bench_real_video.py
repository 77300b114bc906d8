"""bench/real_video.py's statistics and its choice between methods: the exact McNemar test against
scipy's binomial test, the subject bootstrap's interval, and a selection that reads validation runs only."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import binomtest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("real_video", ROOT / "bench" / "real_video.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["real_video"] = module  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop("real_video", None)


@pytest.mark.parametrize("a_only,b_only", [(0, 0), (5, 0), (7, 2), (3, 9), (12, 12)])
def test_mcnemar_is_the_exact_binomial_test_of_the_discordant_videos(bench, a_only, b_only):
    both, neither = 20, 4
    a = np.array([True] * a_only + [False] * b_only + [True] * both + [False] * neither)
    b = np.array([False] * a_only + [True] * b_only + [True] * both + [False] * neither)
    m = bench.mcnemar_exact(a, b)
    assert (m["a_only"], m["b_only"]) == (a_only, b_only)
    want = binomtest(a_only, a_only + b_only, 0.5).pvalue if a_only + b_only else 1.0
    assert m["p"] == pytest.approx(want, rel=1e-12)


def test_subject_bootstrap_resamples_whole_subjects(bench):
    subjects = [s for s in "abcd" for _ in range(10)]
    correct = np.array([True] * 10 + [True] * 10 + [False] * 10 + [True] * 5 + [False] * 5)
    lo, hi = bench.bootstrap_subjects(correct, subjects, reps=2000)
    # every resample is a mean of 4 subject accuracies from {1, 1, 0, 0.5}: within [0, 1], and the
    # interval is wide (subjects differ), not the binomial one of 40 independent videos
    assert 0.0 <= lo < 0.4 and 0.85 < hi <= 1.0
    assert bench.bootstrap_subjects(np.ones(40, bool), subjects, reps=200) == [1.0, 1.0]


def _unit(variant, fold, val, top1, loss=1.0):
    return {
        "set": "s",
        "variant": variant,
        "seed": 0,
        "fold": fold,
        "validation": val,
        "video_top1": top1,
        "history": [{"test_loss": loss}],
        "videos": [],
        "test_groups": [str(fold)],
    }


def test_selection_reads_validation_runs_only(bench):
    units = []
    for f in range(2):
        for v in bench.CANDIDATES:
            units.append(_unit(v, f, True, 0.5, loss=1.0))
            units.append(_unit(v, f, False, 1.0 if v == "ogm-ge" else 0.0))  # test folds: ogm-ge best
    units[
        [i for i, u in enumerate(units) if (u["variant"], u["fold"], u["validation"]) == ("aux", 1, True)][0]
    ] = _unit("aux", 1, True, 0.5, loss=0.5)  # a tie on top-1 broken by the lower validation loss
    picks = bench.selections(units, "s", 0, 2)
    assert [p["chosen"] for p in picks] == ["hybrid", "aux"]  # ties: the order of CANDIDATES
    chosen = bench.selected_units(units, "s", 0, 2)
    assert [(u["variant"], u["fold"], u["video_top1"]) for u in chosen] == [
        ("selected", 0, 0.0),
        ("selected", 1, 0.0),
    ]
    assert bench.selections(units[:-1], "s", 0, 2) is not None  # a test unit missing changes nothing
    assert (
        bench.selections([u for u in units if u["validation"]][:-1], "s", 0, 2) is None
    )  # a validation one does


def _val_unit(variant, fold, val, right):
    """A unit of two videos of which ``right`` are classified correctly."""
    videos = [{"file": f"{fold}_{i}", "label": 0, "pred": 0 if i < right else 1} for i in range(2)]
    return {**_unit(variant, fold, val, right / 2), "videos": videos}


def test_preset_choice_pools_validation_videos_only(bench):
    """The preset's method is the candidate with the most held-out videos right over every complete
    (set, seed), whatever the test folds say; a tie goes to the published method (first candidate)."""
    right = {"hybrid": (1, 1), "snippets": (2, 1), "aux": (1, 2)}  # snippets and aux: 3 of 4
    units = []
    for f in range(2):
        for v in bench.CANDIDATES:
            units.append(_val_unit(v, f, True, right.get(v, (0, 0))[f]))
            units.append(_val_unit(v, f, False, 2 if v == "ogm-ge" else 0))  # test folds: ogm-ge best
    c = bench.preset_choice(units, {"s": 2})
    assert c["chosen"] == "aux"  # tied with snippets at 3: aux comes first among the candidates
    assert c["validation_correct"]["snippets"] == 3 and c["validation_videos"] == 4
    assert c["from"] == [["s", 0]]
    units.append({**_val_unit("hybrid", 0, True, 2), "seed": 1})  # an incomplete seed is left out
    assert bench.preset_choice(units, {"s": 2})["from"] == [["s", 0]]
    tie = [u for u in units if u["seed"] == 0 and u["variant"] != "aux"] + [
        _val_unit("aux", f, True, 1) for f in range(2)
    ]
    for u in tie:
        if u["variant"] == "snippets" and u["validation"]:
            u["videos"] = _val_unit("snippets", u["fold"], True, 1)["videos"]
    assert bench.preset_choice(tie, {"s": 2})["chosen"] == "hybrid"  # all at 2 of 4: the published one
    assert bench.preset_choice([u for u in units if u["variant"] != "gblend"], {"s": 2}) is None


def test_planned_units_validation_only_runs_what_a_choice_needs(bench):
    """``--val only`` plans the candidates' inner validation runs and nothing else; ``--val`` puts each
    candidate's validation run before its test run; without it no validation run is planned."""
    variants = ["ann", "ogm-ge", "gblend"]  # ann is not a candidate: it never gets a validation run
    only = bench.planned_units("s", 2, [0, 1], variants, "only")
    assert {(u.variant, u.fold, u.seed) for u in only} == {
        (v, f, s) for v in ("ogm-ge", "gblend") for f in range(2) for s in (0, 1)
    }
    assert all(u.val for u in only)
    both = bench.planned_units("s", 2, [0], variants, "both")
    assert [(u.variant, u.fold, u.val) for u in both] == [
        ("ann", 0, False), ("ann", 1, False),
        ("ogm-ge", 0, True), ("ogm-ge", 0, False), ("ogm-ge", 1, True), ("ogm-ge", 1, False),
        ("gblend", 0, True), ("gblend", 0, False), ("gblend", 1, True), ("gblend", 1, False),
    ]
    assert not any(u.val for u in bench.planned_units("s", 2, [0], variants, None))
    assert len({u.result() for u in both}) == len(both)  # every unit has its own file


def test_real_small_is_the_method_inner_validation_chose(bench):
    """`real-small` as shipped is the candidate that bench/real_video.py's recorded validation runs
    chose: that variant's overrides change nothing in the preset, every other candidate's do."""
    import json

    from respike_nm.config import apply_overrides, load_config

    choice = json.loads((ROOT / "bench" / "results" / "real_video.json").read_text())["preset_choice"]
    preset = load_config("real-small")
    for v in bench.CANDIDATES:
        same = apply_overrides(preset, bench.VARIANTS[v][1]) == preset
        assert same == (v == choice["chosen"]), v
