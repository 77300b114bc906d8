"""Loihi fixed-point arithmetic, as lava-dl SLAYER 0.6.0 and Lava 0.10 compute it.

The one place for this maths: quantization-aware training and (later) export both call these functions,
so the two cannot drift apart. Pure torch: importing it needs neither lava-nc nor lava-dl.

Units. The PyTorch model works in *input units*: a CUBA threshold of 1.0 is 1.0. Loihi works in
integers; SLAYER's CUBA neuron (``slayer.neuron.cuba.Neuron``, default ``scale = 1 << 6``) converts:

- **weights** -- Lava units ``W = 64 w`` (:data:`WEIGHT_SCALE`). SLAYER's default synapse ``pre_hook_fx``
  (``Neuron.quantize_8bit``) is ``round(w / step) * step`` with ``step = 2 / 64`` (``torch.round``, half to
  even), then ``clamp(-256 / 64, 254 / 64)``: ``W`` is even in ``[-256, 254]``, ``W = 2 m`` with ``m`` a
  signed 8-bit mantissa, so ``w`` lies in ``[-4, 3.96875]`` in steps of ``1/32``. The rounding passes the
  gradient straight through; the clamp's backward zeroes it outside the range. Weight exponent:
  ``Neuron.weight_exponent = log2(s_scale // w_scale) - 6``, which is 0 for every CUBA neuron
  (``s_scale = w_scale << 6``); Lava adds ``a_in << 6`` to the current, so ``W << 6 = 4096 w`` is the
  weight in state units. netx re-derives its own (weight_exp, num_weight_bits) from ``W`` without
  changing the product, and refuses ``|W| > 256``: a larger weight must be rescaled into the threshold.
- **state** (current ``u``, voltage ``v``) -- integers at :data:`STATE_SCALE` = 4096 per input unit
  (SLAYER's ``s_scale = 64 << 6``). Each step the input becomes ``trunc(4096 x)`` (SLAYER's float-to-int64
  cast: toward zero), and ``leaky_integrator._li_dynamics_fwd`` computes, in int64,
  ``u = rstz(u * (4096 - du), 12) + x_int``, ``v = rstz(v * (4096 - dv), 12) + u`` where ``rstz`` is
  ``right_shift_to_zero`` (``sign * (|.| >> 12)``, exactly Lava's ``np.sign * np.right_shift(abs)``).
  SLAYER neither wraps ``u`` nor saturates ``v``; Lava does both at 24 bits (keep ``|u|, |v| < 2**23``).
- **decays** -- integers ``d = round(4096 * decay)`` in ``[0, 4096]`` (``iDecay``/``vDecay``), computed
  by SLAYER as ``torch.round`` of the float32 ``4096 * decay``; the state keeps ``(4096 - d) / 4096``.
- **threshold** -- ``vThMant = int(64 * threshold)`` (Python ``int``: truncation, as SLAYER's Neuron does),
  unsigned 17-bit in Lava; in state units ``vThMant << 6``. Lava spikes when ``v > vThMant << 6``.
  SLAYER spikes when ``v >= (threshold + 0.01 / 4096) * 4096`` compared in float32: the same strict rule
  while ``vThMant < 4096`` (threshold < 64); above that the 0.01 is lost to float32 rounding and SLAYER
  spikes at equality, unlike Lava (:func:`slayer_fires_at_equality`).
- **bias** -- ``bias_mant = round(64 b)``, signed 13-bit ``[-4096, 4095]`` in Lava, added to the voltage
  as ``bias_mant << 6`` (``bias_exp = 6``): steps of ``1/64``, ``|b| <= 64``.
- **graded input** (real values entering a stage: residual frames, fused features) -- steps of
  ``1 / S`` (``round``, half to even); the chip receives the integers ``round(S x)`` and that layer's
  threshold and bias are ``S`` times larger (docs/fixed-point.md, (A)). ``S = input_scale`` (16) for the
  residual frames, ``fused_input_scale`` (4) for fused features entering a stage after a fusion point.
- **weight gain** -- per layer, a power of two ``G`` (:func:`weight_gain`): the chip holds the weights
  ``quantize_weight(G w)``, the bias ``G b`` and a threshold ``G`` times larger, so the weight grid is
  ``1 / (32 G)`` of an input unit instead of ``1 / 32`` (deep, BN-folded weights are often below
  ``1/64`` and would round to 0). Loihi scales weights by a per-layer exponent for the same reason;
  netx re-derives its own exponent from the integers, so the factor travels in the threshold. The
  layer's state is then ``S G`` times finer than an input unit, and ``S G`` is bounded by
  ``vThMant(threshold) * S * G < 4096`` (SLAYER fires at equality from 4096 on, Lava never does).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from respike_nm.errors import UsageError
from respike_nm.hardware import HwProfile, load_profile

ACTIVATION_SHIFT = 6  # Lava left-shifts synaptic input and threshold by 6 bits (act_shift, vth_shift)
WEIGHT_SCALE = 1 << 6  # SLAYER CUBA ``scale`` (w_scale): Lava weight units per input unit
STATE_SCALE = WEIGHT_SCALE << ACTIVATION_SHIFT  # SLAYER ``s_scale``: state units per input unit (4096)
SLAYER_THRESHOLD_EPS = 0.01  # SLAYER adds 0.01 state units to the threshold (``threshold_eps * s_scale``)


HARDWARE_BITS = ("weight_bits", "decay_bits", "threshold_bits", "bias_bits", "state_bits")
"""The bit-widths a hardware profile declares (its ``limits``); they reach code only through
:meth:`FixedPointSpec.from_profile`."""
REFERENCE_PROFILE = "loihi2"
"""The target SLAYER's and Lava's fixed point is Loihi's; its profile gives :data:`DEFAULT_SPEC`."""


