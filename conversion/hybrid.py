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

from conversion.lava_sim import StageNetwork, run_manifest_stage
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

    def __init__(self, manifest: ExportManifest, directory: str | Path, spec, known: dict | None = None,
                 networks: dict[int, StageNetwork] | None = None):
        self.manifest, self.directory, self.spec = manifest, Path(directory), spec
        self.known = known or {}
        self.networks = networks  # running stage networks to use instead of a run per call
        self.steps, self.seconds, self.reused = 0, 0.0, 0

    def __call__(self, stage: StageSpec, x: Tensor) -> Tensor:
        record = self.manifest.stages[stage.index]
        graded = graded_integers(x, self.spec, record.input_scale).cpu().numpy()
        seen, run = self.known.get(stage.index, (None, None))
        if seen is not None and np.array_equal(seen, graded):  # False for another shape
            self.reused += 1
        elif self.networks is not None:
            net = self.networks[stage.index]
            steps, seconds = net.steps, net.run_seconds
            out = net(graded)
            self.steps += net.steps - steps
            self.seconds += net.run_seconds - seconds
            return torch.from_numpy(out).to(x.dtype)
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

    ``live=True`` (default): every stage network is built and started on the first call and kept
    running (:class:`~conversion.lava_sim.StageNetwork`), so later calls cost only their Lava steps;
    :meth:`close` (or the ``with`` block) stops them. ``live=False``: each call builds, runs and
    stops every network (:func:`~conversion.lava_sim.run_stage`). Both give the same logits.
    ``calls``, ``lava_steps``, ``lava_seconds`` (the runs, set-up excluded) and ``setup_seconds``
    add up over calls.
    """

    def __init__(self, model: nn.Module, manifest: ExportManifest, directory: str | Path, live: bool = True):
        self.model, self.manifest, self.directory = model, manifest, Path(directory)
        self.live, self.networks = live, None
        self.calls, self.lava_steps, self.lava_seconds, self.setup_seconds = 0, 0, 0.0, 0.0

    def _start(self) -> dict[int, StageNetwork]:
        networks: dict[int, StageNetwork] = {}
        try:
            for record in self.manifest.stages:
                networks[record.index] = StageNetwork(
                    self.directory / record.hdf5, time_steps=record.time_steps,
                    input_message_bits=record.input_message_bits, reset_offset=record.reset_offset)
                self.setup_seconds += networks[record.index].setup_seconds
        except BaseException:
            for net in networks.values():
                net.close()
            raise
        return networks

    @torch.no_grad()
    def __call__(self, video: Tensor) -> Tensor:
        if not self.live:
            result = hybrid_logits(self.model, self.manifest, self.directory, video)
            logits, steps, seconds = result.logits, result.lava_steps, result.lava_seconds
        else:
            if self.networks is None:
                self.networks = self._start()
            self.model.eval()
            runner = LavaStageRunner(self.manifest, self.directory, self.model.spec.snn.quant,
                                     networks=self.networks)
            try:
                logits = self.model(video, stage_runner=runner)
            except BaseException:
                self.close()
                raise
            steps, seconds = runner.steps, runner.seconds
        self.calls += 1
        self.lava_steps += steps
        self.lava_seconds += seconds
        return logits

    def close(self) -> None:
        """Stop the running stage networks (idempotent; a later call starts them again)."""
        networks, self.networks = self.networks, None
        for net in (networks or {}).values():
            net.close()

    def __enter__(self) -> HybridClassifier:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
