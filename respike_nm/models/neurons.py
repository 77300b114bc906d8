"""Loihi CUBA-LIF spiking neuron, one interface over two backends (docs/method.md, "Decisions").

Dynamics per time step, state in input units (threshold 1.0 = 1.0)::

    u[t] = (1 - current_decay) u[t-1] + x[t]
    v[t] = (1 - voltage_decay) v[t-1] + u[t] + bias
    s[t] = v[t] > threshold;   v[t] = 0 where s[t]

ReSpike's LIF ``V[t] = 0.25 V[t-1] + 0.75 X[t]`` is :func:`paper_lif` (current_decay 1, voltage_decay
0.75) with its input gain :data:`PAPER_INPUT_GAIN` (0.75) folded into the synaptic weights by the layer.

Backends (``x`` is the weighted input current, SLAYER layout ``[N, C, (H, W,) T]``):

- ``slayer``: ``lava.lib.dl.slayer.neuron.cuba.Neuron`` itself, the reference that exports bit-exactly to
  Lava. SLAYER has no float mode: its neuron is always fixed point (12-bit decays, state on a 1/4096
  grid with truncation toward zero; see :mod:`.fixed_point`). ``quantize=False`` therefore only leaves
  the bias unquantized and the input untruncated; the neuron stays on its grid. SLAYER has no bias
  input either: with ``current_decay == 1`` the current *is* the input (``u = x``), so a bias added to
  the input is exactly Lava's voltage bias; with ``current_decay < 1`` the current would integrate it,
  so the slayer backend refuses a bias there.
- ``norse``: norse's functional integrate-and-fire step (``iaf_feed_forward_step``: ``v + input``,
  ``threshold(v - v_th, method, alpha)``, reset to ``v_reset``) in an explicit loop over T. norse's
  leaky cells (``lif_box``, ``lif``) integrate ``v + dt/tau (i - v)``: their input gain is the decay
  itself and their float leak cannot truncate toward zero, so neither reproduces Loihi. Instead the
  leak is applied to the state before each step, exactly as Loihi does, and norse adds the current,
  thresholds and resets. With ``quantize=True`` this is **exactly** SLAYER's arithmetic: the state is
  kept in float64 on the 1/4096 grid (every value an integer multiple of 2**-12 well inside 2**53),
  the input is ``trunc(4096 x) / 4096`` as SLAYER's int64 cast, the decays are SLAYER's integers and
  the leak is ``rstz`` (:func:`.fixed_point.leak`), so every sum is exact; the threshold is placed half
  a state unit above ``vThMant << 6`` (below it when SLAYER fires at equality,
  :func:`.fixed_point.slayer_fires_at_equality`), so no rounding can flip a spike. ``quantize=False``
  is the plain float dynamics above (unquantized decays, threshold and bias).

Surrogate gradients (see :class:`Surrogate`): ReSpike trains with ATan (alpha 2,
``1 / (1 + (pi x)^2)``: peak 1, area 1), which neither library offers. SLAYER's only shape is a Laplace
kernel; norse offers SuperSpike, tanh, triangle, circ and erfc shapes. The defaults match ATan's peak
and area. Backward also differs in the reset: SLAYER's leaky-integrator backward ignores resets,
norse's ``reset_value`` passes gradient through the spike, ReSpike detaches it. Forward spikes are
identical; gradients are each library's own.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from norse.torch.functional.iaf import IAFFeedForwardState, IAFParameters, iaf_feed_forward_step
from torch import Tensor, nn

from respike_nm.errors import UsageError
from respike_nm.models.fixed_point import (
    DEFAULT_SPEC,
    SLAYER_EQUALITY_FROM,
    STATE_SCALE,
    WEIGHT_SCALE,
    FixedPointSpec,
    input_to_grid,
    leak,
    quantize_bias,
    quantize_decay,
    quantize_threshold,
    slayer_fires_at_equality,
    threshold_state,
    vth_mant_limit,
)

PAPER_INPUT_GAIN = 0.75  # ReSpike's 0.75 X[t]: the layer multiplies its weights by this
NORSE_METHODS = ("super", "tanh", "triangle", "circ", "heavi_erfc", "heaviside")
# SLAYER's cuba.Neuron multiplies tau_grad * threshold by 100 and scale_grad by 0.1 (TAU_RHO_MULT,
# SCALE_RHO_MULT in slayer/neuron/cuba.py); we undo them so that Surrogate is in plain units.
_SLAYER_TAU_RHO_MULT = 100
_SLAYER_SCALE_RHO_MULT = 0.1

Backend = Literal["slayer", "norse"]


@dataclass(frozen=True)
class Surrogate:
    """Surrogate derivative ``ds/dv`` of the spike, ``v`` in input units.

    ``slayer``: Laplace ``scale / (2 width) * exp(-|v - threshold| / width)`` (SLAYER's ``Spike``;
    area ``scale``, peak ``scale / (2 width)``). ``norse``: ``norse_method`` with ``norse_alpha``
    (``norse.torch.functional.threshold``); "tanh" is ``1 - tanh(alpha (v - threshold))**2`` (peak 1,
    area ``2 / alpha``). Defaults: peak 1 and area 1 in both, as ReSpike's ATan with alpha 2.
    """

    width: float = 0.5
    scale: float = 1.0
    norse_method: str = "tanh"
    norse_alpha: float = 2.0

    def __post_init__(self) -> None:
        if self.width <= 0 or self.scale <= 0:
            raise UsageError(f"surrogate width and scale must be positive, got {self}")
        if self.norse_method not in NORSE_METHODS:
            raise UsageError(f"norse_method {self.norse_method!r} is not one of {NORSE_METHODS}")


@dataclass(frozen=True)
class CubaParams:
    """CUBA-LIF parameters in input units; decays are per-step fractions in ``[0, 1]``.

    ``input_gain`` is the factor the *layer* multiplies its weights by (ReSpike's 0.75); the neuron
    never applies it. The defaults are ReSpike's LIF (:func:`paper_lif`).
    """

    threshold: float = 1.0
    current_decay: float = 1.0
    voltage_decay: float = 0.75
    input_gain: float = PAPER_INPUT_GAIN
    surrogate: Surrogate = field(default_factory=Surrogate)

    def __post_init__(self) -> None:
        if not self.threshold > 0:
            raise UsageError(f"threshold must be positive, got {self.threshold!r}")
        for name in ("current_decay", "voltage_decay"):
            if not 0 <= getattr(self, name) <= 1:
                raise UsageError(f"{name} must be in [0, 1], got {getattr(self, name)!r}")


def paper_lif() -> CubaParams:
    """ReSpike's LIF as CUBA: ``V = 0.25 V + 0.75 X`` with the 0.75 in the weights (PAPER_INPUT_GAIN)."""
    return CubaParams(threshold=1.0, current_decay=1.0, voltage_decay=0.75, input_gain=PAPER_INPUT_GAIN)


def graded_params(params: CubaParams, input_scale: int, spec: FixedPointSpec = DEFAULT_SPEC) -> CubaParams:
    """Parameters of a layer whose input arrives as graded integers ``round(input_scale * x)``.

    Its state is ``input_scale`` times finer, as on the chip (docs/fixed-point.md, (A)): the threshold is
    exactly ``input_scale`` times the *quantized* threshold (``vThMant`` times ``input_scale``)
    and the surrogate is widened by the same factor. Raises ``ValueError`` when ``vThMant`` would
    not fit its bits or would reach 4096 (where SLAYER fires at equality and Lava does not).
    """
    mant = quantize_threshold(params.threshold, spec) * input_scale
    if mant >= vth_mant_limit(spec) or slayer_fires_at_equality(mant):
        raise UsageError(f"threshold x input_scale ({input_scale}) gives vThMant = {mant}, which must stay "
                         f"below {vth_mant_limit(spec)} ({spec.threshold_bits}-bit vThMant; from "
                         f"{SLAYER_EQUALITY_FROM} on SLAYER fires at equality, Lava does not)")
    sur = params.surrogate
    wider = replace(sur, width=sur.width * input_scale, norse_alpha=sur.norse_alpha / input_scale)
    return replace(params, threshold=mant / WEIGHT_SCALE, surrogate=wider)


@dataclass(frozen=True)
class CubaDeviceParams:
    """The integers Loihi runs (SLAYER's ``device_params``): decays of 4096, ``vThMant`` of 1/64."""

    current_decay: int
    voltage_decay: int
    threshold_mant: int


def device_params(params: CubaParams, spec: FixedPointSpec = DEFAULT_SPEC) -> CubaDeviceParams:
    """Fixed-point parameters of ``params``; raises ``ValueError`` when the threshold does not fit."""
    return CubaDeviceParams(
        current_decay=quantize_decay(params.current_decay, spec),
        voltage_decay=quantize_decay(params.voltage_decay, spec),
        threshold_mant=quantize_threshold(params.threshold, spec),
    )


class CubaLIF(nn.Module):
    """CUBA-LIF neurons: input current ``[N, C, (H, W,) T]`` -> spikes (0/1, same shape and dtype).

    ``forward(x, bias, gain)`` takes an optional per-channel bias ``[C]`` (input units) added to the
    voltage every step. With ``quantize=True`` the bias is put on Lava's 1/64 grid (13-bit check) and the
    input on the 1/4096 state grid, both with straight-through gradients. ``gain`` (a power of two)
    runs the neuron in units ``gain`` times finer (:func:`graded_params` of its parameters: threshold
    and surrogate scaled), as a layer with a weight gain does; the module and its hooks stay the same.
    """

    def __init__(self, params: CubaParams = CubaParams(), backend: Backend = "slayer", quantize: bool = True,
                 spec: FixedPointSpec = DEFAULT_SPEC):
        super().__init__()
        if backend not in ("slayer", "norse"):
            raise UsageError(f"backend must be 'slayer' or 'norse', got {backend!r}")
        self.params, self.backend, self.quantize, self.spec = params, backend, quantize, spec
        self.fixed = device_params(params, spec) if (quantize or backend == "slayer") else None
        self.slayer = _slayer_neuron(params, spec) if backend == "slayer" else None
        self._scaled: dict[int, CubaLIF] = {}  # by gain; not submodules (their decays are constants)

    def extra_repr(self) -> str:
        return f"backend={self.backend}, quantize={self.quantize}, params={self.params}"

    def scaled(self, gain: int) -> CubaLIF:
        """This neuron in units ``gain`` times finer (cached)."""
        if gain == 1:
            return self
        if gain not in self._scaled:
            self._scaled[gain] = CubaLIF(graded_params(self.params, gain, self.spec), self.backend,
                                         self.quantize, self.spec)
        return self._scaled[gain]

    def forward(self, x: Tensor, bias: Tensor | None = None, gain: int = 1) -> Tensor:
        if gain != 1:
            return self.scaled(gain).to(x.device)._run(x, bias)
        return self._run(x, bias)

    def _run(self, x: Tensor, bias: Tensor | None) -> Tensor:
        if x.dim() < 3:
            raise ValueError(f"expected input [N, C, (H, W,) T], got shape {tuple(x.shape)}")
        if self.quantize:
            x = input_to_grid(x)
            bias = None if bias is None else quantize_bias(bias, self.spec)
        bias_x = None if bias is None else _channel_view(bias, x)
        if self.backend == "slayer":
            return self._forward_slayer(x, bias_x)
        if self.quantize:
            return _norse_fixed(x, bias_x, self.fixed, self.params.surrogate, self.spec).to(x.dtype)
        return _norse_float(x, bias_x, self.params)

    def _forward_slayer(self, x: Tensor, bias: Tensor | None) -> Tensor:
        if bias is not None:
            if self.fixed.current_decay != self.spec.decay_scale:
                raise UsageError(
                    "the slayer backend takes a bias only with current_decay == 1 (then the current equals "
                    "the input and an input bias is Lava's voltage bias); use the norse backend or fold the "
                    f"bias elsewhere (current_decay = {self.params.current_decay})"
                )
            x = x + bias.unsqueeze(-1)
        # One neuron per row: SLAYER locks its neuron to the first input's shape; with shared (scalar)
        # decays the layout does not matter, so any [N, C, H, W] can pass through [N*C*H*W, 1, T].
        flat = x.reshape(-1, 1, x.shape[-1])
        return self.slayer(flat).reshape(x.shape)


def _channel_view(bias: Tensor, x: Tensor) -> Tensor:
    """Per-channel ``[C]`` bias as ``[1, C, 1, ..., 1]`` broadcasting over ``x`` without its time axis."""
    if bias.shape != (x.shape[1],):
        raise ValueError(f"bias must have shape [C] = [{x.shape[1]}], got {tuple(bias.shape)}")
    return bias.reshape(1, -1, *([1] * (x.dim() - 3)))


def _slayer_neuron(params: CubaParams, spec: FixedPointSpec) -> nn.Module:
    """SLAYER's CUBA neuron for ``params`` (imported here: respike_nm must import without Lava)."""
    if spec.decay_bits != 12:
        raise UsageError(f"SLAYER's CUBA neuron hard-codes 12-bit decays; spec has {spec.decay_bits}")
    from respike_nm.lavadl import import_slayer

    cuba = import_slayer().neuron.cuba
    threshold = quantize_threshold(params.threshold, spec) / WEIGHT_SCALE  # the threshold SLAYER keeps
    sur = params.surrogate
    return cuba.Neuron(
        threshold=params.threshold,
        current_decay=params.current_decay,
        voltage_decay=params.voltage_decay,
        tau_grad=sur.width / (_SLAYER_TAU_RHO_MULT * threshold),
        scale_grad=sur.scale / _SLAYER_SCALE_RHO_MULT,
        scale=WEIGHT_SCALE,
        shared_param=True,
        persistent_state=False,
        requires_grad=False,
    )


def _leak_ste(state: Tensor, decay: int, spec: FixedPointSpec) -> Tensor:
    """Fixed-point leak forward, ``(1 - decay / 2**bits)`` backward (as SLAYER's integrator backward)."""
    smooth = state * (1 - decay / spec.decay_scale)
    return smooth + (leak(state.detach(), decay, spec) - smooth.detach())


def _norse_fixed(x: Tensor, bias: Tensor | None, fixed: CubaDeviceParams, sur: Surrogate,
                 spec: FixedPointSpec) -> Tensor:
    """Bit-exact CUBA in float64 on the 1/4096 grid; ``x`` already on the grid. Spikes ``[..., T]``."""
    th = threshold_state(fixed.threshold_mant)
    th += -0.5 if slayer_fires_at_equality(fixed.threshold_mant) else 0.5
    p = IAFParameters(v_th=torch.tensor(th / STATE_SCALE, dtype=torch.float64),
                      v_reset=torch.tensor(0.0, dtype=torch.float64),
                      method=sur.norse_method, alpha=sur.norse_alpha)
    x64 = x.to(torch.float64)
    b64 = None if bias is None else bias.to(torch.float64)
    u = x64.new_zeros(x.shape[:-1])
    v = x64.new_zeros(x.shape[:-1])
    spikes = []
    for t in range(x.shape[-1]):
        u = _leak_ste(u, fixed.current_decay, spec) + x64[..., t]
        drive = u if b64 is None else u + b64
        v_leaked = IAFFeedForwardState(v=_leak_ste(v, fixed.voltage_decay, spec))
        z, state = iaf_feed_forward_step(drive, v_leaked, p)
        v = state.v
        spikes.append(z)
    return torch.stack(spikes, dim=-1)


def _norse_float(x: Tensor, bias: Tensor | None, params: CubaParams) -> Tensor:
    """Float CUBA dynamics (no quantization) in ``x.dtype``. Spikes ``[..., T]``."""
    sur = params.surrogate
    p = IAFParameters(v_th=torch.tensor(params.threshold, dtype=x.dtype),
                      v_reset=torch.tensor(0.0, dtype=x.dtype),
                      method=sur.norse_method, alpha=sur.norse_alpha)
    u = x.new_zeros(x.shape[:-1])
    v = x.new_zeros(x.shape[:-1])
    spikes = []
    for t in range(x.shape[-1]):
        u = (1 - params.current_decay) * u + x[..., t]
        drive = u if bias is None else u + bias
        z, state = iaf_feed_forward_step(drive, IAFFeedForwardState(v=(1 - params.voltage_decay) * v), p)
        v = state.v
        spikes.append(z)
    return torch.stack(spikes, dim=-1)
