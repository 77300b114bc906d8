"""Paper-scale pricing, the plan registry and the accounting conventions against closed forms and
a second way of counting."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch
import yaml

from respike_nm.energy.counters import ClipCounts, LayerCount, count_clips, count_shapes
from respike_nm.energy.plans import PlanCounts, Work, build_plans, register_plan
from respike_nm.energy.report import price_counts
from respike_nm.energy.scale import break_even, rates_by_depth, with_rates
from respike_nm.errors import UsageError
from respike_nm.hardware import load_profile
from respike_nm.models.respike import ReSpike, ReSpikeSpec
from respike_nm.models.snn import SNNSpec

PROFILES = Path(__file__).resolve().parents[2] / "hw_profiles"


def _hybrid(fusion: str = "multiscale") -> ReSpike:
    torch.manual_seed(0)
    from respike_nm.models.fixed_point import DEFAULT_SPEC

    snn = SNNSpec(width=0.125, quant=DEFAULT_SPEC)
    return ReSpike(ReSpikeSpec(kind="hybrid", num_classes=3, ann_width=0.125, snn=snn, fusion=fusion)).eval()


def test_counting_from_shapes_equals_counting_a_real_forward_pass():
    model = _hybrid()
    clip = torch.randint(0, 255, (1, 8, 3, 32, 32), dtype=torch.uint8)
    real = {c.name: c for c in count_clips(model, [clip]).layers}
    shapes = count_shapes(model, (8, 3, 32, 32))
    assert next(model.parameters()).device.type == "cpu"  # the model itself is untouched
    assert [c.name for c in shapes.layers] == list(real)
    for c in shapes.layers:  # every dense count, whatever the activity of the real pass
        r = real[c.name]
        assert (c.dense_macs + c.dense_acs, c.neuron_updates, c.params) == (
            r.dense_macs + r.dense_acs, r.neuron_updates, r.params), c.name
        assert c.spikes_out == 0 and c.effective_acs == 0
    # graded: the stem (residual frames); a fusion point's entry is graded only in the plans fusing there
    assert {c.name for c in shapes.layers if c.op == "graded"} == {"snn.stem"}
    assert shapes.snn_stage_layers[1] == ("snn.stages.0.0", "snn.stages.0.1")


def _counts() -> ClipCounts:
    layers = [
        LayerCount("ann.conv1", "ann", "mac", dense_macs=1000.0, effective_macs=1000.0),
        LayerCount("snn.stem", "snn", "graded", dense_macs=300.0, effective_macs=300.0, neuron_updates=100.0),
        LayerCount("snn.stages.0.0", "snn", "synop", dense_acs=900.0, neuron_updates=50.0, inputs=80.0),
        LayerCount("snn.stages.1.0", "snn", "synop", dense_acs=400.0, neuron_updates=20.0, inputs=50.0),
    ]
    snn = {1: (4, 2, 2, 3), 2: (8, 1, 1, 3)}
    ann = {1: (4, 2, 2), 2: (8, 1, 1)}
    return ClipCounts(1, 8, 4, (4, 4), layers, snn, ann, 3, "plain", "spikes", "late", (2,), (2,), 5,
                      {1: ("snn.stages.0.0",), 2: ("snn.stages.1.0",)}, "none (shapes only)")


def test_rates_give_synops_from_the_layer_before_and_spikes_from_the_layer_itself():
    c = {x.name: x for x in with_rates(_counts(), [0.1, 0.2, 0.05], "hand").layers}
    assert c["snn.stem"].effective_macs == 300.0 and c["snn.stem"].spikes_out == pytest.approx(10.0)
    assert c["snn.stages.0.0"].effective_acs == pytest.approx(900 * 0.1)  # fed by the stem's 10 %
    assert c["snn.stages.1.0"].effective_acs == pytest.approx(400 * 0.2)
    assert c["snn.stages.1.0"].spikes_out == pytest.approx(20 * 0.05)
    assert c["snn.stages.1.0"].firing_rate == pytest.approx(0.05)
    with pytest.raises(UsageError, match="2 firing rates for 3 SNN layers"):
        with_rates(_counts(), [0.1, 0.2], "hand")
    with pytest.raises(UsageError, match="between 0 and 1"):
        with_rates(_counts(), 1.5, "hand")


def test_measured_rates_map_by_relative_depth():
    assert rates_by_depth([0.1, 0.3], 4) == [0.1, 0.1, 0.3, 0.3]
    assert rates_by_depth([0.1, 0.2, 0.3, 0.4], 2) == [0.2, 0.4]
    assert rates_by_depth([0.7], 3) == [0.7, 0.7, 0.7]


@pytest.fixture(scope="module")
def small():
    return count_shapes(_hybrid(), (8, 3, 32, 32))


def _rows(counts, targets, host):
    return price_counts(counts, "x", 16, "test", targets, host, load_profile("cmos45nm"),
                        plans=["b", "c", "d", "e:r3d_18"]).energy


def test_energy_is_affine_in_the_rate_and_break_even_prices_equal(small):
    targets = [load_profile(n) for n in ("h100", "loihi2", "truenorth")]
    host = load_profile("h100")
    zero, one = (_rows(with_rates(small, r, str(r)), targets, host) for r in (0.0, 1.0))
    mid = _rows(with_rates(small, 0.37, "0.37"), targets, host)
    for e0, e1, em in zip(zero, one, mid, strict=True):
        for part in ("compute_pj", "memory_pj"):
            a, b = getattr(e0, part), getattr(e1, part)
            assert getattr(em, part) == pytest.approx(a + 0.37 * (b - a), rel=1e-9)
    evens = break_even(zero, one, ["d", "e:r3d_18"])
    assert len(evens) == 2 * 2 * 2  # plans b, c x chips loihi2, truenorth x two baselines
    assert any(b.compute_rate is not None for b in evens) and any(b.compute_rate is None for b in evens)
    for b in evens:
        base = next(e for e in zero if e.plan == b.against and e.host == b.host)
        if b.compute_rate is not None:  # priced at its break-even rate, the plan costs the baseline's
            at = next(e for e in _rows(with_rates(small, b.compute_rate, "r"), targets, host)
                      if (e.plan, e.chip) == (b.plan, b.chip))
            assert at.compute_pj == pytest.approx(base.compute_pj, rel=1e-9)
        else:  # no crossing in [0, 1]: the same side at both ends
            e0 = next(e for e in zero if (e.plan, e.chip) == (b.plan, b.chip))
            e1 = next(e for e in one if (e.plan, e.chip) == (b.plan, b.chip))
            assert (e0.compute_pj < base.compute_pj) == (e1.compute_pj < base.compute_pj) == \
                b.compute_cheaper_at_zero


def test_snn_paper_convention_is_45nm_compute_only():
    from respike_nm.energy.conventions import snn_paper_pj

    raw = yaml.safe_load((PROFILES / "cmos45nm.yaml").read_text())["costs"]
    mac, ac = raw["mac_fp32"]["value"], raw["ac_fp32"]["value"]
    assert (mac, ac) == (4.6, 0.9)  # Horowitz, ISSCC 2014, as SNN papers use them
    plan = PlanCounts("b", "t", (2,), "hand", [
        Work("ann.conv1", "gpu", "mac", 1000.0), Work("fusion.2", "gpu", "mac", 200.0),
        Work("fusion.2.matmul", "gpu", "matmul", 50.0), Work("snn.stem", "chip", "graded", 30.0),
        Work("snn.stages.0.0", "chip", "synop", 400.0), Work("snn.stages.0.0", "chip", "neuron_update", 99.0),
        Work("snn.stages.0.0", "chip", "spike", 7.0)], bytes_to_chip=1e6, bytes_to_gpu=1e6)
    cmos = load_profile("cmos45nm")
    assert snn_paper_pj(plan, cmos, True) == pytest.approx((1000 + 200 + 50 + 30) * mac + 400 * ac)
    assert snn_paper_pj(plan, cmos, False) == pytest.approx((1000 + 200 + 30) * mac + 400 * ac)


def test_a_new_plan_is_one_registered_function(small):
    from respike_nm.energy import plans as plan_module

    @register_plan("test-snn-only", "the SNN alone on a chip", default=False)
    def snn_only(counts, graded_bits):
        return PlanCounts("test-snn-only", "the SNN alone on a chip", (), "test", [
            Work(c.name, "chip", "synop", c.effective_acs) for c in counts.layers if c.branch == "snn"])

    try:
        counts = with_rates(small, 0.1, "0.1")
        built, _ = build_plans(counts, 16)
        assert "test-snn-only" not in {p.plan for p in built}  # not a default plan
        rep = price_counts(counts, "x", 16, "t", [load_profile("loihi2")], load_profile("h100"),
                           load_profile("cmos45nm"), plans=["test-snn-only"])
        synops = sum(c.effective_acs for c in counts.layers if c.branch == "snn")
        assert rep.energy[0].components["chip_synops"] == pytest.approx(
            synops * yaml.safe_load((PROFILES / "loihi2.yaml").read_text())["costs"]["synop"]["value"])
        with pytest.raises(UsageError, match="unknown plan nope"):
            build_plans(counts, 16, ["nope"])
    finally:
        del plan_module.PLANS["test-snn-only"]


def test_chip_plans_cut_where_the_models_stage_description_says():
    # an architecture whose stage 2 begins with a layer named its own way, and only two stages
    c = _counts()
    c = replace(c, layers=[*c.layers[:3], replace(c.layers[3], name="snn.stages.1.block.conv_a")],
                snn_stage_layers={1: ("snn.stages.0.0",), 2: ("snn.stages.1.block",)})
    plans = {p.plan: p for p in build_plans(replace(c, fusion_stages=(1, 2)), 16, ["b", "c"])[0]}
    graded = {w.layer for w in plans["b"].layers if w.op == "graded" and w.count}
    assert "snn.stages.1.block.conv_a" in graded  # fed the stage-1 fusion output: dense graded MACs
    assert plans["c"].fused_stages == (2,)  # late fusion after the SNN's own last stage
    g = 8 // 4
    assert plans["c"].bytes_to_gpu == g * 8 * 1 * 1 * 3 / 8  # the last stage's spikes, 1 bit each


def test_the_default_plans_come_in_one_order_whatever_was_imported_first():
    import subprocess
    import sys

    code = ("import {first}; from respike_nm.energy.plans import check_plans; print(check_plans(None))")
    orders = {subprocess.run([sys.executable, "-c", code.format(first=m)], capture_output=True, text=True,
                             check=True).stdout
              for m in ("respike_nm.energy.baselines", "respike_nm.energy.plans")}
    assert len(orders) == 1 and "'a', 'b', 'c', 'd', 'e:" in orders.pop()
