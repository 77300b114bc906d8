"""The training loop: epochs, evaluation, metrics, atomic checkpoints, exact resume, DDP.

Exact resume: all randomness of epoch e (data order, clip sampling, crops, dropout) is drawn from
``(seed, e)``, and a checkpoint is written after every epoch; a run resumed from the checkpoint
of epoch e therefore repeats epoch e+1 exactly as the uninterrupted run did.
Distributed: under ``torchrun`` (``WORLD_SIZE`` > 1) the model is wrapped in
DistributedDataParallel (gloo on CPU, nccl on CUDA), the training set is sharded, and rank 0
evaluates and writes.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext, suppress
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler, Subset

from respike_nm.atomic import TEMP_GLOB, leftover_temps, named_writes, write_text_atomic
from respike_nm.config import Config, from_dict
from respike_nm.data.datasets import collate_clips
from respike_nm.data.transforms import normalize
from respike_nm.forked import fork_map
from respike_nm.models.activity import ActivityLog, record_activity
from respike_nm.models.snn import set_fake_quant
from respike_nm.ranks import gather, launch, part, split
from respike_nm.train.balance import (
    BRANCHES,
    HEADS,
    branch_test_losses,
    make_heads,
    modulate,
    ogm_coefficients,
    step_loss,
)
from respike_nm.train.builder import build_datasets, build_model
from respike_nm.train.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    load_model_state,
    save_checkpoint,
)

Progress = Callable[[Iterable, str, int], Iterable]
CHECKPOINT = "checkpoint.pt"


def no_progress(it: Iterable, desc: str = "", total: int = 0) -> Iterable:
    return it


@dataclass
class EvalResult:
    """Accuracies as fractions in [0, 1]; per clip (each clip's own prediction) and per video
    (logits averaged over the video's clips)."""

    top1: float
    top5: float
    top1_video: float
    top5_video: float
    loss: float
    clips: int
    videos: int
    failed: int
    firing_rates: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def seed_epoch(seed: int, epoch: int) -> int:
    return (seed * 1_000_003 + epoch * 7_919) % (2**31 - 1)


def _topk(logits: torch.Tensor, labels: torch.Tensor, k: int) -> torch.Tensor:
    k = min(k, logits.shape[-1])
    return (logits.topk(k, dim=-1).indices == labels.unsqueeze(-1)).any(dim=-1)


@dataclass
class EvalTotals:
    """What :func:`evaluate` adds up over batches, kept so that the totals of consecutive runs over
    disjoint batches merge (:func:`merge_eval_totals`) into exactly the totals of one run over all of
    them: each batch's loss and each video's logit rows in batch order, integer counts, the activity."""

    batch_losses: list[float] = field(default_factory=list)
    c1: int = 0
    c5: int = 0
    clips: int = 0
    failed: int = 0
    rows: dict[int, list[torch.Tensor]] = field(default_factory=dict)  # video -> [classes] per batch
    counts: dict[int, int] = field(default_factory=dict)  # video -> clips
    labels: dict[int, int] = field(default_factory=dict)
    activity: ActivityLog | None = None


def evaluate(model: nn.Module, loader: DataLoader, device: torch.device,
             progress: Progress = no_progress, activity: bool = True) -> EvalResult:
    """Evaluate on ``loader`` (batches of ``[B, K, T, 3, H, W]`` uint8 clips with their videos' indices).

    Clip level: each clip's own prediction. Video level: the logits of all clips that carry the
    same video index averaged, whether they came as the K clips of one sample (``tiled``) or as
    samples of one clip each, in any batches (``all``: a video's windows are separate items).
    """
    return eval_result(eval_totals(model, loader, device, progress, activity))


@torch.no_grad()
def eval_totals(model: nn.Module, loader: DataLoader, device: torch.device,
                progress: Progress = no_progress, activity: bool = True) -> EvalTotals:
    """The totals of :func:`evaluate` on ``loader``."""
    model.eval()
    t = EvalTotals()
    ctx = record_activity(model) if activity else nullcontext()
    with ctx as log:
        for batch in progress(loader, "eval", len(loader)):
            t.failed += batch.failed
            if not len(batch.label):
                continue
            video = normalize(batch.video.to(device))
            labels = batch.label.to(device)
            logits = model(video).float()  # [B, K, classes]
            k = logits.shape[1]
            clip_labels = labels.repeat_interleave(k)
            flat = logits.reshape(-1, logits.shape[-1])
            t.batch_losses.append(float(nn.functional.cross_entropy(flat, clip_labels, reduction="sum")))
            t.c1 += int(_topk(flat, clip_labels, 1).sum())
            t.c5 += int(_topk(flat, clip_labels, 5).sum())
            t.clips += flat.shape[0]
            for v, label, row in zip(batch.index.tolist(), batch.label.tolist(), logits.sum(dim=1).cpu(),
                                     strict=True):
                t.rows.setdefault(v, []).append(row)
                t.counts[v] = t.counts.get(v, 0) + k
                t.labels[v] = label
    t.activity = log if activity else None
    return t


def merge_eval_totals(parts: list[EvalTotals]) -> EvalTotals:
    """The totals of ``parts`` (runs over consecutive, disjoint batches, in order) as one run's."""
    t = EvalTotals()
    for shard in parts:
        t.batch_losses += shard.batch_losses
        t.c1, t.c5 = t.c1 + shard.c1, t.c5 + shard.c5
        t.clips, t.failed = t.clips + shard.clips, t.failed + shard.failed
        for v, rows in shard.rows.items():
            t.rows.setdefault(v, []).extend(rows)
            t.counts[v] = t.counts.get(v, 0) + shard.counts[v]
            t.labels[v] = shard.labels[v]
        if shard.activity is not None:
            t.activity = t.activity or ActivityLog()
            t.activity.add(shard.activity)
    return t


def video_means(t: EvalTotals) -> dict[int, torch.Tensor]:
    """Each video's logits averaged over its clips (rows summed in batch order), by video index."""
    means = {}
    for v in sorted(t.rows):
        total = t.rows[v][0]
        for row in t.rows[v][1:]:
            total = total + row
        means[v] = total / t.counts[v]
    return means


def eval_result(t: EvalTotals) -> EvalResult:
    """Accuracies and loss from :class:`EvalTotals` (sums taken in batch order)."""
    loss = sum(t.batch_losses, 0.0)  # in batch order, as one pass adds them
    v1 = v5 = 0
    if t.rows:
        means = video_means(t)
        vlabels = torch.tensor([t.labels[v] for v in means])
        mean = torch.stack(list(means.values()))
        v1, v5 = int(_topk(mean, vlabels, 1).sum()), int(_topk(mean, vlabels, 5).sum())
    videos, clips = len(t.rows), t.clips
    rates = t.activity.rates() if t.activity is not None else {}
    return EvalResult(t.c1 / max(clips, 1), t.c5 / max(clips, 1), v1 / max(videos, 1), v5 / max(videos, 1),
                      loss / max(clips, 1), clips, videos, t.failed, rates)


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


def _optimizer(cfg: Config, model: nn.Module) -> torch.optim.Optimizer:
    t = cfg.train
    # a group of its own for the fusion, and for the ANN only when it has its own rate (the groups
    # of runs made before ann_lr_scale existed stay as they were, so their optimizer states load)
    scale = {"fusion": t.fusion_lr_scale} | ({"ann": t.ann_lr_scale} if t.ann_lr_scale != 1.0 else {})
    groups: dict[str, list] = {"rest": [], "fusion": [], "ann": []}
    for n, p in model.named_parameters():
        if p.requires_grad:
            groups[n.split(".", 1)[0] if n.split(".", 1)[0] in scale else "rest"].append(p)
    params = [{"params": groups["rest"]}]
    params += [{"params": groups[b], "lr": t.lr * scale[b]} for b in scale if groups[b]]
    if t.optimizer == "sgd":
        return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, weight_decay=t.weight_decay)
    return torch.optim.AdamW(params, lr=t.lr, weight_decay=t.weight_decay)


def default_device(local_rank: int = 0) -> torch.device:
    return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")


@dataclass
class RunResult:
    summary: dict
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
    writes_to: Path | None = None  # where files go: out, or a new run's staging folder (_open_folder)
    made: Path | None = None  # the outermost folder of out that the run created
    committing: bool = False  # a new run's first checkpoint is complete and moving into out

    @property
    def checkpoint(self) -> Path:
        return self.writes_to / CHECKPOINT


def train(cfg: Config, kind: str, out: str | Path, resume: bool = False,
          progress: Progress = no_progress, device: torch.device | None = None,
          on_epoch: Callable[[dict], None] | None = None, overwrite: bool = False) -> RunResult:
    """Train ``kind`` (hybrid | ann | snn) with ``cfg``; write metrics, checkpoints and summary to ``out``.

    ``out`` must be new or empty, or (``resume``) hold a run with its checkpoint; ``overwrite``
    allows replacing a finished or partial run there. See :func:`check_run_dir`. A new run that
    fails or is stopped before its first checkpoint leaves ``out`` as it was (:func:`_open_folder`).
    """
    run = _start(cfg, kind, Path(out), resume, device, overwrite, progress)
    try:
        if run.main_rank:
            _open_folder(run, resume)
        _epochs(run, progress, on_epoch)
    except BaseException:
        if run.main_rank:
            _discard(run)
        raise
    summary = {}
    if run.main_rank:
        summary = _summarise(cfg, kind, run.model, run.classes, run.history, run.test_loader, run.device,
                             run.skipped, progress)
        _write_json(run.out / "summary.json", summary)
        if run.history:
            from respike_nm.train.figures import plot_curves

            plot_curves(run.history, run.out / "training_curves.png", f"{kind} ({cfg.name}, seed {cfg.seed})")
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
            _commit(run)
            if on_epoch:
                on_epoch(row)
        if run.world > 1:
            dist.barrier()
        budget = cfg.train.max_minutes
        if budget is not None and row["seconds"] > 60 * budget:
            break


RUN_FILES = (CHECKPOINT, "metrics.jsonl", "summary.json", "training_curves.png")


def check_run_dir(out: Path, resume: bool, overwrite: bool = False) -> None:
    """Refuse a run folder that would lose or mislabel work, naming it.

    A new run needs ``out`` absent or empty (``overwrite``: or holding a run, whose files are
    replaced); folders with other files are never written into. ``resume`` needs the checkpoint.
    Temporary files and staging folders that a killed run left (``.<name>.tmp-<pid>``) are removed.
    """
    if out.exists() and not out.is_dir():
        raise ValueError(f"{out}: is a file, not a run folder")
    if resume:
        if not (out / CHECKPOINT).is_file():
            raise ValueError(f"{out}: no run to resume ({CHECKPOINT} missing)")
    elif out.is_dir():
        names = {p.name for p in out.iterdir()} - {p.name for p in out.glob(TEMP_GLOB)}
        others = sorted(names - set(RUN_FILES))
        if others:
            raise ValueError(f"{out}: holds files that are not a run ({', '.join(others[:3])}); "
                             "choose a new folder")
        if names and not overwrite:
            raise ValueError(f"{out}: holds a run ({', '.join(sorted(names))}); pass --resume to continue "
                             "it or --overwrite to replace it")
    if out.is_dir():
        for stale in leftover_temps(out):
            stale.unlink()
        for stale in out.glob(TEMP_GLOB):
            if stale.is_dir() and stale.name.startswith(_stage_name(out, "").name):
                shutil.rmtree(stale)


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
                    start, history, heads, heads_net, out)


