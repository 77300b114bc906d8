"""The run folder: the files a training run writes, their records and readers, and its checks.

A run folder holds four files (``RUN_FILES``):

- ``checkpoint.pt``: the model, optimizer and history (:mod:`respike_nm.train.checkpoint`);
- ``metrics.jsonl``: one :class:`EpochRow` per finished epoch, written with the checkpoint;
- ``summary.json``: the :class:`RunSummary` of a finished run (``format``, ``format_version``: the
  version of the run folder's JSON, summary and metrics rows together);
- ``training_curves.png``: loss and top-1 against the epoch.

Everything that opens a run (evaluation, conversion, the API, cross-validation, the demo) reads it
through this module: :func:`load_run`, :func:`read_summary`, :func:`read_metrics`. A new run writes
into a staging folder inside the run folder until its first checkpoint (:class:`RunFolder`), so a
run that fails or is stopped before it leaves the folder as it was.
"""

from __future__ import annotations

import json
import os
import shutil
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path

import torch

from respike_nm.atomic import TEMP_GLOB, leftover_temps, named_writes, write_text_atomic
from respike_nm.config import from_dict
from respike_nm.errors import RespikeError
from respike_nm.records import from_data, read_json, read_text, to_data
from respike_nm.train.builder import build_model
from respike_nm.train.checkpoint import load_checkpoint, load_model_state

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.jsonl"
SUMMARY = "summary.json"
CURVES = "training_curves.png"
RUN_FILES = (CHECKPOINT, METRICS, SUMMARY, CURVES)

SUMMARY_FORMAT = "respike-nm-run-summary"
SUMMARY_VERSION = 1  # 0: the summaries written before the format was named (the same fields)


class RunError(RespikeError, ValueError):
    """A run folder that cannot be used as asked, or a run file that cannot be read; names the path."""


@dataclass(frozen=True)
class Quantization:
    """A spiking run's accuracy in both number formats: ``qat`` (trained quantized; the float figure
    is the same weights without fake quantization) or ``post-training`` (trained in float)."""

    mode: str
    target: str
    float_top1: float | None
    quantized_top1: float | None


@dataclass(frozen=True)
class RunSummary:
    """``summary.json``. ``skipped_inputs``: the inputs left out when the datasets were built (missing
    or unlisted files) plus the clips that failed to decode, which ``failed_to_decode`` counts per set
    (the most of any epoch or evaluation). ``quantization``: None for the ANN baseline."""

    format: str
    format_version: int
    model: str
    config: str
    dataset: str
    test_top1: float | None
    test_top5: float | None
    test_top1_video: float | None
    epochs: int
    seconds: float
    params: int
    classes: int
    skipped_inputs: int
    failed_to_decode: dict[str, int]
    firing_rates: dict[str, float]
    quantization: Quantization | None
    full_config: dict


@dataclass(frozen=True)
class EpochRow:
    """One line of ``metrics.jsonl``. Test figures only on evaluated epochs (``train.eval_every``);
    per-head losses only for the hybrid (``test_loss_*`` with ``train.branch_metrics``), OGM-GE
    coefficients only with ``train.branch_loss=ogm-ge``. ``seconds``: since the run began."""

    epoch: int
    train_loss: float
    train_top1: float
    train_samples: int
    train_failed: int
    lr: float
    seconds: float
    train_loss_fused: float | None = None
    train_loss_ann: float | None = None
    train_loss_snn: float | None = None
    ogm_coeff_ann: float | None = None
    ogm_coeff_snn: float | None = None
    test_top1: float | None = None
    test_top5: float | None = None
    test_top1_video: float | None = None
    test_top5_video: float | None = None
    test_loss: float | None = None
    test_failed: int | None = None
    firing_rates: dict[str, float] = field(default_factory=dict)
    test_loss_fused: float | None = None
    test_loss_ann: float | None = None
    test_loss_snn: float | None = None


def write_summary(out: Path, summary: RunSummary) -> Path:
    return write_text_atomic(Path(out) / SUMMARY, json.dumps(to_data(summary), indent=2) + "\n")


def read_summary(run_dir: str | Path) -> RunSummary:
    """The run's ``summary.json``, checked field by field; a :class:`RunError` naming the file otherwise."""
    path = Path(run_dir) / SUMMARY
    data = read_json(path, RunError)
    if isinstance(data, dict) and "format" not in data:  # version 0: the same fields, unnamed
        data = {"format": SUMMARY_FORMAT, "format_version": 0, "quantization": None, **data}
    summary = from_data(RunSummary, data, str(path), RunError, f"{path}: ")
    if summary.format != SUMMARY_FORMAT or summary.format_version not in (0, SUMMARY_VERSION):
        raise RunError(f"{path}: not a run summary of a version this reads ({summary.format!r} version "
                       f"{summary.format_version}; this version reads {SUMMARY_VERSION})")
    return summary


def write_metrics(out: Path, history: list[dict]) -> Path:
    """``metrics.jsonl`` from the training history (rows as the loop keeps them), each row checked
    to be an :class:`EpochRow` first, so that a row no reader knows is never written."""
    for i, row in enumerate(history):
        from_data(EpochRow, row, f"metrics row {i + 1}", RunError)
    return write_text_atomic(Path(out) / METRICS, "".join(json.dumps(row) + "\n" for row in history))


