"""How a hybrid's loss reaches its two branches (``train.branch_loss``; docs/balance.md).

A jointly trained two-stream network is often worse than its better stream alone: the streams
overfit and generalise at different rates (Wang, Tran & Feiszli, "What Makes Training Multi-Modal
Classification Networks Hard?", CVPR 2020), and the stream that learns fastest takes the gradient
from the other (Peng et al., "Balanced Multimodal Learning via On-the-fly Gradient Modulation",
CVPR 2022). The ReSpike head sees the two branches' pooled features concatenated
(:class:`respike_nm.models.respike.BranchFeatures`), which is the setting of both papers:

- ``fused``: one cross-entropy on the head, as the published code trains.
- ``aux``: plus a cross-entropy on a linear head of each branch's pooled features, the three losses
  weighted by ``train.branch_weights`` (fused, ANN, SNN). Fixed weights are the plain auxiliary-head
  method; weights from each head's overfitting-to-generalisation ratio (:func:`gblend_weights`,
  measured on held-out data) are Gradient-Blending. The heads are :class:`BranchHeads`, kept in the
  checkpoint's ``aux`` field, never in the model: the trained model, its export, verification and
  energy are those of a ``fused`` run.
- ``ogm-ge``: after each backward pass, the convolution weights' gradients of the branch whose share
  of the head's logits (:meth:`ReSpike.branch_logits`) scores the true class higher are multiplied by
  ``1 - tanh(alpha * ratio)`` (ratio > 1: its score over the other's), and Gaussian noise with each
  gradient's own standard deviation is added to both branches' (the "generalisation enhancement").

Single-branch models train with ``fused`` whatever is set (there is nothing to balance).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.distributed as dist
from torch import nn

from respike_nm.config import TrainConfig
from respike_nm.errors import UsageError

BRANCHES = ("ann", "snn")
HEADS = ("fused", *BRANCHES)  # the order of train.branch_weights


class BranchHeads(nn.ModuleDict):
    """A linear classifier on each branch's pooled features (training only)."""

    def __init__(self, widths: dict[str, int], num_classes: int):
        super().__init__({name: nn.Linear(c, num_classes) for name, c in widths.items()})

    def forward(self, parts: dict[str, torch.Tensor], b: int, g: int) -> dict[str, torch.Tensor]:
        """``{branch: [b * g, C]}`` -> ``{branch: [b, classes]}`` (averaged over the groups)."""
        return {n: self[n](x).reshape(b, g, -1).mean(dim=1) for n, x in parts.items()}


def check_branch_config(t: TrainConfig) -> None:
    """``branch_weights`` must give three weights >= 0 with a positive fused one."""
    w = t.branch_weights
    if len(w) != len(HEADS) or any(not x >= 0 for x in w) or not w[0] > 0:
        raise UsageError(f"train.branch_weights must be {len(HEADS)} weights >= 0 (fused, ann, snn; the "
                         f"fused one > 0), not {w}")


def uses_balance(t: TrainConfig, kind: str) -> bool:
    return kind == "hybrid" and t.branch_loss != "fused"


def make_heads(t: TrainConfig, kind: str, model: nn.Module, num_classes: int) -> BranchHeads | None:
    """The auxiliary heads a run with ``aux`` trains (None otherwise). Built after the model, from
    the RNG state the seed left, so a ``fused`` run draws exactly what it drew before they existed."""
    check_branch_config(t)
    if kind != "hybrid" or t.branch_loss != "aux":
        return None
    widths = {"ann": model.ann.feature_info.channels[-1], "snn": model.snn.feature_info.channels[-1]}
    return BranchHeads(widths, num_classes)


def step_loss(t: TrainConfig, model: nn.Module, logits: torch.Tensor, feats, labels: torch.Tensor,
              heads: nn.Module | None) -> tuple[torch.Tensor, dict[str, float], dict[str, torch.Tensor]]:
    """A hybrid's training loss of one batch, each head's cross-entropy (for the epoch's record:
    the auxiliary heads', or else each branch's share of the fused head's), and each branch's
    logits that those come from."""
    ce = nn.functional.cross_entropy
    fused = ce(logits, labels, label_smoothing=t.label_smoothing)
    loss, parts = fused, {"fused": float(fused)}
    if heads is not None:
        outs = heads(feats.parts, feats.b, feats.g)
        w = dict(zip(HEADS, t.branch_weights, strict=True))
        loss = w["fused"] * fused
        for name, out in outs.items():
            branch = ce(out, labels, label_smoothing=t.label_smoothing)
            loss = loss + w[name] * branch
            parts[name] = float(branch)
    else:
        with torch.no_grad():
            outs = model.branch_logits(feats)
            parts |= {n: float(ce(o, labels, label_smoothing=t.label_smoothing)) for n, o in outs.items()}
    return loss, parts, outs


