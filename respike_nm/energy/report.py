"""The energy report: one record, written as energy.json, energy.csv and two plots.

Everything is per clip. ``energy.json`` holds the per-layer counts with the clip geometry, the plans'
counts and, per plan and target, the energy by component and by layer with every figure's
provenance. The counts read back (:func:`read_counts`), so a saved report is priced again with other
profiles or plans without the model (:func:`reprice`): the same figures as counting again.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from torch import nn

from respike_nm.energy.counters import ClipCounts, LayerCount, count_clips, totals
from respike_nm.energy.plans import (
    MEMORY_KEY,
    TRANSFER_KEY,
    FigureUse,
    PlanCounts,
    PlanEnergy,
    build_plans,
    check_plans,
    mac_figure,
    plan_energy,
)
from respike_nm.errors import RespikeError, UsageError
from respike_nm.hardware import HwProfile, ProfileError
from respike_nm.records import check_versions, from_data, read_json

FORMAT, VERSION = "respike-nm-energy", 2
READABLE_VERSIONS = (1, 2)  # the priced rows of both read back; only version 2 holds the counts' geometry
REPORT_NAME = "energy.json"
COMPONENTS = ("gpu_compute", "chip_synops", "chip_graded", "chip_neurons", "chip_routing", "transfer")
CAVEATS = (
    "GPU figures are TDP over dense peak throughput (derived): a best case that real kernels do not reach.",
    "Loihi's per-op figures are pre-silicon minima (Davies et al. 2018); Loihi 2 reuses them (derived).",
    "Chip-side totals omit tile hops and static power; chip I/O is charged at DRAM cost (a lower bound).",
    "The memory term (after Lemaire et al., ICONIP 2022) charges every weight/input/potential access at a "
    "45 nm SRAM read (Horowitz); it is shown beside the compute-only total, not in it.",
    "Spike counts come from a trained run's recorded activity; plans with another fusion reuse them.",
)


@dataclass
class EnergyReport:
    """The whole report; :meth:`to_dict` is energy.json."""

    run_dir: str
    precision: str
    graded_bits: int
    graded_bits_source: str
    counts: ClipCounts
    plans: list[PlanCounts]
    energy: list[PlanEnergy]
    profiles: dict[str, dict] = field(default_factory=dict)  # name -> path, target, description
    skipped: dict[str, str] = field(default_factory=dict)  # plan -> why it was not priced

    def to_dict(self) -> dict:
        c = self.counts
        layers = [{**asdict(lc), "activation_sparsity": lc.activation_sparsity,
                   "firing_rate": lc.firing_rate} for lc in c.layers]
        geometry = {k: v for k, v in asdict(c).items() if k != "layers"}
        return {
            "format": FORMAT, "version": VERSION, "run_dir": self.run_dir, "per": "clip",
            "precision": self.precision,
            "graded_bits": {"value": self.graded_bits, "source": self.graded_bits_source},
            "conventions": {
                "mac": "multiply-accumulate; a GPU MAC costs 2 FLOPs at the profile's pJ/FLOP",
                "dense": "every input active, zero padding included (as MAC counters count)",
                "effective": "only nonzero inputs inside the frame (NeuroBench Effective_MACs/ACs)",
                "spikes_to_gpu": "dense bit map, 1 bit per neuron per step",
                "graded_to_chip": f"{self.graded_bits}-bit integers per value ({self.graded_bits_source})",
                "active_update": "a neuron-step that received at least one synaptic event",
            },
            "caveats": list(CAVEATS),
            "geometry": geometry,
            "counts": {"totals": asdict(totals(c.layers)), "layers": layers},
            "plans": [{**asdict(p), "totals": _plan_totals(p)} for p in self.plans],
            "skipped_plans": self.skipped,
            "energy": [_energy_dict(e) for e in self.energy],
            "profiles": self.profiles,
        }


def _plan_totals(p: PlanCounts) -> dict:
    ops = {(w.device, w.op) for w in p.layers}
    return {f"{d}_{o}": p.total(d, o) for d, o in sorted(ops)}


def _energy_dict(e: PlanEnergy) -> dict:
    return {
        "plan": e.plan, "title": e.title, "host": e.host, "chip": e.chip,
        "compute_pj": e.compute_pj, "memory_pj": e.memory_pj,
        "compute_plus_memory_pj": e.compute_pj + e.memory_pj,
        "kinds": e.kinds, "memory_kinds": e.memory_kinds,
        "components_pj": e.components, "layers_pj": e.layers,
        "figures": [asdict(f) for f in e.figures], "notes": e.notes,
    }


def row_label(e: PlanEnergy) -> str:
    return f"{e.plan}: {e.host}" + (f" + {e.chip}" if e.chip else "")


def csv_text(report: EnergyReport) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["plan", "title", "host", "chip", "compute_pj", "memory_pj", "compute_plus_memory_pj",
                *[f"{c}_pj" for c in COMPONENTS], "kinds", "memory_kinds"])
    for e in report.energy:
        w.writerow([e.plan, e.title, e.host, e.chip or "", e.compute_pj, e.memory_pj,
                    e.compute_pj + e.memory_pj, *[e.components.get(c, 0.0) for c in COMPONENTS],
                    "+".join(e.kinds), "+".join(e.memory_kinds)])
    return buf.getvalue()


def plot_plans(report: EnergyReport, path: Path) -> None:
    """Left: compute-only and memory-term totals per plan and target (log scale, uJ per clip).
    Right: what each compute total is made of (stacked shares)."""
    from matplotlib.figure import Figure

    rows = report.energy
    labels = [row_label(e) for e in rows]
    y = range(len(rows))
    fig = Figure(figsize=(13, 0.38 * len(rows) + 2.6))
    ax1, ax2 = fig.subplots(1, 2, sharey=True)
    ax1.barh([i - 0.2 for i in y], [e.compute_pj / 1e6 for e in rows], 0.4, label="compute only")
    ax1.barh([i + 0.2 for i in y], [e.memory_pj / 1e6 for e in rows], 0.4, label="memory term (Lemaire)",
             color="0.7", hatch="//")
    ax1.set_xscale("log")
    ax1.set_xlabel("energy per clip (uJ, log scale)")
    ax1.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=2, fontsize=8)
    left = [0.0] * len(rows)
    for comp in COMPONENTS:
        share = [100 * e.components.get(comp, 0.0) / e.compute_pj if e.compute_pj else 0 for e in rows]
        ax2.barh(list(y), share, 0.6, left=left, label=comp)
        left = [a + b for a, b in zip(left, share, strict=True)]
    ax2.set_xlabel("share of the compute total (%)")
    ax2.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3, fontsize=8)
    ax1.set_yticks(list(y), labels, fontsize=8)
    ax1.invert_yaxis()
    fig.suptitle("Energy per clip by deployment plan and target (kinds of figures in energy.json)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def plot_layers(report: EnergyReport, path: Path) -> None:
    """Per SNN layer: firing rate and synaptic operations per clip (effective vs dense)."""
    from matplotlib.figure import Figure

    snn = [c for c in report.counts.layers if c.branch == "snn"]
    names = [c.name.removeprefix("snn.") for c in snn]
    x = range(len(snn))
    fig = Figure(figsize=(max(6, 0.6 * len(snn) + 2), 6))
    ax1, ax2 = fig.subplots(2, 1, sharex=True)
    ax1.bar(list(x), [c.firing_rate for c in snn])
    ax1.set_ylabel("firing rate (spikes / neuron / step)")
    eff = [c.effective_acs + c.effective_macs for c in snn]
    dense = [c.dense_acs + c.dense_macs for c in snn]
    ax2.bar([i - 0.2 for i in x], dense, 0.4, label="dense (all inputs active)", color="0.7")
    ax2.bar([i + 0.2 for i in x], eff, 0.4, label="effective (recorded spikes; stem: nonzero MACs)")
    ax2.set_yscale("symlog", linthresh=1)
    ax2.set_ylabel("synaptic ops per clip")
    ax2.legend(fontsize=8)
    ax2.set_xticks(list(x), names, rotation=45, ha="right", fontsize=8)
    fig.suptitle("SNN activity per layer")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_report(report: EnergyReport, out_dir: Path) -> None:
    """energy.json, energy.csv, plans.png and layers.png into ``out_dir`` (an existing folder)."""
    (out_dir / REPORT_NAME).write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    (out_dir / "energy.csv").write_text(csv_text(report))
    plot_plans(report, out_dir / "plans.png")
    plot_layers(report, out_dir / "layers.png")


@dataclass(frozen=True)
class EnergyRow:
    """One plan on one host (and chip) as ``energy.json`` holds it, in picojoules per clip."""

    plan: str
    title: str
    host: str
    chip: str | None
    compute_pj: float
    memory_pj: float
    compute_plus_memory_pj: float
    kinds: tuple[str, ...]
    memory_kinds: tuple[str, ...]
    components_pj: dict[str, float]
    layers_pj: dict[str, float]
    figures: tuple[FigureUse, ...]
    notes: tuple[str, ...]


@dataclass(frozen=True)
class EnergySummary:
    """What :func:`read_energy_report` reads back from ``energy.json``: the priced plans, the run,
    the precision and the caveats (the counts stay in the file)."""

    run_dir: str
    precision: str
    per: str
    caveats: tuple[str, ...]
    energy: tuple[EnergyRow, ...]


class EnergyReportError(RespikeError, ValueError):
    """An ``energy.json`` this version cannot read; the message names the file and field."""


def read_energy_report(path: str | Path) -> EnergySummary:
    """Read ``energy.json`` (format and version checked, each plan row typed field by field)."""
    data = _read(path, READABLE_VERSIONS)
    head = {k: data[k] for k in ("run_dir", "precision", "per", "caveats", "energy") if k in data}
    return from_data(EnergySummary, head, str(path), EnergyReportError, f"{path}: ")


def _read(path: str | Path, versions: tuple[int, ...]) -> dict:
    data = read_json(path, EnergyReportError)
    check_versions(data, path, EnergyReportError, format=FORMAT)
    if data.get("version") not in versions:
        raise EnergyReportError(f"{path}: version: this reader knows {' or '.join(map(str, versions))}, "
                                f"the file says {data.get('version')!r}" + (
                                    " (written before reports kept the counts' geometry: count the run "
                                    "again with respike-nm energy)" if data.get("version") == 1 else ""))
    return data


_INT_KEYED = ("snn_stage_shapes", "ann_stage_shapes", "snn_stage_layers")
_LAYER_DERIVED = ("activation_sparsity", "firing_rate")  # written beside each layer's counts, not read


def counts_from_dict(data: dict, where: str) -> ClipCounts:
    """The :class:`ClipCounts` of an ``energy.json`` document (version 2); errors name ``where``."""
    counts, geo = data.get("counts"), data.get("geometry")
    if not (isinstance(counts, dict) and isinstance(counts.get("layers"), list) and isinstance(geo, dict)):
        raise EnergyReportError(f"{where}: needs objects 'geometry' and 'counts' with a list 'layers'")
    layers = []
    for i, row in enumerate(counts["layers"]):
        if not isinstance(row, dict):
            raise EnergyReportError(f"{where}: counts.layers[{i}]: expected an object")
        fields = {k: v for k, v in row.items() if k not in _LAYER_DERIVED}
        layers.append(from_data(LayerCount, fields, f"{where}: counts.layers[{i}]", EnergyReportError,
                                f"{where}: counts.layers[{i}]."))
    geometry = dict(geo)
    for key in _INT_KEYED:
        if isinstance(geometry.get(key), dict):
            try:
                geometry[key] = {int(k): v for k, v in geometry[key].items()}
            except ValueError:
                raise EnergyReportError(f"{where}: geometry.{key}: keys must be stage numbers") from None
    c = from_data(ClipCounts, {**geometry, "layers": []}, f"{where}: geometry", EnergyReportError,
                  f"{where}: geometry.")
    return replace(c, layers=layers)


def read_counts(path: str | Path) -> tuple[ClipCounts, int, str, str]:
    """``(counts, graded bits, their source, run folder)`` of a saved ``energy.json``: everything
    needed to price it again, no model."""
    data = _read(path, (VERSION,))
    bits = data.get("graded_bits")
    if not isinstance(bits, dict) or not isinstance(bits.get("value"), int):
        raise EnergyReportError(f"{path}: graded_bits: expected an object with an integer 'value'")
    counts = counts_from_dict(data, str(path))
    return counts, bits["value"], str(bits.get("source", "")), str(data.get("run_dir"))


def price_counts(counts: ClipCounts, run_dir: str, graded_bits: int, graded_bits_source: str,
                 targets: list[HwProfile], host: HwProfile, memory: HwProfile, precision: str = "fp32",
                 plans: list[str] | None = None) -> EnergyReport:
    """Price ``plans`` (default: every default plan) of ``counts``: plans without a chip on every
    GPU/CMOS profile in ``targets``, plans with one on ``host`` with every neuromorphic profile in
    ``targets``; the memory term and traffic with ``memory``'s figures."""
    check_pricing(targets, host, memory, precision)
    built, skipped = build_plans(counts, graded_bits, plans)
    rows = price_plans(built, targets, host, memory, precision)
    profiles = {p.name: {"path": p.path, "target": p.target, "description": p.description}
                for p in [*targets, host, memory]}
    return EnergyReport(run_dir, precision, graded_bits, graded_bits_source, counts, built, rows, profiles,
                        skipped)


