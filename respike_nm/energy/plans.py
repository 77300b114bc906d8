"""Deployment plans and their energy per clip: counts x a hardware profile's figures.

Plans (all per clip of T frames, G = T/s key-frame groups, T' = s-1 SNN steps):

- ``a`` everything on the GPU: ANN, the run's fusion, head, and the SNN as dense MACs (a GPU does
  not skip zeros: every synapse multiplies at every step) plus two MACs per LIF update (current
  and voltage decay-and-add).
- ``b`` ANN, fusion and head on the GPU, SNN on the chip, multi-scale fusion (the run's own when it
  fuses multi-scale or downsampled, else the config's ``fusion_stages``): the SNN is cut at every
  fusion point; spikes go to the GPU and the fused,
  real-valued features come back as graded input, so the first layer after a fusion point is
  charged as dense graded MACs when the recorded run fed it binary spikes.
- ``c`` the same with late fusion (after stage 4 only): one SNN network, one transfer each way.
- ``d`` an ANN baseline on every frame: the run's ANN trunk on all T frames (not T/s key frames)
  plus an ANN-only head per frame; what a plain 2D-CNN video model costs.
- ``e:<name>`` a 3D CNN (torchvision's R3D-18, MC3-18, R(2+1)D-18, S3D) on the same clips
  (:mod:`respike_nm.energy.baselines`); a baseline that cannot take the clip geometry is skipped
  with its reason.

Plans are a registry (:data:`PLANS`, :func:`register_plan`): each is a small function
``(counts, graded_bits) -> PlanCounts``, its rows typed :class:`Work` records. Plans b and c cut the
SNN where the model's own stage description (``SNNBranch.stage_layers``, recorded in
:class:`~respike_nm.energy.counters.ClipCounts`) puts each stage.

Spike counts for ``b`` and ``c`` come from the trained run's recorded activity: a plan with the
run's own fusion prices that run exactly; the other borrows its spikes (:attr:`PlanCounts.activity`
says which). Traffic: graded values cross at
``graded_bits`` each, spikes as a dense bit map (1 bit per neuron per step; address events would
cost ``spikes x address bits`` instead).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from respike_nm.energy import PRECISIONS
from respike_nm.energy.counters import ClipCounts, LayerCount
from respike_nm.energy.work import (
    DEVICES,
    OPS,
    PLANS,
    Plan,
    PlanCounts,
    PlanNotApplicable,
    Work,
    register_plan,
)
from respike_nm.errors import UsageError
from respike_nm.hardware import HwProfile, ProfileError
from respike_nm.models.respike import DOWNSAMPLE_POOL

LIF_MACS = 2  # CUBA-LIF on a GPU: current and voltage each decay-and-add once per step
MEMORY_KEY = "sram_read_64b_32kb"  # per word access in the memory term
TRANSFER_KEY = "dram_access_64b"  # per 64 bits crossing between GPU and chip
__all__ = ["PLANS", "Plan", "PlanCounts", "PlanNotApplicable", "Work", "register_plan"]  # from .work


def fusion_macs(counts: ClipCounts, stages: tuple[int, ...],
                pool: dict[int, int] | None = None) -> list[Work]:
    """Closed-form GPU work per clip of a fusion point after each SNN stage in ``stages``: the layers
    (``fusion.i``, op ``mac``) and the attention products (``fusion.i.matmul``, op ``matmul``)."""
    from respike_nm.models.fusion import CrossAttentionFusion

    out = []
    for i in stages:
        snn, ann = counts.snn_stage_shapes[i], counts.ann_stage_shapes[i]
        fusion = CrossAttentionFusion(snn[0], ann[0], pool=(pool or {}).get(i, 1))
        parts = fusion.macs_parts((counts.groups, *snn), (counts.groups, *ann))
        out += [Work(f"fusion.{i}", "gpu", "mac", parts["layers"]),
                Work(f"fusion.{i}.matmul", "gpu", "matmul", parts["matmul"])]
    return out


def _gpu_layers(layers: list[LayerCount], branches: tuple[str, ...], factor: float = 1.0) -> list[Work]:
    return [Work(c.name, "gpu", "matmul" if c.op == "matmul" else "mac", c.dense_macs * factor)
            for c in layers if c.branch in branches]


def _snn_on_chip(counts: ClipCounts, fused: tuple[int, ...]) -> tuple[list[Work], list[str]]:
    rows, notes = [], []
    # the first layer after a fusion point, from the SNN's own stage description
    entries = {counts.stage_entry(i + 1) for i in fused if i < counts.last_stage}
    for c in counts.layers:
        if c.branch != "snn":
            continue
        if c.name in entries and c.op == "synop":
            rows.append(Work(c.name, "chip", "graded", c.dense_acs))
            notes.append(f"{c.name}: fed fused real-valued features in this plan: charged as dense "
                         "graded MACs (the recorded run fed it binary spikes)")
        else:
            rows.append(Work(c.name, "chip", "synop", c.effective_acs))
            rows.append(Work(c.name, "chip", "graded", c.effective_macs))
        rows.append(Work(c.name, "chip", "active_update", c.active_updates if c.active_known
                         else c.neuron_updates))
        rows.append(Work(c.name, "chip", "neuron_update", c.neuron_updates))
        rows.append(Work(c.name, "chip", "spike", c.spikes_out))
    return rows, notes


def _traffic(counts: ClipCounts, fused: tuple[int, ...], graded_bits: int) -> tuple[float, float]:
    """``(bytes GPU->chip, bytes chip->GPU)`` per clip for an SNN cut after ``fused`` stages."""
    g, (h, w) = counts.groups, counts.frame_shape
    steps, last = counts.stride - 1, counts.last_stage

    def size(i: int) -> int:
        n = 1
        for d in counts.snn_stage_shapes[i]:
            n *= d
        return n

    out_bits = 1 if counts.snn_emits == "spikes" else graded_bits
    frames = g * counts.channels * h * w * steps * graded_bits  # the residual frames, graded
    to_chip = frames + sum(g * size(i) * graded_bits for i in fused if i < last)
    to_gpu = sum(g * size(i) * out_bits for i in sorted(set(fused) | {last}))
    return to_chip / 8, to_gpu / 8


def _recorded(counts: ClipCounts) -> str:
    if counts.activity != "recorded":
        return f"SNN activity {counts.activity}"
    return (f"spike counts recorded from the trained run ({counts.fusion} fusion, {counts.snn_arch} SNN, "
            f"{counts.clips} clips)")


@register_plan("a", "all on GPU")
def plan_a(counts: ClipCounts, graded_bits: int) -> PlanCounts:
    a = PlanCounts("a", PLANS["a"].title, counts.fused_stages, _recorded(counts))
    a.layers = _gpu_layers(counts.layers, ("ann", "fusion", "head"))
    a.layers += [Work(c.name, "gpu", "mac", c.dense_macs + c.dense_acs + LIF_MACS * c.neuron_updates)
                 for c in counts.layers if c.branch == "snn"]
    a.notes.append("SNN on the GPU: dense MACs (zeros are not skipped) + 2 MACs per LIF update")
    return a


def _chip_plan(key: str, counts: ClipCounts, fused: tuple[int, ...], graded_bits: int,
               pool: dict[int, int] | None) -> PlanCounts:
    own = tuple(fused) == tuple(counts.fused_stages)
    p = PlanCounts(key, PLANS[key].title, fused, _recorded(counts) + (
        "; this plan's own fusion" if own else f"; borrowed: this plan fuses after stages {fused}"))
    p.layers = _gpu_layers(counts.layers, ("ann", "head")) + fusion_macs(counts, fused, pool)
    chip, p.notes = _snn_on_chip(counts, fused)
    p.layers += chip
    p.bytes_to_chip, p.bytes_to_gpu = _traffic(counts, fused, graded_bits)
    p.notes.append("fusion MACs in closed form (CrossAttentionFusion.macs_parts) for this plan's stages")
    return p


@register_plan("b", "GPU + chip, multi-scale fusion")
def plan_b(counts: ClipCounts, graded_bits: int) -> PlanCounts:
    multi = counts.fusion in ("multiscale", "downsample")  # the run itself is plan b's model
    fused = tuple(counts.fused_stages) if multi else tuple(sorted(counts.fusion_stages))
    return _chip_plan("b", counts, fused, graded_bits,
                      DOWNSAMPLE_POOL if counts.fusion == "downsample" else None)


@register_plan("c", "GPU + chip, late fusion")
def plan_c(counts: ClipCounts, graded_bits: int) -> PlanCounts:
    return _chip_plan("c", counts, (counts.last_stage,), graded_bits, None)


@register_plan("d", "ANN on every frame")
def plan_d(counts: ClipCounts, graded_bits: int) -> PlanCounts:
    d = PlanCounts("d", PLANS["d"].title, (), "no spikes: ANN trunk on every frame")
    d.layers = _gpu_layers(counts.layers, ("ann",), factor=counts.stride)
    width = counts.ann_stage_shapes[max(counts.ann_stage_shapes)][0]
    d.layers.append(Work("head.ann_only", "gpu", "mac", counts.frames * width * counts.num_classes))
    d.notes.append(f"ANN trunk x{counts.stride} (all {counts.frames} frames, not {counts.groups} key "
                   "frames) + a linear head on the ANN's last-stage features per frame")
    return d


def registered() -> dict[str, Plan]:
    """Every registered plan: a-d here, ``e:<baseline>`` from :mod:`respike_nm.energy.baselines`."""
    from respike_nm.energy import baselines  # noqa: F401  (registers its plans on import)

    return PLANS


def check_plans(keys: Iterable[str] | None) -> list[str]:
    """The plan keys to price (``None``: every default plan); an unknown key is refused by name."""
    known = registered()
    # by key, not by registration order (which follows which module was imported first)
    keys = sorted(k for k, p in known.items() if p.default) if keys is None else list(keys)
    unknown = [k for k in keys if k not in known]
    if unknown:
        raise UsageError(f"unknown plan {', '.join(unknown)}; valid: {', '.join(sorted(known))}")
    return keys


def build_plans(counts: ClipCounts, graded_bits: int,
                keys: Iterable[str] | None = None) -> tuple[list[PlanCounts], dict[str, str]]:
    """``(plans, skipped)``: the plans ``keys`` (default: every default plan) built from ``counts``,
    and ``key -> reason`` for those that do not apply to these counts."""
    known = registered()
    keys = check_plans(keys)
    plans, skipped = [], {}
    for k in keys:
        try:
            plans.append(known[k].build(counts, graded_bits))
        except PlanNotApplicable as e:
            skipped[k] = str(e)
    return plans, skipped


def plan_counts(counts: ClipCounts, graded_bits: int, keys: Iterable[str] | None = None) -> list[PlanCounts]:
    """The plans' counts from one :class:`ClipCounts` (those that apply)."""
    return build_plans(counts, graded_bits, keys)[0]


