"""Energy commands.

- ``respike-nm energy RUN_DIR``: count a trained run's operations on test clips and compare the
  deployment plans on every hardware target (energy.json, energy.csv, plots, and a short table).
- ``respike-nm reprice REPORT``: price a saved energy.json again with other profiles or plans, no
  model needed.
- ``respike-nm price PRESET``: price a preset at its own scale (e.g. ``paper-r18``) from its dense
  counts and SNN firing rates swept, constant or measured, against the 3D CNNs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from respike_nm.cli import positive_int

GRADED_REFERENCE = "loihi2"  # without an export, graded messages at this target's graded-spike width
SILENT_RATE = 1e-3  # below this mean SNN firing rate (spikes per neuron update) the chip has nothing to do


def add_parser(sub) -> None:
    p = sub.add_parser(
        "energy", help="energy per clip of the deployment plans on every hardware target",
        description="Run test clips through a trained run with operation counters (MACs, synaptic "
                    "operations from the recorded spikes, neuron updates, GPU<->chip bytes) and price "
                    "plans a (all GPU), b (GPU + chip, multi-scale fusion), c (late fusion), d (ANN "
                    "on every frame) and e:<name> (a torchvision 3D CNN on the same clips) with "
                    "hw_profiles figures. Writes OUT/energy.json, energy.csv, "
                    "plans.png, layers.png (temporary folder, renamed when complete).")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", required=True, type=Path, help="report folder (must not exist)")
    _pricing_args(p)
    p.add_argument("--clips", type=positive_int, default=8, help="test clips to count (default 8)")
    p.add_argument("--host", default="h100", help="GPU-side profile for plans b and c (default h100)")
    p.add_argument("--export", type=Path, help="an export folder: graded messages at its manifest's "
                   f"width (default: {GRADED_REFERENCE}'s graded-spike width, an upper bound)")
    p.add_argument("--batch", type=positive_int, default=4, help="clips per forward pass (default 4)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="count the batches in this many processes (same report; default 1)")
    p.add_argument("--plans", help="comma-separated plans to price (default: every default plan: "
                   "a, b, c, d and e:<3D CNN>)")
    p.add_argument("--json", action="store_true", help="print energy.json instead of the table")
    p.set_defaults(func=run_energy)
    _add_reprice(sub)
    _add_price(sub)


def _pricing_args(p) -> None:
    from respike_nm.energy import PRECISIONS

    p.add_argument("--targets", default="", help="comma-separated profile names or YAML files "
                   "(default: every shipped profile)")
    p.add_argument("--memory-profile", default="cmos45nm",
                   help="profile with the SRAM/DRAM figures of the memory term and the traffic")
    p.add_argument("--precision", default="fp32", choices=tuple(PRECISIONS),
                   help="arithmetic of the GPU side (default fp32)")


def _add_reprice(sub) -> None:
    p = sub.add_parser(
        "reprice", help="price a saved energy.json again with other profiles or plans (no model)",
        description="Read the counts a saved energy.json keeps (per-layer operations, spikes and the clip "
                    "geometry) and price them again: other hardware profiles, another host, precision, "
                    "plan set or graded width. The figures equal counting the run again with the same "
                    "settings. Writes OUT/energy.json, energy.csv, plans.png, layers.png.")
    p.add_argument("report", type=Path, help="a saved energy.json (written by respike-nm energy)")
    p.add_argument("--out", required=True, type=Path, help="report folder (must not exist)")
    _pricing_args(p)
    p.add_argument("--host", default="h100", help="GPU-side profile for the chip plans (default h100)")
    p.add_argument("--plans", help="comma-separated plans (default: every default plan)")
    p.add_argument("--graded-bits", type=positive_int,
                   help="width of graded messages (default: the report's)")
    p.set_defaults(func=run_reprice)


def _add_price(sub) -> None:
    p = sub.add_parser(
        "price", help="price a preset at its own scale against 3D CNNs over SNN firing rates",
        description="Price a preset (e.g. paper-r18) without training it: its exact dense counts of one "
                    "clip from shapes (no weights, no arithmetic) and SNN firing rates that are swept "
                    "(default 0.5-30 %%), constant (--rate) or measured by a trained run (--rates-from, "
                    "mapped layer by layer by relative depth). Prices every plan on every target, gives "
                    "the break-even firing rate against plan d and each 3D CNN, the share of ANN, fusion, "
                    "attention, SNN, traffic and memory, and the SNN-paper convention (45 nm, compute "
                    "only) beside the per-target accounting. Writes OUT/scale.json, scale.csv, scale.png.")
    p.add_argument("config", metavar="PRESET", help="a preset (paper-r18, paper-r50, real-small, tiny) or a "
                   "YAML config")
    p.add_argument("--out", required=True, type=Path, help="output folder (must not exist)")
    p.add_argument("--against", default="r2plus1d_18",
                   help="the 3D CNN to highlight: r3d_18, mc3_18, r2plus1d_18 (default) or s3d "
                        "(energy.baselines.BASELINES; every one that fits the clips is priced)")
    p.add_argument("--sweep", nargs=3, type=float, metavar=("LOW", "HIGH", "POINTS"), default=(0.5, 30, 13),
                   help="firing rates in %% of neurons per step, log-spaced (default 0.5 30 13)")
    p.add_argument("--rate", type=float, help="one constant firing rate in %% instead of a sweep")
    p.add_argument("--rates-from", type=Path, help="a trained run's energy.json: its measured per-layer "
                   "rates, mapped by relative depth, priced beside the sweep")
    p.add_argument("--classes", type=positive_int, default=101, help="classes of the head (default 101)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="config override, e.g. data.size=112 (repeatable)")
    _pricing_args(p)
    p.add_argument("--json", action="store_true", help="print scale.json instead of the table")
    p.set_defaults(func=run_price)


def _targets(text: str):
    from respike_nm.hardware import load_profile

    return [load_profile(t.strip()) for t in text.split(",") if t.strip()] or None


def _plans(text: str | None) -> list[str] | None:
    """``--plans a,b,...`` as a list (None: every default plan)."""
    return [k.strip() for k in text.split(",") if k.strip()] if text else None


def run_reprice(args) -> int:
    from respike_nm.atomic import atomic_dir
    from respike_nm.energy.report import reprice, table, write_report
    from respike_nm.hardware import builtin_profiles, load_profile

    targets = _targets(args.targets) or [load_profile(n) for n in builtin_profiles()]
    report = reprice(args.report, targets, load_profile(args.host), load_profile(args.memory_profile),
                     args.precision, _plans(args.plans), args.graded_bits)
    with atomic_dir(args.out, "report folder") as tmp:
        write_report(report, tmp)
    print(f"re-priced {args.report} ({report.counts.clips} clips of {report.run_dir}), {args.precision}")
    print("\n".join(table(report)))
    print(f"wrote {args.out}/energy.json, energy.csv, plans.png, layers.png")
    return 0


def run_price(args) -> int:
    from respike_nm.api import price_preset
    from respike_nm.energy.scale import scale_table, sweep_rates
    from respike_nm.errors import UsageError

    if args.rate is not None:
        if not 0 <= args.rate <= 100:
            raise UsageError(f"--rate is a percentage between 0 and 100, got {args.rate}")
        rates = [args.rate / 100]
    else:
        low, high, points = args.sweep
        if points != int(points):
            raise UsageError(f"--sweep POINTS must be a whole number, got {points}")
        rates = sweep_rates(low / 100, high / 100, int(points))
    bits, source = graded_bits(None)
    result = price_preset(args.config, args.out, rates=rates, measured_from=args.rates_from,
                          against=args.against, classes=args.classes, overrides=args.overrides,
                          targets=_targets(args.targets), memory=args.memory_profile,
                          precision=args.precision, graded_bits=bits, graded_bits_source=source)
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    clip = result["clip"]
    print(f"{args.config}: {clip['size']}x{clip['size']}, T={clip['frames']}, {result['fusion']} fusion, "
          f"{args.precision}; dense GMACs per clip: "
          + ", ".join(f"{k} {v:.2f}" for k, v in result["dense_gmacs"].items()))
    print("\n".join(scale_table(result, args.against)))
    for plan, why in result["skipped_plans"].items():
        print(f"  {plan} not priced: {why}")
    print(f"wrote {args.out}/scale.json, scale.csv, scale.png")
    return 0


def graded_bits(export: Path | None) -> tuple[int, str]:
    """Width of the graded messages: an export's manifest's, else the reference profile's graded-spike
    width (an upper bound)."""
    from respike_nm.hardware import load_profile

    if export is not None:
        from conversion.manifest import read_manifest

        bits = {s.input_message_bits for s in read_manifest(export / "manifest.json").stages}
        return max(bits), f"input_message_bits of {export / 'manifest.json'}"
    prof = load_profile(GRADED_REFERENCE)
    return prof.limit("graded_spike_bits"), f"{prof.path} limits.graded_spike_bits (an upper bound)"


def run_energy(args) -> int:
    from respike_nm.api import price_run
    from respike_nm.energy.report import CAVEATS, table
    from respike_nm.hardware import load_profile

    targets = _targets(args.targets)
    bits, bits_source = graded_bits(args.export)
    report = price_run(args.run_dir, args.out, bits, bits_source, targets=targets, host=args.host,
                       memory=args.memory_profile, precision=args.precision, clips=args.clips,
                       batch=args.batch, progress=_bar, workers=args.workers,
                       plans=_plans(args.plans))
    if report is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    rate = snn_firing_rate(report.counts.layers)
    if rate is not None and rate < SILENT_RATE:
        print(f"respike-nm: warning: the SNN is near-silent ({rate:.2e} spikes per neuron update, below "
              f"{SILENT_RATE:g}): its chip energy is mostly idle neurons, and its accuracy comes from the "
              "ANN", file=sys.stderr)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        c = report.counts
        print(f"energy per clip, {c.clips} clips of {args.run_dir} ({c.fusion} fusion), "
              f"{args.precision}; plans b/c on {load_profile(args.host).name}")
        print("\n".join(table(report)))
        notes = dict.fromkeys(n for e in report.energy for n in e.notes)
        print("caveats:")
        for text in (*CAVEATS, *notes):
            print(f"  - {text}")
        print(f"wrote {args.out}/energy.json, energy.csv, plans.png, layers.png")
    return 0


def _bar(batches):
    from tqdm import tqdm

    return tqdm(batches, desc="count", unit="batch", file=sys.stderr, leave=False, disable=None)


def snn_firing_rate(layers) -> float | None:
    """Spikes per neuron update over the SNN's layers (None: no SNN layer was counted)."""
    from respike_nm.models.activity import firing_rate

    snn = [la for la in layers if la.branch == "snn" and la.neuron_updates]
    if not snn:
        return None
    return firing_rate(sum(la.spikes_out for la in snn), sum(la.neuron_updates for la in snn))
