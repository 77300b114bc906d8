"""Pricing a model at a scale nobody trained: dense counts from shapes, SNN activity assumed.

:func:`~respike_nm.energy.counters.count_shapes` gives every dense count of one clip (no weights, no
arithmetic); :func:`with_rates` gives the SNN its firing rates, which are

- measured by a trained run (a saved ``energy.json``) and mapped layer by layer by relative depth
  (:func:`rates_by_depth`: the model's layer ``j`` of ``n`` takes the run's rate at the same depth),
- one constant rate for every layer, or
- a sweep of constant rates (:func:`sweep`).

A layer fed binary spikes does ``dense x (firing rate of the layer before it)`` synaptic operations
and emits ``neuron updates x its own rate`` spikes; a layer fed graded values (the stem's residual
frames, a fusion point's features) is charged dense. Neuron updates are all priced as active
(nothing says which neurons an assumed rate leaves untouched: an upper bound on Loihi's split).

With one rate for every layer, every plan's energy is affine in the rate, ``E(r) = E(0) + r (E(1) -
E(0))`` (synaptic operations, spikes and their memory accesses scale with it; ANN, fusion, graded
layers, neuron updates and the dense spike map crossing to the GPU do not), so the break-even rate
against a baseline is a closed form (:func:`break_even`), checked against the priced sweep.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from respike_nm.energy.counters import ClipCounts
from respike_nm.energy.plans import PlanEnergy
from respike_nm.errors import UsageError

SHARES = ("ann", "fusion_layers", "fusion_attention", "snn", "traffic", "memory")


def snn_rates(counts: ClipCounts) -> list[float]:
    """The recorded firing rate of each SNN layer, in model order."""
    return [c.firing_rate for c in counts.layers if c.branch == "snn"]


def rates_by_depth(measured: Sequence[float], n: int) -> list[float]:
    """``n`` rates for a model with ``n`` SNN layers from the ``m`` measured ones: layer ``j`` takes
    the measured layer at the same relative depth, ``floor((j + 1/2) m / n)``."""
    if not measured:
        raise UsageError("no measured SNN firing rates to map (the run counted no SNN layer)")
    m = len(measured)
    return [float(measured[min(m - 1, math.floor((j + 0.5) * m / n))]) for j in range(n)]


def with_rates(counts: ClipCounts, rates: float | Sequence[float], label: str) -> ClipCounts:
    """``counts`` (dense, :func:`~respike_nm.energy.counters.count_shapes`) with SNN activity from
    firing ``rates`` (spikes per neuron per step: one for every layer, or one per SNN layer in model
    order); ``label`` says where the rates come from (it becomes the plans' ``activity``)."""
    snn = [c for c in counts.layers if c.branch == "snn"]
    per = [float(rates)] * len(snn) if isinstance(rates, (int, float)) else [float(r) for r in rates]
    if len(per) != len(snn):
        raise UsageError(f"{len(per)} firing rates for {len(snn)} SNN layers")
    bad = [r for r in per if not 0.0 <= r <= 1.0]
    if bad:
        raise UsageError(f"firing rates are spikes per neuron per step, between 0 and 1: got {bad[0]}")
    rate_of = dict(zip((c.name for c in snn), per, strict=True))
    layers, before = [], None
    for c in counts.layers:
        if c.branch != "snn":
            layers.append(c)
            continue
        rate = rate_of[c.name]
        if c.op == "synop":
            fed = 0.0 if before is None else before  # the spikes of the layer before it
            c = replace(c, effective_acs=c.dense_acs * fed, nonzero_inputs=c.inputs * fed)
        layers.append(replace(c, spikes_out=c.neuron_updates * rate, active_updates=c.neuron_updates,
                              active_known=False))
        before = rate
    return replace(counts, layers=layers, activity=label)


def row_key(e: PlanEnergy) -> tuple[str, str, str | None]:
    return e.plan, e.host, e.chip


def shares(e: PlanEnergy) -> dict[str, float]:
    """What the compute + memory total of one priced row is made of, as fractions: ANN (key-frame
    trunk and head), fusion layers, fusion attention products, SNN (wherever it runs), GPU<->chip
    traffic and the memory term."""
    parts = dict.fromkeys(SHARES, 0.0)
    for layer, pj in e.layers.items():
        if layer == "gpu<->chip":
            parts["traffic"] += pj
        elif layer.startswith("fusion."):
            parts["fusion_attention" if layer.endswith(".matmul") else "fusion_layers"] += pj
        elif layer.startswith("snn."):
            parts["snn"] += pj
        else:
            parts["ann"] += pj
    parts["memory"] = e.memory_pj
    total = e.compute_pj + e.memory_pj
    return {k: v / total if total else 0.0 for k, v in parts.items()}


@dataclass(frozen=True)
class BreakEven:
    """The firing rate at which ``plan`` on ``host`` (+ ``chip``) costs what ``against`` costs on the
    same host, for the compute total and for compute + memory. ``None``: no rate in [0, 1] breaks
    even; ``cheaper_at_zero`` then says on which side the plan stays."""

    plan: str
    host: str
    chip: str | None
    against: str
    compute_rate: float | None
    compute_cheaper_at_zero: bool
    with_memory_rate: float | None
    with_memory_cheaper_at_zero: bool


def _crossing(e0: float, e1: float, base: float) -> float | None:
    """The rate in [0, 1] where ``e0 + r (e1 - e0)`` equals ``base`` (None: none)."""
    slope = e1 - e0
    if slope <= 0:
        return None
    r = (base - e0) / slope
    return r if 0.0 <= r <= 1.0 else None


def break_even(at_zero: list[PlanEnergy], at_one: list[PlanEnergy],
               baselines: Sequence[str]) -> list[BreakEven]:
    """Break-even rates of every SNN plan row (priced at rate 0 and at rate 1) against each plan in
    ``baselines`` priced on the same host (baselines do not depend on the rate)."""
    ones = {row_key(e): e for e in at_one}
    base = {(e.plan, e.host): e for e in at_zero if e.plan in baselines}
    out = []
    for e0 in at_zero:
        if e0.plan in baselines or e0.chip is None:
            continue
        e1 = ones[row_key(e0)]
        for name in baselines:
            b = base.get((name, e0.host))
            if b is None:
                continue
            bm = b.compute_pj + b.memory_pj
            m0, m1 = e0.compute_pj + e0.memory_pj, e1.compute_pj + e1.memory_pj
            out.append(BreakEven(e0.plan, e0.host, e0.chip, name,
                                 _crossing(e0.compute_pj, e1.compute_pj, b.compute_pj),
                                 e0.compute_pj < b.compute_pj, _crossing(m0, m1, bm), m0 < bm))
    return out


def sweep_rates(low: float, high: float, points: int) -> list[float]:
    """``points`` rates from ``low`` to ``high`` (fractions), evenly spaced on a log scale."""
    if not 0 < low < high <= 1 or points < 2:
        raise UsageError(f"a rate sweep needs 0 < low < high <= 1 and at least 2 points, got "
                         f"{low}, {high}, {points}")
    return [low * (high / low) ** (i / (points - 1)) for i in range(points)]


CONVENTION_RATES = (0.01, 0.05, 0.10, 0.20)  # rates of the SNN-paper-convention grid


def _priced(counts: ClipCounts, graded_bits: int, targets, memory, precision: str):
    """``(plans, rows, skipped)``: every default plan of ``counts`` on every target: plans without a
    chip on each GPU/CMOS profile, plans with one on each GPU/CMOS host paired with each chip."""
    from respike_nm.energy.plans import build_plans
    from respike_nm.energy.report import price_plans

    built, skipped = build_plans(counts, graded_bits)
    rows = price_plans([p for p in built if not p.uses_chip], targets, None, memory, precision)
    for host in (t for t in targets if t.target in ("gpu", "cmos")):
        rows += price_plans([p for p in built if p.uses_chip], targets, host, memory, precision)
    return built, rows, skipped


def _row(e: PlanEnergy, rate: float | None) -> dict:
    return {"plan": e.plan, "title": e.title, "host": e.host, "chip": e.chip, "rate": rate,
            "compute_pj": e.compute_pj, "memory_pj": e.memory_pj,
            "compute_plus_memory_pj": e.compute_pj + e.memory_pj, "shares": shares(e)}


def price_scale(counts: ClipCounts, rates: Sequence[float], targets, memory, cmos, graded_bits: int,
                precision: str = "fp32", measured: Sequence[float] | None = None,
                measured_source: str = "") -> dict:
    """Price dense ``counts`` (:func:`~respike_nm.energy.counters.count_shapes`) at every constant
    firing rate in ``rates`` (and at ``measured`` per-layer rates, mapped by depth), on every target;
    break-even rates against plan d and each 3D CNN; shares; and the SNN-paper convention (``cmos``'s
    45 nm figures) beside the per-target accounting. A JSON-ready dict."""
    from respike_nm.energy.conventions import snn_paper_pj

    n = sum(1 for c in counts.layers if c.branch == "snn")
    zero_plans, zero, skipped = _priced(with_rates(counts, 0.0, "constant 0"), graded_bits, targets, memory,
                                        precision)
    _, one, _ = _priced(with_rates(counts, 1.0, "constant 1"), graded_bits, targets, memory, precision)
    baselines = [p.plan for p in zero_plans if not p.uses_chip and p.plan != "a"]
    rows, paper = [], []
    cases = [(r, with_rates(counts, r, f"constant firing rate {r:.4g}")) for r in rates]
    if measured is not None:
        mapped = rates_by_depth(measured, n)
        label = f"measured rates mapped by depth ({measured_source})"
        cases.append((None, with_rates(counts, mapped, label)))
    for rate, c in cases:
        plans, priced, _ = _priced(c, graded_bits, targets, memory, precision)
        rows += [_row(e, rate) for e in priced]
        paper += [{"plan": p.plan, "rate": rate, "attention_pj": snn_paper_pj(p, cmos, True),
                   "no_attention_pj": snn_paper_pj(p, cmos, False)} for p in plans]
    grid = convention_grid(counts, graded_bits, cmos)
    return {
        "per": "clip",
        "activity": "SNN firing rates assumed (constant per sweep point) or measured and mapped by depth",
        "snn_layers": n, "rates": list(rates),
        "measured_rates": None if measured is None else {"source": measured_source,
                                                         "mapped": rates_by_depth(measured, n)},
        "dense_gmacs": dense_by_part(zero_plans),
        "skipped_plans": skipped,
        "baselines": baselines,
        "rows": rows,
        "break_even": [vars(b) for b in break_even(zero, one, baselines)],
        "snn_paper_convention": {"profile": cmos.name, "rows": paper},
        "convention_grid": grid,
    }


def dense_by_part(plans) -> dict[str, float]:
    """Dense GMACs per clip of plan a (everything on the GPU) by part, and of every baseline plan."""
    out: dict[str, float] = {}
    for p in plans:
        if p.plan == "a":
            for w in p.layers:
                part = ("fusion_attention" if w.op == "matmul" else w.layer.split(".", 1)[0])
                out[f"respike.{part}"] = out.get(f"respike.{part}", 0.0) + w.count / 1e9
        elif not p.uses_chip:
            out[p.plan] = sum(w.count for w in p.layers) / 1e9
    return out


def convention_grid(counts: ClipCounts, graded_bits: int, cmos) -> list[dict]:
    """Which assumptions give which ReSpike-vs-3D-CNN energy ratio under the SNN-paper convention:
    each 3D CNN on the same clips or at torchvision's documented input (its ``_ops``), ReSpike with
    multi-scale fusion (plan b) with and without the attention products, or with no fusion cost at
    all (ANN + SNN + head only), at the rates of :data:`CONVENTION_RATES`."""
    from respike_nm.energy.baselines import BASELINES
    from respike_nm.energy.conventions import MAC_KEY, snn_paper_pj
    from respike_nm.energy.plans import build_plans

    mac = cmos.energy_pj(MAC_KEY)
    base_plans, _ = build_plans(counts, graded_bits, [f"e:{k}" for k in BASELINES])
    same = {p.plan[2:]: sum(w.count for w in p.layers) for p in base_plans}
    out = []
    for rate in CONVENTION_RATES:
        (b,), _ = build_plans(with_rates(counts, rate, "grid"), graded_bits, ["b"])
        respike = {"fusion with attention products": snn_paper_pj(b, cmos, True),
                   "fusion without attention products": snn_paper_pj(b, cmos, False),
                   "no fusion cost": snn_paper_pj(b, cmos, False) - mac * sum(
                       w.count for w in b.layers if w.device == "gpu" and w.layer.startswith("fusion."))}
        for key, bl in BASELINES.items():
            for where, macs in (("same clips", same.get(key)), (
                    f"torchvision's {'x'.join(map(str, bl.reference))}", bl.documented_gmacs * 1e9)):
                if macs is None:
                    continue
                for how, pj in respike.items():
                    out.append({"rate": rate, "baseline": key, "baseline_input": where, "respike": how,
                                "ratio": macs * mac / pj, "baseline_pj": macs * mac, "respike_pj": pj})
    return out


def plot_scale(result: dict, path, title: str, against: str, share_rate: float) -> None:
    """One panel per GPU/CMOS host: energy per clip (compute) of ReSpike with the SNN on each chip
    (plan b) against the SNN firing rate, the 3D CNNs and plan d as flat lines (they have no SNN),
    ``against`` in red with its break-even rates marked; last panel: what plan b's compute + memory
    total is made of at ``share_rate``."""
    from matplotlib.figure import Figure

    rows = [r for r in result["rows"] if r["rate"] is not None]
    hosts = list(dict.fromkeys(r["host"] for r in rows))
    chips = list(dict.fromkeys(r["chip"] for r in rows if r["chip"]))
    fig = Figure(figsize=(5.2 * (len(hosts) + 1), 6.4))
    axes = fig.subplots(1, len(hosts) + 1)
    rates = sorted({r["rate"] for r in rows})
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:cyan", "tab:olive"]
    for ax, host in zip(axes, hosts, strict=False):
        for k, chip in enumerate(chips):
            line = [r for r in rows if r["plan"] == "b" and r["host"] == host and r["chip"] == chip]
            ax.plot([100 * r["rate"] for r in line], [r["compute_pj"] / 1e9 for r in line],
                    marker="o" if k % 2 else ".", markersize=4 if k % 2 else 6,
                    color=colours[k % len(colours)], linestyle="-" if k % 2 == 0 else "-.",
                    label=f"ReSpike (plan b), SNN on {chip}")
        for base in result["baselines"]:
            flat = next((r for r in rows if r["plan"] == base and r["host"] == host), None)
            if flat is None:
                continue
            style = ({"color": "red", "linestyle": "--", "linewidth": 2} if base == f"e:{against}" else
                     {"color": "black", "linestyle": ":"} if base == "d" else
                     {"color": "0.55", "linestyle": "--", "linewidth": 1})
            ax.axhline(flat["compute_pj"] / 1e9, **style, label=flat["title"])
            ax.annotate(flat["title"].removeprefix("3D CNN "), (1.0, flat["compute_pj"] / 1e9),
                        xycoords=("axes fraction", "data"), xytext=(-2, 2), textcoords="offset points",
                        ha="right", va="bottom", fontsize=7, color=style["color"])
        for b in result["break_even"]:
            crossing = b["host"] == host and b["plan"] == "b" and b["against"] == f"e:{against}"
            if crossing and b["compute_rate"]:
                flat = next(r for r in rows if r["plan"] == b["against"] and r["host"] == host)
                ax.plot([100 * b["compute_rate"]], [flat["compute_pj"] / 1e9], "o", color="red", markersize=8)
        ax.set_xscale("log")
        ax.set_yscale("log")
        if rates[-1] > rates[0]:  # one measured rate: matplotlib picks a span around it
            ax.set_xlim(100 * rates[0], 100 * rates[-1])
        ax.set_xlabel("SNN firing rate (% of neurons spiking per step)")
        ax.set_ylabel(f"energy per clip, mJ (compute; ANN side on {host})")
        ax.set_title(f"host {host}", fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=2)
    ax = axes[-1]
    nearest = min(rates, key=lambda x: abs(x - share_rate))
    picked = [r for r in rows if r["plan"] == "b" and r["rate"] == nearest and r["host"] == hosts[0]]
    left = [0.0] * len(picked)
    for part in SHARES:
        vals = [100 * r["shares"][part] for r in picked]
        ax.barh(range(len(picked)), vals, left=left, label=part.replace("_", " "))
        left = [a + b for a, b in zip(left, vals, strict=True)]
    ax.set_yticks(range(len(picked)), [f"{hosts[0]} + {r['chip']}" for r in picked], fontsize=8)
    ax.set_xlabel(f"share of compute + memory, plan b at {100 * picked[0]['rate']:.1f} % firing")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13), ncol=3)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)


