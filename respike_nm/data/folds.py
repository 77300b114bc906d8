"""Cross-validation folds for small labelled sets: stratified by class, grouped by subject.

A fold assignment gives every video one of ``k`` folds; fold ``i``'s run tests on fold ``i`` and
trains on the others. With a group (subject) per video, a whole group goes to one fold, so no
subject is seen in training and in testing (StratifiedGroupKFold-like). ``k`` may equal the
number of groups (leave one group out; :data:`ONE_PER_GROUP`).

The group of a file comes from its name: the first capture group of ``group_pattern`` (else the
whole match), searched with :func:`re.search` in the file name (not the folder). With
``group_divisor`` > 1 the captured text must be an integer and the group is that integer floor-
divided by the divisor, for sets that number clips subject-major (the MoCoGAN copy of Weizmann
numbers clip ``8 * actor + 2 * action + mirrored``, so ``_(\\d+)\\.`` with divisor 8 is the actor).

Assignment (:func:`assign_folds`): groups are shuffled by the seed, sorted largest first, and each
goes to the fold where it adds the least class imbalance (the sum over folds and classes of the
squared per-class count), ties to the smaller fold; then single-group moves and two-group swaps
that lower (class imbalance, fold-size imbalance) are made until none does. Every fold keeps at
least one group. Without groups each video is its own group; the result then has per-class
counts, and fold sizes, that differ by at most one between folds.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from respike_nm.data.errors import DataError
from respike_nm.errors import UsageError

ONE_PER_GROUP = -1  # data.folds=-1: one fold per group (leave one subject out)


class FoldError(DataError):
    """Fold options that do not fit the data: a pattern that does not match, too many folds."""


@dataclass(frozen=True)
class FoldSpec:
    """Which cross-validation fold a folder dataset is cut to.

    ``folds``: K >= 2, or :data:`ONE_PER_GROUP`; ``fold``: the test fold, 0-based;
    ``group_pattern``/``group_divisor``: how a file name gives its group (module docstring);
    ``seed``: the assignment's seed."""

    folds: int
    fold: int = 0
    group_pattern: str | None = None
    group_divisor: int = 1
    seed: int = 0

    def __post_init__(self):
        if self.folds != ONE_PER_GROUP and self.folds < 2:
            raise UsageError(f"data.folds must be at least 2, or {ONE_PER_GROUP} for one fold per "
                             f"group, not {self.folds}")
        if self.folds == ONE_PER_GROUP and not self.group_pattern:
            raise UsageError(f"data.folds={ONE_PER_GROUP} (one fold per group) needs data.group_pattern")
        if self.fold < 0 or (self.folds != ONE_PER_GROUP and self.fold >= self.folds):
            raise UsageError(f"data.fold must lie in 0..{self.folds - 1} (0-based), not {self.fold}")
        if self.group_divisor < 1:
            raise UsageError(f"data.group_divisor must be at least 1, not {self.group_divisor}")
        if self.group_divisor > 1 and not self.group_pattern:
            raise UsageError("data.group_divisor needs data.group_pattern")
        if self.group_pattern is not None:
            compile_pattern(self.group_pattern)


def compile_pattern(pattern: str) -> re.Pattern:
    try:
        return re.compile(pattern)
    except re.error as e:
        raise UsageError(f"data.group_pattern '{pattern}' is not a regular expression ({e})") from None