@dataclass
class FigureUse:
    """One profile figure as used in a total: provenance, how many times, and the energy."""

    term: str  # compute | transfer | memory
    profile: str
    key: str
    value: float
    unit: str
    source: str
    kind: str
    note: str
    count: float = 0.0
    energy_pj: float = 0.0


@dataclass
class PlanEnergy:
    """Energy of one plan on one host (GPU side) and chip, per clip, in picojoules."""

    plan: str
    title: str
    host: str
    chip: str | None
    components: dict[str, float] = field(default_factory=dict)
    layers: dict[str, float] = field(default_factory=dict)
    memory_pj: float = 0.0  # Lemaire-style memory-access term, beside the compute-only total
    figures: list[FigureUse] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def compute_pj(self) -> float:
        return sum(self.components.values())

    @property
    def kinds(self) -> list[str]:
        """The kinds (measured / simulated / derived) of the figures behind the compute total."""
        return sorted({f.kind for f in self.figures if f.term != "memory"})

    @property
    def memory_kinds(self) -> list[str]:
        return sorted({f.kind for f in self.figures if f.term == "memory"})


class _Ledger:
    def __init__(self, result: PlanEnergy):
        self.result, self.uses = result, {}

    def charge(self, component: str, layer: str, count: float, prof: HwProfile, key: str,
               per: float = 1.0) -> None:
        """``count x per x`` the figure ``prof.costs[key]``, into ``component`` and ``layer``."""
        energy = count * per * prof.energy_pj(key)
        r = self.result
        if component == "memory":
            r.memory_pj += energy
        else:
            r.components[component] = r.components.get(component, 0.0) + energy
            r.layers[layer] = r.layers.get(layer, 0.0) + energy
        fig = prof.costs[key]
        term = component if component in ("memory", "transfer") else "compute"
        use = self.uses.setdefault((term, prof.name, key), FigureUse(
            term, prof.name, key, fig.value, fig.unit, fig.source, fig.kind, fig.note))
        use.count += count * per
        use.energy_pj += energy
        r.figures = list(self.uses.values())


