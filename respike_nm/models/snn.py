"""ReSpike's SNN branch: spiking nets over residual frames, in SLAYER's layout ``[N, C, H, W, T]``.

Every architecture is an :class:`SNNBranch` that describes itself (what its stages emit, its
deployable layers, how its stem runs), so the hybrid, quantization, deployment and energy name no
architecture; a new one is a class here and an entry in :data:`SNN_ARCHS`. Two architectures with
the same feature taps (channels 64/128/256/512 x width, strides 4/8/16/32,
like the ANN's, so fusion pairs stage i with ANN stage i):

- ``plain`` (deployable; the default): every layer is conv3x3 -> BatchNorm -> CUBA-LIF, strided
  convs instead of pooling, no skips: only what Lava netx loads. BN is folded into the weights and
  a bias at export; with quantization on, the forward pass already uses the folded, quantized
  weights (batch statistics in training, running ones in eval), so what is trained is what is
  deployed.
- ``resnet`` (paper-faithful): stem conv3x3/2 + BN, then pre-activation blocks
  LIF -> conv3x3 -> BN -> LIF -> conv3x3 -> BN + shortcut, [2, 2, 2, 2] blocks. Stage outputs are
  real-valued. Trains and is reported; netx cannot load residual adds, so export refuses it.

Direct encoding: the real-valued residual frames enter the first conv. Inputs that enter a stage
as graded values (the residual frames, fused features) are quantized to steps of
``1 / input_scale`` when quantization is on, as the chip's graded input will be.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from respike_nm.errors import UsageError
from respike_nm.layout import nchwt_to_steps, steps_to_nchwt
from respike_nm.models.backbone import FeatureInfo
from respike_nm.models.deploy import ChipLayer, DeployError
from respike_nm.models.fixed_point import (
    DEFAULT_SPEC,
    FixedPointSpec,
    bias_to_int,
    quantize_bias,
    quantize_graded,
    quantize_weight,
    weight_gain,
    weight_to_int,
)
from respike_nm.models.neurons import CubaLIF, CubaParams, device_params, graded_params, paper_lif

BASE = (64, 128, 256, 512)


@dataclass(frozen=True)
class SNNSpec:
    """How the SNN branch is built. ``quant`` None trains in float."""

    arch: str = "plain"  # plain | resnet
    width: float = 1.0
    backend: str = "slayer"  # slayer | norse
    neuron: CubaParams = paper_lif()
    quant: FixedPointSpec | None = None
    graded_stages: tuple[int, ...] = ()  # 1-based stages whose first layer receives fused (graded) input
    in_channels: int = 3  # channels of the residual frames (the model's input kind)

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(max(8, int(round(c * self.width / 8)) * 8) for c in BASE)


class ConvBN(nn.Module):
    """conv3x3 (no bias) + BatchNorm2d, applied to every time step; with quantization the BN is
    folded into the conv (batch statistics while training) and weight and bias are quantized."""

    def __init__(self, cin: int, cout: int, stride: int, spec: SNNSpec, kernel: int = 3, gain: float = 1.0):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False)
        self.bn = nn.BatchNorm2d(cout)
        self.quant = spec.quant
        self.fake_quant = True  # off: float weights even when ``quant`` is set (see set_fake_quant)
        self.freeze_bn = False  # fold with the running statistics in training too
        self.gain = gain  # the paper LIF's input gain, folded into the weights

    def folded(self, mean: torch.Tensor | None = None, var: torch.Tensor | None = None,
               with_gain: bool = True):
        """BN folded into ``(weight [Co, Ci, k, k], bias [Co])``, before quantization (running
        statistics unless given); ``with_gain`` False leaves the LIF's input gain out."""
        mean = self.bn.running_mean if mean is None else mean
        var = self.bn.running_var if var is None else var
        scale = self.bn.weight / torch.sqrt(var + self.bn.eps)
        if not with_gain:
            return self.conv.weight * scale.view(-1, 1, 1, 1), self.bn.bias - mean * scale
        weight = self.conv.weight * (self.gain * scale).view(-1, 1, 1, 1)
        bias = self.gain * (self.bn.bias - mean * scale)
        return weight, bias

    def forward(self, x: torch.Tensor, gain=None) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """``x [N*T, Ci, H, W]`` -> (current without bias ``[N*T, Co, H', W']``, bias ``[Co]``, ``G``).

        ``gain(weight, bias) -> G`` (None: 1) picks the weight gain of
        :func:`~respike_nm.models.fixed_point.weight_gain` from the folded weights of this pass; current
        and bias are then in units of ``1 / G``. Without quantization: the float current, no bias, 1.
        """
        if self.quant is None or not self.fake_quant:
            return self.gain * self.bn(self.conv(x)), None, 1
        if self.training and not self.freeze_bn:
            y = self.conv(x)
            self.bn(y)  # updates the running statistics
            mean = y.detach().mean(dim=(0, 2, 3))
            var = y.detach().var(dim=(0, 2, 3), unbiased=False)
            weight, bias = self.folded(mean, var)
        else:  # evaluation, or frozen statistics: exactly the weights export will use
            weight, bias = self.folded()
        g = 1 if gain is None else gain(weight, bias)
        w_q = quantize_weight(weight * g, self.quant)
        b_q = quantize_bias(bias * g, self.quant)
        return F.conv2d(x, w_q, None, self.conv.stride, self.conv.padding), b_q, g


