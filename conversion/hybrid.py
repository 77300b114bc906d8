"""The hybrid runner: the model's own forward, with its SNN stage networks run in Lava.

ANN branch, fusion and head run in PyTorch as the model computes them
(:meth:`~respike_nm.models.respike.ReSpike.forward`); the model hands each SNN stage network to a
Lava stage runner instead of running it itself. Fusion is per time step, so stage i+1 needs stage
i's full output: each stage runs over all T' steps, its input (residual frames or fused features)
entering as graded integers ``round(S x)``, and Lava's output spikes go back to the model for the
fusion that follows or the head.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from conversion.lava_sim import run_manifest_stage
from conversion.manifest import ExportManifest
from respike_nm.models.deploy import StageSpec
from respike_nm.models.fixed_point import graded_integers


@dataclass(frozen=True)
class HybridResult:
    """``lava_steps`` / ``lava_seconds``: of the Lava runs whose spikes the hybrid used;
    ``reused``: stages whose run came from ``known`` (:func:`hybrid_logits`)."""

    logits: Tensor  # [B, classes]
    lava_steps: int
    lava_seconds: float
    reused: int = 0


class LavaStageRunner:
    """A stage runner (``runner(stage, x) -> spikes``) that runs the export's stage networks in Lava.

    ``known``: Lava runs already made, ``{stage: (graded input, LavaRunResult)}`` (as
    :func:`conversion.verify.verify_model` keeps them); a stage whose graded input is identical to a
    known one takes that run's output instead of running again. Lava's fixed-point run is
    deterministic and starts every clip from reset state, so this is the output it would give.
    """

    def __init__(self, manifest: ExportManifest, directory: str | Path, spec, known: dict | None = None):
        self.manifest, self.directory, self.spec = manifest, Path(directory), spec
        self.known = known or {}
        self.steps, self.seconds, self.reused = 0, 0.0, 0

    def __call__(self, stage: StageSpec, x: Tensor) -> Tensor:
        record = self.manifest.stages[stage.index]
        graded = graded_integers(x, self.spec, record.input_scale).cpu().numpy()
        seen, run = self.known.get(stage.index, (None, None))
        if seen is not None and np.array_equal(seen, graded):  # False for another shape
            self.reused += 1
        else:
            run = run_manifest_stage(self.directory, record, graded, all_layers=False)
        self.steps, self.seconds = self.steps + run.steps, self.seconds + run.run_seconds
        return torch.from_numpy(run.output).to(x.dtype)


@torch.no_grad()
def hybrid_logits(model: nn.Module, manifest: ExportManifest, directory: str | Path,
                  video: Tensor, known: dict | None = None) -> HybridResult:
    """Logits of ``video [B, T, 3, H, W]`` (normalised) with the SNN stages run in Lava
    (``known``: runs to reuse on identical input, :class:`LavaStageRunner`)."""
    model.eval()
    runner = LavaStageRunner(manifest, directory, model.spec.snn.quant, known)
    logits = model(video, stage_runner=runner)
    return HybridResult(logits, runner.steps, runner.seconds, runner.reused)


class HybridClassifier:
    """``video [B, T, 3, H, W]`` (normalised) -> logits, with the SNN stages run in Lava: the
    classifier of streaming prediction (:mod:`respike_nm.predict`) for ``predict --lava``.

    Each call runs every stage network once (network built, run over the window's T' steps per key
    frame, stopped), so a call costs Lava's set-up of each stage; ``calls``, ``lava_steps`` and
    ``lava_seconds`` (the runs themselves, set-up excluded) add up over calls.
    """

    def __init__(self, model: nn.Module, manifest: ExportManifest, directory: str | Path):
        self.model, self.manifest, self.directory = model, manifest, Path(directory)
        self.calls, self.lava_steps, self.lava_seconds = 0, 0, 0.0

    def __call__(self, video: Tensor) -> Tensor:
        result = hybrid_logits(self.model, self.manifest, self.directory, video)
        self.calls += 1
        self.lava_steps += result.lava_steps
        self.lava_seconds += result.lava_seconds
        return result.logits
