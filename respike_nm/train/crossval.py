"""Cross-validation of a ``folder`` dataset: one training run per fold, then per-fold and mean ± std
accuracies.

``run_crossval(cfg, kind, out)`` cuts ``cfg``'s folder dataset into ``cfg.data.folds`` folds
(:mod:`respike_nm.data.folds`; grouped by subject with ``cfg.data.group_pattern``), trains fold
``i`` into ``out/fold-<i>/`` (an ordinary run folder: ``eval``, ``deploy`` and the rest read it)
with ``data.fold=i``, and writes ``out/crossval.json`` (atomically) with a row per fold, the mean
and the sample standard deviation (n - 1 in the denominator) over folds of each accuracy, and
which fold tests each file. With ``resume``, folds whose ``summary.json`` exists are read back, an
interrupted fold continues from its checkpoint, and the others are trained.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from respike_nm.atomic import write_text_atomic
from respike_nm.config import Config
from respike_nm.data.splits import FolderFolds, folder_folds
from respike_nm.errors import UsageError
from respike_nm.progress import Progress, no_progress
from respike_nm.train.builder import data_source
from respike_nm.train.loop import train
from respike_nm.train.run import CHECKPOINT, SUMMARY, RunError, RunSummary, read_summary

RESULT = "crossval.json"
FORMAT_VERSION = 1
METRICS = ("test_top1", "test_top1_video")


@dataclass(frozen=True)
class FoldRow:
    """One fold's run: what it tested on and what it scored (accuracies as fractions)."""

    fold: int
    run: str  # the run folder, relative to the cross-validation folder
    test_groups: tuple[str, ...]
    train_videos: int
    test_videos: int
    test_top1: float | None  # per clip
    test_top1_video: float | None  # logits averaged over a video's clips
    seconds: float  # training time of the run
    epochs: int


@dataclass(frozen=True)
class Spread:
    """Mean and sample standard deviation (n - 1) of one accuracy over ``n`` folds."""

    mean: float | None  # None: no fold has the value
    std: float | None  # None: fewer than two folds have it
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        n = len(values)
        if not n:
            return cls(None, None, 0)
        mean = sum(values) / n
        std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else None
        return cls(mean, std, n)


@dataclass(frozen=True)
class CrossvalResult:
    """What ``crossval.json`` holds (:meth:`to_dict`)."""

    model: str
    config: str
    data_root: str
    folds: int
    group_pattern: str | None
    group_divisor: int
    seed: int
    rows: tuple[FoldRow, ...]
    summary: dict[str, Spread]  # metric -> spread over folds
    assignment: dict[str, int]  # file (relative to the data root) -> the fold that tests it
    std: str = "sample (n - 1)"
    format_version: int = FORMAT_VERSION

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def plan(cfg: Config) -> FolderFolds:
    """The fold assignment ``cfg`` describes (checked: a folder dataset with ``data.folds`` set)."""
    if cfg.data.dataset != "folder":
        raise UsageError(f"cross-validation needs data.dataset=folder, not {cfg.data.dataset!r}")
    if not cfg.data.folds:
        raise UsageError("cross-validation needs data.folds (K >= 2, or -1 for one fold per group)")
    source = data_source(cfg)
    return folder_folds(source.root, source.folds)


def prepare(cfg: Config, out: str | Path, resume: bool = False) -> FolderFolds:
    """:func:`plan`, then :func:`check_crossval_dir`: every check a cross-validation makes before its
    first fold trains, so that a dry run refuses what the run would refuse."""
    folds = plan(cfg)
    check_crossval_dir(Path(out), resume)  # the fold runs create out: a failed first start leaves nothing
    return folds


def fold_config(cfg: Config, fold: int) -> Config:
    """``cfg`` with ``data.fold`` set; the name says which fold."""
    return dataclasses.replace(cfg, name=f"{cfg.name}-fold{fold}",
                               data=dataclasses.replace(cfg.data, fold=fold))


def fold_dir(out: Path, fold: int) -> Path:
    return out / f"fold-{fold}"


def check_crossval_dir(out: Path, resume: bool) -> None:
    """A new cross-validation needs ``out`` absent or empty; ``resume`` needs it to exist."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"{out}: is a file, not a cross-validation folder")
    if resume:
        if not out.is_dir():
            raise UsageError(f"{out}: no cross-validation to resume (no such folder)")
    elif out.is_dir() and any(out.iterdir()):
        raise UsageError(f"{out}: is not empty; pass --resume to continue the cross-validation there "
                         "or choose a new folder")


def _finished(run: Path, cfg: Config) -> RunSummary | None:
    """The summary of a finished fold run, checked to be of ``cfg``; None when it did not finish."""
    if not (run / SUMMARY).is_file():
        return None
    summary = read_summary(run)
    if summary.full_config != cfg.to_dict():
        raise RunError(f"{run / SUMMARY}: was trained with another config than this cross-validation's fold; "
                       "choose a new folder")
    return summary


def run_crossval(cfg: Config, kind: str, out: str | Path, resume: bool = False,
                 progress: Progress = no_progress, device: torch.device | None = None,
                 on_fold: Callable[[int, int, FolderFolds], None] | None = None,
                 on_epoch: Callable[[dict], None] | None = None,
                 on_fold_done: Callable[[FoldRow], None] | None = None) -> CrossvalResult:
    """Train ``kind`` on every fold of ``cfg``'s folder dataset into ``out/fold-<i>/`` and write
    ``out/crossval.json`` (module docstring). ``on_fold(i, k, folds)`` is called before fold ``i``
    trains (or is read back), ``on_fold_done(row)`` after; ``on_epoch`` goes to :func:`train`."""
    out = Path(out)
    folds = prepare(cfg, out, resume)
    rows = []
    for i in range(folds.k):
        if on_fold:
            on_fold(i, folds.k, folds)
        fcfg, run = fold_config(cfg, i), fold_dir(out, i)
        summary = _finished(run, fcfg) if resume else None
        if summary is None:
            again = resume and (run / CHECKPOINT).is_file()
            summary = train(fcfg, kind, run, resume=again, progress=progress, device=device,
                            on_epoch=on_epoch, overwrite=resume and not again).summary
        index = folds.index(i)
        row = FoldRow(i, run.name, folds.test_groups(i), len(index.train), len(index.test),
                      summary.test_top1, summary.test_top1_video, float(summary.seconds), summary.epochs)
        rows.append(row)
        if on_fold_done:
            on_fold_done(row)
    spreads = {m: Spread.of([getattr(r, m) for r in rows if getattr(r, m) is not None]) for m in METRICS}
    assignment = {r.path.relative_to(folds.root).as_posix(): f
                  for r, f in zip(folds.records, folds.folds, strict=True)}
    d = cfg.data
    result = CrossvalResult(kind, cfg.name, str(folds.root), folds.k, d.group_pattern, d.group_divisor,
                            cfg.seed, tuple(rows), spreads, assignment)
    write_text_atomic(out / RESULT, json.dumps(result.to_dict(), indent=2) + "\n")
    return result
