"""Cross-validation folds: invariants and balance against brute force, file-name groups, errors, and
the real gestures / weizmann4 file names (``realdata``)."""

from __future__ import annotations

import itertools
import os
import random
import re
from pathlib import Path

import pytest

from respike_nm.config import Config, DataConfig
from respike_nm.data.factory import DataSource, video_index
from respike_nm.data.folds import FoldError, FoldSpec, assign_folds, file_groups, group_of
from respike_nm.data.splits import folder_folds, folder_index
from respike_nm.train.builder import data_source


def _counts(labels, folds, k, n_classes):
    out = [[0] * n_classes for _ in range(k)]
    for y, f in zip(labels, folds, strict=True):
        out[f][y] += 1
    return out


def _score(labels, folds, k, n_classes):
    """(sum of squared per-class fold counts, sum of squared fold sizes), written out again here."""
    c = _counts(labels, folds, k, n_classes)
    return sum(x * x for row in c for x in row), sum(sum(row) ** 2 for row in c)


def _random_instance(rng: random.Random):
    n_classes, n_groups = rng.randint(2, 3), rng.randint(2, 7)
    k = rng.randint(2, min(n_groups, 3))
    labels, groups = [], []
    for g in range(n_groups):
        for _ in range(rng.randint(1, 4)):
            labels.append(rng.randrange(n_classes))
            groups.append(f"s{g}")
    return labels, groups, k, max(labels) + 1


def _brute_force(labels, groups, k, n_classes):
    """Every assignment of whole groups to k non-empty folds: the best score."""
    names = sorted(set(groups))
    best = None
    for choice in itertools.product(range(k), repeat=len(names)):
        if len(set(choice)) < k:
            continue
        of = dict(zip(names, choice, strict=True))
        s = _score(labels, [of[g] for g in groups], k, n_classes)
        best = s if best is None or s < best else best
    return best


def _check_invariants(labels, groups, k, folds):
    assert len(folds) == len(labels) and set(folds) == set(range(k))  # every fold tests something
    fold_of_group: dict[str, set[int]] = {}
    for g, f in zip(groups, folds, strict=True):
        fold_of_group.setdefault(g, set()).add(f)
    assert all(len(fs) == 1 for fs in fold_of_group.values())  # no group in two test folds


def test_grouped_folds_match_brute_force_balance():
    rng = random.Random(0)
    optimal, trials = 0, 200
    for trial in range(trials):
        labels, groups, k, n_classes = _random_instance(rng)
        folds = assign_folds(labels, groups, k, seed=trial)
        _check_invariants(labels, groups, k, folds)
        ours, best = _score(labels, folds, k, n_classes), _brute_force(labels, groups, k, n_classes)
        assert ours[0] >= best[0]
        assert ours[0] <= 1.1 * best[0], (labels, groups, k, ours, best)
        optimal += ours[0] == best[0]
    # measured: 199 of 200 reach the brute-force optimum of the class balance
    assert optimal >= 0.95 * trials


def test_no_single_move_or_swap_makes_grouped_folds_more_even():
    rng = random.Random(1)
    for trial in range(100):
        labels, groups, k, n_classes = _random_instance(rng)
        folds = assign_folds(labels, groups, k, seed=trial)
        of = {g: f for g, f in zip(groups, folds, strict=True)}
        now = _score(labels, folds, k, n_classes)
        names = sorted(of)
        for g in names:
            for b in range(k):
                moved = {**of, g: b}
                if len(set(moved.values())) == k:
                    assert _score(labels, [moved[x] for x in groups], k, n_classes) >= now
        for g, h in itertools.combinations(names, 2):
            swapped = {**of, g: of[h], h: of[g]}
            assert _score(labels, [swapped[x] for x in groups], k, n_classes) >= now


