"""``respike-nm energy RUN_DIR``: count a trained run's operations on test clips and compare the four
deployment plans on every hardware target (energy.json, energy.csv, plots, and a short table)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from respike_nm.cli import positive_int

GRADED_REFERENCE = "loihi2"  # without an export, graded messages at this target's graded-spike width
SILENT_RATE = 1e-3  # below this mean SNN firing rate (spikes per neuron update) the chip has nothing to do


def add_parser(sub) -> None:
    from respike_nm.energy import PRECISIONS

    p = sub.add_parser(
        "energy", help="energy per clip of four deployment plans on every hardware target",
        description="Run test clips through a trained run with operation counters (MACs, synaptic "
                    "operations from the recorded spikes, neuron updates, GPU<->chip bytes) and price "
                    "plans a (all GPU), b (GPU + chip, multi-scale fusion), c (late fusion) and d (ANN "
                    "on every frame) with hw_profiles figures. Writes OUT/energy.json, energy.csv, "
                    "plans.png, layers.png (temporary folder, renamed when complete).")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", required=True, type=Path, help="report folder (must not exist)")
    p.add_argument("--targets", default="", help="comma-separated profile names or YAML files "
                   "(default: every shipped profile)")
    p.add_argument("--clips", type=positive_int, default=8, help="test clips to count (default 8)")
    p.add_argument("--host", default="h100", help="GPU-side profile for plans b and c (default h100)")
    p.add_argument("--memory-profile", default="cmos45nm",
                   help="profile with the SRAM/DRAM figures of the memory term and the traffic")
    p.add_argument("--precision", default="fp32", choices=tuple(PRECISIONS),
                   help="arithmetic of the GPU side (default fp32)")
    p.add_argument("--export", type=Path, help="an export folder: graded messages at its manifest's "
                   f"width (default: {GRADED_REFERENCE}'s graded-spike width, an upper bound)")
    p.add_argument("--batch", type=positive_int, default=4, help="clips per forward pass (default 4)")
    p.add_argument("--workers", type=positive_int, default=1,
                   help="count the batches in this many processes (same report; default 1)")
    p.add_argument("--json", action="store_true", help="print energy.json instead of the table")
    p.set_defaults(func=run_energy)


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

    targets = [load_profile(t.strip()) for t in args.targets.split(",") if t.strip()] or None
    bits, bits_source = graded_bits(args.export)
    report = price_run(args.run_dir, args.out, bits, bits_source, targets=targets, host=args.host,
                       memory=args.memory_profile, precision=args.precision, clips=args.clips,
                       batch=args.batch, progress=_bar, workers=args.workers)
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