def _open_folder(run: _Session, resume: bool) -> None:
    """Make the run folder ready for writing (main rank). A resumed run writes in place. A new run
    writes into a staging folder inside ``out`` (``.<name>.tmp-<pid>``) until its first checkpoint
    (:func:`_commit`), so that a run failing or stopped before it leaves ``out`` as it was: the run
    that ``overwrite`` replaces, or nothing (:func:`_discard`)."""
    if resume:
        _write_metrics(run.out, run.history)
        return
    run.made = next((p for p in reversed((run.out, *run.out.parents)) if not p.exists()), None)
    stage = _stage_name(run.out, str(os.getpid()))
    run.writes_to = stage
    with named_writes(stage, run.out):
        stage.mkdir(parents=True)
        _write_metrics(stage, run.history)


def _stage_name(out: Path, pid: str) -> Path:
    return out / f".{out.name}.tmp-{pid}"


def _commit(run: _Session) -> None:
    """Move a new run's first checkpoint and metrics from its staging folder into the run folder,
    and remove the files of the run they replace. A signal or error half-way makes :func:`_discard`
    finish the move (the checkpoint is complete by then), so the folder never mixes two runs."""
    stage = run.writes_to
    if stage == run.out:
        return
    run.committing = True
    moved = (CHECKPOINT, "metrics.jsonl")
    with named_writes(stage, run.out):
        for name in moved:  # the checkpoint first: it holds the history that metrics.jsonl repeats
            if (stage / name).exists():
                os.replace(stage / name, run.out / name)
        for name in set(RUN_FILES) - set(moved):
            (run.out / name).unlink(missing_ok=True)
    shutil.rmtree(stage, ignore_errors=True)
    run.writes_to = run.out