class SpikingConv(nn.Module):
    """conv3x3 -> BN -> CUBA-LIF on ``[N, C, H, W, T]``; returns spikes ``[N, Co, H', W', T]``.

    With quantization on, the layer computes what the chip does (docs/fixed-point.md, (A)): graded input on
    the ``1 / S`` grid (``S = input_scale``: the chip gets ``round(S x)``), weights and bias scaled by
    the layer's weight gain ``G`` (:func:`~respike_nm.models.fixed_point.weight_gain`, from the folded
    weights of this forward pass) and the neuron in units of ``1 / (S G)`` of an input unit: threshold,
    bias and surrogate ``S G`` times larger. :meth:`chip_layer` is the same layer as integers.
    """

    def __init__(self, cin: int, cout: int, stride: int, spec: SNNSpec, graded_input: bool = False,
                 input_scale: int | None = None):
        super().__init__()
        self.synapse = ConvBN(cin, cout, stride, spec, gain=spec.neuron.input_gain)
        self.graded_input = graded_input and spec.quant is not None
        self.scale = (input_scale or spec.quant.input_scale) if self.graded_input else 1
        self.base_params = spec.neuron  # before any scaling
        self.quant = spec.quant
        self.backend = spec.backend
        self.fake_quant = True
        params = graded_params(spec.neuron, self.scale, spec.quant) if self.scale != 1 else spec.neuron
        self.neuron = CubaLIF(params, backend=spec.backend, quantize=spec.quant is not None,
                              spec=spec.quant or DEFAULT_SPEC)

    def gain_of(self, weight: torch.Tensor, bias: torch.Tensor) -> int:
        """This layer's weight gain for folded ``weight`` and ``bias`` (input units)."""
        return weight_gain(weight, bias, self.scale, self.base_params.threshold, self.quant)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.graded_input and self.fake_quant:
            x = quantize_graded(x, self.quant, self.scale)  # on the 1/S grid: round(S x) / S
        x2, t = nchwt_to_steps(x), x.shape[-1]
        quantized = self.quant is not None and self.fake_quant and self.synapse.fake_quant
        current, bias, g = self.synapse(x2, self.gain_of if quantized else None)
        if self.scale != 1:  # conv(round(S x), w) = S conv(x_q, w): exact, S is a power of two
            current = current * self.scale
            bias = None if bias is None else bias * self.scale
        return self.neuron(steps_to_nchwt(current, t), bias=bias, gain=g)

    @torch.no_grad()
    def chip_layer(self) -> ChipLayer:
        """The layer as the chip runs it (eval folding), in integers. Raises :class:`DeployError`
        unless quantization is on, so that what is deployed is what the model computes."""
        if self.quant is None or not self.neuron.quantize:
            raise DeployError("the layer is not quantized; build the model with quantization on "
                              "(e.g. load_run(run_dir, quantize=True)) so that what is exported is what runs")
        if not (self.fake_quant and self.synapse.fake_quant):
            raise DeployError("fake quantization is switched off (set_fake_quant(model, True))")
        conv = self.synapse.conv
        weight, bias = (t.detach().cpu() for t in self.synapse.folded())
        g = self.gain_of(weight, bias)
        params = graded_params(self.base_params, self.scale * g, self.quant)
        bias_mant = self.scale * bias_to_int(bias * g, self.quant)
        lo, hi = self.quant.bias_mant_range
        if bias_mant.numel() and (int(bias_mant.min()) < lo or int(bias_mant.max()) > hi):
            raise DeployError(f"bias x input_scale ({self.scale}) reaches a mantissa of "
                             f"{int(bias_mant.abs().max())}, outside [{lo}, {hi}] "
                             f"({self.quant.bias_bits}-bit)")
        return ChipLayer(
            weight=weight_to_int(weight * g, self.quant),
            bias_mant=bias_mant,
            params=params, device=device_params(params, self.quant), input_scale=self.scale,
            weight_gain=g, stride=tuple(conv.stride), padding=tuple(conv.padding),
            folded_weight=weight, folded_bias=bias, spec=self.quant, graded_input=self.graded_input,
            backend=self.backend)


