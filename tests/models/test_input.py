"""The model owns its input: uint8 clips in, normalised at the entrance as the input kind says; a new
kind of frame (here 2-channel polarity frames) is a dataset and one model option."""

from __future__ import annotations

import pytest
import torch

from respike_nm.data.transforms import IMAGENET_MEAN, IMAGENET_STD, INPUTS, InputKind, normalize
from respike_nm.energy.counters import count_clips
from respike_nm.energy.plans import plan_counts
from respike_nm.errors import UsageError
from respike_nm.models.fixed_point import DEFAULT_SPEC
from respike_nm.models.respike import ReSpike, ReSpikeSpec
from respike_nm.models.snn import SNNSpec

POLARITY = InputKind(2, (0.5, 0.5), (0.25, 0.25))  # ON / OFF event counts per pixel, as uint8


def _model(kind: str = "hybrid", **spec) -> ReSpike:
    torch.manual_seed(0)
    snn = SNNSpec(width=0.125, quant=DEFAULT_SPEC)
    return ReSpike(ReSpikeSpec(kind=kind, num_classes=3, ann_width=0.125, snn=snn, **spec)).eval()


def _clip(channels: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (2, 8, channels, 32, 32), generator=g, dtype=torch.uint8)


def test_rgb_normalisation_is_imagenets_closed_form():
    x = _clip()
    mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
    torch.testing.assert_close(normalize(x), (x.double() / 255 - mean) / std, check_dtype=False)


def test_a_uint8_clip_is_normalised_at_the_models_entrance_exactly_as_by_hand():
    model, x = _model(), _clip()
    with torch.no_grad():
        inside, outside = model(x), model(normalize(x))
    assert torch.equal(inside, outside)  # bit-identical: the same step, taken once, in the model
    with pytest.raises(UsageError, match="rgb frames of 3 channel"):
        model(_clip(channels=2))


def test_a_two_channel_input_reaches_both_branches_through_one_option(monkeypatch):
    monkeypatch.setitem(INPUTS, "polarity", POLARITY)
    model = _model(input="polarity")
    assert model.snn.stem.synapse.conv.in_channels == 2 and model.ann.conv1.in_channels == 2
    x = _clip(channels=2)
    logits = model.train()(x)
    logits.sum().backward()  # trains: every branch gets a gradient
    assert model.snn.stem.synapse.conv.weight.grad.abs().sum() > 0
    assert model.ann.conv1.weight.grad.abs().sum() > 0
    with torch.no_grad():
        assert torch.equal(model.eval()(x), model(normalize(x, POLARITY)))
    # energy: the residual frames sent to the chip are 2-channel (closed form of the plan's traffic)
    counts = count_clips(model, [x])
    assert counts.channels == 2
    c = {p.plan: p for p in plan_counts(counts, graded_bits=16)}["c"]
    groups, steps = 8 // 4, 4 - 1
    assert c.bytes_to_chip == groups * 2 * 32 * 32 * steps * 16 / 8


def test_pretrained_trunks_and_unknown_inputs_are_refused_by_name(monkeypatch):
    monkeypatch.setitem(INPUTS, "polarity", POLARITY)
    with pytest.raises(UsageError, match="unknown input 'depth'"):
        ReSpikeSpec(input="depth")
    with pytest.raises(ValueError, match="take 3-channel"):
        _model(input="polarity", ann_arch="efficientnet_lite0")
    with pytest.raises(UsageError, match="2 channel"):
        InputKind(2, (0.5,), (0.25,))
