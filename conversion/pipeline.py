"""The deployment library under the command line: export a trained run, simulate an export.

:func:`export_run` writes an export folder (netx HDF5 per stage network, ``manifest.json`` with the
run it came from, ``mapping.json``) atomically; :func:`simulate_export` runs it in Lava against the
quantized PyTorch model and returns a :class:`SimulationReport`, which it also writes as
``verify.json`` (:func:`read_simulation_report` reads it back). The CLI, the demo, the notebooks and
the benchmarks call these functions; they only parse, call and print.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, replace
from importlib.metadata import version
from pathlib import Path

import torch

from conversion.export import export_model
from conversion.hybrid import hybrid_logits
from conversion.manifest import MANIFEST_NAME, ExportManifest, file_sha256, write_manifest
from conversion.mapping import MAPPING_NAME, MappingReport, map_export, write_mapping
from conversion.netx_check import check_export
from conversion.verify import (
    VerificationResult,
    check_model_fits,
    compare_export,
    merge_results,
    verify_model,
)
from respike_nm.atomic import atomic_dir, write_text_atomic
from respike_nm.errors import RespikeError, UsageError
from respike_nm.forked import fork_map
from respike_nm.hardware import HwProfile
from respike_nm.ranks import gather, launch, part, split
from respike_nm.records import read_record, to_data
from respike_nm.train.builder import test_clips
from respike_nm.train.run import CHECKPOINT, load_run

REPORT_NAME = "verify.json"
REPORT_VERSION = 2  # 2: every layer counts in spike_mismatch; passed, problems, silent layers
STACK = ("respike-nm", "torch", "lava-nc", "lava-dl", "norse", "numpy", "h5py")


class ReportError(RespikeError, ValueError):
    """A ``verify.json`` that this version cannot read; the message names the field."""


@dataclass(frozen=True)
class ExportResult:
    out: Path
    manifest: ExportManifest
    mapping: MappingReport


@dataclass(frozen=True)
class SimulationReport:
    """Lava against PyTorch on ``clips`` test clips.

    ``stages``: per stage network, the bit-exactness check (:class:`VerificationResult`);
    ``spike_mismatch``: differing spikes over every layer of every stage; ``output_mismatch``: over
    the stages' output layers only; ``model_mismatch``: stage outputs against the model's own float
    forward; ``prediction_agreement``: share of clips where the hybrid with its SNN in Lava predicts
    what the PyTorch model predicts; ``hybrid_top1`` / ``torch_top1``: their accuracies;
    ``lava_steps_per_second``: of the hybrid run; ``checkpoint_matches``: whether the run compared is
    the one exported; ``export_differences``: layers whose exported integers differ from the run's
    quantized model (:func:`~conversion.verify.compare_export`); ``layers`` / ``layers_fired``: layers
    verified and those that fired at least once in the reference; ``silent_layers``: the others, as
    ``stage<i> <name>`` (a silent layer agrees trivially: it was not tested); ``problems``: one line
    per failed check, empty when ``passed``.
    """

    clips: int
    stages: tuple[VerificationResult, ...]
    spike_mismatch: int
    model_mismatch: int
    prediction_agreement: float
    hybrid_top1: float
    torch_top1: float
    lava_steps_per_second: float | None
    checkpoint_matches: bool
    run_dir: str
    output_mismatch: int
    export_differences: tuple[str, ...]
    layers: int
    layers_fired: int
    silent_layers: tuple[str, ...]
    passed: bool
    problems: tuple[str, ...]
    format_version: int = REPORT_VERSION


def stack_versions() -> dict[str, str]:
    """The installed versions of the packages an export depends on."""
    return {p: version(p) for p in STACK}


def export_run(run_dir: str | Path, out: str | Path, profiles: list[HwProfile] | None = None) -> ExportResult:
    """Export ``run_dir``'s SNN branch into the new folder ``out`` (temporary folder, then rename).

    The model is rebuilt with quantization on, so what is exported is what the quantized model
    computes; the manifest records the checkpoint's sha256, the run's path and the stack's versions;
    ``mapping.json`` maps the export onto ``profiles`` (default: every neuromorphic profile).
    """
    run_dir, out = Path(run_dir), Path(out)
    model, cfg, _ = load_run(run_dir, quantize=True)
    model.eval()
    with atomic_dir(out, "export folder") as tmp:
        manifest = export_model(model, tmp, (cfg.data.size, cfg.data.size))
        manifest = replace(manifest, checkpoint_sha256=file_sha256(run_dir / CHECKPOINT),
                           target=cfg.quant.target, versions=stack_versions(), run_dir=str(run_dir.resolve()))
        write_manifest(manifest, tmp / MANIFEST_NAME)
        mapping = replace(map_export(tmp, profiles), export_dir=str(out))
        write_mapping(mapping, tmp / MAPPING_NAME)
    return ExportResult(out, manifest, mapping)


def _verify_and_run(model, manifest: ExportManifest, export_dir: Path, video: torch.Tensor) -> _ShardRun:
    """Every stage verified in Lava on ``video``, then the hybrid with its SNN in Lava, reusing the
    verified runs whose input it reproduces exactly, and the PyTorch model's predictions."""
    runs: dict = {}
    stages = verify_model(model, manifest, export_dir, video, runs)
    hybrid = hybrid_logits(model, manifest, export_dir, video, known=runs)
    with torch.no_grad():
        torch_pred = model(video).argmax(-1)
    return _ShardRun(stages, hybrid.logits, torch_pred, hybrid.lava_steps, hybrid.lava_seconds)