def group_of(name: str, pattern: re.Pattern, divisor: int = 1) -> str | None:
    """The group of file name ``name`` (module docstring); None when the pattern does not match or,
    with ``divisor`` > 1, does not capture an integer."""
    m = pattern.search(name)
    if m is None:
        return None
    text = next((g for g in m.groups() if g is not None), m.group(0))
    if divisor == 1:
        return text
    try:
        return str(int(text) // divisor)
    except ValueError:
        return None


def file_groups(paths: Sequence[Path], spec: FoldSpec, root: str | Path) -> tuple[str, ...]:
    """The group of each path's file name; a :class:`FoldError` naming up to three files whose
    name gives none."""
    pattern = compile_pattern(spec.group_pattern or "")
    groups = [group_of(p.name, pattern, spec.group_divisor) for p in paths]
    bad = [p.name for p, g in zip(paths, groups, strict=True) if g is None]
    if bad:
        what = ("match" if spec.group_divisor == 1
                else f"capture an integer (group_divisor {spec.group_divisor}) in")
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise FoldError(root, f"data.group_pattern '{spec.group_pattern}' does not {what} "
                              f"{len(bad)} of {len(paths)} file names: {', '.join(bad[:3])}{more}")
    return tuple(g for g in groups if g is not None)


def check_classes(class_names: Sequence[str], root: str | Path) -> None:
    """Refuse fewer than two classes (a :class:`FoldError` naming ``root``): a classifier, and so every
    fold's run, needs at least two."""
    if len(class_names) < 2:
        raise FoldError(root, f"{len(class_names)} class(es) ({', '.join(class_names) or 'none'}); "
                              "a classifier needs at least 2")


def fold_count(spec: FoldSpec, labels: Sequence[int], groups: Sequence[str] | None,
               class_names: Sequence[str], root: str | Path) -> int:
    """The number of folds ``spec`` asks for, checked against the data: at most the number of
    groups, or (without groups) the size of the smallest class, so that every fold tests every
    class; at least two classes (:func:`check_classes`)."""
    check_classes(class_names, root)
    if groups is not None:
        n_groups = len(set(groups))
        k = n_groups if spec.folds == ONE_PER_GROUP else spec.folds
        if k > n_groups:
            raise FoldError(root, f"data.folds={k} but the file names give only {n_groups} groups "
                                  f"({', '.join(sorted(set(groups))[:6])}); at most {n_groups} "
                                  f"(data.folds={ONE_PER_GROUP}: one fold per group)")
        if k < 2:
            raise FoldError(root, f"the file names give {n_groups} group(s); cross-validation needs "
                                  "at least 2")
    else:
        k = spec.folds
        sizes = {c: 0 for c in range(len(class_names))}
        for y in labels:
            sizes[y] += 1
        smallest = min(sizes, key=lambda c: (sizes[c], c))
        if k > sizes[smallest]:
            raise FoldError(root, f"data.folds={k} but class {class_names[smallest]!r} has only "
                                  f"{sizes[smallest]} videos; at most {sizes[smallest]} without "
                                  "data.group_pattern")
    if spec.fold >= k:
        raise FoldError(root, f"data.fold={spec.fold} but there are {k} folds (0..{k - 1})")
    return k


# ---------------------------------------------------------------- assignment


def _change(d: Sequence[int], a: list[int], b: list[int]) -> tuple[int, int]:
    """How (sum of squared per-class fold counts, sum of squared fold sizes) changes when class
    counts ``d`` leave fold counts ``a`` for ``b``; both lower when the folds grow more even."""
    per_class = sum(2 * x * (y - z + x) for x, z, y in zip(d, a, b, strict=True))
    n, na, nb = sum(d), sum(a), sum(b)
    return per_class, 2 * n * (nb - na + n)


def _dot(a: Sequence[int], b: Sequence[int]) -> int:
    return sum(x * y for x, y in zip(a, b, strict=True))


def assign_folds(labels: Sequence[int], groups: Sequence[str] | None, k: int,
                 seed: int = 0) -> tuple[int, ...]:
    """The fold (0..k-1) of each item, every fold non-empty, no group in two folds (module
    docstring). ``labels``: 0-based classes; ``groups``: one per item, or None (each item alone).
    Deterministic given the items (in order), ``k`` and ``seed``."""
    keys = list(groups) if groups is not None else [str(i) for i in range(len(labels))]
    if len(keys) != len(labels):
        raise ValueError(f"{len(labels)} labels but {len(keys)} groups")
    names = sorted(set(keys))
    if not 1 <= k <= len(names):
        raise UsageError(f"k must lie in 1..{len(names)} (the number of groups), not {k}")
    n_classes = max(labels, default=-1) + 1
    vec = {g: [0] * n_classes for g in names}
    for g, y in zip(keys, labels, strict=True):
        vec[g][y] += 1
    order = names[:]
    random.Random(f"folds/{seed}").shuffle(order)
    order.sort(key=lambda g: -sum(vec[g]))  # stable: equal sizes keep the seeded order
    counts = [[0] * n_classes for _ in range(k)]
    where: dict[str, int] = {}
    for left, g in zip(range(len(order), 0, -1), order, strict=True):
        used = set(where.values())
        empty = [f for f in range(k) if f not in used]
        candidates = empty if len(empty) == left else range(k)  # keep a group for every empty fold
        f = min(candidates, key=lambda f: (_dot(vec[g], counts[f]), sum(counts[f]), f))
        counts[f] = [a + b for a, b in zip(counts[f], vec[g], strict=True)]
        where[g] = f
    while _improve(vec, counts, where):
        pass
    return tuple(where[g] for g in keys)


def _improve(vec: dict[str, list[int]], counts: list[list[int]], where: dict[str, int]) -> bool:
    """Make the first move of one group (leaving its fold non-empty), else the first swap of two,
    that makes the folds more even (:func:`_change` below (0, 0)); False when none does. Groups
    with the same class counts in the same fold are interchangeable, so one of them stands for all."""
    k = len(counts)
    reps: dict[tuple[int, tuple[int, ...]], str] = {}
    for g in sorted(where):
        reps.setdefault((where[g], tuple(vec[g])), g)
    size = [0] * k
    for f in where.values():
        size[f] += 1

    def shift(d: Sequence[int], a: int, b: int) -> None:
        counts[a] = [x - y for x, y in zip(counts[a], d, strict=True)]
        counts[b] = [x + y for x, y in zip(counts[b], d, strict=True)]

    for (a, v), g in reps.items():
        for b in range(k):
            if b != a and size[a] > 1 and _change(v, counts[a], counts[b]) < (0, 0):
                shift(v, a, b)
                where[g] = b
                return True
    items = list(reps.items())
    for (a, v), g in items:
        for (b, w), h in items:
            if a < b and v != w:
                d = [x - y for x, y in zip(v, w, strict=True)]
                if _change(d, counts[a], counts[b]) < (0, 0):
                    shift(d, a, b)
                    where[g], where[h] = b, a
                    return True
    return False
