"""Evaluation: a model's clip and video accuracy on a loader, and a saved run's on its test set.

:func:`eval_totals` adds up per-batch sums that merge exactly (:func:`merge_eval_totals`), so a test
set split over forked workers or ``torchrun`` ranks (:func:`evaluate_run`) gives one process's result.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from respike_nm.data.datasets import collate_clips
from respike_nm.errors import UsageError
from respike_nm.forked import fork_map
from respike_nm.models.activity import ActivityLog, record_activity
from respike_nm.progress import Progress, no_progress
from respike_nm.ranks import gather, launch, part, split
from respike_nm.train.builder import build_datasets
from respike_nm.train.run import load_run


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
            video = batch.video.to(device)  # uint8: the model normalises
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



def default_device(local_rank: int = 0) -> torch.device:
    return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")


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
        raise UsageError(f"workers must be at least 1, not {workers}")
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
