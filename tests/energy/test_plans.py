"""Plans and energy against hand calculations with the profiles' own YAML figures."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml
from torch import nn

from respike_nm.energy.counters import ClipCounts, LayerCount, count_ops
from respike_nm.energy.plans import PlanCounts, Work, mac_figure, plan_counts, plan_energy
from respike_nm.hardware import ProfileError, load_profile, parse_profile

PROFILES = Path(__file__).resolve().parents[2] / "hw_profiles"


def pj(profile: str, key: str) -> float:
    """A cost straight from the YAML file, in pJ (independent of profile.py's conversion)."""
    fig = yaml.safe_load((PROFILES / f"{profile}.yaml").read_text())["costs"][key]
    return fig["value"] * {"pJ": 1.0, "nJ": 1e3}[fig["unit"]]


def test_one_linear_layer_on_a_gpu_equals_the_hand_calculation():
    layer = nn.Linear(10, 4)
    x = torch.randn(3, 10)
    x[:, :4] = 0  # effective MACs skip these, dense ones do not
    net = nn.Sequential()
    net.add_module("head", layer)
    with count_ops(net) as log:
        net(x)
    c = log.layers["head"]
    assert (c.dense_macs, c.effective_macs) == (3 * 10 * 4, 3 * 6 * 4)
    plan = PlanCounts("a", "t", (), "none", layers=[Work("head", "gpu", "mac", c.dense_macs)])
    e = plan_energy(plan, load_profile("h100"), None, load_profile("cmos45nm"))
    assert e.compute_pj == pytest.approx(120 * 2 * pj("h100", "flop_fp32"))  # a MAC is 2 FLOPs
    assert e.memory_pj == pytest.approx(2 * 120 * pj("cmos45nm", "sram_read_64b_32kb"))
    assert e.kinds == ["derived"]  # TDP / peak
    e45 = plan_energy(plan, load_profile("cmos45nm"), None, load_profile("cmos45nm"), "int8")
    assert e45.compute_pj == pytest.approx(120 * pj("cmos45nm", "mac_int8"))


def test_one_spiking_layer_on_loihi_equals_the_hand_calculation():
    syn, updates, active, spikes = 1000.0, 400.0, 150.0, 37.0
    plan = PlanCounts("c", "t", (4,), "hand", layers=[
        Work("l", "chip", "synop", syn), Work("l", "chip", "graded", 0.0),
        Work("l", "chip", "neuron_update", updates), Work("l", "chip", "active_update", active),
        Work("l", "chip", "spike", spikes)])
    e = plan_energy(plan, load_profile("h100"), load_profile("loihi"), load_profile("cmos45nm"))
    hand = (syn * pj("loihi", "synop") + active * pj("loihi", "neuron_update_active")
            + (updates - active) * pj("loihi", "neuron_update_inactive")
            + spikes * pj("loihi", "spike_within_tile"))
    assert e.compute_pj == pytest.approx(hand)
    assert e.layers["l"] == pytest.approx(hand)
    accesses = 3 * syn + 2 * updates + spikes  # weight + potential read/write, potential r/w, address
    assert e.memory_pj == pytest.approx(accesses * pj("cmos45nm", "sram_read_64b_32kb"))
    assert e.kinds == ["simulated"]  # Davies et al.'s pre-silicon figures
    tn = plan_energy(plan, load_profile("h100"), load_profile("truenorth"), load_profile("cmos45nm"))
    assert tn.compute_pj == pytest.approx(syn * pj("truenorth", "synop"))  # all-in figure only
    assert any("no neuron-update figure" in n for n in tn.notes)


def _counts() -> ClipCounts:
    """A hand-made recording: T=16, s=4 (G=4, T'=3), 8x8 frames, one layer per stage."""
    snn = {1: (8, 2, 2, 3), 2: (16, 1, 1, 3), 3: (32, 1, 1, 3), 4: (64, 1, 1, 3)}
    ann = {1: (8, 2, 2), 2: (16, 1, 1), 3: (32, 1, 1), 4: (64, 1, 1)}
    layers = [
        LayerCount("ann.conv1", "ann", "mac", effective_macs=500.0, dense_macs=1000.0),
        LayerCount("head", "head", "mac", dense_macs=80.0),
        LayerCount("fusion.4.proj_in", "fusion", "mac", dense_macs=7.0),
        LayerCount("snn.stem", "snn", "graded", effective_macs=30.0, dense_macs=300.0, neuron_updates=96.0,
                   active_updates=20.0, active_known=True, spikes_out=5.0),
        LayerCount("snn.stages.2.0", "snn", "synop", effective_acs=40.0, dense_acs=900.0, neuron_updates=48.0,
                   active_updates=10.0, active_known=True, spikes_out=2.0),
    ]
    stages = {i: (f"snn.stages.{i - 1}.0", f"snn.stages.{i - 1}.1") for i in range(1, 5)}
    return ClipCounts(2, 16, 4, (8, 8), layers, snn, ann, 3, "plain", "spikes", "late", (4,), (2, 3, 4), 5,
                      stages)


def test_plans_traffic_and_baseline_follow_their_closed_forms():
    plans = {p.plan: p for p in plan_counts(_counts(), graded_bits=16)}
    g, steps = 4, 3
    frames_bits = g * 3 * 8 * 8 * steps * 16
    # b: residual frames in; fused stage-2 and stage-3 features back in; spikes of 2, 3, 4 out (1 bit)
    assert plans["b"].bytes_to_chip == (frames_bits + g * (16 * 3 + 32 * 3) * 16) / 8
    assert plans["b"].bytes_to_gpu == g * (16 * 3 + 32 * 3 + 64 * 3) / 8
    assert (plans["c"].bytes_to_chip, plans["c"].bytes_to_gpu) == (frames_bits / 8, g * 64 * 3 / 8)
    # b feeds stage 3's first layer fused real values: its dense count becomes graded MACs
    assert plans["b"].total("chip", "graded") == 30.0 + 900.0
    assert plans["c"].total("chip", "graded") == 30.0 and plans["c"].total("chip", "synop") == 40.0
    # a: the SNN on the GPU dense, plus 2 MACs per LIF update; ANN, fusion and head as counted
    assert plans["a"].total("gpu", "mac") == 1000 + 80 + 7 + 300 + 900 + 2 * (96 + 48)
    # d: the ANN on all 16 frames (x s) and a 64 -> 5 linear head per frame
    assert plans["d"].total("gpu", "mac") == 4 * 1000 + 16 * 64 * 5
    assert plans["a"].bytes_to_chip == plans["d"].bytes_to_gpu == 0
    assert [k for k, p in plans.items() if p.uses_chip] == ["b", "c"]  # priced on host + chip pairs


def test_plan_b_prices_the_runs_own_multiscale_fusion_and_says_which_plan_borrows():
    from dataclasses import replace

    from respike_nm.models.fusion import CrossAttentionFusion

    late = {p.plan: p for p in plan_counts(_counts(), 16)}
    assert "own fusion" in late["c"].activity and "borrowed" in late["b"].activity
    multi = {p.plan: p for p in plan_counts(replace(_counts(), fusion="multiscale", fused_stages=(3, 4),
                                                    fusion_stages=(3, 4)), 16)}
    assert multi["b"].fused_stages == (3, 4) and "own fusion" in multi["b"].activity
    assert "borrowed" in multi["c"].activity
    down_counts = replace(_counts(), fusion="downsample", fused_stages=(1, 2, 3, 4))
    down = {p.plan: p for p in plan_counts(down_counts, 16)}
    assert down["b"].fused_stages == (1, 2, 3, 4)
    # the downsample variant's stage 1 is pooled 4x: its closed form (checked against torch's FLOP
    # counter in tests/models/test_fusion.py) with pool 4, here on a 2x2 map pooled to 1x1
    f1 = CrossAttentionFusion(8, 8, pool=4).macs((4, 8, 2, 2, 3), (4, 8, 2, 2))
    work = {w.layer: w for w in down["b"].layers}
    assert work["fusion.1"].count + work["fusion.1.matmul"].count == f1
    assert work["fusion.1.matmul"].op == "matmul" and work["fusion.1"].op == "mac"


def test_transfer_energy_and_figure_provenance():
    plan = next(p for p in plan_counts(_counts(), 16) if p.plan == "c")
    e = plan_energy(plan, load_profile("a100"), load_profile("loihi2"), load_profile("cmos45nm"))
    bits = (plan.bytes_to_chip + plan.bytes_to_gpu) * 8
    assert e.components["transfer"] == pytest.approx(bits / 64 * pj("cmos45nm", "dram_access_64b"))
    assert sum(e.components.values()) == pytest.approx(sum(e.layers.values()))
    raw = yaml.safe_load((PROFILES / "loihi2.yaml").read_text())["costs"]["synop"]
    use = next(f for f in e.figures if f.profile == "loihi2" and f.key == "synop")
    assert (use.value, use.source, use.kind) == (raw["value"], raw["source"], raw["kind"])
    assert "derived" in e.kinds and "simulated" in e.memory_kinds


def test_hosts_and_chips_missing_a_figure_are_rejected_by_name():
    with pytest.raises(ProfileError, match="cannot host"):
        mac_figure(load_profile("loihi"), "fp32")
    bare = parse_profile({"name": "g", "target": "gpu", "costs": {
        "tdp": {"value": 1, "unit": "W", "source": "s", "kind": "measured"}}}, "mine.yaml")
    with pytest.raises(ProfileError, match="costs.flop_fp32 missing"):
        mac_figure(bare, "fp32")
    chip = parse_profile({"name": "n", "target": "neuromorphic", "costs": {
        "neuron_update": {"value": 1, "unit": "pJ", "source": "s", "kind": "measured"}}}, "chip.yaml")
    plan = next(p for p in plan_counts(_counts(), 16) if p.plan == "c")
    with pytest.raises(ProfileError, match="costs.synop missing"):
        plan_energy(plan, load_profile("h100"), chip, load_profile("cmos45nm"))
