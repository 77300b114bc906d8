"""A deployable layer as the chip runs it: one typed record, produced by the spiking layer itself.

:meth:`respike_nm.models.snn.SpikingConv.chip_layer` returns a :class:`ChipLayer`; the netx writer,
the NIR writer and the verification reference read these integers instead of the layer's internals,
so the fixed-point maths of a layer lives in one place (:mod:`respike_nm.models.fixed_point`).
Pure torch: no Lava import.
"""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor

from respike_nm.models.neurons import CubaDeviceParams, CubaParams


@dataclass(frozen=True)
class ChipLayer:
    """One conv + CUBA-LIF layer in the chip's integers (SLAYER/Lava units, fixed_point docs).

    ``weight``: int64 ``[Co, Ci, kh, kw]``, ``W = 64 quantize_weight(G w)``; ``bias_mant``: int64 ``[Co]``,
    ``S round(64 G b)``; ``params``: the neuron in units of ``1 / (S G)`` of an input unit (threshold
    ``vThMant / 64``), ``device`` its integers; ``input_scale`` ``S`` (graded input ``round(S x)``;
    1 for spikes); ``weight_gain`` ``G``; ``folded_weight`` / ``folded_bias``: the float BN fold in
    input units, before any quantization.
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

    @property
    def units(self) -> int:
        """``S G``: how many times finer than an input unit the layer's state is."""
        return self.input_scale * self.weight_gain

    def __post_init__(self) -> None:
        co = self.weight.shape[0]
        if self.weight.dim() != 4 or tuple(self.bias_mant.shape) != (co,):
            raise ValueError(f"weight [Co, Ci, kh, kw] and bias [Co] expected, got "
                             f"{tuple(self.weight.shape)} and {tuple(self.bias_mant.shape)}")
