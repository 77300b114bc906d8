"""Quantization-aware training follows the target's bit-widths; eval reproduces the summary."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import SMALL_TRAIN

from respike_nm.cli.main import main
from respike_nm.config import apply_overrides, load_config
from respike_nm.models.fixed_point import DEFAULT_SPEC, quantize_weight, spec_for
from respike_nm.train.builder import build_model
from respike_nm.train.evaluate import evaluate_run
from respike_nm.train.loop import train
from respike_nm.train.run import load_run

SMALL = SMALL_TRAIN

PROFILE = """
name: narrow
target: neuromorphic
costs:
  synop: {value: 1.0, unit: pJ, source: test, kind: derived}
limits:
  weight_bits: {value: 4, unit: bit, source: test, kind: derived}
"""


def test_bit_widths_come_from_the_hardware_profile(tmp_path):
    assert spec_for("loihi2").weight_bits == 8
    path = tmp_path / "narrow.yaml"
    path.write_text(PROFILE)
    spec = spec_for(str(path))
    assert spec.weight_bits == 4
    cfg = apply_overrides(load_config("tiny"), SMALL + ["quant.enabled=true", f"quant.target={path}"])
    model = build_model(cfg, "snn", 4)
    conv = model.snn.stem.synapse
    assert conv.quant.weight_bits == 4
    # a ramp far wider than the range: exactly the 2^bits levels m * 2/64, m = -2^(b-1) .. 2^(b-1) - 1
    # (SLAYER's weight scale 64 with Lava's W = 2m; 8 bits: -4 .. 3.96875), from the profile's bits
    w = torch.linspace(-300, 300, 200_001)
    for s, bits in ((spec, 4), (DEFAULT_SPEC, 8)):
        levels = torch.unique(quantize_weight(w, s))
        expected = torch.arange(-(2 ** (bits - 1)), 2 ** (bits - 1), dtype=torch.float32) * (2 / 64)
        torch.testing.assert_close(levels, expected, rtol=0, atol=0)


def test_qat_training_reports_float_and_quantized_accuracy(tmp_path):
    """The QAT model computes with weights on the chip's grid, the float copy evaluated beside it
    with off-grid weights, the two give different logits, and each reported accuracy is what an
    independent evaluation of that copy gives."""
    cfg = apply_overrides(load_config("tiny"), SMALL + ["train.epochs=1", "quant.enabled=true"])
    res = train(cfg, "snn", tmp_path)
    q = res.summary.quantization
    assert q.mode == "qat"
    quant, _, _ = load_run(tmp_path)
    flt, _, _ = load_run(tmp_path, quantize=False)
    quant.eval(), flt.eval()
    x = torch.randn(6, 3, 32, 32)  # stem input, time folded into the batch
    with torch.no_grad():
        chip = quant.snn.stem.chip_layer()  # integer weights W = 2m, as Lava holds them
        lo, hi = DEFAULT_SPEC.weight_int_range
        assert torch.all(chip.weight % 2 == 0)
        assert lo <= int(chip.weight.min()) <= int(chip.weight.max()) <= hi
        current, _, g = quant.snn.stem.synapse(x, quant.snn.stem.gain_of)
        assert g == chip.weight_gain
        conv = quant.snn.stem.synapse.conv
        ref = torch.nn.functional.conv2d(x, chip.weight.float() / 64, None, conv.stride, conv.padding)
        torch.testing.assert_close(current, ref)  # the QAT forward uses exactly the grid weights
        w_float, _ = flt.snn.stem.synapse.folded()
        off = (w_float * 32 - torch.round(w_float * 32)).abs() > 1e-3
        assert off.float().mean() > 0.9  # the float copy is not on any 1/32 grid
        # the two differ exactly by rounding: the float stem current, and the QAT one (in units of
        # 1/G) within half a weight step per input and half a bias step of it, not equal to it
        float_current = flt.snn.stem.synapse(x)[0]
        qat_current = (current + quant.snn.stem.synapse(x, quant.snn.stem.gain_of)[1].view(1, -1, 1, 1)) / g
        k = conv.weight.shape[-1]
        bound = (torch.nn.functional.conv2d(x.abs().sum(1, keepdim=True), torch.ones(1, 1, k, k), None,
                                            conv.stride, conv.padding) / 64 + 1 / 128) / g
        diff = (qat_current - float_current).abs()
        assert diff.max() > 1e-4 and torch.all(diff <= bound + 1e-5)
    assert q.quantized_top1 == evaluate_run(tmp_path).result.top1
    assert q.float_top1 == evaluate_run(tmp_path, quantize=False).result.top1


@pytest.mark.parametrize("kind", ["hybrid", "ann"])
def test_eval_command_reproduces_the_last_epoch(tmp_path, capsys, kind):
    cfg = apply_overrides(load_config("tiny"), SMALL + ["train.epochs=1"])
    res = train(cfg, kind, tmp_path)
    assert main(["eval", str(tmp_path), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["model"] == kind and out["epochs"] == 1
    assert out["top1"] == pytest.approx(res.history[-1]["test_top1"])


def test_eval_of_a_folder_without_checkpoint_is_a_clear_error(tmp_path, capsys):
    assert main(["eval", str(tmp_path)]) == 2
    assert "no such checkpoint" in capsys.readouterr().err