def _discard(run: _Session) -> None:
    """Remove what a new run wrote before its first checkpoint, and the folders it made (a run
    stopped while its first checkpoint moved in is moved in instead)."""
    if run.writes_to in (None, run.out):
        return
    if run.committing:
        with suppress(OSError):
            _commit(run)
        return
    shutil.rmtree(run.writes_to, ignore_errors=True)
    run.writes_to = None
    if run.made is None:
        return
    for folder in (run.out, *run.out.parents):
        try:
            folder.rmdir()
        except OSError:
            return
        if folder == run.made:
            return


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
        video = normalize(batch.video[:, 0].to(device))  # training: one clip per item
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
        losses = branch_test_losses(run.model, run.heads, run.test_loader, run.device, normalize)
        row |= {f"test_loss_{n}": v for n, v in losses.items()}
    return row


def _save_epoch(run: _Session, epoch: int) -> None:
    """The checkpoint after ``epoch``, then metrics.jsonl, both atomically: the metrics never claim
    an epoch whose checkpoint is not on disk. A refused write names the file in the run folder."""
    with named_writes(run.writes_to, run.out):
        save_checkpoint(run.checkpoint, Checkpoint(
            str(run.checkpoint), run.model.state_dict(), run.opt.state_dict(), run.sched.state_dict(),
            epoch + 1, run.kind, list(run.classes), run.cfg.to_dict(), run.history, None,
            run.heads.state_dict() if run.heads is not None else None))
        _write_metrics(run.writes_to, run.history)


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


