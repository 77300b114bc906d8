"""Export the deployable (``plain``) SNN branch to Lava netx HDF5, one file per stage network.

Each :class:`~respike_nm.models.snn.SpikingConv` becomes a lava-dl SLAYER ``block.cuba.Conv``
(``delay_shift=False``) whose synapse holds the BN-folded weight (:meth:`ConvBN.folded`) with our
fixed-point quantizer as its ``pre_hook_fx``, and whose neuron carries the folded bias in a
``MeanOnlyBatchNorm`` (``running_mean = -b``, eval mode) quantized by our 13-bit bias quantizer; the
blocks then write themselves with their own ``export_hdf5`` into netx's ``layer/<i>`` layout, after an
``input`` layer that only names the input shape. All fixed-point maths is
:mod:`respike_nm.models.fixed_point`'s (docs/fixed-point.md).

Units, Lava side: weights ``W = 64 w`` (even integers in ``[-256, 254]``), state 4096 per input unit,
``vThMant = 64 threshold``, ``bias_mant = 64 b``. The first layer of every stage takes *graded* input:
the chip receives the integers ``round(S x)`` (``S = input_scale``), so that layer's state is ``S``
times finer and its threshold and bias are exported multiplied by ``S`` (§2 (A)). Every layer also
carries its weight gain ``G`` (weights, bias and threshold ``G`` times larger). The integers come from
:meth:`~respike_nm.models.snn.SpikingConv.chip_layer`, the layer's own description of itself.

Weights beyond ``[-256, 254]`` (possible with ``weight_bits > 8``) are refused: netx clips dense
weights there (``optimize_weight_bits``, with only a printed warning) and passes conv weights to Lava's
Conv unchecked, while Loihi's synapse holds 8-bit mantissas; folding a factor into the threshold is
not exact either, since the leak truncates on the state grid.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import h5py
import torch
from torch import nn

from conversion.layout import chw_to_xyc
from conversion.manifest import (
    MANIFEST_NAME,
    ExportManifest,
    ManifestError,
    StageManifest,
    file_sha256,
    write_manifest,
)
from respike_nm.atomic import write_bytes_atomic
from respike_nm.lavadl import import_slayer
from respike_nm.layout import conv_out
from respike_nm.models.deploy import ChipLayer, DeployError, StageSpec, check_layer, cut_stages
from respike_nm.models.fixed_point import (
    DEFAULT_SPEC,
    WEIGHT_SCALE,
    FixedPointSpec,
    bias_to_int,
    quantize_bias,
    quantize_weight,
    weight_to_int,
)
from respike_nm.models.neurons import CubaParams
from respike_nm.models.snn import SpikingConv
from respike_nm.records import to_data

slayer = import_slayer()  # lava-dl, its import-time prints kept off the command's output
MeanOnlyBatchNorm = slayer.neuron.norm.MeanOnlyBatchNorm

__all__ = [
    "ExportError", "ExportManifest", "ManifestError", "Stage", "StageManifest", "chip_layer",
    "export_model", "export_stage", "stage_blocks", "stage_shapes",
]

GRADED_RESET_OFFSET = 1  # netx reset_offset for a graded-input first layer (docs/fixed-point.md, "Timing")


class ExportError(DeployError):
    """A model or layer that cannot be exported bit-exactly; the message names the layer."""


Stage = StageSpec  # one stage network (respike_nm.models.deploy)


def chip_layer(layer: nn.Module, name: str = "layer") -> ChipLayer:
    """``layer.chip_layer()``, with an :class:`ExportError` naming the layer when it does not fit."""
    try:
        check_layer(name, layer)
        return layer.chip_layer()
    except ValueError as exc:
        raise ExportError(f"{name}: {exc}") from None


def stage_shapes(chips: Sequence[ChipLayer],
                 input_shape: tuple[int, int, int]) -> tuple[tuple[int, int, int], ...]:
    """Output ``(C, H, W)`` of every layer for an input ``(C, H, W)`` (PyTorch's conv arithmetic)."""
    shapes, (c, h, w) = [], input_shape
    for chip in chips:
        if chip.in_channels != c:
            raise ExportError(f"a layer expects {chip.in_channels} input channels, the stage has {c}")
        (kh, kw), (sh, sw), (ph, pw) = chip.kernel_size, chip.stride, chip.padding
        c, h, w = chip.out_channels, conv_out(h, kh, sh, ph), conv_out(w, kw, sw, pw)
        if h < 1 or w < 1:
            raise ExportError(f"input {input_shape} shrinks to nothing")
        shapes.append((c, h, w))
    return tuple(shapes)


def export_stage(layers: list[SpikingConv] | tuple[SpikingConv, ...], path: str | Path, *,
                 input_shape: tuple[int, int, int], time_steps: int, input_scale: int | None = None,
                 input_message_bits: int | None = None, names: tuple[str, ...] | None = None, index: int = 0,
                 snn_stages: tuple[int, ...] = (), fused_after: int | None = None) -> StageManifest:
    """Write the stack ``layers`` (first one graded input) as netx HDF5 at ``path``.

    ``input_shape``: SLAYER ``(C, H, W)`` of the stage input; ``time_steps``: T' per clip.
    ``input_scale``: graded input is ``round(input_scale * x)``; it must be the first layer's own
    (the default).
    ``input_message_bits``: signed width of the graded messages (default: the layers' FixedPointSpec;
    Lava's simulator does not clip to it;
    :mod:`conversion.lava_sim` refuses inputs that do not fit). The file appears atomically.
    """
    layers = tuple(layers)
    names = names or tuple(f"layer{i}" for i in range(len(layers)))
    if len(names) != len(layers) or not layers:
        raise ExportError(f"{len(layers)} layers and {len(names)} names")
    chips = [chip_layer(layer, name) for name, layer in zip(names, layers, strict=True)]  # the records
    if not chips[0].graded_input:
        raise ExportError(f"{names[0]} starts a stage network but does not quantize its graded input")
    scale = input_scale or chips[0].input_scale
    if scale != chips[0].input_scale:
        raise ExportError(f"{names[0]}: input_scale {scale} differs from the layer's own graded input "
                          f"scale {chips[0].input_scale}")
    shapes = stage_shapes(chips, input_shape)
    _write_hdf5(chip_blocks(chips, input_shape, time_steps, names), Path(path))
    return StageManifest(
        index=index, hdf5=Path(path).name, layers=names, snn_stages=snn_stages, fused_after=fused_after,
        input_shape=tuple(input_shape), output_shape=shapes[-1], layer_shapes=shapes,
        input_shape_xyc=chw_to_xyc(input_shape), output_shape_xyc=chw_to_xyc(shapes[-1]),
        time_steps=time_steps, input_scale=scale,
        input_message_bits=input_message_bits or chips[0].spec.input_message_bits,
        reset_offset=GRADED_RESET_OFFSET, sha256=file_sha256(path),
    )


def stage_blocks(layers: tuple[SpikingConv, ...], input_shape: tuple[int, int, int], time_steps: int,
                 names: tuple[str, ...]) -> list[nn.Module]:
    """The SLAYER blocks that :func:`export_stage` writes: a neuron-less input block, then one CUBA conv
    block per layer (eval mode; the first takes graded input ``round(S x)``)."""
    return chip_blocks([chip_layer(layer, name) for name, layer in zip(names, layers, strict=True)],
                       input_shape, time_steps, names)


def chip_blocks(chips: Sequence[ChipLayer], input_shape: tuple[int, int, int], time_steps: int,
                names: tuple[str, ...]) -> list[nn.Module]:
    """:func:`stage_blocks` from the layers' records."""
    for name, chip in zip(names[1:], chips[1:], strict=True):
        if chip.input_scale != 1:
            raise ExportError(f"{name}: takes graded input inside a stage network (netx drops graded spikes "
                              "between layers)")
    blocks = [_input_block()] + [_conv_block(chip, name) for chip, name in zip(chips, names, strict=True)]
    _set_shapes(blocks, input_shape, time_steps)
    return blocks


def export_model(model: nn.Module, out_dir: str | Path, frame_shape: tuple[int, int],
                 input_message_bits: int | None = None) -> ExportManifest:
    """Export every stage network of ``model`` into ``out_dir`` (``stage<i>.net`` + ``manifest.json``).

    ``frame_shape``: ``(H, W)`` of the residual frames; T' is the model's ``stride - 1``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    stages = cut_stages(model, quantized=True)
    time_steps = model.spec.stride - 1
    shape = (chip_layer(stages[0].layers[0], stages[0].names[0]).in_channels, *frame_shape)
    records = []
    for stage in stages:
        records.append(export_stage(
            stage.layers, out_dir / f"stage{stage.index}.net", input_shape=shape, time_steps=time_steps,
            input_message_bits=input_message_bits, names=stage.names, index=stage.index,
            snn_stages=stage.snn_stages, fused_after=stage.fused_after))
        shape = records[-1].output_shape
    manifest = ExportManifest(stages=tuple(records), snn_arch=model.spec.snn.arch, fusion=model.spec.fusion,
                              frame_shape=tuple(frame_shape), fixed_point=to_data(model.spec.snn.quant))
    write_manifest(manifest, out_dir / MANIFEST_NAME)
    return manifest


def _weight_hook(spec: FixedPointSpec):
    """SLAYER ``pre_hook_fx``: our weight quantizer; ``descale=True`` gives Lava's integer ``W``."""
    def hook(w: torch.Tensor, descale: bool = False) -> torch.Tensor:
        return weight_to_int(w, spec).to(w.dtype) if descale else quantize_weight(w, spec)
    return hook


def _bias_hook(spec: FixedPointSpec):
    """``MeanOnlyBatchNorm.pre_hook_fx``: our 13-bit bias quantizer (``descale=True``: ``bias_mant``)."""
    def hook(b: torch.Tensor, descale: bool = False) -> torch.Tensor:
        return bias_to_int(b, spec).to(b.dtype) if descale else quantize_bias(b, spec)
    return hook


def _input_block() -> nn.Module:
    """A neuron-less SLAYER input block: exports only the input shape (graded input enters the conv)."""
    return slayer.block.cuba.Input(neuron_params=None, delay_shift=False)


def _conv_block(chip: ChipLayer, name: str) -> nn.Module:
    """SLAYER CUBA conv block equal to ``chip`` (threshold and bias in units ``1 / (S G)``), in eval mode.

    The block holds the gained float weights ``G w`` and bias ``S G b``, which our quantizers (its
    ``pre_hook_fx``) put on the grid; the integers it then exports are checked against ``chip``.
    """
    spec = chip.spec
    lo, hi = DEFAULT_SPEC.weight_int_range  # what Lava's fixed_pt models (Loihi 2's) hold
    w_int = chip.weight
    if int(w_int.min()) < lo or int(w_int.max()) > hi:
        raise ExportError(f"{name}: integer weights reach [{int(w_int.min())}, {int(w_int.max())}], outside "
                          f"Loihi's [{lo}, {hi}] (netx clips dense weights and Loihi holds "
                          f"{DEFAULT_SPEC.weight_bits}-bit mantissas)")
    block = slayer.block.cuba.Conv(
        _neuron_params(chip.params), chip.in_channels, chip.out_channels, chip.kernel_size,
        stride=chip.stride, padding=chip.padding, weight_scale=1, pre_hook_fx=_weight_hook(spec),
        delay_shift=False)
    with torch.no_grad():
        gained = chip.folded_weight * chip.weight_gain
        block.synapse.weight.copy_(gained.reshape(block.synapse.weight.shape))
        block.neuron.norm.running_mean = (-chip.bias_mant.to(torch.float64) / WEIGHT_SCALE).to(torch.float32)
    block.neuron.norm.pre_hook_fx = _bias_hook(spec)
    _check_block(block, chip, spec, name)
    return block.eval()


def _neuron_params(params: CubaParams) -> dict:
    """SLAYER ``cuba.Neuron`` arguments for ``params`` (shared decays, no learning, no persistent state)."""
    return {"threshold": params.threshold, "current_decay": params.current_decay,
            "voltage_decay": params.voltage_decay, "scale": WEIGHT_SCALE, "norm": MeanOnlyBatchNorm,
            "shared_param": True, "persistent_state": False, "requires_grad": False}


def _check_block(block: nn.Module, chip: ChipLayer, spec: FixedPointSpec, name: str) -> None:
    """SLAYER's own integers must be the record's (one fixed-point module, no drift)."""
    ours = chip.device
    theirs = block.neuron.device_params
    got = (int(theirs["iDecay"]), int(theirs["vDecay"]), int(theirs["vThMant"]))
    want = (ours.current_decay, ours.voltage_decay, ours.threshold_mant)
    if got != want:
        raise ExportError(f"{name}: SLAYER's neuron integers (iDecay, vDecay, vThMant) = {got} differ from "
                          f"respike_nm.models.fixed_point's {want}")
    with torch.no_grad():
        w = block.synapse.pre_hook_fx(block.synapse.weight, descale=True).reshape(chip.weight.shape)
        b = bias_to_int(-block.neuron.norm.running_mean, spec)
    if not torch.equal(w.to(torch.int64), chip.weight) or not torch.equal(b, chip.bias_mant):
        raise ExportError(f"{name}: the block's integer weights or bias differ from the layer's chip_layer()")


def _set_shapes(blocks: list[nn.Module], input_shape: tuple[int, int, int], time_steps: int) -> None:
    """One zero clip through the blocks: SLAYER fixes its neuron shapes on the first forward."""
    with torch.no_grad():
        x = torch.zeros(1, *input_shape, time_steps)
        for block in blocks:
            x = block(x)


def _write_hdf5(blocks: list[nn.Module], path: Path) -> None:
    """netx layout ``layer/<i>/...`` written by each block's ``export_hdf5``, in memory, then to a
    temporary file and renamed (:func:`~respike_nm.atomic.write_bytes_atomic`: a full disk is a clean
    error)."""
    buf = io.BytesIO()
    with h5py.File(buf, "w") as f:
        group = f.create_group("layer")
        for i, block in enumerate(blocks):
            block.export_hdf5(group.create_group(str(i)))
    write_bytes_atomic(path, buf.getvalue())
