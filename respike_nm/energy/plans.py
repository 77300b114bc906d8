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

Spike counts for ``b`` and ``c`` come from the trained run's recorded activity: a plan with the
run's own fusion prices that run exactly; the other borrows its spikes (:attr:`PlanCounts.activity`
says which). Traffic: graded values cross at
``graded_bits`` each, spikes as a dense bit map (1 bit per neuron per step; address events would
cost ``spikes x address bits`` instead).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from respike_nm.energy import PRECISIONS
from respike_nm.energy.counters import ClipCounts, LayerCount
from respike_nm.errors import UsageError
from respike_nm.hardware import HwProfile, ProfileError
from respike_nm.models.respike import DOWNSAMPLE_POOL

PLANS = {
    "a": "all on GPU",
    "b": "GPU + chip, multi-scale fusion",
    "c": "GPU + chip, late fusion",
    "d": "ANN on every frame",
}
LIF_MACS = 2  # CUBA-LIF on a GPU: current and voltage each decay-and-add once per step
MEMORY_KEY = "sram_read_64b_32kb"  # per word access in the memory term
TRANSFER_KEY = "dram_access_64b"  # per 64 bits crossing between GPU and chip


@dataclass
class PlanCounts:
    """Operations and traffic of one plan, per clip. ``layers``: name -> (device, op, count)."""

    plan: str
    title: str
    fused_stages: tuple[int, ...]
    activity: str
    layers: list[tuple[str, str, str, float]] = field(default_factory=list)
    bytes_to_chip: float = 0.0
    bytes_to_gpu: float = 0.0
    notes: list[str] = field(default_factory=list)

    def total(self, device: str, op: str) -> float:
        return sum(n for _, d, o, n in self.layers if d == device and o == op)

    @property
    def uses_chip(self) -> bool:
        """Whether any of the plan's work runs on a neuromorphic chip (then it is priced on a host and
        chip pair, else on every GPU/CMOS host alone)."""
        return any(d == "chip" for _, d, _, _ in self.layers)


def fusion_macs(counts: ClipCounts, stages: tuple[int, ...], pool: dict[int, int] | None = None) -> dict:
    """Closed-form MACs per clip of a fusion point after each SNN stage in ``stages``."""
    from respike_nm.models.fusion import CrossAttentionFusion

    out = {}
    for i in stages:
        snn, ann = counts.snn_stage_shapes[i], counts.ann_stage_shapes[i]
        fusion = CrossAttentionFusion(snn[0], ann[0], pool=(pool or {}).get(i, 1))
        out[f"fusion.{i}"] = fusion.macs((counts.groups, *snn), (counts.groups, *ann))
    return out


def _gpu_layers(layers: list[LayerCount], branches: tuple[str, ...], factor: float = 1.0) -> list:
    return [(c.name, "gpu", "mac", c.dense_macs * factor) for c in layers if c.branch in branches]


def _snn_on_chip(counts: ClipCounts, fused: tuple[int, ...]) -> tuple[list, list[str]]:
    rows, notes = [], []
    entries = {f"snn.stages.{i}.0" for i in fused if i < 4}  # first layer after a fusion point
    for c in counts.layers:
        if c.branch != "snn":
            continue
        if c.name in entries and c.op == "synop":
            rows.append((c.name, "chip", "graded", c.dense_acs))
            notes.append(f"{c.name}: fed fused real-valued features in this plan: charged as dense "
                         "graded MACs (the recorded run fed it binary spikes)")
        else:
            rows.append((c.name, "chip", "synop", c.effective_acs))
            rows.append((c.name, "chip", "graded", c.effective_macs))
        rows.append((c.name, "chip", "active_update", c.active_updates if c.active_known
                     else c.neuron_updates))
        rows.append((c.name, "chip", "neuron_update", c.neuron_updates))
        rows.append((c.name, "chip", "spike", c.spikes_out))
    return rows, notes


def _traffic(counts: ClipCounts, fused: tuple[int, ...], graded_bits: int) -> tuple[float, float]:
    """``(bytes GPU->chip, bytes chip->GPU)`` per clip for an SNN cut after ``fused`` stages."""
    g, (h, w) = counts.groups, counts.frame_shape
    steps = counts.stride - 1

    def size(i: int) -> int:
        n = 1
        for d in counts.snn_stage_shapes[i]:
            n *= d
        return n

    out_bits = 1 if counts.snn_emits == "spikes" else graded_bits
    frames = g * counts.channels * h * w * steps * graded_bits  # the residual frames, graded
    to_chip = frames + sum(g * size(i) * graded_bits for i in fused if i < 4)
    to_gpu = sum(g * size(i) * out_bits for i in sorted(set(fused) | {4}))
    return to_chip / 8, to_gpu / 8


def plan_counts(counts: ClipCounts, graded_bits: int) -> list[PlanCounts]:
    """The four plans' counts from one recorded :class:`ClipCounts`."""
    rec = (f"spike counts recorded from the trained run ({counts.fusion} fusion, {counts.snn_arch} SNN, "
           f"{counts.clips} clips)")
    plans = []
    a = PlanCounts("a", PLANS["a"], counts.fused_stages, rec)
    a.layers = _gpu_layers(counts.layers, ("ann", "fusion", "head"))
    for c in counts.layers:
        if c.branch == "snn":
            a.layers.append((c.name, "gpu", "mac", c.dense_macs + c.dense_acs + LIF_MACS * c.neuron_updates))
    a.notes.append("SNN on the GPU: dense MACs (zeros are not skipped) + 2 MACs per LIF update")
    plans.append(a)
    multi = counts.fusion in ("multiscale", "downsample")  # the run itself is plan b's model
    b_stages = tuple(counts.fused_stages) if multi else tuple(sorted(counts.fusion_stages))
    pools = {"b": DOWNSAMPLE_POOL if counts.fusion == "downsample" else None, "c": None}
    for key, fused in (("b", b_stages), ("c", (4,))):
        own = tuple(fused) == tuple(counts.fused_stages)
        p = PlanCounts(key, PLANS[key], fused, rec + ("; this plan's own fusion" if own else
                                                      f"; borrowed: this plan fuses after stages {fused}"))
        p.layers = _gpu_layers(counts.layers, ("ann", "head"))
        p.layers += [(n, "gpu", "mac", m) for n, m in fusion_macs(counts, fused, pools[key]).items()]
        chip, p.notes = _snn_on_chip(counts, fused)
        p.layers += chip
        p.bytes_to_chip, p.bytes_to_gpu = _traffic(counts, fused, graded_bits)
        p.notes.append("fusion MACs in closed form (CrossAttentionFusion.macs) for this plan's stages")
        plans.append(p)
    d = PlanCounts("d", PLANS["d"], (), "no spikes: ANN trunk on every frame")
    d.layers = _gpu_layers(counts.layers, ("ann",), factor=counts.stride)
    width = counts.ann_stage_shapes[4][0]
    d.layers.append(("head.ann_only", "gpu", "mac", counts.frames * width * counts.num_classes))
    d.notes.append(f"ANN trunk x{counts.stride} (all {counts.frames} frames, not {counts.groups} key "
                   "frames) + a linear head on the ANN's stage-4 features per frame")
    plans.append(d)
    return plans


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
    res = PlanEnergy(plan.plan, plan.title, host.name, chip.name if chip else None, notes=list(plan.notes))
    led = _Ledger(res)
    key, per = mac_figure(host, precision)
    for name, dev, _, n in plan.layers:
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
