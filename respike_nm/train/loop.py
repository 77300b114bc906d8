"""The training session: epochs, metrics, atomic checkpoints, exact resume, DDP.

Exact resume: all randomness of epoch e (data order, clip sampling, crops, dropout) is drawn from
``(seed, e)``, and a checkpoint is written after every epoch; a run resumed from the checkpoint
of epoch e therefore repeats epoch e+1 exactly as the uninterrupted run did.
Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in
DistributedDataParallel (gloo on CPU, nccl on CUDA), the training set is sharded, and rank 0
evaluates and writes. The run folder and its files belong to :mod:`respike_nm.train.run`,
evaluation to :mod:`respike_nm.train.evaluate`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from respike_nm.atomic import named_writes
from respike_nm.config import Config, from_dict
from respike_nm.data.datasets import collate_clips
from respike_nm.models.snn import set_fake_quant
from respike_nm.progress import Progress, no_progress
from respike_nm.ranks import launch
from respike_nm.train.balance import (
    BRANCHES,
    HEADS,
    branch_test_losses,
    make_heads,
    modulate,
    ogm_coefficients,
    step_loss,
)
from respike_nm.train.builder import build_datasets, build_model, check_model
from respike_nm.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)
from respike_nm.train.evaluate import default_device, evaluate
from respike_nm.train.run import (
    CHECKPOINT,
    CURVES,
    SUMMARY_FORMAT,
    SUMMARY_VERSION,
    Quantization,
    RunFolder,
    RunSummary,
    check_run_dir,
    write_metrics,
    write_summary,
)


def seed_epoch(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % (2**31 - 1)


def _lr_lambda(cfg: Config, steps_per_epoch: int) -> Callable[[int], float]:
    total = max(1, cfg.train.epochs * steps_per_epoch)
    warm = cfg.train.warmup_epochs * steps_per_epoch

    def f(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        if cfg.train.schedule == "constant":
            return 1.0
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) / max(1, total - warm))))

    return f


PARTS = ("ann", "snn", "fusion", "head")  # a model's top-level parts that hold parameters


def _optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    # a group of its own for the fusion, and for the ANN only when it has its own rate (the groups
    # of runs made before ann_lr_scale existed stay as they were, so their optimizer states load)
    scale = {"fusion": t.fusion_lr_scale} | ({"ann": t.ann_lr_scale} if t.ann_lr_scale != 1.0 else {})
    groups: dict[str, list] = {"rest": [], "fusion": [], "ann": []}
    for n, p in model.named_parameters():
        part = n.split(".", 1)[0]
        if part not in PARTS:  # a new part must be given its learning rate, not the default by accident
            raise ValueError(f"the optimizer knows the parts {', '.join(PARTS)}, not {part!r} ({n}); "
                             "add it to train.loop.PARTS")
        if p.requires_grad:
            groups[part if part in scale else "rest"].append(p)
    params = [{"params": groups["rest"]}]
    params += [{"params": groups[b], "lr": t.lr * scale[b]} for b in scale if groups[b]]
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)


@dataclass
class RunResult:
    summary: RunSummary | None  # None on the ranks other than 0 of a torchrun launch
    history: list[dict]
    out: Path


@dataclass
class _Session:
    """Everything one training run holds between its steps."""

    cfg: Config
    kind: str
    out: Path
    device: torch.device
    world: int
    main_rank: bool
    train_ds: object
    test_loader: DataLoader
    classes: tuple[str, ...]
    skipped: tuple
    model: nn.Module
    net: nn.Module
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LambdaLR
    sampler: DistributedSampler | None
    scaler: torch.cuda.amp.GradScaler
    use_amp: bool
    start: int
    history: list[dict]
    heads: nn.Module | None = None  # train.branch_loss=aux: the branches' training-only heads
    heads_net: nn.Module | None = None  # the heads as the step calls them (DDP-wrapped on several ranks)
    folder: RunFolder | None = None  # where the main rank writes (a new run: a staging folder first)


def train(cfg: Config, kind: str, out: str | Path, resume: bool = False,
          progress: Progress = no_progress, device: torch.device | None = None,
          on_epoch: Callable[[dict], None] | None = None, overwrite: bool = False) -> RunResult:
    """Train ``kind`` (hybrid | ann | snn) with ``cfg``; write metrics, checkpoints and summary to ``out``.

    ``out`` must be new or empty, or (``resume``) hold a run with its checkpoint; ``overwrite``
    allows replacing a finished or partial run there. See :func:`check_run_dir`. A new run that
    fails or is stopped before its first checkpoint leaves ``out`` as it was
    (:class:`~respike_nm.train.run.RunFolder`).
    """
    run = _start(cfg, kind, Path(out), resume, device, overwrite, progress)
    try:
        if run.main_rank:
            run.folder.open(resume, run.history)
        _epochs(run, progress, on_epoch)
    except BaseException:
        if run.main_rank:
            run.folder.discard()
        raise
    summary = None
    if run.main_rank:
        summary = _summarise(cfg, kind, run.model, run.classes, run.history, run.test_loader, run.device,
                             run.skipped, progress)
        write_summary(run.out, summary)
        if run.history:
            from respike_nm.train.figures import plot_curves

            plot_curves(run.history, run.out / CURVES, f"{kind} ({cfg.name}, seed {cfg.seed})")
    if run.world > 1:
        dist.barrier()
    return RunResult(summary, run.history, run.out)


def _epochs(run: _Session, progress: Progress, on_epoch: Callable[[dict], None] | None) -> None:
    """Train, evaluate and checkpoint epoch after epoch (a new run's first checkpoint commits it)."""
    cfg = run.cfg
    t0 = time.perf_counter() - (run.history[-1]["seconds"] if run.history else 0.0)
    for epoch in range(run.start, cfg.train.epochs):
        _quantization_phase(run, epoch)
        row = _train_epoch(run, epoch, progress)
        if run.main_rank and ((epoch + 1) % cfg.train.eval_every == 0 or epoch + 1 == cfg.train.epochs):
            row.update(_test_metrics(run, progress))
        row["seconds"] = time.perf_counter() - t0
        run.history.append(row)
        if run.main_rank:
            _save_epoch(run, epoch)
            run.folder.commit()
            if on_epoch:
                on_epoch(row)
        if run.world > 1:
            dist.barrier()
        budget = cfg.train.max_minutes
        if budget is not None and row["seconds"] > 60 * budget:
            break


def _start(cfg: Config, kind: str, out: Path, resume: bool, device: torch.device | None,
           overwrite: bool = False, progress: Progress = no_progress) -> _Session:
    """Process group, datasets, model (seeded), optimizer, schedule, and the checkpoint to resume.
    Nothing is written before all of these exist, so a failed start leaves no folder behind."""
    where = launch()
    world, rank, local_rank = where.world, where.rank, where.local_rank
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    device = device or default_device(local_rank)
    main_rank = rank == 0
    if main_rank:
        check_run_dir(out, resume, overwrite)
    check_model(cfg, kind)
    train_ds, test_ds, classes, skipped = build_datasets(cfg, progress)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg, kind, len(classes)).to(device)
    heads = make_heads(cfg.train, kind, model, len(classes))
    opt = _optimizer(cfg, model)
    if heads is not None:
        heads.to(device)
        opt.add_param_group({"params": list(heads.parameters())})
    sampler = DistributedSampler(train_ds, world, rank, shuffle=True, seed=cfg.seed) if world > 1 else None
    steps = max(1, math.ceil(len(train_ds) / (cfg.train.batch_size * world)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, _lr_lambda(cfg, steps))
    start, history = 0, []
    ck_path = out / CHECKPOINT
    if resume:
        ck = load_checkpoint(ck_path)
        _check_resume(ck, cfg, kind)
        load_model_state(model, ck.model, str(ck_path))
        if heads is not None:
            if ck.aux is None:
                raise CheckpointError(f"{ck_path}: has no auxiliary heads to resume (train.branch_loss=aux)")
            load_model_state(heads, ck.aux, f"{ck_path} (auxiliary heads)")
        opt.load_state_dict(ck.optimizer)
        sched.load_state_dict(ck.scheduler)
        start, history = ck.epoch, ck.history
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    use_amp = cfg.train.amp and device.type == "cuda"
    test_loader = DataLoader(test_ds, batch_size=cfg.train.batch_size, shuffle=False,
                             num_workers=cfg.data.num_workers, collate_fn=collate_clips)
    heads_net = nn.parallel.DistributedDataParallel(heads) if heads is not None and world > 1 else heads
    return _Session(cfg, kind, out, device, world, main_rank, train_ds, test_loader, tuple(classes), skipped,
                    model, net, opt, sched, sampler, torch.cuda.amp.GradScaler(enabled=use_amp), use_amp,
                    start, history, heads, heads_net, RunFolder(out) if main_rank else None)


def _quantization_phase(run: _Session, epoch: int) -> None:
    """With QAT: float for the warm-up epochs, then quantized with the BN statistics frozen (so that
    training folds exactly as evaluation and export do)."""
    cfg = run.cfg
    if cfg.quant.enabled:
        float_epochs = min(cfg.train.epochs - 1, round(cfg.quant.float_fraction * cfg.train.epochs))
        quant_on = epoch >= float_epochs
        set_fake_quant(run.model, quant_on, freeze_bn=quant_on and float_epochs > 0)


def _train_epoch(run: _Session, epoch: int, progress: Progress) -> dict:
    """One pass over the training set; every random draw comes from ``(seed, epoch)``."""
    cfg, device = run.cfg, run.device
    torch.manual_seed(seed_epoch(cfg.seed, epoch))
    run.train_ds.set_epoch(epoch)
    gen = torch.Generator().manual_seed(seed_epoch(cfg.seed, epoch))
    if run.sampler is not None:
        run.sampler.set_epoch(epoch)
    loader = DataLoader(run.train_ds, batch_size=cfg.train.batch_size, shuffle=run.sampler is None,
                        sampler=run.sampler, num_workers=cfg.data.num_workers, collate_fn=collate_clips,
                        generator=gen, drop_last=False)
    run.net.train()
    hybrid = run.kind == "hybrid"
    ogm = hybrid and cfg.train.branch_loss == "ogm-ge"
    noise = torch.Generator().manual_seed(seed_epoch(cfg.seed, epoch) + 1)  # ogm-ge: alike on every rank
    tl = tc = tn = failed = 0
    heads_sum = dict.fromkeys(HEADS, 0.0) if hybrid else {}
    coeff_sum = dict.fromkeys(BRANCHES, 0.0)
    steps = 0
    for batch in progress(loader, f"epoch {epoch + 1}/{cfg.train.epochs}", len(loader)):
        failed += batch.failed
        if not len(batch.label):
            continue
        video = batch.video[:, 0].to(device)  # training: one clip per item (uint8; the model normalises)
        labels = batch.label.to(device)
        with torch.autocast(device.type, dtype=torch.float16, enabled=run.use_amp):
            if hybrid:
                logits, feats = run.net(video, with_features=True)
                loss, parts, outs = step_loss(cfg.train, run.model, logits, feats, labels, run.heads_net)
            else:
                logits = run.net(video)
                loss = nn.functional.cross_entropy(logits, labels, label_smoothing=cfg.train.label_smoothing)
        run.opt.zero_grad(set_to_none=True)
        run.scaler.scale(loss).backward()
        if ogm:
            coeff = ogm_coefficients(outs, labels, cfg.train.ogm_alpha, run.world)
            modulate(run.model, coeff, noise)
            for n in BRANCHES:
                coeff_sum[n] += coeff[n]
        run.scaler.step(run.opt)
        run.scaler.update()
        run.sched.step()
        tl += float(loss) * len(labels)
        tc += int((logits.argmax(-1) == labels).sum())
        tn += len(labels)
        steps += 1
        for n in heads_sum:
            heads_sum[n] += parts[n] * len(labels)
    stats = torch.tensor([tl, tc, tn, failed, *heads_sum.values()], dtype=torch.float64)
    if run.world > 1:
        dist.all_reduce(stats)
    samples = max(stats[2].item(), 1)
    row = {"epoch": epoch + 1, "train_loss": stats[0].item() / samples,
           "train_top1": stats[1].item() / samples, "train_samples": int(stats[2]),
           "train_failed": int(stats[3]), "lr": run.sched.get_last_lr()[0]}
    row |= {f"train_loss_{n}": stats[4 + i].item() / samples for i, n in enumerate(heads_sum)}
    if ogm:
        row |= {f"ogm_coeff_{n}": coeff_sum[n] / max(steps, 1) for n in BRANCHES}
    return row


def _test_metrics(run: _Session, progress: Progress) -> dict:
    res = evaluate(run.model, run.test_loader, run.device, progress)
    row = {f"test_{k}": v for k, v in res.to_dict().items()
           if k in ("top1", "top5", "top1_video", "top5_video", "loss", "failed")}
    row["firing_rates"] = res.firing_rates
    if run.kind == "hybrid" and run.cfg.train.branch_metrics:
        losses = branch_test_losses(run.model, run.heads, run.test_loader, run.device)
        row |= {f"test_loss_{n}": v for n, v in losses.items()}
    return row


def _save_epoch(run: _Session, epoch: int) -> None:
    """The checkpoint after ``epoch``, then metrics.jsonl, both atomically: the metrics never claim
    an epoch whose checkpoint is not on disk. A refused write names the file in the run folder."""
    folder = run.folder
    with named_writes(folder.writes_to, run.out):
        save_checkpoint(folder.checkpoint, Checkpoint(
            str(folder.checkpoint), run.model.state_dict(), run.opt.state_dict(), run.sched.state_dict(),
            epoch + 1, run.kind, list(run.classes), run.cfg.to_dict(), run.history, None,
            run.heads.state_dict() if run.heads is not None else None))
        write_metrics(folder.writes_to, run.history)


def _check_resume(ck: Checkpoint, cfg: Config, kind: str) -> None:
    if ck.kind != kind:
        raise CheckpointError(f"{ck.path}: was trained as {ck.kind!r}, not {kind!r}")
    # options added since the run was made are read at their defaults (which keep the old behaviour)
    mine, theirs = from_dict(ck.config).to_dict(), cfg.to_dict()
    if isinstance(mine.get("train"), dict):  # a resumed run may be extended
        mine["train"] = {**mine["train"], "epochs": theirs["train"]["epochs"]}
    if ck.epoch > cfg.train.epochs:
        raise CheckpointError(f"{ck.path}: has {ck.epoch} epochs already, more than train.epochs="
                              f"{cfg.train.epochs}")
    if mine != theirs:
        diff = _diff(mine, theirs)
        raise CheckpointError(f"{ck.path}: config differs from the run's: {', '.join(diff[:6])}")


def _diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += _diff(va, vb, f"{prefix}{k}.")
        elif va != vb:
            out.append(f"{prefix}{k}: {va!r} -> {vb!r}")
    return out


def _summarise(cfg, kind, model, classes, history, test_loader, device, skipped, progress) -> RunSummary:
    """The run's :class:`~respike_nm.train.run.RunSummary`; a clip that fails to decode does so in every
    pass, so ``failed_to_decode`` is the most of any epoch or evaluation."""
    last = history[-1] if history else {}
    failed = {part: max((row.get(f"{part}_failed", 0) for row in history), default=0)
              for part in ("train", "test")}
    quantization = None
    if kind != "ann":
        other = build_model(cfg, kind, len(classes), quantize=not cfg.quant.enabled).to(device)
        load_model_state(other, model.state_dict(), "trained model")
        res = evaluate(other, test_loader, device, progress, activity=False)
        mine, target = last.get("test_top1"), cfg.quant.target
        if cfg.quant.enabled:
            quantization = Quantization("qat", target, float_top1=res.top1, quantized_top1=mine)
        else:
            quantization = Quantization("post-training", target, float_top1=mine, quantized_top1=res.top1)
    return RunSummary(
        format=SUMMARY_FORMAT, format_version=SUMMARY_VERSION, model=kind, config=cfg.name,
        dataset=cfg.data.dataset, test_top1=last.get("test_top1"),
        test_top5=last.get("test_top5"), test_top1_video=last.get("test_top1_video"), epochs=len(history),
        seconds=round(last.get("seconds", 0.0), 2), params=sum(p.numel() for p in model.parameters()),
        classes=len(classes), skipped_inputs=len(skipped) + sum(failed.values()), failed_to_decode=failed,
        firing_rates=last.get("firing_rates", {}), full_config=cfg.to_dict(), quantization=quantization)