@dataclass(frozen=True)
class _ShardRun:
    """What :func:`_verify_and_run` finds on some consecutive clips; :func:`_merged` adds shards."""

    stages: list[VerificationResult]
    logits: torch.Tensor  # the hybrid's, its SNN in Lava
    torch_pred: torch.Tensor
    lava_steps: int
    lava_seconds: float


def _merged(parts: list[_ShardRun]) -> _ShardRun:
    """Shards of consecutive clips, in order, as one run over all of them."""
    if len(parts) == 1:
        return parts[0]
    stages = [merge_results(list(per_stage)) for per_stage in zip(*(p.stages for p in parts), strict=True)]
    return _ShardRun(stages,
                     torch.cat([p.logits for p in parts]), torch.cat([p.torch_pred for p in parts]),
                     sum(p.lava_steps for p in parts), sum(p.lava_seconds for p in parts))


def _run_clips(model, manifest: ExportManifest, export_dir: Path, video: torch.Tensor,
               workers: int) -> _ShardRun | None:
    """:func:`_verify_and_run` on ``video``, split into ``workers`` contiguous shards when > 1, each in
    its own forked process with its own Lava networks (stopped by the worker), merged in clip order."""
    if not len(video):
        return None
    if workers == 1:
        return _verify_and_run(model, manifest, export_dir, video)
    return _merged(fork_map(lambda shard: _verify_and_run(model, manifest, export_dir, shard),
                            split(video, workers)))