def _summarise(cfg, kind, model, classes, history, test_loader, device, skipped, progress) -> dict:
    """summary.json. ``skipped_inputs``: the inputs left out when the datasets were built (missing or
    unlisted files) plus the clips that failed to decode, which ``failed_to_decode`` counts per set
    (the most of any epoch or evaluation: a clip that fails does so in every pass)."""
    last = history[-1] if history else {}
    failed = {part: max((row.get(f"{part}_failed", 0) for row in history), default=0)
              for part in ("train", "test")}
    summary = {
        "model": kind, "config": cfg.name, "dataset": cfg.data.dataset,
        "test_top1": last.get("test_top1"), "test_top5": last.get("test_top5"),
        "test_top1_video": last.get("test_top1_video"), "epochs": len(history),
        "seconds": round(last.get("seconds", 0.0), 2),
        "params": sum(p.numel() for p in model.parameters()), "classes": len(classes),
        "skipped_inputs": len(skipped) + sum(failed.values()), "failed_to_decode": failed,
        "firing_rates": last.get("firing_rates", {}),
    }
    if kind != "ann":
        other = build_model(cfg, kind, len(classes), quantize=not cfg.quant.enabled).to(device)
        load_model_state(other, model.state_dict(), "trained model")
        res = evaluate(other, test_loader, device, progress, activity=False)
        if cfg.quant.enabled:
            summary["quantization"] = {"mode": "qat", "target": cfg.quant.target,
                                       "quantized_top1": summary["test_top1"], "float_top1": res.top1}
        else:
            summary["quantization"] = {"mode": "post-training", "target": cfg.quant.target,
                                       "float_top1": summary["test_top1"], "quantized_top1": res.top1}
    summary["full_config"] = cfg.to_dict()
    return summary