def _even(rate: float | None, cheaper: bool) -> str:
    if rate is not None:
        return f"{100 * rate:.1f} %"
    return "cheaper at every rate" if cheaper else "never cheaper"


def scale_table(result: dict, against: str) -> list[str]:
    """Text table: per host and chip, ReSpike (plan b) energy per clip at the sweep's ends, the
    baseline ``against`` and plan d on the same host, and the break-even rates (compute only)."""
    rows = [r for r in result["rows"] if r["rate"] is not None]
    lo, hi = min(r["rate"] for r in rows), max(r["rate"] for r in rows)
    base = {(r["plan"], r["host"]): r["compute_pj"] for r in rows}
    even = {(b["host"], b["chip"], b["against"]): b for b in result["break_even"] if b["plan"] == "b"}
    at_lo, at_hi = f"b @{100 * lo:.3g}%", f"b @{100 * hi:.3g}%"
    head = (f"{'host + chip':<22} {at_lo:>10} {at_hi:>10} {against:>12} {'plan d':>9}  "
            f"break-even vs {against} / vs d   (mJ per clip, compute)")
    lines = [head]
    for r in rows:
        if r["plan"] != "b" or r["rate"] != lo:
            continue
        top = next(x for x in rows if x["plan"] == "b" and x["rate"] == hi and x["host"] == r["host"]
                   and x["chip"] == r["chip"])
        e, d = even.get((r["host"], r["chip"], f"e:{against}")), even.get((r["host"], r["chip"], "d"))
        cnn = base.get((f"e:{against}", r["host"]), float("nan"))
        lines.append(f"{r['host'] + ' + ' + r['chip']:<22} {r['compute_pj'] / 1e9:>10.2f} "
                     f"{top['compute_pj'] / 1e9:>10.2f} {cnn / 1e9:>12.2f} "
                     f"{base[('d', r['host'])] / 1e9:>9.2f}  "
                     f"{_even(e['compute_rate'], e['compute_cheaper_at_zero']) if e else '-'} / "
                     f"{_even(d['compute_rate'], d['compute_cheaper_at_zero']) if d else '-'}")
    return lines
