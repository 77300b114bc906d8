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
from respike_nm.train.loop import train

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
    w = torch.linspace(-3, 3, 101)
    narrow, wide = quantize_weight(w, spec), quantize_weight(w, DEFAULT_SPEC)
    assert len(torch.unique(narrow)) < len(torch.unique(wide))  # fewer levels with 4 bits


def test_qat_training_reports_float_and_quantized_accuracy(tmp_path):
    cfg = apply_overrides(load_config("tiny"), SMALL + ["train.epochs=1", "quant.enabled=true"])
    res = train(cfg, "snn", tmp_path)
    q = res.summary["quantization"]
    assert q["mode"] == "qat" and q["quantized_top1"] == res.summary["test_top1"]
    assert 0 <= q["float_top1"] <= 1


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