def read_metrics(run_dir: str | Path) -> list[EpochRow]:
    """The rows of the run's ``metrics.jsonl``; a :class:`RunError` naming the file and line otherwise."""
    path = Path(run_dir) / METRICS
    rows = []
    for n, line in enumerate(read_text(path, RunError).splitlines(), 1):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise RunError(f"{path}: line {n} is not JSON ({e.msg})") from None
        rows.append(from_data(EpochRow, data, f"{path}: line {n}", RunError, f"{path}: line {n}: "))
    return rows


def load_run(run_dir: str | Path, quantize: bool | None = None, device: torch.device | None = None):
    """``(model, cfg, checkpoint)`` of a finished or interrupted run."""
    run_dir = Path(run_dir)
    ck = load_checkpoint(run_dir / CHECKPOINT)
    cfg = from_dict(ck.config)
    model = build_model(cfg, ck.kind, len(ck.classes), quantize=quantize)
    load_model_state(model, ck.model, ck.path)
    return model.to(device or torch.device("cpu")), cfg, ck


def check_run_dir(out: Path, resume: bool, overwrite: bool = False) -> None:
    """Refuse a run folder that would lose or mislabel work, naming it.

    A new run needs ``out`` absent or empty (``overwrite``: or holding a run, whose files are
    replaced); folders with other files are never written into. ``resume`` needs the checkpoint.
    Temporary files and staging folders that a killed run left (``.<name>.tmp-<pid>``) are removed.
    """
    if out.exists() and not out.is_dir():
        raise RunError(f"{out}: is a file, not a run folder")
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise RunError(f"{out}: no run to resume ({CHECKPOINT} missing)")
    elif out.is_dir():
        names = {p.name for p in out.iterdir()} - {p.name for p in out.glob(TEMP_GLOB)}
        others = sorted(names - set(RUN_FILES))
        if others:
            raise RunError(f"{out}: holds files that are not a run ({', '.join(others[:3])}); "
                           "choose a new folder")
        if names and not overwrite:
            raise RunError(f"{out}: holds a run ({', '.join(sorted(names))}); pass --resume to continue "
                           "it or --overwrite to replace it")
    if out.is_dir():
        for stale in leftover_temps(out):
            stale.unlink()
        for stale in out.glob(TEMP_GLOB):
            if stale.is_dir() and stale.name.startswith(_stage_name(out, "").name):
                shutil.rmtree(stale)


def _stage_name(out: Path, pid: str) -> Path:
    return out / f".{out.name}.tmp-{pid}"


@dataclass
class RunFolder:
    """Where a run's files go while it trains (main rank only): ``out`` itself for a resumed run; for
    a new one, a staging folder inside ``out`` (``.<name>.tmp-<pid>``) until its first checkpoint
    (:meth:`commit`), so that a run failing or stopped before it leaves ``out`` as it was: the run
    that ``overwrite`` replaces, or nothing (:meth:`discard`)."""

    out: Path
    writes_to: Path | None = None  # out, or a new run's staging folder
    made: Path | None = None  # the outermost folder of out that the run created
    committing: bool = False  # a new run's first checkpoint is complete and moving into out

    def __post_init__(self):
        self.writes_to = self.out if self.writes_to is None else self.writes_to

    @property
    def checkpoint(self) -> Path:
        return self.writes_to / CHECKPOINT

    def open(self, resume: bool, history: list[dict]) -> None:
        """Make the folder ready for writing: a resumed run's metrics rewritten from its checkpoint's
        history in place; a new run's staging folder made."""
        if resume:
            write_metrics(self.out, history)
            return
        self.made = next((p for p in reversed((self.out, *self.out.parents)) if not p.exists()), None)
        stage = _stage_name(self.out, str(os.getpid()))
        self.writes_to = stage
        with named_writes(stage, self.out):
            stage.mkdir(parents=True)
            write_metrics(stage, history)

    def commit(self) -> None:
        """Move a new run's first checkpoint and metrics from its staging folder into the run folder,
        and remove the files of the run they replace. A signal or error half-way makes :meth:`discard`
        finish the move (the checkpoint is complete by then), so the folder never mixes two runs."""
        stage = self.writes_to
        if stage == self.out:
            return
        self.committing = True
        moved = (CHECKPOINT, METRICS)
        with named_writes(stage, self.out):
            for name in moved:  # the checkpoint first: it holds the history that metrics.jsonl repeats
                if (stage / name).exists():
                    os.replace(stage / name, self.out / name)
            for name in set(RUN_FILES) - set(moved):
                (self.out / name).unlink(missing_ok=True)
        shutil.rmtree(stage, ignore_errors=True)
        self.writes_to = self.out

    def discard(self) -> None:
        """Remove what a new run wrote before its first checkpoint, and the folders it made (a run
        stopped while its first checkpoint moved in is moved in instead)."""
        if self.writes_to in (None, self.out):
            return
        if self.committing:
            with suppress(OSError):
                self.commit()
            return
        shutil.rmtree(self.writes_to, ignore_errors=True)
        self.writes_to = None
        if self.made is None:
            return
        for folder in (self.out, *self.out.parents):
            try:
                folder.rmdir()
            except OSError:
                return
            if folder == self.made:
                return
