"""Bit-exactness of an exported stage: Lava's fixed-point run against the quantized PyTorch reference.

Two PyTorch references per stage:

- the **deployable reference** (:func:`reference_stage`): the model's own layers with quantization on
  -- BN-folded weights and biases through :mod:`respike_nm.models.fixed_point`, the model's
  :class:`~respike_nm.models.neurons.CubaLIF` -- evaluated from the layers' own integers
  (:meth:`~respike_nm.models.snn.SpikingConv.chip_layer`) exactly as the chip does it: the graded first
  layer gets the integers ``round(S x)``, every layer its integer weights and bias and a threshold ``S G``
  times larger (docs/fixed-point.md, (A)), and convolutions run in float64 so that no sum is rounded.
  ``spike_mismatch`` counts against it, over every layer of the stage.
- the **model's forward** (``layer(x)``, layer after layer): what the trained model computes, in float32.
  It works in the same units as the chip, so it should agree; ``model_mismatch`` reports it.

A layer that never fires in the reference agrees with Lava trivially: :attr:`VerificationResult.silent`
names such layers, so that a report can say how many layers a verification actually tested.
:func:`compare_export` checks, without Lava, that an export holds exactly the integers a model gives
(weights, biases, neuron parameters, shapes), naming each layer that differs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from conversion.export import chip_layer, stage_shapes
from conversion.lava_sim import run_manifest_stage
from conversion.manifest import ExportManifest, StageManifest
from conversion.netx_check import NetxGroup
from respike_nm.errors import UsageError
from respike_nm.layout import nchwt_to_steps, steps_to_nchwt
from respike_nm.models.activity import firing_rate
from respike_nm.models.deploy import ChipLayer, cut_stages
from respike_nm.models.fixed_point import STATE_SCALE, WEIGHT_SCALE, graded_integers
from respike_nm.models.neurons import CubaLIF
from respike_nm.models.snn import SpikingConv


@dataclass(frozen=True)
class VerificationResult:
    """One stage, Lava against PyTorch.

    ``spike_mismatch``: differing spikes against the deployable reference over every recorded layer
    (0 is the goal); ``layer_mismatch``: the same per layer; ``output_mismatch``: of the stage's output
    layer alone (what the next stage or the head receives); ``model_mismatch``: differing output
    spikes against the model's own forward; ``max_abs_error``: largest difference of graded outputs
    (``None``: the stage outputs binary spikes); ``layer_rates``: the reference's firing rate per
    layer (spikes per neuron and step); ``max_drive``: largest ``|u + bias|`` of the reference in Lava
    state units (Lava wraps the current and saturates the voltage at ``2**23``); ``steps_per_second``:
    of the Lava run.
    """

    stage: int
    layers: tuple[str, ...]
    clips: int
    time_steps: int
    spike_mismatch: int
    layer_mismatch: tuple[int, ...]
    model_mismatch: int
    max_abs_error: float | None
    layer_rates: tuple[float, ...]
    max_drive: int
    steps_per_second: float
    layer_spikes: tuple[int, ...] = ()  # the reference's spikes per layer (rates = spikes / neuron-steps)
    layer_neuron_steps: tuple[int, ...] = ()
    output_mismatch: int = 0

    @property
    def exact(self) -> bool:
        return self.spike_mismatch == 0 and not any(self.layer_mismatch)

    @property
    def compared(self) -> tuple[str, ...]:
        """The layers ``layer_mismatch`` counts, in its order: every layer, or the output layer only."""
        return self.layers if len(self.layer_mismatch) == len(self.layers) else self.layers[-1:]

    @property
    def silent(self) -> tuple[str, ...]:
        """Layers that never fired in the reference over the verified clips (their agreement with Lava
        shows only that both stay silent)."""
        return tuple(name for name, n in zip(self.layers, self.layer_spikes, strict=True) if n == 0)


@dataclass(frozen=True)
class StageReference:
    """Reference spikes ``[N, C, H, W, T]`` per layer and the largest state drive (Lava state units)."""

    spikes: tuple[Tensor, ...]
    max_drive: int


@torch.no_grad()
def reference_stage(layers: Sequence[SpikingConv], x: Tensor,
                    input_scale: int | None = None) -> StageReference:
    """Deployable reference of a stage on graded input ``x [N, C, H, W, T]`` (input units), computed
    from the layers' records (:class:`~respike_nm.models.deploy.ChipLayer`) alone."""
    chips = [chip_layer(layer) for layer in layers]
    scale = input_scale or chips[0].input_scale
    inp = graded_integers(x, chips[0].spec, scale).to(torch.float64)
    spikes, drive = [], 0
    for chip in chips:
        out, layer_drive = _reference_layer(chip, inp)
        spikes.append(out)
        drive = max(drive, layer_drive)
        inp = out.to(torch.float64)
    return StageReference(tuple(spikes), drive)


