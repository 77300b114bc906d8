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
              workers: int = 1, plans: list[str] | None = None) -> EnergyReport | None:
    """Count a trained hybrid (rebuilt quantized: what would be deployed) on ``clips`` test clips,
    ``batch`` at a time, price the plans (``plans``, default every default plan;
    :func:`~respike_nm.energy.report.energy_report`) and
    write the report into the new folder ``out`` (temporary folder, then rename). ``progress``: wraps
    the list of batches (e.g. ``tqdm``; one process only). ``workers > 1``: the batches split into
    that many contiguous shards, counted by forked processes and added
    (:func:`~respike_nm.energy.counters.merge_logs`): the report equals one process's.

    Under ``torchrun`` each rank counts its contiguous part of the batches (split further over its
    ``workers``); rank 0 adds all ranks' counts, writes the report and returns it, the other ranks
    write nothing and return ``None`` (:mod:`respike_nm.ranks`)."""
    from respike_nm.energy.counters import clip_counts, count_log
    from respike_nm.energy.plans import check_plans
    from respike_nm.energy.report import check_pricing
    from respike_nm.ranks import gather, launch, part

    if batch < 1:
        raise UsageError(f"the batch must be at least 1 clip, got {batch}")
    if workers < 1:
        raise UsageError(f"workers must be at least 1, not {workers}")
    run_dir = Path(run_dir)
    where = launch()
    targets = targets if targets is not None else [load_profile(n) for n in builtin_profiles()]
    host_p, memory_p = load_profile(host), load_profile(memory)
    check_pricing(targets, host_p, memory_p, precision)
    check_plans(plans)
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
                           host_p, memory_p, precision, counts=counts, plans=plans)
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


def price_preset(preset: str, out: str | Path, *, rates: list[float], measured_from: str | Path | None = None,
                 against: str = "r2plus1d_18", classes: int = 101, overrides: list[str] | None = None,
                 targets: list[HwProfile] | None = None, memory: str = "cmos45nm", cmos: str = "cmos45nm",
                 precision: str = "fp32", graded_bits: int = 16,
                 graded_bits_source: str = "") -> dict:
    """Price ``preset`` at its own scale without training it (:mod:`respike_nm.energy.scale`): its
    exact dense counts of one clip from shapes (no forward pass beyond shapes, no ANN weights), SNN
    firing ``rates`` (constant per point) and, with ``measured_from`` (a trained run's
    ``energy.json``), its measured rates mapped by depth; every target, break-even rates against plan
    d and each 3D CNN, the shares, the SNN-paper convention beside ours. Writes ``scale.json``,
    ``scale.csv`` and ``scale.png`` into the new folder ``out`` (temporary folder, then rename)."""
    import csv
    import io
    import json

    from respike_nm.config import apply_overrides, load_config
    from respike_nm.energy.baselines import BASELINES
    from respike_nm.energy.counters import count_shapes
    from respike_nm.energy.report import check_pricing, read_counts
    from respike_nm.energy.scale import SHARES, plot_scale, price_scale, snn_rates
    from respike_nm.train.builder import build_model

    if against not in BASELINES:
        raise UsageError(f"unknown 3D CNN {against!r}; valid: {', '.join(BASELINES)}")
    if Path(out).exists():
        raise UsageError(f"{out}: already exists; choose a new output folder")
    targets = targets if targets is not None else [load_profile(n) for n in builtin_profiles()]
    memory_p, cmos_p = load_profile(memory), load_profile(cmos)
    hosts = [t for t in targets if t.target in ("gpu", "cmos")]
    if not hosts:
        raise UsageError("pricing needs at least one GPU or CMOS profile among the targets (the ANN's host)")
    check_pricing(targets, hosts[0], memory_p, precision)
    measured, source = None, ""
    if measured_from is not None:
        measured, source = snn_rates(read_counts(measured_from)[0]), str(measured_from)
    cfg = apply_overrides(load_config(preset), ["model.ann_weights=null", *(overrides or [])])
    model = build_model(cfg, "hybrid", classes, quantize=True)
    shape = (cfg.data.frames, model.input_kind.channels, cfg.data.size, cfg.data.size)
    counts = count_shapes(model, shape)
    result = price_scale(counts, rates, targets, memory_p, cmos_p, graded_bits, precision, measured, source)
    result = {"format": "respike-nm-scale", "version": 1, "preset": preset, "overrides": overrides or [],
              "classes": classes, "clip": {"frames": shape[0], "channels": shape[1], "size": shape[2],
                                          "stride": cfg.data.stride},
              "ann_arch": cfg.model.ann_arch, "fusion": cfg.model.fusion, "against": against,
              "precision": precision, "graded_bits": {"value": graded_bits, "source": graded_bits_source},
              "documented": {k: {"gmacs": b.documented_gmacs, "input": list(b.reference),
                                 "kinetics400_top1": b.kinetics_top1} for k, b in BASELINES.items()},
              **result}
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["plan", "host", "chip", "rate", "compute_pj", "memory_pj", *[f"share_{s}" for s in SHARES]])
    for r in result["rows"]:
        w.writerow([r["plan"], r["host"], r["chip"] or "", "measured" if r["rate"] is None else r["rate"],
                    r["compute_pj"], r["memory_pj"], *[r["shares"][s] for s in SHARES]])
    with atomic_dir(out, "output folder") as tmp:
        (tmp / "scale.json").write_text(json.dumps(result, indent=1) + "\n")
        (tmp / "scale.csv").write_text(buf.getvalue())
        plot_scale(result, tmp / "scale.png", f"{preset} ({shape[2]}x{shape[2]}, T={shape[0]}): energy per "
                   f"clip against the SNN's firing rate; flat lines have no SNN", against, 0.10)
    return result