@dataclass(frozen=True)
class FixedPointSpec:
    """Bit-widths of a fixed-point target, from its hardware profile (:meth:`from_profile`).

    Hardware: ``weight_bits``: signed weight mantissa ``m``, ``w = 2 m / 64`` (SLAYER semantics; 8 is
    ``Neuron.quantize_8bit``). ``decay_bits``: decays are integers in ``[0, 2**decay_bits]``.
    ``threshold_bits``: unsigned ``vThMant``. ``bias_bits``: signed ``bias_mant``, step ``1/64``.
    ``state_bits``: Lava's width of ``u`` and ``v`` (wraps / saturates there; SLAYER does not).
    Choices of this toolkit: graded stage inputs are integers ``round(S x)`` with ``S =
    input_scale`` for residual frames and ``fused_input_scale`` for fused features (powers of two),
    sent in messages of ``input_message_bits`` (signed).
    """

    weight_bits: int
    decay_bits: int
    threshold_bits: int
    bias_bits: int
    state_bits: int
    input_scale: int = 16
    fused_input_scale: int = 4
    input_message_bits: int = 16

    def __post_init__(self) -> None:
        for name in (*HARDWARE_BITS, "input_message_bits"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 2:
                raise UsageError(f"FixedPointSpec.{name} must be an integer >= 2, got {value!r}")
        for name in ("input_scale", "fused_input_scale"):
            s = getattr(self, name)
            if not isinstance(s, int) or s < 1 or s & (s - 1):
                raise UsageError(f"FixedPointSpec.{name} must be a power of two, got {s!r}")

    @classmethod
    def from_profile(cls, profile: HwProfile, fallback: FixedPointSpec | None = None) -> FixedPointSpec:
        """The bit-widths ``profile`` declares. One it lacks comes from ``fallback`` (None: an
        error naming the profile and the limit)."""
        values = {}
        for name in HARDWARE_BITS:
            value = profile.limit(name)
            if value is None:
                if fallback is None:
                    raise UsageError(f"profile {profile.name!r} declares no limits.{name}")
                value = getattr(fallback, name)
            values[name] = value
        return cls(**values)

    @property
    def weight_int_range(self) -> tuple[int, int]:
        """Lava's integer weights ``W = 2 m``: ``[-256, 254]`` for 8 bits."""
        half = 1 << (self.weight_bits - 1)
        return -2 * half, 2 * (half - 1)

    @property
    def weight_step(self) -> float:
        """Weight grid in input units (SLAYER's ``2 / w_scale``)."""
        return 2 / WEIGHT_SCALE

    @property
    def weight_range(self) -> tuple[float, float]:
        """Smallest and largest weight in input units (``[-4, 3.96875]`` for 8 bits)."""
        half = 1 << (self.weight_bits - 1)
        return -half * self.weight_step, (half - 1) * self.weight_step

    @property
    def decay_scale(self) -> int:
        """Integer that stands for a decay of 1.0 (4096 for 12 bits)."""
        return 1 << self.decay_bits

    @property
    def threshold_mant_max(self) -> int:
        """Largest ``vThMant`` (131071 for 17 bits)."""
        return (1 << self.threshold_bits) - 1

    @property
    def bias_mant_range(self) -> tuple[int, int]:
        """Smallest and largest ``bias_mant`` (``[-4096, 4095]`` for 13 bits)."""
        half = 1 << (self.bias_bits - 1)
        return -half, half - 1

    @property
    def state_limit(self) -> int:
        """``|u|, |v|`` must stay below this (state units) for Lava to agree with SLAYER."""
        return 1 << (self.state_bits - 1)


DEFAULT_SPEC = FixedPointSpec.from_profile(load_profile(REFERENCE_PROFILE))


def spec_for(target: str) -> FixedPointSpec:
    """The fixed point of the hardware profile ``target`` (a shipped name or a YAML path); bit-widths
    it does not declare are the reference Loihi 2's."""
    return FixedPointSpec.from_profile(load_profile(target), fallback=DEFAULT_SPEC)


class _RoundSTE(torch.autograd.Function):
    """``round(x / step) * step`` forward (half to even, as SLAYER's ``quantize``), identity backward."""

    @staticmethod
    def forward(ctx, x: Tensor, step: float) -> Tensor:
        return torch.round(x / step) * step

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


class _TruncSTE(torch.autograd.Function):
    """``trunc(x * scale) / scale`` forward (toward zero), identity backward."""

    @staticmethod
    def forward(ctx, x: Tensor, scale: int) -> Tensor:
        return torch.trunc(x * scale) / scale

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
        return grad, None


def quantize_weight(w: Tensor, spec: FixedPointSpec = DEFAULT_SPEC) -> Tensor:
    """Weights on SLAYER's grid, input units, same shape; straight-through gradient inside the range.

    Bit-identical to ``Neuron.quantize_8bit(w)`` for 8 bits and to
    ``slayer.utils.quantize_hook_fx(w, scale=64, num_bits=weight_bits - 1)`` in general.
    """
    lo, hi = spec.weight_range
    return _RoundSTE.apply(w, spec.weight_step).clamp(lo, hi)


def weight_to_int(w: Tensor, spec: FixedPointSpec = DEFAULT_SPEC) -> Tensor:
    """Lava integer weights ``W = 64 * quantize_weight(w)`` (int64; even, in ``[-256, 254]`` for 8 bits).

    What SLAYER exports (``pre_hook_fx(w, descale=True)``); Lava's current receives ``W << 6``.
    """
    return torch.round(quantize_weight(w.detach(), spec) * WEIGHT_SCALE).to(torch.int64)


def quantize_decay(d: float | Tensor, spec: FixedPointSpec = DEFAULT_SPEC) -> int | Tensor:
    """Decay fraction(s) in ``[0, 1]`` -> integer(s) ``round(2**decay_bits * d)`` (``iDecay``, ``vDecay``).

    Rounds like SLAYER: the product in float64, cast to float32, ``torch.round`` (half to even).
    A float gives an ``int``, a tensor an int64 tensor. Raises ``ValueError`` outside ``[0, 1]``.
    """
    values = torch.as_tensor(d, dtype=torch.float64)
    if bool(((values < 0) | (values > 1) | values.isnan()).any()):
        raise UsageError(f"decays are fractions in [0, 1]; got {d!r}")
    ints = torch.round((values * spec.decay_scale).to(torch.float32)).to(torch.int64)
    return int(ints) if not isinstance(d, Tensor) else ints


def quantize_threshold(th: float, spec: FixedPointSpec = DEFAULT_SPEC) -> int:
    """Threshold (input units) -> ``vThMant = int(64 * th)``, truncated as SLAYER's Neuron does.

    The threshold SLAYER then uses is ``vThMant / 64``. Raises ``ValueError`` unless
    ``1 <= vThMant <= 2**threshold_bits - 1`` (131071: thresholds in ``[1/64, 2048)``).
    """
    mant = int(th * WEIGHT_SCALE)
    if not 1 <= mant <= spec.threshold_mant_max:
        raise UsageError(
            f"threshold {th!r} gives vThMant = int(64 * threshold) = {mant}, outside "
            f"[1, {spec.threshold_mant_max}] ({spec.threshold_bits}-bit unsigned)"
        )
    return mant


def quantize_bias(b: Tensor, spec: FixedPointSpec = DEFAULT_SPEC) -> Tensor:
    """Bias (input units) on the ``1/64`` grid of Lava's ``bias_mant``, same shape; straight-through.

    Raises ``ValueError`` when a mantissa ``round(64 b)`` leaves the signed ``bias_bits`` range.
    """
    q = _RoundSTE.apply(b, 1 / WEIGHT_SCALE)
    lo, hi = spec.bias_mant_range
    mant = q.detach() * WEIGHT_SCALE
    if q.numel() and bool(((mant < lo) | (mant > hi)).any()):
        worst = float(mant.abs().max())
        raise UsageError(
            f"bias mantissa round(64 * b) reaches |{worst:.0f}|, outside [{lo}, {hi}] "
            f"({spec.bias_bits}-bit signed; |b| <= {-lo / WEIGHT_SCALE:g} in input units)"
        )
    return q


def bias_to_int(b: Tensor, spec: FixedPointSpec = DEFAULT_SPEC) -> Tensor:
    """Lava ``bias_mant = round(64 b)`` (int64), range-checked as :func:`quantize_bias`."""
    return torch.round(quantize_bias(b.detach(), spec) * WEIGHT_SCALE).to(torch.int64)


def quantize_graded(x: Tensor, spec: FixedPointSpec = DEFAULT_SPEC, scale: int | None = None) -> Tensor:
    """Graded (real-valued) stage input on steps of ``1 / scale`` (default ``spec.input_scale``), input
    units; straight-through.

    No clamp: Lava's simulator does not clip graded messages to their bit count.
    """
    return _RoundSTE.apply(x, 1 / (scale or spec.input_scale))


def graded_integers(x: Tensor, spec: FixedPointSpec = DEFAULT_SPEC, scale: int | None = None) -> Tensor:
    """The chip's graded input ``round(S x)`` as int64 (``S``: ``scale`` or ``spec.input_scale``), the
    integers :func:`quantize_graded` stands for."""
    scale = scale or spec.input_scale
    return torch.round(quantize_graded(x.detach(), spec, scale) * scale).to(torch.int64)


SLAYER_EXACT_MANT = 4096
"""``vThMant`` from which SLAYER fires at equality (:func:`slayer_fires_at_equality`)."""


def weight_gain(weight: Tensor, bias: Tensor, input_scale: int, threshold: float,
                spec: FixedPointSpec = DEFAULT_SPEC) -> int:
    """The largest power of two ``G >= 1`` that a layer's weights, bias and threshold can be scaled by.

    The chip then holds ``quantize_weight(G w)`` (``W = 64 quantize_weight(G w)``), ``bias_mant =
    input_scale * round(64 G b)`` and ``vThMant = int(64 threshold) * input_scale * G``. ``G`` is the
    largest for which no weight is clamped, the bias mantissa fits ``bias_bits`` and ``vThMant``
    stays below :data:`SLAYER_EXACT_MANT` (and ``threshold_bits``). A pure function of its inputs, so
    training, evaluation and export compute the same ``G`` from the same folded weights.
    """
    w, b = weight.detach(), bias.detach()
    lo, hi = spec.weight_range
    b_lo, b_hi = spec.bias_mant_range
    mant = quantize_threshold(threshold, spec) * input_scale
    limit = min(SLAYER_EXACT_MANT - 1, spec.threshold_mant_max)

    def fits(g: int) -> bool:
        if mant * g > limit:
            return False
        wq = torch.round(w * g / spec.weight_step) * spec.weight_step
        if w.numel() and (float(wq.min()) < lo or float(wq.max()) > hi):
            return False
        bm = input_scale * torch.round(b * g * WEIGHT_SCALE)
        return not b.numel() or (float(bm.min()) >= b_lo and float(bm.max()) <= b_hi)

    g = 1
    while fits(2 * g):
        g *= 2
    return g


def input_to_grid(x: Tensor) -> Tensor:
    """Input current on the state grid, input units: ``trunc(4096 x) / 4096`` (SLAYER's int64 cast).

    Straight-through gradient. Exact in float32 for ``|x| < 4096``.
    """
    return _TruncSTE.apply(x, STATE_SCALE)


def leak(state: Tensor, decay: int, spec: FixedPointSpec = DEFAULT_SPEC) -> Tensor:
    """One fixed-point decay of a state given in *input units* on the ``1/4096`` grid, same units.

    ``rstz(4096 s * (2**bits - decay), bits) / 4096`` (SLAYER's ``right_shift_to_zero``, Lava's
    decay) computed as ``trunc(s * (2**bits - decay) * 4096 / 2**bits) / 4096``: exact in float64 while
    ``|4096 s * (2**bits - decay)| < 2**53``. No gradient (use a straight-through wrapper when training).
    """
    keep = spec.decay_scale - decay
    return torch.trunc(state * (keep * STATE_SCALE) / spec.decay_scale) / STATE_SCALE


def threshold_state(vth_mant: int) -> int:
    """Threshold in state units, ``vThMant << 6`` (what Lava compares ``v`` against)."""
    return vth_mant << ACTIVATION_SHIFT


SLAYER_EQUALITY_FROM = 4096
"""The smallest ``vThMant`` at which SLAYER fires at equality (:func:`slayer_fires_at_equality`)."""


def vth_mant_limit(spec: FixedPointSpec = DEFAULT_SPEC) -> int:
    """``vThMant`` must stay below this for Lava and SLAYER to agree: it must fit its bits, and from
    :data:`SLAYER_EQUALITY_FROM` on SLAYER fires at equality while Lava does not."""
    return min(spec.threshold_mant_max + 1, SLAYER_EQUALITY_FROM)


def slayer_fires_at_equality(vth_mant: int) -> bool:
    """Whether SLAYER spikes at ``v == vThMant << 6`` (state units).

    SLAYER compares ``v >= (vThMant / 64 + 0.01 / 4096) * 4096`` after promoting to float32, where the
    0.01 survives only while the float32 spacing at the threshold is below 0.02, i.e. ``vThMant < 4096``.
    Lava never fires at equality, so thresholds of 64 and above break SLAYER/Lava agreement.
    """
    boundary = (vth_mant / WEIGHT_SCALE + SLAYER_THRESHOLD_EPS / STATE_SCALE) * STATE_SCALE
    return float(torch.tensor(boundary, dtype=torch.float32)) <= threshold_state(vth_mant)