def _reference_layer(chip: ChipLayer, x: Tensor) -> tuple[Tensor, int]:
    """One layer on its input integers ``x`` (graded ``round(S x)`` or spikes), in units ``1 / (S G)``
    of an input unit: spikes ``[N, C, H, W, T]`` and max ``|u + b|`` (Lava state units)."""
    w_q = chip.weight.to(torch.float64) / WEIGHT_SCALE
    b_s = chip.bias_mant.to(torch.float64) / WEIGHT_SCALE
    current = F.conv2d(nchwt_to_steps(x), w_q, None, chip.stride, chip.padding)
    drive = (current + b_s.view(1, -1, 1, 1)).abs().max() if current.numel() else torch.tensor(0.0)
    neuron = CubaLIF(chip.params, backend=chip.backend, quantize=True, spec=chip.spec)
    # float64 sums are exact; float32 holds them exactly while |4096 u| < 2**24, which Lava needs anyway
    spikes = neuron(steps_to_nchwt(current, x.shape[-1]).to(torch.float32), bias=b_s.to(torch.float32))
    return spikes, int(drive * STATE_SCALE)


@torch.no_grad()
def model_stage(layers: Sequence[nn.Module], x: Tensor) -> tuple[Tensor, ...]:
    """The model's own forward through the stage (eval mode), spikes per layer."""
    out = []
    for layer in layers:
        x = layer(x)
        out.append(x)
    return tuple(out)


def verify_stage(layers: Sequence[SpikingConv], record: StageManifest, directory: str | Path, x: Tensor,
                 all_layers: bool = True, runs: dict | None = None) -> VerificationResult:
    """Run the exported stage ``record`` (HDF5 in ``directory``) in Lava on ``x`` and compare.

    ``x``: the stage's graded input ``[N, C, H, W, T]`` in input units (N clips, run back to back),
    on the layers' device. Puts the layers in eval mode. ``runs``: if given, the Lava run is kept
    there as ``runs[stage] = (graded input, LavaRunResult)`` (for :class:`conversion.hybrid.LavaStageRunner`).
    """
    for layer in layers:
        layer.eval()
    ref = reference_stage(layers, x, record.input_scale)
    model_out = model_stage(layers, x)[-1]
    graded = graded_integers(x, chip_layer(layers[0]).spec, record.input_scale).cpu().numpy()
    run = run_manifest_stage(directory, record, graded, all_layers=all_layers)
    if runs is not None:
        runs[record.index] = (graded, run)
    per_layer = tuple(_mismatch(spikes, ref.spikes[i])
                      for i, spikes in zip(run.recorded, run.layer_spikes, strict=True))
    return VerificationResult(
        stage=record.index, layers=record.layers, clips=run.clips, time_steps=run.time_steps,
        spike_mismatch=sum(per_layer), layer_mismatch=per_layer,
        output_mismatch=_mismatch(run.output, ref.spikes[-1]),
        model_mismatch=_mismatch(run.output, model_out), max_abs_error=None,
        layer_rates=tuple(firing_rate(int(s.sum()), s.numel()) for s in ref.spikes), max_drive=ref.max_drive,
        steps_per_second=run.steps_per_second, layer_spikes=tuple(int(s.sum()) for s in ref.spikes),
        layer_neuron_steps=tuple(s.numel() for s in ref.spikes),
    )