def mac_figure(prof: HwProfile, precision: str) -> tuple[str, float]:
    """``(cost key, figures per MAC)`` of a GPU or CMOS profile at ``precision``."""
    if precision not in PRECISIONS:
        raise UsageError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    if prof.target not in ("gpu", "cmos"):
        raise ProfileError(f"{prof.path or prof.name}: target {prof.target!r} cannot host the ANN "
                           "(need a gpu or cmos profile)")
    key, per = PRECISIONS[precision][0 if prof.target == "gpu" else 1]
    if key not in prof.costs:
        raise ProfileError(f"{prof.path or prof.name}: costs.{key} missing (needed for {precision} MACs)")
    return key, per


def plan_energy(plan: PlanCounts, host: HwProfile, chip: HwProfile | None, memory: HwProfile,
                precision: str = "fp32") -> PlanEnergy:
    """Energy of ``plan`` per clip: compute by component and layer, the traffic, and the memory term."""
    bad = [w for w in plan.layers if w.device not in DEVICES or w.op not in OPS]
    if bad:
        raise ValueError(f"plan {plan.plan}: {bad[0]} has an unknown device or op "
                         f"(devices {', '.join(DEVICES)}; ops {', '.join(OPS)})")
    res = PlanEnergy(plan.plan, plan.title, host.name, chip.name if chip else None, notes=list(plan.notes))
    led = _Ledger(res)
    key, per = mac_figure(host, precision)
    for name, dev, _, n in plan.layers:  # mac and matmul alike
        if dev == "gpu":
            led.charge("gpu_compute", name, n, host, key, per)
            led.charge("memory", name, 2 * n, memory, MEMORY_KEY)  # weight + input read per MAC
    if any(dev == "chip" for _, dev, _, _ in plan.layers):
        if chip is None:
            raise UsageError(f"plan {plan.plan} puts the SNN on a chip: name a neuromorphic target")
        _chip_energy(plan, chip, memory, led)
    if plan.bytes_to_chip or plan.bytes_to_gpu:
        led.charge("transfer", "gpu<->chip", (plan.bytes_to_chip + plan.bytes_to_gpu) * 8 / 64, memory,
                   TRANSFER_KEY)
        res.notes.append("GPU<->chip traffic charged as DRAM accesses (a lower bound for chip I/O, "
                         "whose energy no target publishes)")
    return res


