"""CUBA-LIF: hand-computed spikes, SLAYER vs norse bit-exactness, biases, surrogate gradients."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch

from respike_nm.models.fixed_point import DEFAULT_SPEC, quantize_weight
from respike_nm.models.neurons import (
    PAPER_INPUT_GAIN,
    CubaLIF,
    CubaParams,
    Surrogate,
    device_params,
    paper_lif,
)

BACKENDS = ["slayer", "norse"]


def _rstz(p: int) -> int:
    """``p >> 12`` rounded toward zero (Loihi's decay), on Python ints."""
    return p >> 12 if p >= 0 else -((-p) >> 12)


def _loihi_spikes(x_int: list[int], du: int, dv: int, vth_mant: int, bias_int: int = 0) -> list[int]:
    """Independent Loihi CUBA reference in state units (4096 per 1.0): Lava's integer arithmetic."""
    u = v = 0
    out = []
    for xi in x_int:
        u = _rstz(u * (4096 - du)) + xi
        v = _rstz(v * (4096 - dv)) + u + bias_int
        spike = v > vth_mant * 64
        v = 0 if spike else v
        out.append(int(spike))
    return out


def _one_neuron(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).reshape(1, 1, -1)


def test_paper_lif_is_respike_lif():
    p = paper_lif()
    assert (p.threshold, p.current_decay, p.voltage_decay) == (1.0, 1.0, 0.75)
    assert p.input_gain == PAPER_INPUT_GAIN == 0.75
    assert device_params(p) == device_params(CubaParams())
    fixed = device_params(p)
    assert (fixed.current_decay, fixed.voltage_decay, fixed.threshold_mant) == (4096, 3072, 64)


@pytest.mark.parametrize("backend", BACKENDS)
def test_paper_lif_constant_input_by_hand(backend):
    # x = 0.8 -> 3276 state units (trunc of 3276.8); v = rstz(v/4): 3276, 819 + 3276 = 4095,
    # 1023 + 3276 = 4299 > 4096 spike, reset; the cycle repeats.
    spikes = CubaLIF(paper_lif(), backend)(_one_neuron([0.8] * 8))
    assert spikes.flatten().tolist() == [0, 0, 1, 0, 0, 1, 0, 0]


@pytest.mark.parametrize("backend", BACKENDS)
def test_paper_lif_truncation_delays_the_spike(backend):
    # x = 3073/4096: v = 3073, 3841, 4033, 4081, 4093, 4096 (not > 4096), 4097 -> spike at t = 6.
    # The float dynamics v = x (1 - 0.25^t) / 0.75 cross 1.0 one step earlier (t = 5).
    x = _one_neuron([3073 / 4096] * 8)
    fixed = [0, 0, 0, 0, 0, 0, 1, 0]
    assert _loihi_spikes([3073] * 8, 4096, 3072, 64) == fixed
    assert CubaLIF(paper_lif(), backend, quantize=True)(x).flatten().tolist() == fixed
    if backend == "norse":
        assert CubaLIF(paper_lif(), "norse", quantize=False)(x).flatten().tolist() == [0, 0, 0, 0, 0, 1, 0, 0]
    else:  # SLAYER's neuron has no float mode: quantize=False still runs on the 1/4096 grid
        assert CubaLIF(paper_lif(), "slayer", quantize=False)(x).flatten().tolist() == fixed


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("current_decay,voltage_decay,second", [(1.0, 0.75, 4865), (0.5, 1.0, 5633)])
def test_negative_state_leaks_toward_zero(backend, current_decay, voltage_decay, second):
    # Step 1 drives the voltage (or current) to -3073. Decay toward zero keeps -768 of it
    # (-3073 * 1024 / 4096 = -768.25) or -1536 (-3073 * 2048 / 4096 = -1536.5); floor would keep
    # -769 / -1537. Step 2 adds exactly enough to reach 4097 > 4096 only with truncation toward zero.
    params = CubaParams(threshold=1.0, current_decay=current_decay, voltage_decay=voltage_decay)
    x = _one_neuron([-3073 / 4096, second / 4096])
    assert CubaLIF(params, backend)(x).flatten().tolist() == [0, 1]


@pytest.mark.parametrize("backend", BACKENDS)
def test_mixed_sign_currents_match_an_integer_reference(backend):
    params = CubaParams(threshold=1.0, current_decay=0.5, voltage_decay=0.75)
    g = torch.Generator().manual_seed(7)
    x_int = torch.randint(-3500, 5000, (64, 8), generator=g)
    expected = [_loihi_spikes(row, 2048, 3072, 64) for row in x_int.tolist()]
    got = CubaLIF(params, backend)((x_int.float() / 4096).reshape(64, 1, 8))
    assert got.reshape(64, 8).to(torch.int64).tolist() == expected
    assert 0.05 < float(got.mean()) < 0.9


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("threshold,expected", [(1.0, [0, 0, 1, 0]), (100.0, [1, 0, 1, 1])])
def test_spike_at_threshold_equality_follows_slayer(backend, threshold, expected):
    # voltage_decay 1: v = x each step. Input exactly at, just below, just above the threshold, and
    # 0.9 state units above it (truncated to the threshold itself, as SLAYER casts the input).
    # Loihi never spikes at equality; SLAYER does from threshold 64 on (float32 drops its 0.01 margin).
    params = CubaParams(threshold=threshold, current_decay=1.0, voltage_decay=1.0)
    x = _one_neuron([threshold, threshold - 1 / 4096, threshold + 1 / 4096, threshold + 0.9 / 4096])
    assert CubaLIF(params, backend)(x).flatten().tolist() == expected


PARAM_SETS = [
    paper_lif(),
    CubaParams(threshold=1.0, current_decay=0.5, voltage_decay=0.75),
    CubaParams(threshold=0.7, current_decay=0.25, voltage_decay=0.1),
    CubaParams(threshold=2.3, current_decay=0.0, voltage_decay=0.03),
    CubaParams(threshold=1.0, current_decay=1.0, voltage_decay=0.0),
    CubaParams(threshold=1.5, current_decay=0.9, voltage_decay=1.0),
]
SHAPES = [(4, 6), (2, 3, 5, 4)]


def _param_id(p: CubaParams) -> str:
    return f"th{p.threshold}-i{p.current_decay}-v{p.voltage_decay}"


def _currents(kind: str, shape: tuple[int, ...], steps: int, threshold: float, seed: int) -> torch.Tensor:
    """``[*shape, T]`` input currents: raw floats, or 8-bit quantized weights times random spikes."""
    g = torch.Generator().manual_seed(seed)
    if kind == "float":
        return torch.randn(*shape, steps, generator=g) * threshold
    fan_in = 12
    spikes = (torch.rand(shape[0], fan_in, *shape[2:], steps, generator=g) < 0.4).float()
    w = quantize_weight(torch.randn(shape[1], fan_in, generator=g) * 0.6 * threshold)
    return torch.einsum("cj,nj...->nc...", w, spikes)


@pytest.mark.parametrize("kind", ["float", "weighted"])
@pytest.mark.parametrize("params", PARAM_SETS, ids=_param_id)
def test_slayer_and_norse_spike_identically(params, kind):
    total, fired = 0, 0.0
    for i, shape in enumerate(SHAPES):
        for steps in (3, 5, 8):
            x = _currents(kind, shape, steps, params.threshold, seed=100 * i + steps)
            ref = CubaLIF(params, "slayer")(x)
            got = CubaLIF(params, "norse")(x)
            assert got.shape == x.shape and got.dtype == x.dtype
            assert torch.equal(got, ref), (shape, steps, int((got != ref).sum()))
            total, fired = total + ref.numel(), fired + float(ref.sum())
    assert 0.02 < fired / total < 0.9  # the comparison is not vacuous


@pytest.mark.parametrize("backend", BACKENDS)
def test_neuron_of_any_spatial_shape_is_the_flat_per_neuron_result(backend):
    """Each neuron's spikes depend on its own input only: any [N, ..., T] layout gives the spikes of
    the same inputs flattened to [neurons, 1, T] (whose values the hand-computed references of this
    file check), and some but not all neurons fire."""
    lif = CubaLIF(paper_lif(), backend)
    g = torch.Generator().manual_seed(3)
    for shape in [(2, 3, 6), (1, 5, 2, 2, 6), (3, 5, 7, 6)]:
        x = torch.randn(shape, generator=g) * 1.5
        out = lif(x)
        flat = lif(x.reshape(-1, 1, shape[-1])).reshape(shape)
        assert torch.equal(out, flat) and 0 < out.mean() < 1


def test_bias_slayer_equals_norse_for_paper_lif():
    g = torch.Generator().manual_seed(11)
    x = torch.randn(3, 4, 5, 6, 8, generator=g) * 0.7
    bias = torch.rand(4, generator=g) - 0.4
    ref = CubaLIF(paper_lif(), "slayer")(x, bias=bias)
    got = CubaLIF(paper_lif(), "norse")(x, bias=bias)
    assert torch.equal(got, ref)
    assert not torch.equal(ref, CubaLIF(paper_lif(), "slayer")(x))  # the bias mattered


def test_norse_bias_goes_into_the_voltage_when_the_current_decays():
    params = CubaParams(threshold=1.0, current_decay=0.5, voltage_decay=0.75)
    g = torch.Generator().manual_seed(12)
    x_int = torch.randint(-2000, 3000, (2, 3, 8), generator=g)
    bias = torch.tensor([0.25, -0.125, 0.5])  # 16, -8, 32 in 1/64 (Lava bias_mant)
    got = CubaLIF(params, "norse")(x_int.float() / 4096, bias=bias).to(torch.int64)
    for n in range(2):
        for c, b_mant in enumerate([16, -8, 32]):
            assert got[n, c].tolist() == _loihi_spikes(x_int[n, c].tolist(), 2048, 3072, 64, b_mant << 6)


def test_slayer_refuses_bias_when_the_current_decays():
    lif = CubaLIF(CubaParams(current_decay=0.5), "slayer")
    with pytest.raises(ValueError, match="current_decay == 1"):
        lif(torch.zeros(1, 2, 3), bias=torch.zeros(2))


@pytest.mark.parametrize("backend", BACKENDS)
def test_bias_shape_is_checked(backend):
    with pytest.raises(ValueError, match=r"bias must have shape \[C\]"):
        CubaLIF(paper_lif(), backend)(torch.zeros(1, 2, 3), bias=torch.zeros(3))


def test_threshold_outside_17_bits_is_refused():
    with pytest.raises(ValueError, match="vThMant"):
        CubaLIF(CubaParams(threshold=4096.0), "slayer")
    with pytest.raises(ValueError, match="vThMant"):
        CubaLIF(CubaParams(threshold=4096.0), "norse", quantize=True)
    CubaLIF(CubaParams(threshold=4096.0), "norse", quantize=False)  # float dynamics: no limit


def test_params_are_validated():
    with pytest.raises(ValueError, match="voltage_decay"):
        CubaParams(voltage_decay=1.5)
    with pytest.raises(ValueError, match="threshold"):
        CubaParams(threshold=0.0)
    with pytest.raises(ValueError, match="norse_method"):
        Surrogate(norse_method="atan")
    with pytest.raises(ValueError, match="12-bit"):
        CubaLIF(paper_lif(), "slayer", spec=replace(DEFAULT_SPEC, decay_bits=10))


@pytest.mark.parametrize("quantize", [True, False])
@pytest.mark.parametrize("backend", BACKENDS)
def test_backward_gives_finite_nonzero_gradients(backend, quantize):
    g = torch.Generator().manual_seed(13)
    x = (torch.randn(2, 3, 4, 4, 6, generator=g) * 0.8).requires_grad_()
    bias = torch.zeros(3, requires_grad=True)
    spikes = CubaLIF(paper_lif(), backend, quantize=quantize)(x, bias=bias)
    assert 0 < float(spikes.sum()) < spikes.numel()
    (spikes * torch.randn(spikes.shape, generator=g)).sum().backward()
    for grad in (x.grad, bias.grad):
        assert grad is not None and bool(torch.isfinite(grad).all()) and float(grad.abs().sum()) > 0
    assert float((x.grad[..., :-1] != 0).float().mean()) > 0.5  # earlier steps get gradient through time


def _surrogate(backend: str, d: float) -> float:
    """Default surrogates at ``d = v - threshold``: SLAYER's Laplace (width 0.5, area 1), norse's tanh
    (alpha 2). Both backends place the threshold within half a state unit (1/8192) of ``d = 0``."""
    return math.exp(-abs(d) / 0.5) if backend == "slayer" else 1 - math.tanh(2 * d) ** 2


@pytest.mark.parametrize("backend", BACKENDS)
def test_surrogate_shape_at_one_step(backend):
    # T = 1, current_decay 1: v = x, so ds/dx is the surrogate itself at v - threshold = -0.25.
    x = _one_neuron([0.75]).requires_grad_()
    CubaLIF(paper_lif(), backend)(x).sum().backward()
    expected = math.exp(-0.5) if backend == "slayer" else 1 - math.tanh(-0.5) ** 2
    assert x.grad.item() == pytest.approx(expected, rel=1e-3)
    assert x.grad.item() == pytest.approx(_surrogate(backend, 0.75 - 1.0), rel=1e-3)


@pytest.mark.parametrize("backend", BACKENDS)
def test_gradient_through_time_at_two_steps(backend):
    # Paper LIF, x = [0.5, 0.25]: v = 0.5 (no spike), then 0.125 + 0.25 = 0.375. Loss = s[1].
    # ds1/dx1 = f(0.375 - 1); ds1/dx0 = f(0.375 - 1) * 0.25 * r, where the reset factor r is 1 for
    # SLAYER (its backward ignores resets) and 1 - v0 f(v0 - 1) for norse (reset_value passes the
    # gradient of the spike, v_out = (1 - s) v).
    x = _one_neuron([0.5, 0.25]).requires_grad_()
    spikes = CubaLIF(paper_lif(), backend)(x)
    assert spikes.flatten().tolist() == [0, 0]
    spikes[..., 1].sum().backward()
    f1 = _surrogate(backend, 0.375 - 1.0)
    reset = 1.0 if backend == "slayer" else 1 - 0.5 * _surrogate(backend, 0.5 - 1.0)
    grad = x.grad.flatten().tolist()
    assert grad[1] == pytest.approx(f1, rel=1e-3)
    assert grad[0] == pytest.approx(f1 * 0.25 * reset, rel=1e-3)
