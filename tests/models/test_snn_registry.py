"""A new SNN architecture is a class in the model package and a registry entry: the hybrid, its
quantization switch, its deployment cut and the energy plans take what they need from the class's
own description, and the parts of a model nobody knows are refused, not guessed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from respike_nm.config import apply_overrides, load_config
from respike_nm.energy.counters import count_clips, count_ops
from respike_nm.energy.plans import plan_counts
from respike_nm.models.backbone import FeatureInfo
from respike_nm.models.fixed_point import DEFAULT_SPEC
from respike_nm.models.respike import ReSpike, ReSpikeSpec
from respike_nm.models.snn import SNN_ARCHS, SNNBranch, SNNSpec, SpikingConv, set_fake_quant
from respike_nm.train.builder import build_model
from respike_nm.train.loop import _optimizer


class ThreeLayerSNN(SNNBranch):
    """A spiking architecture this project does not ship: a stem, then three layers per stage."""

    emits = "spikes"

    def __init__(self, spec: SNNSpec):
        super().__init__()
        c = spec.channels
        self.stem = SpikingConv(3, c[0], 2, spec, graded_input=True)
        fused = spec.quant.fused_input_scale if spec.quant is not None else None
        self.stages = nn.ModuleList()
        cin = c[0]
        for i, cout in enumerate(c, start=1):
            self.stages.append(nn.Sequential(
                SpikingConv(cin, cout, 2, spec, graded_input=i in spec.graded_stages, input_scale=fused),
                SpikingConv(cout, cout, 1, spec), SpikingConv(cout, cout, 1, spec)))
            cin = cout
        self.feature_info = FeatureInfo(c, (4, 8, 16, 32))

    def stage_layers(self, i: int) -> list[tuple[str, nn.Module]]:
        return [(f"stages.{i}.{j}", m) for j, m in enumerate(self.stages[i])]


class Currents(ThreeLayerSNN):
    emits = "currents"


@pytest.fixture
def registered(monkeypatch):
    monkeypatch.setitem(SNN_ARCHS, "three", ThreeLayerSNN)
    monkeypatch.setitem(SNN_ARCHS, "three-currents", Currents)


def _hybrid(arch: str, quant: bool = False) -> ReSpike:
    torch.manual_seed(0)
    snn = SNNSpec(arch=arch, width=0.125, quant=DEFAULT_SPEC if quant else None)
    return ReSpike(ReSpikeSpec(kind="hybrid", num_classes=3, ann_width=0.125, snn=snn, fusion="multiscale"))


def test_a_new_spiking_architecture_is_fused_cut_and_switched_by_its_own_description(registered):
    model = _hybrid("three", quant=True)
    assert {type(f.norm).__name__ for f in model.fusion.values()} == {"BatchNorm2d"}  # it emits spikes
    stages = model.stage_specs()
    names = [n for s in stages for n in s.names]
    assert names[:4] == ["snn.stem", "snn.stages.0.0", "snn.stages.0.1", "snn.stages.0.2"]
    assert len(names) == 1 + 4 * 3 and all(dict(model.named_modules())[n] is m
                                          for s in stages for n, m in zip(s.names, s.layers, strict=True))
    layers = [m for m in model.modules() if isinstance(m, SpikingConv)]
    set_fake_quant(model, False, freeze_bn=True)
    assert not any(m.fake_quant or m.synapse.fake_quant for m in layers)
    assert all(m.synapse.freeze_bn for m in layers)
    set_fake_quant(model, True)
    assert all(m.fake_quant and m.synapse.fake_quant for m in layers)
    logits = model(torch.rand(1, 8, 3, 32, 32))
    assert logits.shape == (1, 3) and torch.isfinite(logits).all()
    assert _hybrid("three-currents").spec.resolved_fusion_norm == "groupnorm"
    # and from a config, with no other edit: the name is checked against the registry, nowhere else
    cfg = apply_overrides(load_config("tiny"), ["model.snn_arch=three", "model.snn_width=0.125"])
    assert isinstance(build_model(cfg, "hybrid", 3).snn, ThreeLayerSNN)


def test_the_energy_plans_price_a_stage_output_by_what_the_architecture_emits(registered):
    clips = [torch.rand(1, 8, 3, 32, 32)]
    plans = {}
    for arch in ("three", "three-currents"):
        counts = count_clips(_hybrid(arch).eval(), clips)
        plans[arch] = {p.plan: p for p in plan_counts(counts, graded_bits=16)}
        assert counts.snn_emits == SNN_ARCHS[arch].emits
    spikes, currents = plans["three"]["c"].bytes_to_gpu, plans["three-currents"]["c"].bytes_to_gpu
    assert spikes > 0 and currents == 16 * spikes  # 1 bit per spike, 16 per graded current


def test_a_part_nobody_knows_is_refused_by_the_optimizer_and_by_the_energy_counter():
    model = _hybrid("plain")
    model.extra = nn.Linear(4, 4)  # a new top-level part: which learning rate, which branch?
    with pytest.raises(ValueError, match="'extra'"):
        _optimizer(load_config("tiny"), model)
    with pytest.raises(ValueError, match="cannot attribute extra"), count_ops(model):
        pass
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(4 * 6 * 6, 2))  # a network on its own
    with count_ops(plain) as log:
        plain(torch.rand(1, 3, 8, 8))
    assert {c.branch for c in log.layers.values()} == {"ann"}