def _chip_energy(plan: PlanCounts, chip: HwProfile, memory: HwProfile, led: _Ledger) -> None:
    if "synop" not in chip.costs:
        raise ProfileError(f"{chip.path or chip.name}: costs.synop missing (needed for the SNN on chip)")
    notes = led.result.notes
    pair = [k for k in ("neuron_update_active", "neuron_update_inactive") if k in chip.costs]
    if len(pair) == 1 and "neuron_update" not in chip.costs:
        missing = ({"neuron_update_active", "neuron_update_inactive"} - set(pair)).pop()
        raise ProfileError(f"{chip.path or chip.name}: costs.{missing} missing (costs.{pair[0]} is given; "
                           "give both, or one costs.neuron_update)")
    ops = {(n, o): c for n, d, o, c in plan.layers if d == "chip"}
    for name in dict.fromkeys(n for n, _ in ops):
        syn, graded = ops.get((name, "synop"), 0.0), ops.get((name, "graded"), 0.0)
        led.charge("chip_synops", name, syn, chip, "synop")
        led.charge("chip_graded", name, graded, chip, "synop")
        updates, active = ops.get((name, "neuron_update"), 0.0), ops.get((name, "active_update"), 0.0)
        if "neuron_update_active" in chip.costs and "neuron_update_inactive" in chip.costs:
            led.charge("chip_neurons", name, active, chip, "neuron_update_active")
            led.charge("chip_neurons", name, updates - active, chip, "neuron_update_inactive")
        elif "neuron_update" in chip.costs:
            led.charge("chip_neurons", name, updates, chip, "neuron_update")
        spikes = ops.get((name, "spike"), 0.0)
        if "spike_within_tile" in chip.costs:
            led.charge("chip_routing", name, spikes, chip, "spike_within_tile")
        # Lemaire et al.: per synaptic event a weight read and a potential read + write;
        # per neuron update a potential read + write; per spike an address look-up
        led.charge("memory", name, 3 * (syn + graded) + 2 * updates + spikes, memory, MEMORY_KEY)
    if not any(k.startswith("neuron_update") for k in chip.costs):
        notes.append(f"{chip.name}: no neuron-update figure published; its synop figure is all-in")
    if "spike_within_tile" not in chip.costs:
        notes.append(f"{chip.name}: no spike-routing figure; routing not charged separately")
    notes.append("graded (real-valued) inputs charged one synop per MAC"
                 + ("" if chip.limit("graded_spike_bits") else
                    f"; {chip.name} has no graded spikes, so this is a lower bound"))
    notes.append("tile hops and static power not charged (they depend on placement and run time)")