class SNNBranch(nn.Module):
    """What an SNN architecture declares about itself, as backbones declare ``feature_info``.

    - ``emits``: what every stage hands on: ``"spikes"`` (binary: 1 bit per value off a chip; the
      fusion normalises it with BatchNorm) or ``"currents"`` (real-valued, graded messages;
      GroupNorm, as published);
    - ``stem``, ``stages`` (four, an ``nn.ModuleList``) and ``feature_info`` (their channels and
      strides), which the hybrid fuses with the ANN's;
    - :meth:`stage_layers`: each stage's layers as a chip would get them, named in the branch;
    - :meth:`run_stem`: the stem on ``[N, C, H, W, T]``.

    Quantization reaches its modules through their ``fake_quant`` / ``freeze_bn`` attributes
    (:func:`set_fake_quant`), and deployment reads only the layers' own records, so a new
    architecture is this class's subclass and an entry in :data:`SNN_ARCHS`.
    """

    emits: ClassVar[str] = "spikes"
    stem: nn.Module
    stages: nn.ModuleList
    feature_info: FeatureInfo

    def stage_layers(self, i: int) -> list[tuple[str, nn.Module]]:
        """Stage ``i`` (0-based): its deployable layers with their names in the branch. By default
        the stage is one block (an architecture that cannot deploy refuses it at export)."""
        return [(f"stages.{i}", self.stages[i])]

    def run_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


EMITS = ("spikes", "currents")


class PlainSNN(SNNBranch):
    """Stem (conv/2) and four stages of [conv/2, conv/1], every conv -> BN -> CUBA-LIF.

    The stem takes the residual frames as graded input (``input_scale``); the first layer of each
    stage in ``spec.graded_stages`` takes the fused features of a fusion point as graded input
    (``fused_input_scale``); every other layer takes binary spikes."""

    def __init__(self, spec: SNNSpec):
        super().__init__()
        c = spec.channels
        stem = c[0] // 2 if c[0] >= 16 else c[0]
        self.stem = SpikingConv(spec.in_channels, stem, 2, spec, graded_input=True)
        cin = self.stem.synapse.conv.out_channels
        fused = spec.quant.fused_input_scale if spec.quant is not None else None
        self.stages = nn.ModuleList()
        for i, cout in enumerate(c, start=1):
            self.stages.append(nn.Sequential(
                SpikingConv(cin, cout, 2, spec, graded_input=i in spec.graded_stages, input_scale=fused),
                SpikingConv(cout, cout, 1, spec),
            ))
            cin = cout
        self.feature_info = FeatureInfo(c, (4, 8, 16, 32))

    def stage_layers(self, i: int) -> list[tuple[str, nn.Module]]:
        """Every layer of the stage on its own: each is one netx layer."""
        return [(f"stages.{i}.{j}", m) for j, m in enumerate(self.stages[i])]