def price_plans(built: list[PlanCounts], targets: list[HwProfile], host: HwProfile | None, memory: HwProfile,
                precision: str = "fp32") -> list[PlanEnergy]:
    """Rows of already built plans: a plan without a chip on every GPU/CMOS profile in ``targets``, a
    plan with one on ``host`` with every neuromorphic profile in ``targets`` (``host`` None: chip plans
    are not priced)."""
    hosts = [t for t in targets if t.target in ("gpu", "cmos")]
    chips = [t for t in targets if t.target == "neuromorphic"]
    rows = []
    for p in built:
        if p.uses_chip:
            rows += [plan_energy(p, host, c, memory, precision) for c in chips] if host is not None else []
        else:
            rows += [plan_energy(p, h, None, memory, precision) for h in hosts]
    return rows


def check_pricing(targets: list[HwProfile], host: HwProfile, memory: HwProfile, precision: str) -> None:
    """Refuse, before anything is counted, profiles that lack a figure the pricing needs."""
    for key in (MEMORY_KEY, TRANSFER_KEY):
        if key not in memory.costs:
            raise ProfileError(f"{memory.path}: costs.{key} missing (needed by the memory term and traffic)")
    for h in (*[t for t in targets if t.target in ("gpu", "cmos")], host):
        mac_figure(h, precision)


