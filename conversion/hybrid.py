"""The hybrid runner: ANN branch, fusion and head in PyTorch; SNN stage networks in Lava.

For each clip batch the stages run in order, each over all T' steps (fusion is per time step, so
stage i+1 needs stage i's full output): the residual frames (or the fused features) enter a stage
as graded integers ``round(S x)``, Lava returns its output spikes, PyTorch applies the fusion that
follows, and the head turns the last output into logits.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from conversion.lava_sim import run_manifest_stage
from conversion.manifest import ExportManifest
from conversion.verify import graded_integers
from respike_nm.data.decompose import decompose
from respike_nm.models.fixed_point import FixedPointSpec


@dataclass(frozen=True)
class HybridResult:
    logits: Tensor  # [B, classes]
    lava_steps: int
    lava_seconds: float


@torch.no_grad()
def hybrid_logits(model: nn.Module, manifest: ExportManifest, directory: str | Path,
                  video: Tensor) -> HybridResult:
    """Logits of ``video [B, T, 3, H, W]`` (normalised) with the SNN stages run in Lava."""
    model.eval()
    spec: FixedPointSpec = model.spec.snn.quant
    key, residual = decompose(video, model.spec.stride)
    b, g = key.shape[:2]
    ann_feats = model.ann_features(key)
    x = model.snn_input(residual)
    steps, seconds = 0, 0.0
    for stage in manifest.stages:
        graded = graded_integers(x, spec, stage.input_scale).cpu().numpy()
        run = run_manifest_stage(directory, stage, graded, all_layers=False)
        steps, seconds = steps + run.steps, seconds + run.run_seconds
        x = torch.from_numpy(run.output).to(video.dtype)
        if stage.fused_after is not None:
            x = model.fuse(stage.fused_after, x, ann_feats)
    return HybridResult(model.head_logits(x, ann_feats, b, g), steps, seconds)
