"""Fixed-point helpers against lava-dl SLAYER's own quantizers and integer arithmetic."""

from __future__ import annotations

from dataclasses import replace

import lava.lib.dl.slayer.utils as slayer_utils
import pytest
import torch
from lava.lib.dl.slayer.neuron import cuba

from respike_nm.models.fixed_point import (
    DEFAULT_SPEC,
    SLAYER_EQUALITY_FROM,
    bias_to_int,
    input_to_grid,
    leak,
    quantize_bias,
    quantize_decay,
    quantize_graded,
    quantize_threshold,
    quantize_weight,
    slayer_fires_at_equality,
    vth_mant_limit,
    weight_gain,
    weight_to_int,
)


def _weights(seed: int = 0) -> torch.Tensor:
    """Random weights well past the 8-bit range, plus exact half steps (ties of the rounding)."""
    g = torch.Generator().manual_seed(seed)
    ties = (torch.arange(-301, 301, 2) / 64).float()  # odd multiples of 1/64: halfway between steps
    return torch.cat([torch.randn(4000, generator=g) * 3, ties])


def test_quantize_weight_is_slayers_8bit_hook_values_and_gradients():
    neuron = cuba.Neuron(threshold=1.0, current_decay=1.0, voltage_decay=0.75)
    w = _weights()
    ours_in, ref_in = w.clone().requires_grad_(), w.clone().requires_grad_()
    ours, ref = quantize_weight(ours_in), neuron.quantize_8bit(ref_in)
    assert torch.equal(ours, ref)
    upstream = torch.randn_like(w)
    (ours * upstream).sum().backward()
    (ref * upstream).sum().backward()
    assert torch.equal(ours_in.grad, ref_in.grad)
    assert ours.min() == -4.0 and ours.max() == 3.96875
    assert torch.equal(torch.round(ours * 32), ours * 32)  # steps of 1/32


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_quantize_weight_bits_follow_slayers_hook_family(bits):
    w = _weights(bits)
    ref = slayer_utils.quantize_hook_fx(w, scale=64, num_bits=bits - 1)
    assert torch.equal(quantize_weight(w, replace(DEFAULT_SPEC, weight_bits=bits)), ref)


def test_weight_to_int_is_slayers_export():
    neuron = cuba.Neuron(threshold=1.0, current_decay=1.0, voltage_decay=0.75)
    w = _weights(1)
    ints = weight_to_int(w)
    assert ints.dtype == torch.int64
    assert torch.equal(ints, neuron.quantize_8bit(w, descale=True).to(torch.int64))
    assert int(ints.min()) == -256 and int(ints.max()) == 254 and bool((ints % 2 == 0).all())


def test_quantize_decay_matches_slayer_and_stays_in_range():
    g = torch.Generator().manual_seed(2)
    decays = [0.0, 1.0, 0.75, 0.3, 0.5 / 4096, 1.5 / 4096] + torch.rand(40, generator=g).tolist()
    for d in decays:
        neuron = cuba.Neuron(threshold=1.0, current_decay=d, voltage_decay=d)
        q = quantize_decay(d)
        assert isinstance(q, int) and 0 <= q <= 4096
        assert q == neuron.cx_current_decay == neuron.cx_voltage_decay
    as_tensor = quantize_decay(torch.tensor(decays))
    assert as_tensor.dtype == torch.int64 and as_tensor.tolist() == [quantize_decay(d) for d in decays]
    assert quantize_decay(0.75) == 3072 and quantize_decay(1.0) == 4096
    assert quantize_decay(0.5, replace(DEFAULT_SPEC, decay_bits=8)) == 128


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan")])
def test_quantize_decay_rejects_fractions_outside_unit_interval(bad):
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        quantize_decay(bad)


def test_quantize_threshold_matches_slayer_mantissa():
    g = torch.Generator().manual_seed(3)
    for th in [1.0, 0.7, 2.3, 1 / 64, 63.99] + (torch.rand(30, generator=g) * 50 + 0.05).tolist():
        assert quantize_threshold(th) == cuba.Neuron(th, 1.0, 0.75).v_th_mant


def test_quantize_threshold_limits_raise_clear_errors():
    assert quantize_threshold(131071 / 64) == 131071
    with pytest.raises(ValueError, match="vThMant.*131072.*17-bit"):
        quantize_threshold(2048.0)
    with pytest.raises(ValueError, match="vThMant"):
        quantize_threshold(0.01)  # int(0.64) = 0
    with pytest.raises(ValueError, match="1023"):
        quantize_threshold(16.0, replace(DEFAULT_SPEC, threshold_bits=10))


def test_quantize_bias_grid_gradient_and_limits():
    b = torch.tensor([0.0, 0.01, -0.3, 1 / 128, 3 / 128, 63.98, -64.0], requires_grad=True)
    q = quantize_bias(b)
    assert q.tolist() == [0.0, 1 / 64, -19 / 64, 0.0, 2 / 64, 63.984375, -64.0]  # half to even at 1/128
    q.sum().backward()
    assert b.grad.tolist() == [1.0] * 7
    assert bias_to_int(b).tolist() == [0, 1, -19, 0, 2, 4095, -4096]
    with pytest.raises(ValueError, match=r"13-bit signed"):
        quantize_bias(torch.tensor([0.5, 64.0]))
    with pytest.raises(ValueError, match=r"\[-512, 511\]"):
        quantize_bias(torch.tensor([-8.01]), replace(DEFAULT_SPEC, bias_bits=10))


