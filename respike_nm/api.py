"""The library under the command line, for what crosses the training and energy packages.

Everything the ``respike-nm`` commands do is a function call: :func:`respike_nm.train.loop.train`,
:func:`respike_nm.train.evaluate.evaluate_run`, :func:`price_run` here, and, on the deployment side,
:mod:`conversion.pipeline` (export, simulate). The CLI modules parse arguments, call these and print.
"""

from __future__ import annotations

from pathlib import Path

from respike_nm.atomic import atomic_dir
from respike_nm.energy.report import EnergyReport, energy_report, write_report
from respike_nm.errors import UsageError
from respike_nm.hardware import HwProfile, builtin_profiles, load_profile
from respike_nm.train.builder import test_clips
from respike_nm.train.run import load_run


def price_run(run_dir: str | Path, out: str | Path, graded_bits: int, graded_bits_source: str, *,
              targets: list[HwProfile] | None = None, host: str = "h100", memory: str = "cmos45nm",
              precision: str = "fp32", clips: int = 8, batch: int = 4, progress=None,
              workers: int = 1) -> EnergyReport | None:
    """Count a trained hybrid (rebuilt quantized: what would be deployed) on ``clips`` test clips,
    ``batch`` at a time, price the four plans (:func:`~respike_nm.energy.report.energy_report`) and
    write the report into the new folder ``out`` (temporary folder, then rename). ``progress``: wraps
    the list of batches (e.g. ``tqdm``; one process only). ``workers > 1``: the batches split into
    that many contiguous shards, counted by forked processes and added
    (:func:`~respike_nm.energy.counters.merge_logs`): the report equals one process's.

    Under ``torchrun`` each rank counts its contiguous part of the batches (split further over its
    ``workers``); rank 0 adds all ranks' counts, writes the report and returns it, the other ranks
    write nothing and return ``None`` (:mod:`respike_nm.ranks`)."""
    from respike_nm.energy.counters import clip_counts, count_log
    from respike_nm.ranks import gather, launch, part

    if batch < 1:
        raise UsageError(f"the batch must be at least 1 clip, got {batch}")
    if workers < 1:
        raise UsageError(f"workers must be at least 1, not {workers}")
    run_dir = Path(run_dir)
    where = launch()
    targets = targets if targets is not None else [load_profile(n) for n in builtin_profiles()]
    host_p, memory_p = load_profile(host), load_profile(memory)
    if Path(out).exists():
        raise UsageError(f"{out}: already exists; choose a new report folder")
    model, cfg, _ = load_run(run_dir, quantize=True)
    model.eval()
    video, _ = test_clips(cfg, clips)
    batches = part([video[i:i + batch] for i in range(0, len(video), batch)], where.rank, where.world)
    if workers > 1 and len(batches) > 1:
        mine = _count_sharded(model, batches, workers)
    elif batches:
        mine = count_log(model, progress(batches) if progress is not None and where.world == 1 else batches)
    else:
        mine = None  # more ranks than batches
    parts = gather(mine, where)
    if not where.main:
        return None
    counts = clip_counts(model, *_added([p for p in parts if p is not None]))
    report = energy_report(model, batches, str(run_dir.resolve()), graded_bits, graded_bits_source, targets,
                           host_p, memory_p, precision, counts=counts)
    with atomic_dir(out, "report folder") as tmp:
        write_report(report, tmp)
    return report


def _count_sharded(model, batches, workers: int):
    """``(log, clips, clip shape)`` of ``batches`` counted by ``workers`` forked processes on
    contiguous shards of whole batches (the same batches as one process runs), logs added."""
    from respike_nm.energy.counters import count_log
    from respike_nm.forked import fork_map
    from respike_nm.ranks import split

    return _added(fork_map(lambda shard: count_log(model, shard), split(batches, workers)))


def _added(parts):
    """``(log, clips, clip shape)`` of consecutive shards' counts, added
    (:func:`~respike_nm.energy.counters.merge_logs`); the clips must all have one shape."""
    from respike_nm.energy.counters import merge_logs

    shapes = {p[2] for p in parts}
    if len(shapes) != 1:
        raise ValueError(f"expected clips of one size, got {sorted(shapes)}")
    log = parts[0][0] if len(parts) == 1 else merge_logs([p[0] for p in parts])
    return log, sum(p[1] for p in parts), parts[0][2]


def describe_model(cfg, kind: str) -> dict:
    """What ``train`` would build, without training: classes, and per branch (ann, snn, fusion,
    head) the parameters and the dense MACs of one clip (synaptic operations of the SNN counted as
    if every input were active), from the operation counters on one all-zero clip."""
    import torch

    from respike_nm.energy.counters import count_clips
    from respike_nm.train.builder import build_datasets, build_model

    _, _, classes, skipped = build_datasets(cfg)
    model = build_model(cfg, kind, len(classes)).eval()
    branches: dict[str, dict] = {}
    for name, module in model.named_children():
        n = sum(p.numel() for p in module.parameters())
        if n:
            branches[name] = {"params": n, "dense_macs": 0.0}
    clip = torch.zeros(1, cfg.data.frames, model.input_kind.channels, cfg.data.size, cfg.data.size)
    with torch.no_grad():
        counts = count_clips(model, [clip])
    for layer in counts.layers:
        row = branches.setdefault(layer.branch, {"params": 0, "dense_macs": 0.0})
        row["dense_macs"] += layer.dense_macs + layer.dense_acs
    return {"model": kind, "classes": len(classes), "skipped_inputs": len(skipped),
            "params": sum(p.numel() for p in model.parameters()), "branches": branches}