def conv_per_step(conv: ConvBN, x: torch.Tensor) -> torch.Tensor:
    """A :class:`ConvBN` (bias included) on every time step of ``[N, C, H, W, T]``."""
    x2, t = nchwt_to_steps(x), x.shape[-1]
    y, bias, _ = conv(x2)
    if bias is not None:
        y = y + bias.view(1, -1, 1, 1)
    return steps_to_nchwt(y, t)


class PreActBlock(nn.Module):
    """LIF -> conv3x3 -> BN -> LIF -> conv3x3 -> BN, plus shortcut (1x1 conv + BN when reshaped)."""

    undeployable = ("residual add", "netx 0.6.0 loads input, dense, dense_rec, conv, flatten only, and "
                                    "norse 1.1.0's NIR import maps no pass-through node for the identity "
                                    "shortcut: no residual adds; export the 'plain' SNN architecture")

    def __init__(self, cin: int, cout: int, stride: int, spec: SNNSpec):
        super().__init__()
        q, fp = spec.quant is not None, spec.quant or DEFAULT_SPEC
        self.lif1 = CubaLIF(spec.neuron, backend=spec.backend, quantize=q, spec=fp)
        self.conv1 = ConvBN(cin, cout, stride, spec)
        self.lif2 = CubaLIF(spec.neuron, backend=spec.backend, quantize=q, spec=fp)
        self.conv2 = ConvBN(cout, cout, 1, spec)
        self.shortcut = None if stride == 1 and cin == cout else ConvBN(cin, cout, stride, spec, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = conv_per_step(self.conv1, self.lif1(x))
        out = conv_per_step(self.conv2, self.lif2(out))
        return out + (x if self.shortcut is None else conv_per_step(self.shortcut, x))


class ResNetSNN(SNNBranch):
    """Spiking pre-activation ResNet-18 layout [2, 2, 2, 2] (paper-faithful, not deployable). Its
    stages end in ``BN(conv(...)) + shortcut``: real-valued currents."""

    emits: ClassVar[str] = "currents"

    def __init__(self, spec: SNNSpec):
        super().__init__()
        c = spec.channels
        self.stem = ConvBN(spec.in_channels, c[0], 2, spec)
        self.stages = nn.ModuleList()
        cin = c[0]
        for cout in c:
            self.stages.append(nn.Sequential(PreActBlock(cin, cout, 2, spec),
                                             PreActBlock(cout, cout, 1, spec)))
            cin = cout
        self.feature_info = FeatureInfo(c, (4, 8, 16, 32))
        self.quant = spec.quant
        self.fake_quant = True

    def run_stem(self, x: torch.Tensor) -> torch.Tensor:
        """The graded residual frames on the ``1 / S`` grid (quantization on), then conv + BN."""
        if self.quant is not None and self.fake_quant:
            x = quantize_graded(x, self.quant)
        return conv_per_step(self.stem, x)


def set_fake_quant(model: nn.Module, on: bool, freeze_bn: bool = False) -> None:
    """Switch weight, bias and graded-input quantization of every SNN module that has it (a
    ``fake_quant`` attribute) on or off, for a float warm-up before quantization-aware training, and
    optionally freeze the BN statistics (``freeze_bn``) so that training folds exactly as evaluation
    and export do. Neurons keep their own arithmetic."""
    for module in model.modules():
        if hasattr(module, "fake_quant"):
            module.fake_quant = on
        if hasattr(module, "freeze_bn"):
            module.freeze_bn = freeze_bn


SNN_ARCHS: dict[str, type[SNNBranch]] = {"plain": PlainSNN, "resnet": ResNetSNN}


def snn_class(arch: str) -> type[SNNBranch]:
    """The architecture registered as ``arch`` (:data:`SNN_ARCHS`)."""
    if arch not in SNN_ARCHS:
        raise UsageError(f"unknown SNN architecture {arch!r}; valid: {', '.join(SNN_ARCHS)}")
    return SNN_ARCHS[arch]


def create_snn(spec: SNNSpec) -> SNNBranch:
    """The SNN branch of architecture ``spec.arch``."""
    return snn_class(spec.arch)(spec)