def _write_metrics(out: Path, history: list[dict]) -> None:
    text = "".join(json.dumps(row) + "\n" for row in history)
    write_text_atomic(out / "metrics.jsonl", text)


def _write_json(path: Path, obj) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2) + "\n")


def load_run(run_dir: str | Path, quantize: bool | None = None, device: torch.device | None = None):
    """``(model, cfg, checkpoint)`` of a finished or interrupted run."""
    run_dir = Path(run_dir)
    ck = load_checkpoint(run_dir / CHECKPOINT)
    cfg = from_dict(ck.config)
    model = build_model(cfg, ck.kind, len(ck.classes), quantize=quantize)
    load_model_state(model, ck.model, ck.path)
    return model.to(device or torch.device("cpu")), cfg, ck


@dataclass
class RunEvaluation:
    """:func:`evaluate_run`'s answer: the accuracies and what was evaluated."""

    run: str
    model: str
    epochs: int
    quantized: bool
    result: EvalResult

    def to_dict(self) -> dict:
        return {"run": self.run, "model": self.model, "epochs": self.epochs, "quantized": self.quantized,
                **self.result.to_dict()}


def evaluate_run(run_dir: str | Path, quantize: bool | None = None, device: torch.device | None = None,
                 progress: Progress = no_progress, workers: int = 1) -> RunEvaluation | None:
    """Evaluate a run's checkpoint on its test set (``quantize`` None: as it was trained).

    ``workers > 1`` (CPU): the test set's batches split into that many contiguous shards of whole
    batches, evaluated by forked processes and merged (:func:`merge_eval_totals`): the result equals
    one process's. Under ``torchrun`` each rank evaluates its contiguous part of the batches (split
    further over its ``workers``); rank 0 merges all ranks' totals and returns the evaluation, the
    other ranks return ``None`` (:mod:`respike_nm.ranks`)."""
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    where = launch()
    device = device or default_device(where.local_rank)
    model, cfg, ck = load_run(run_dir, quantize=quantize, device=device)
    _, test, _, _ = build_datasets(cfg, progress)
    batch = cfg.train.batch_size
    mine = part(range(-(-len(test) // batch)), where.rank, where.world)  # this rank's batches
    loaders = cfg.data.num_workers

    def totals(batches: range, on: torch.device, bar: Progress = no_progress) -> EvalTotals:
        items = range(batches.start * batch, min(batches.stop * batch, len(test)))
        loader = DataLoader(Subset(test, items), batch_size=batch, collate_fn=collate_clips,
                            num_workers=loaders)
        return eval_totals(model, loader, on, bar)

    if not mine:  # more ranks than batches
        local = None
    elif workers > 1 and len(mine) > 1 and device.type == "cpu":
        cpu = torch.device("cpu")
        local = merge_eval_totals(fork_map(lambda shard: totals(shard, cpu), split(mine, workers)))
    else:
        local = totals(mine, device, progress if where.world == 1 else no_progress)
    parts = gather(local, where)
    if not where.main:
        return None
    parts = [p for p in parts if p is not None]
    res = eval_result(parts[0] if len(parts) == 1 else merge_eval_totals(parts))  # [] if no test clips
    return RunEvaluation(str(run_dir), ck.kind, ck.epoch, cfg.quant.enabled if quantize is None else quantize,
                         res)