def ogm_coefficients(branch_logits: dict[str, torch.Tensor], labels: torch.Tensor, alpha: float,
                     world: int = 1) -> dict[str, float]:
    """OGM-GE's gradient coefficient of each branch: the summed softmax probability of the true class
    under each branch's share of the logits; the branch that scores higher (ratio > 1 over the other)
    gets ``1 - tanh(alpha * ratio)``, the other 1. Scores are summed over ranks first."""
    scores = torch.stack([torch.softmax(branch_logits[n].detach().float(), dim=-1)
                          .gather(1, labels[:, None]).sum() for n in BRANCHES])
    if world > 1:
        dist.all_reduce(scores)
    a, s = scores.tolist()
    coeff = {"ann": 1.0, "snn": 1.0}
    if a > s:
        coeff["ann"] = 1.0 - math.tanh(alpha * a / max(s, 1e-12))
    elif s > a:
        coeff["snn"] = 1.0 - math.tanh(alpha * s / max(a, 1e-12))
    return coeff


def modulate(model: nn.Module, coeff: dict[str, float], generator: torch.Generator) -> None:
    """Scale each branch's convolution-weight gradients by its coefficient and add Gaussian noise of
    each gradient's standard deviation (OGM-GE). ``generator`` is seeded alike on every rank, so
    ranks add the same noise to the same (already averaged) gradients."""
    for name, p in model.named_parameters():
        branch = name.split(".", 1)[0]
        if branch not in coeff or p.grad is None or p.dim() < 4:
            continue
        g = p.grad
        noise = torch.randn(g.shape, generator=generator, dtype=g.dtype) * (float(g.float().std()) + 1e-8)
        p.grad = g * coeff[branch] + noise.to(g.device)


@torch.no_grad()
def branch_test_losses(model: nn.Module, heads: nn.Module | None, loader,
                       device: torch.device) -> dict[str, float]:
    """Each head's mean cross-entropy on ``loader``'s clips: the fused head, and per branch its
    auxiliary head (``aux``) or else its share of the fused head's logits."""
    model.eval()
    if heads is not None:
        heads.eval()
    totals, n = dict.fromkeys(HEADS, 0.0), 0
    for batch in loader:
        if not len(batch.label):
            continue
        video = batch.video.to(device).flatten(0, 1)  # every clip on its own (uint8: the model normalises)
        labels = batch.label.to(device).repeat_interleave(batch.video.shape[1])
        logits, feats = model(video, with_features=True)
        outs = heads(feats.parts, feats.b, feats.g) if heads is not None else model.branch_logits(feats)
        for name, out in {"fused": logits, **outs}.items():
            totals[name] += float(nn.functional.cross_entropy(out.float(), labels, reduction="sum"))
        n += len(labels)
    if heads is not None:
        heads.train()
    return {name: v / max(n, 1) for name, v in totals.items()}


def gain_and_overfitting(a: dict, b: dict, head: str) -> tuple[float, float]:
    """Between the epoch rows ``a`` and ``b`` (``train_loss_<head>``, ``test_loss_<head>``): the
    generalisation gain ``G = L_val(a) - L_val(b)`` and the overfitting change ``dO = O(b) - O(a)``,
    ``O = L_val - L_train`` (Wang et al. 2020)."""
    gain = a[f"test_loss_{head}"] - b[f"test_loss_{head}"]
    def over(r: dict) -> float:
        return r[f"test_loss_{head}"] - r[f"train_loss_{head}"]

    return gain, over(b) - over(a)


def gblend_weights(history: Sequence[dict], first: int | None = None, last: int | None = None,
                   floor: float = 0.1) -> list[float]:
    """Gradient-Blending weights (Wang et al. 2020, eq. 8) of the fused, ANN and SNN heads from a run's
    per-epoch losses (an ``aux`` run with ``branch_metrics``: ``train_loss_<head>`` and
    ``test_loss_<head>``, the test set being held-out data the weights may look at).

    Between epochs ``first`` and ``last`` (1-based; default: the first evaluated and the last), each
    head's generalisation gain is ``G = L_val(first) - L_val(last)`` and its overfitting change
    ``dO = O(last) - O(first)`` with ``O = L_val - L_train``; its weight is ``G / dO**2`` (0 when it
    did not generalise, ``G <= 0``), normalised to sum to 1; then every weight is raised to at least
    ``floor`` and the three normalised again, so that no head (the fused one above all, which is the
    model's) stops learning because of one noisy estimate."""
    rows = [r for r in history if all(f"test_loss_{h}" in r and f"train_loss_{h}" in r for h in HEADS)]
    if len(rows) < 2:
        raise UsageError("Gradient-Blending needs at least two evaluated epochs with every head's "
                         "train and test loss (an aux run with train.branch_metrics=true)")
    by = {r["epoch"]: r for r in rows}
    a, b = by.get(first, rows[0]), by.get(last, rows[-1])
    raw = []
    for h in HEADS:
        gain, d_over = gain_and_overfitting(a, b, h)
        raw.append(max(gain, 0.0) / max(d_over * d_over, 1e-8))
    total = sum(raw)
    w = [r / total for r in raw] if total > 0 else [1.0, 0.0, 0.0]  # none generalised: fused only
    w = [max(x, floor) for x in w]
    return [x / sum(w) for x in w]