def simulate_export(export_dir: str | Path, run_dir: str | Path | None = None,
                    clips: int = 8, workers: int = 1) -> SimulationReport | None:
    """Check ``export_dir``, run every stage network and the hybrid in Lava on ``clips`` test clips
    of the run (default: the one the export was made from), compare with the quantized PyTorch model
    and write ``verify.json``. A failure before the comparison leaves an existing report untouched.

    ``workers > 1`` splits the clips into that many contiguous shards, each run by its own process
    with its own Lava networks; the merged report equals a single process's except for the speeds
    (clips are independent: every stage network is reset between them). Under ``torchrun`` each rank
    runs its contiguous part of the clips (split further over its ``workers``); rank 0 merges all
    ranks' results, writes the report and returns it, the other ranks return ``None``
    (:mod:`respike_nm.ranks`)."""
    if workers < 1:
        raise UsageError(f"workers must be at least 1, not {workers}")
    where = launch()
    export_dir = Path(export_dir)
    manifest = check_export(export_dir)  # before netx reads a file
    if run_dir is None:
        if not manifest.run_dir:
            raise UsageError(f"{export_dir / MANIFEST_NAME}: records no run; name the trained run")
        run_dir = manifest.run_dir
    run_dir = Path(run_dir)
    if where.main:
        check_writable(export_dir, REPORT_NAME)  # before minutes of simulation, not after
    warning = checkpoint_warning(run_dir, manifest)
    model, cfg, _ = load_run(run_dir, quantize=True)
    model.eval()
    check_model_fits(model, manifest, (cfg.data.size, cfg.data.size), export_dir / MANIFEST_NAME)
    differences = compare_export(model, manifest, export_dir)
    video, labels = test_clips(cfg, clips)
    mine = part(range(len(video)), where.rank, where.world)
    parts = gather(_run_clips(model, manifest, export_dir, video[mine.start:mine.stop], workers), where)
    if not where.main:
        return None
    run = _merged([p for p in parts if p is not None])
    lava_pred = run.logits.argmax(-1)
    silent = tuple(f"stage{s.stage} {name}" for s in run.stages for name in s.silent)
    layers = sum(len(s.layers) for s in run.stages)
    report = SimulationReport(
        clips=int(len(labels)), stages=tuple(run.stages),
        spike_mismatch=int(sum(s.spike_mismatch for s in run.stages)),
        model_mismatch=int(sum(s.model_mismatch for s in run.stages)),
        prediction_agreement=float((lava_pred == run.torch_pred).float().mean()),
        hybrid_top1=float((lava_pred == labels).float().mean()),
        torch_top1=float((run.torch_pred == labels).float().mean()),
        lava_steps_per_second=round(run.lava_steps / run.lava_seconds, 2) if run.lava_seconds else None,
        checkpoint_matches=warning is None, run_dir=str(run_dir),
        output_mismatch=int(sum(s.output_mismatch for s in run.stages)), export_differences=differences,
        layers=layers, layers_fired=layers - len(silent), silent_layers=silent, passed=False, problems=())
    problems = verification_problems(report)
    report = replace(report, passed=not problems, problems=problems)
    write_simulation_report(report, export_dir / REPORT_NAME)
    return report


def checkpoint_warning(run_dir: str | Path, manifest: ExportManifest) -> str | None:
    """The one policy for a run and an export made from another checkpoint file: the integers decide.
    Every command that pairs them (``simulate``, ``predict --lava``) compares the export's integers
    with the run's (:func:`conversion.verify.compare_export`): a difference fails the verification or
    refuses the prediction. A checkpoint file that differs while the integers agree (a copied or
    re-saved run) is only this warning, which both print; None when it is the file exported."""
    if manifest.checkpoint_sha256 == file_sha256(Path(run_dir) / CHECKPOINT):
        return None
    return checkpoint_differs(run_dir)


def checkpoint_differs(run_dir: str | Path) -> str:
    """The warning of :func:`checkpoint_warning`, for a run already known to differ."""
    return (f"{Path(run_dir) / CHECKPOINT} is not the checkpoint this export was made from (sha256 differs); "
            "the export's integers are compared with this run's")


def verification_problems(report: SimulationReport) -> tuple[str, ...]:
    """One line per check that failed: spikes of any layer differing from the deployable reference
    (naming the stage and layer), stage outputs differing from the model's forward, predictions
    differing, exported integers differing from the run's model. Silent layers are no failure
    (they are reported apart): a network may legitimately not use a layer on some clips."""
    found = [f"stage{s.stage} {name}: {n} mismatched spikes"
             for s in report.stages for name, n in zip(s.compared, s.layer_mismatch, strict=True) if n]
    found += [f"stage{s.stage}: {s.model_mismatch} output spikes differ from the model's own forward"
              for s in report.stages if s.model_mismatch]
    if report.prediction_agreement != 1.0:
        found.append(f"prediction agreement {report.prediction_agreement:.3f}: the Lava hybrid predicts "
                     "otherwise than the PyTorch model")
    return tuple(found) + tuple(report.export_differences)


def check_writable(folder: Path, name: str) -> None:
    """Refuse, naming ``folder``, a folder where ``name`` could not be written (read-only, full)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=f".{name}.probe-"):
            pass
    except OSError as err:
        raise UsageError(f"{folder}: cannot write {name} there ({err.strerror or err})") from None


def write_simulation_report(report: SimulationReport, path: str | Path) -> Path:
    return write_text_atomic(path, json.dumps(to_data(report), indent=2) + "\n")


def read_simulation_report(path: str | Path) -> SimulationReport:
    """Read a ``verify.json`` written by :func:`simulate_export`."""
    return read_record(path, SimulationReport, ReportError, format_version=REPORT_VERSION)
