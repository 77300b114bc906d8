"""What a deployable SNN is made of, as typed records produced by the model itself.

- :class:`StageSpec`: one stage network, the consecutive spiking layers between two GPU fusion
  points (:meth:`respike_nm.models.respike.ReSpike.stage_specs`; the model's own forward runs its
  SNN stage by stage through these, and the hybrid runner passes a Lava runner in their place).
- :class:`ChipLayer`: one conv + CUBA-LIF layer in the chip's integers
  (:meth:`respike_nm.models.snn.SpikingConv.chip_layer`: the layer describes itself).
- :func:`cut_stages`: the stage networks of a model that can be deployed, refusing anything that
  cannot once, naming the layer.

The netx writer, the verification reference and NIR's quantized graph read only these records (the
mapping reads the exported files; NIR's float graph of an unquantized model, which has no chip
record, reads the layer's float fold), so a new deployable layer or fusion arrangement is a change
in the model package alone. Pure torch; no Lava import, and no import of the modules that produce
them.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor, nn

from respike_nm.errors import RespikeError
from respike_nm.models.fixed_point import FixedPointSpec
from respike_nm.models.neurons import CubaDeviceParams, CubaParams


class DeployError(RespikeError, ValueError):
    """A model or layer that cannot be deployed as it is; the message names the layer."""


@dataclass(frozen=True)
class StageSpec:
    """One stage network of the SNN.

    ``names`` / ``layers``: its spiking layers in order (``snn.stem``, ``snn.stages.<i>.<j>`` for the
    plain SNN; whole residual stages ``snn.stages.<i>`` for the resnet one); ``blocks``: the SNN's
    own modules that hold them (the stem, ``snn.stages.<i>``), which the model calls when it runs the
    stage itself (so that hooks on them see it); ``snn_stages``: the SNN stages it covers (0 is the
    stem); ``fused_after``: the 1-based SNN stage whose output goes to a fusion point next (None: to
    the head).
    """

    index: int
    names: tuple[str, ...]
    layers: tuple[nn.Module, ...]
    snn_stages: tuple[int, ...]
    fused_after: int | None
    blocks: tuple[tuple[str, nn.Module], ...] = ()


@dataclass(frozen=True)
class ChipLayer:
    """One conv + CUBA-LIF layer in the chip's integers (SLAYER/Lava units, fixed_point docs).

    ``weight``: int64 ``[Co, Ci, kh, kw]``, ``W = 64 quantize_weight(G w)``; ``bias_mant``: int64 ``[Co]``,
    ``S round(64 G b)``; ``params``: the neuron in units of ``1 / (S G)`` of an input unit (threshold
    ``vThMant / 64``), ``device`` its integers; ``input_scale`` ``S`` (graded input ``round(S x)``;
    1 for spikes); ``weight_gain`` ``G``; ``folded_weight`` / ``folded_bias``: the float BN fold in
    input units, before any quantization; ``spec``: the fixed-point target the integers are for;
    ``graded_input``: the layer takes graded integers (a stage's first layer), not spikes;
    ``backend``: the neuron implementation whose arithmetic the integers reproduce (for a
    reference run). The writers (netx, NIR's quantized graph) and the verification reference read
    this record and nothing else of the layer.
    """

    weight: Tensor
    bias_mant: Tensor
    params: CubaParams
    device: CubaDeviceParams
    input_scale: int
    weight_gain: int
    stride: tuple[int, int]
    padding: tuple[int, int]
    folded_weight: Tensor
    folded_bias: Tensor
    spec: FixedPointSpec
    graded_input: bool
    backend: str

    def __post_init__(self) -> None:
        co = self.weight.shape[0]
        if self.weight.dim() != 4 or tuple(self.bias_mant.shape) != (co,):
            raise ValueError(f"weight [Co, Ci, kh, kw] and bias [Co] expected, got "
                             f"{tuple(self.weight.shape)} and {tuple(self.bias_mant.shape)}")

    @property
    def in_channels(self) -> int:
        return int(self.weight.shape[1])

    @property
    def out_channels(self) -> int:
        return int(self.weight.shape[0])

    @property
    def kernel_size(self) -> tuple[int, int]:
        return int(self.weight.shape[2]), int(self.weight.shape[3])

    @property
    def units(self) -> int:
        """``S G``: how many times finer than an input unit the layer's state is."""
        return self.input_scale * self.weight_gain


def cut_stages(model: nn.Module, quantized: bool = False) -> tuple[StageSpec, ...]:
    """The stage networks of ``model``'s SNN, each a chain of deployable spiking layers: the one cut
    that every writer (netx, NIR), the verification and the mapping use.

    Refuses, naming the module: a model without SNN, any module that declares itself undeployable
    (its ``undeployable`` attribute: what it is and why, e.g. the resnet SNN's residual adds), any layer
    that cannot describe itself to the chip (no ``chip_layer``) or whose convolution netx and NIR
    cannot hold (bias, groups, dilation, non-zero padding). ``quantized`` (what a chip runs: netx,
    the verification): also a stage network whose first layer does not quantize its graded input
    (a float model; NIR can describe one).
    """
    snn = getattr(model, "snn", None)
    if snn is None:
        raise DeployError(f"model kind {model.spec.kind!r} has no SNN branch to deploy")
    for name, module in snn.named_modules(prefix="snn"):
        what = getattr(module, "undeployable", None)  # (what it is, why it cannot deploy)
        if what:
            raise DeployError(f"{what[0]} in {name}: {what[1]}")
    stages = model.stage_specs()
    for stage in stages:
        for name, layer in zip(stage.names, stage.layers, strict=True):
            check_layer(name, layer)
        if quantized and not stage.layers[0].graded_input:
            raise DeployError(f"{stage.names[0]} starts stage network {stage.index} but does not quantize "
                              "its graded input")
    return stages


def check_layer(name: str, layer: nn.Module) -> None:
    """Raise :class:`DeployError` naming ``layer`` unless it can describe itself to the chip (a
    ``chip_layer`` method) with a convolution netx and NIR can hold."""
    if not hasattr(layer, "chip_layer"):
        raise DeployError(f"{name}: {type(layer).__name__} is not a deployable spiking layer")
    conv = layer.synapse.conv
    if conv.bias is not None or conv.groups != 1 or conv.dilation != (1, 1) or conv.padding_mode != "zeros":
        raise DeployError(f"{name}: only zero-padded, ungrouped, undilated convolutions without bias deploy")