def merge_results(parts: Sequence[VerificationResult]) -> VerificationResult:
    """One stage's results on disjoint sets of clips, as one result on all of them: counts add up,
    rates are recomputed from the added spike counts (so they equal a single run's), the drive is
    the largest; the speed is the steps of all parts over their summed run time."""
    first = parts[0]
    if any(p.stage != first.stage or p.layers != first.layers for p in parts):
        raise ValueError("results of different stages cannot be merged")
    spikes = tuple(map(sum, zip(*(p.layer_spikes for p in parts), strict=True)))
    steps = tuple(map(sum, zip(*(p.layer_neuron_steps for p in parts), strict=True)))
    seconds = sum(p.clips * p.time_steps / p.steps_per_second for p in parts
                  if 0 < p.steps_per_second < float("inf"))
    return VerificationResult(
        stage=first.stage, layers=first.layers, clips=sum(p.clips for p in parts),
        time_steps=first.time_steps, spike_mismatch=sum(p.spike_mismatch for p in parts),
        layer_mismatch=tuple(map(sum, zip(*(p.layer_mismatch for p in parts), strict=True))),
        model_mismatch=sum(p.model_mismatch for p in parts),
        max_abs_error=None if all(p.max_abs_error is None for p in parts)
        else max(p.max_abs_error or 0.0 for p in parts),
        layer_rates=tuple(firing_rate(a, b) for a, b in zip(spikes, steps, strict=True)),
        max_drive=max(p.max_drive for p in parts),
        steps_per_second=sum(p.clips * p.time_steps for p in parts) / seconds if seconds else 0.0,
        layer_spikes=spikes, layer_neuron_steps=steps,
        output_mismatch=sum(p.output_mismatch for p in parts),
    )


def stage_inputs(model: nn.Module, video: Tensor) -> list[Tensor]:
    """Graded input ``[N, C, H, W, T]`` of every stage network while ``model`` runs on ``video``
    (``[B, T, C, H, W]``, uint8 as decoded or normalised): the residual frames for the first stage,
    fused features after that, recorded by a stage runner around the model's own."""
    seen: dict[int, Tensor] = {}

    def record(stage, x: Tensor) -> Tensor:
        seen[stage.index] = x.detach().clone()
        return model.run_stage(stage, x)

    with torch.no_grad():
        model.eval()(video, stage_runner=record)
    return [seen[i] for i in sorted(seen)]


def verify_model(model: nn.Module, manifest: ExportManifest, directory: str | Path,
                 video: Tensor, runs: dict | None = None) -> list[VerificationResult]:
    """Verify every stage of an :func:`~conversion.export.export_model` export on ``video``
    (``runs``: see :func:`verify_stage`)."""
    stages = cut_stages(model, quantized=True)
    inputs = stage_inputs(model, video)
    return [verify_stage(stage.layers, record, directory, x, runs=runs)
            for stage, record, x in zip(stages, manifest.stages, inputs, strict=True)]


def _mismatch(lava: np.ndarray, torch_spikes: Tensor) -> int:
    """Number of differing spikes between Lava ``uint8`` and PyTorch ``[N, C, H, W, T]``."""
    ref = torch_spikes.detach().cpu().numpy()
    if lava.shape != ref.shape:
        raise ValueError(f"Lava spikes {lava.shape} and PyTorch spikes {ref.shape} differ in shape")
    return int(np.count_nonzero(lava.astype(bool) != (ref > 0)))