def reprice(path: str | Path, targets: list[HwProfile], host: HwProfile, memory: HwProfile,
            precision: str = "fp32", plans: list[str] | None = None,
            graded_bits: int | None = None) -> EnergyReport:
    """Price the counts saved in ``energy.json`` ``path`` again (other profiles, plans, precision or
    graded width) without the model: equal to counting the run again with these settings."""
    counts, bits, source, run_dir = read_counts(path)
    if graded_bits is not None:
        bits, source = graded_bits, "given when re-pricing"
    return price_counts(counts, run_dir, bits, source, targets, host, memory, precision, plans)


def energy_report(model: nn.Module, batches, run_dir: str, graded_bits: int, graded_bits_source: str,
                  targets: list[HwProfile], host: HwProfile, memory: HwProfile,
                  precision: str = "fp32", counts: ClipCounts | None = None,
                  plans: list[str] | None = None) -> EnergyReport:
    """Count ``model`` (a quantized hybrid, eval mode) on ``batches`` of clips and price the plans
    (:func:`price_counts`). ``counts``: already counted (``batches`` is then not run)."""
    check_pricing(targets, host, memory, precision)  # fail before the model runs
    check_plans(plans)
    if model.snn is None or model.ann is None:
        raise UsageError(f"{run_dir}: a {model.spec.kind} run; the plans need a hybrid run")
    counts = counts if counts is not None else count_clips(model, batches)
    return price_counts(counts, run_dir, graded_bits, graded_bits_source, targets, host, memory, precision,
                        plans)


def table(report: EnergyReport) -> list[str]:
    """A short text table: one line per plan and target, uJ per clip, and the ratio to plan d."""
    base = {e.host: e.compute_pj for e in report.energy if e.plan == "d"}
    lines = [f"{'plan':<36} {'compute uJ':>11} {'memory uJ':>11} {'vs d':>7}  kinds"]
    for e in report.energy:
        ratio = f"{e.compute_pj / base[e.host]:.3f}" if base.get(e.host) else "-"
        lines.append(f"{row_label(e):<36} {e.compute_pj / 1e6:>11.2f} {e.memory_pj / 1e6:>11.2f} "
                     f"{ratio:>7}  {'+'.join(e.kinds)}")
    return lines