def test_leak_is_slayers_right_shift_to_zero():
    from lava.lib.dl.slayer.utils import int_utils
    g = torch.Generator().manual_seed(4)
    state = torch.randint(-(1 << 23), 1 << 23, (5000,), generator=g, dtype=torch.int64)
    state[:4] = torch.tensor([-4097, -1, 1, 4097])
    for decay in [0, 1, 1229, 2048, 3072, 4095, 4096]:
        ref = int_utils.right_shift_to_zero(state * (4096 - decay), 12)
        ours = leak(state.double() / 4096, decay) * 4096
        assert torch.equal(ours, ref.double()), decay
    # toward zero, not floor: -3073 * 1024 / 4096 = -768.25 -> -768
    assert leak(torch.tensor([-3073 / 4096], dtype=torch.float64), 3072).item() * 4096 == -768


def test_input_to_grid_is_slayers_int64_cast():
    g = torch.Generator().manual_seed(5)
    x = torch.cat([torch.randn(5000, generator=g) * 4, torch.tensor([-0.5 / 4096, 0.5 / 4096, -1.0])])
    x.requires_grad_()
    ours = input_to_grid(x)
    assert torch.equal(ours * 4096, (4096 * x.detach()).to(torch.int64).float())
    ours.sum().backward()
    assert bool((x.grad == 1).all())


def test_quantize_graded_steps_of_input_scale():
    x = torch.tensor([0.03, -0.03, 1 / 32, 3 / 32, 0.5], requires_grad=True)
    q = quantize_graded(x)
    assert q.tolist() == [0.0, 0.0, 0.0, 2 / 16, 0.5]  # ties (1/32, 3/32) round half to even
    assert quantize_graded(x, replace(DEFAULT_SPEC, input_scale=64)).tolist()[0] == 2 / 64
    q.sum().backward()
    assert x.grad.tolist() == [1.0] * 5


def test_slayer_fires_at_equality_only_from_threshold_64():
    assert not slayer_fires_at_equality(64)
    assert not slayer_fires_at_equality(4095)
    assert slayer_fires_at_equality(4096)
    assert slayer_fires_at_equality(131071)
    # the one limit the code uses: the first vThMant SLAYER fires at equality, or the bits if fewer
    assert SLAYER_EQUALITY_FROM == min(m for m in range(64, 8192) if slayer_fires_at_equality(m))
    assert vth_mant_limit(DEFAULT_SPEC) == 4096
    assert vth_mant_limit(replace(DEFAULT_SPEC, threshold_bits=10)) == 1024


@pytest.mark.parametrize("field", ["weight_bits", "decay_bits", "state_bits"])
def test_spec_rejects_bad_bit_widths(field):
    with pytest.raises(ValueError, match=field):
        replace(DEFAULT_SPEC, **{field: 1})


def test_spec_rejects_non_power_of_two_input_scale():
    with pytest.raises(ValueError, match="power of two"):
        replace(DEFAULT_SPEC, input_scale=12)


def test_weight_gain_is_the_largest_power_of_two_that_fits_weights_bias_and_threshold():
    """Hand-derived: G is capped by the weight range (|G w| <= 3.96875), the 13-bit bias mantissa
    (|S round(64 G b)| <= 4095) and vThMant = 64 S G below 4096 (SLAYER fires at equality there)."""
    w, no_bias = torch.tensor([0.1, -0.05]), torch.zeros(1)
    assert weight_gain(w, no_bias, 1, 1.0) == 32  # 3.2 fits, 6.4 does not; 64 * 32 = 2048 < 4096
    assert weight_gain(w, no_bias, 16, 1.0) == 2  # 64 * 16 * 4 = 4096: SLAYER would fire at equality
    assert weight_gain(torch.tensor([0.01]), no_bias, 1, 1.0) == 32  # 64 * 64 = 4096: the threshold caps it
    assert weight_gain(w, torch.tensor([0.5]), 4, 1.0) == 8  # 64 * 4 * 16 = 4096 again
    assert weight_gain(w, torch.tensor([3.0]), 4, 1.0) == 4  # 4 * round(64 * 8 * 3) = 6144 > 4095
    assert weight_gain(torch.tensor([2.5]), no_bias, 1, 1.0) == 1  # 5.0 would clamp
    assert weight_gain(torch.tensor([-3.5]), no_bias, 1, 1.0) == 1  # -7: clamped too
    assert weight_gain(torch.tensor([-1.99]), no_bias, 1, 1.0) == 2  # -3.98 rounds to -4.0: in range
    assert weight_gain(torch.tensor([9.0]), no_bias, 1, 1.0) == 1  # never below 1
    assert weight_gain(w, no_bias, 1, 4.0) == 8  # vThMant 256: 256 * 16 = 4096


def test_weight_gain_makes_small_weights_visible():
    """Weights below 1/64 round to 0 on the 1/32 grid; with the gain the layer keeps them to 1/(32 G)."""
    w = torch.tensor([0.004, -0.009, 0.012, 0.0151])
    g = weight_gain(w, torch.zeros(1), 1, 1.0)
    assert torch.equal(weight_to_int(w), torch.zeros(4, dtype=torch.int64))
    chip = weight_to_int(g * w)
    assert g == 32 and chip.tolist() == [8, -18, 24, 30]  # 64 * round(32 g w) / 32, even integers