def check_model_fits(model: nn.Module, manifest: ExportManifest, frame_shape: tuple[int, int],
                     where: str | Path = "export") -> None:
    """Refuse (``ValueError`` naming ``where`` and the first difference) a model whose stage networks
    do not have the export's layers and shapes at frames of ``frame_shape``: a run of another
    architecture or size, which could not be compared clip by clip."""
    stages = cut_stages(model, quantized=True)
    if tuple(frame_shape) != tuple(manifest.frame_shape):
        raise UsageError(f"{where}: exported for frames of {tuple(manifest.frame_shape)}, the run uses "
                         f"{tuple(frame_shape)}: not this run's export")
    if len(stages) != len(manifest.stages):
        raise UsageError(f"{where}: {len(manifest.stages)} stage network(s), the run's model has "
                         f"{len(stages)}: not this run's export")
    for stage, record in zip(stages, manifest.stages, strict=True):
        shapes = stage_shapes([chip_layer(m, n) for n, m in zip(stage.names, stage.layers, strict=True)],
                              record.input_shape)
        if stage.names != record.layers or shapes != record.layer_shapes:
            raise UsageError(f"{where}: stage {record.index} holds layers {list(record.layers)} of shapes "
                             f"{list(record.layer_shapes)}, the run's model {list(stage.names)} of shapes "
                             f"{list(shapes)}: not this run's export")


def compare_export(model: nn.Module, manifest: ExportManifest, directory: str | Path) -> tuple[str, ...]:
    """Every layer of the export in ``directory`` whose integers differ from what ``model`` (quantized,
    eval mode) gives: one line per layer naming the stage file, the layer and the fields that differ
    (weight, bias, iDecay, vDecay, vThMant), with how many values. Empty: the export is this model's.
    Shapes must fit (:func:`check_model_fits`)."""
    directory = Path(directory)
    found = []
    for stage, record in zip(cut_stages(model, quantized=True), manifest.stages, strict=True):
        path = directory / record.hdf5
        with h5py.File(path, "r") as f:
            for i, (name, layer) in enumerate(zip(stage.names, stage.layers, strict=True), start=1):
                group = NetxGroup(f.get(f"layer/{i}"), f"{path}: layer/{i} ({name})")
                fields = _layer_differences(group, chip_layer(layer, name))
                if fields:
                    found.append(f"{path.name} {name}: {', '.join(fields)} differ from the run's "
                                 "quantized model")
    return tuple(found)


def _layer_differences(layer: NetxGroup, chip) -> list[str]:
    """``"field (n of m values)"`` for each netx dataset of ``layer`` that differs from ``chip``."""
    co = chip.weight.shape[0]
    weight = np.asarray(layer.dataset("weight")[()]).reshape(chip.weight.shape)
    bias = np.asarray(layer.dataset("bias")[()]) if "bias" in layer.group else np.zeros(co)
    # netx takes a bias per channel or per neuron (x, y, c): compare it channel by channel
    bias = bias.reshape(-1, co) if bias.size != co else bias.reshape(1, co)
    neuron = NetxGroup(layer.group.get("neuron"), layer.where, "neuron/")
    want = {"weight": (weight, chip.weight.numpy()),
            "bias": (bias, np.broadcast_to(chip.bias_mant.numpy(), bias.shape)),
            "iDecay": (neuron.dataset("iDecay")[()], chip.device.current_decay),
            "vDecay": (neuron.dataset("vDecay")[()], chip.device.voltage_decay),
            "vThMant": (neuron.dataset("vThMant")[()], chip.device.threshold_mant)}
    out = []
    for field, (got, ref) in want.items():
        got, ref = np.asarray(got).reshape(-1), np.asarray(ref).reshape(-1)
        differ = int(np.count_nonzero(got != ref)) if got.size == ref.size else max(got.size, ref.size)
        if differ:
            out.append(f"{field} ({differ} of {ref.size} values)")
    return out