@pytest.mark.parametrize("sizes,k", [([10, 5, 2], 2), ([7, 7, 7, 3], 3), ([13, 4], 4), ([5, 6], 5)])
def test_ungrouped_folds_split_every_class_evenly(sizes, k):
    labels = [c for c, n in enumerate(sizes) for _ in range(n)]
    folds = assign_folds(labels, None, k, seed=3)
    counts = _counts(labels, folds, k, len(sizes))
    for c, n in enumerate(sizes):  # floor(n / k) or ceil(n / k) of class c in every fold
        assert sorted(row[c] for row in counts) == sorted([n // k + (i < n % k) for i in range(k)])
    totals = [sum(row) for row in counts]
    assert max(totals) - min(totals) <= 1


def test_one_fold_per_group_holds_out_one_group_each():
    groups = [f"p{i % 5}" for i in range(23)]
    labels = [i % 3 for i in range(23)]
    folds = assign_folds(labels, groups, 5, seed=0)
    held = [{g for g, f in zip(groups, folds, strict=True) if f == i} for i in range(5)]
    assert sorted(len(h) for h in held) == [1] * 5 and set().union(*held) == set(groups)


def test_assignment_is_deterministic_and_follows_the_seed():
    labels = [i % 3 for i in range(30)]
    groups = [f"p{i % 6}" for i in range(30)]
    assert assign_folds(labels, groups, 3, seed=4) == assign_folds(labels, groups, 3, seed=4)
    partitions = set()
    for seed in range(8):
        folds = assign_folds(labels, groups, 3, seed=seed)
        partitions.add(frozenset(frozenset(g for g, f in zip(groups, folds, strict=True) if f == i)
                                 for i in range(3)))
    assert len(partitions) > 1


def test_group_of_file_names():
    p = re.compile(r"P(\d+)")
    assert group_of("PS7A2P1T3.avi", p) == "1"
    assert group_of("PS7A2P12T3.avi", re.compile(r"P\d+T")) == "P12T"  # no capture group: the match
    assert group_of("PS7A2T3.avi", re.compile(r"A\dP(\d+)")) is None
    assert group_of("weizmann_bend_00000046.mkv", re.compile(r"_(\d+)\."), 8) == "5"  # 46 // 8
    assert group_of("x_(y)_7.mkv", re.compile(r"(z)?_(\d+)\."), 1) == "7"  # the first group that took part
    assert group_of("weizmann_bend.mkv", re.compile(r"_([a-z]+)\."), 8) is None


def _tree(root: Path, names: dict[str, list[str]]) -> Path:
    for cls, files in names.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for f in files:
            (root / cls / f).write_bytes(b"")
    return root


def _gestures_like(root: Path, persons: int = 3, trials: int = 2) -> Path:
    return _tree(root, {f"A{a}": [f"PS7A{a}P{p}T{t}.avi" for p in range(1, persons + 1)
                                  for t in range(1, trials + 1)] for a in (1, 2, 3)})


def test_folder_folds_train_on_other_folds_and_test_on_this_one(tmp_path):
    root = _gestures_like(tmp_path / "g")
    spec = FoldSpec(3, 0, r"P(\d+)", seed=2)
    folds = folder_folds(root, spec)
    assert folds.k == 3 and len(folds.records) == 18
    seen = []
    for i in range(3):
        index = folder_index(root, folds=FoldSpec(3, i, r"P(\d+)", seed=2))
        test_people = {re.search(r"P(\d)", r.path.name).group(1) for r in index.test}
        train_people = {re.search(r"P(\d)", r.path.name).group(1) for r in index.train}
        assert len(test_people) == 1 and not test_people & train_people
        assert folds.test_groups(i) == tuple(test_people)
        assert {r.path for r in index.train} | {r.path for r in index.test} == set(root.glob("*/*.avi"))
        assert sorted(r.class_name for r in index.test) == ["A1", "A1", "A2", "A2", "A3", "A3"]
        seen += [r.path for r in index.test]
    assert sorted(seen) == sorted(root.glob("*/*.avi"))  # every file in exactly one test fold


def test_config_fields_reach_the_folder_index(tmp_path):
    root = _gestures_like(tmp_path / "g")
    cfg = Config(seed=5, data=DataConfig(dataset="folder", data_root=str(root), folds=-1, fold=2,
                                         group_pattern=r"P(\d+)"))
    index = video_index(data_source(cfg))
    assert index == folder_folds(root, FoldSpec(-1, 2, r"P(\d+)", seed=5)).index(2)
    assert len({re.search(r"P(\d)", r.path.name).group(1) for r in index.test}) == 1
    plain = Config(data=DataConfig(dataset="folder", data_root=str(root)))
    assert video_index(data_source(plain)) == folder_index(root, seed=0)


@pytest.mark.parametrize("spec,message", [
    (dict(folds=1), "data.folds must be at least 2"),
    (dict(folds=-1), "needs data.group_pattern"),
    (dict(folds=3, fold=3), r"data.fold must lie in 0..2"),
    (dict(folds=2, group_pattern="P("), "is not a regular expression"),
    (dict(folds=2, group_divisor=8), "group_divisor needs data.group_pattern"),
])
def test_bad_fold_options(spec, message):
    with pytest.raises(ValueError, match=message):
        FoldSpec(**spec)


def test_fold_errors_name_the_files_and_the_maximum(tmp_path):
    root = _gestures_like(tmp_path / "g", persons=2, trials=3)
    (root / "A1" / "odd_clip.avi").write_bytes(b"")
    with pytest.raises(FoldError, match=r"does not match 1 of 19 file names: odd_clip.avi$"):
        folder_folds(root, FoldSpec(2, 0, r"P(\d+)"))
    (root / "A1" / "odd_clip.avi").unlink()
    with pytest.raises(FoldError, match=r"data.folds=3 but the file names give only 2 groups \(1, 2\); "
                                        "at most 2"):
        folder_folds(root, FoldSpec(3, 0, r"P(\d+)"))
    (root / "A2" / "PS7A2P1T1.avi").unlink()  # A2 now has 5 videos
    with pytest.raises(FoldError, match="data.folds=6 but class 'A2' has only 5 videos; at most 5"):
        folder_folds(root, FoldSpec(6, 0))
    with pytest.raises(FoldError, match=r"does not capture an integer .* in 17 of 17"):
        file_groups(sorted(root.glob("*/*.avi")), FoldSpec(2, 0, r"(P)", 8), root)
    with pytest.raises(ValueError, match="folder dataset only"):
        DataSource("ucf101", root, folds=FoldSpec(2))


# ---------------------------------------------------------------- real file names

ROOT = os.environ.get("RESPIKE_REALDATA")


def _real(name: str) -> Path:
    if not ROOT or not Path(ROOT, name).is_dir():
        pytest.skip(f"RESPIKE_REALDATA does not name the real-clip folder with {name}/")
    return Path(ROOT, name)


@pytest.mark.realdata
def test_real_gestures_hold_out_one_person_per_fold():
    _real("gestures")
    folds = folder_folds(Path(ROOT, "gestures"), FoldSpec(-1, 0, r"P(\d+)"))
    assert folds.k == 2
    assert {folds.test_groups(0), folds.test_groups(1)} == {("1",), ("2",)}
    for i in range(2):
        index = folds.index(i)
        person = f"P{folds.test_groups(i)[0]}"
        assert all(person in r.path.name for r in index.test)
        assert not any(person in r.path.name for r in index.train)
        assert sorted(sum(r.label == c for r in index.test) for c in range(3)) == [3, 3, 3]


@pytest.mark.realdata
def test_real_weizmann4_folds_keep_each_actor_in_one_fold():
    root = _real("weizmann4")
    actor = {p.name: int(p.stem.rsplit("_", 1)[1]) // 8 for p in root.glob("*/*.mkv")}  # 8*actor + ...
    assert len(actor) == 24 and len(set(actor.values())) == 9
    loso = folder_folds(root, FoldSpec(-1, 0, r"_(\d+)\.", 8))
    assert loso.k == 9
    three = folder_folds(root, FoldSpec(3, 0, r"_(\d+)\.", 8))
    for folds in (loso, three):
        for i in range(folds.k):
            index = folds.index(i)
            test_actors = {actor[r.path.name] for r in index.test}
            assert not test_actors & {actor[r.path.name] for r in index.train}
            assert folds.test_groups(i) == tuple(sorted(str(a) for a in test_actors))
    # 6 clips per class over 3 folds: 2 per class per fold is reachable and reached
    per_class = [[sum(r.label == c for r in three.index(i).test) for c in range(4)] for i in range(3)]
    assert per_class == [[2] * 4] * 3
