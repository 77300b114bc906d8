"""``respike-nm energy RUN_DIR``: count a trained run's operations on test clips and compare the four
deployment plans on every hardware target (energy.json, energy.csv, plots, and a short table)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

GRADED_REFERENCE = "loihi2"  # without an export, graded messages at this target's graded-spike width


def add_parser(sub) -> None:
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
    p.add_argument("--clips", type=int, default=8, help="test clips to count (default 8)")
    p.add_argument("--host", default="h100", help="GPU-side profile for plans b and c (default h100)")
    p.add_argument("--memory-profile", default="cmos45nm",
                   help="profile with the SRAM/DRAM figures of the memory term and the traffic")
    p.add_argument("--precision", default="fp32", choices=("fp32", "fp16", "int8"),
                   help="arithmetic of the GPU side (default fp32)")
    p.add_argument("--export", type=Path, help="an export folder: graded messages at its manifest's "
                   f"width (default: {GRADED_REFERENCE}'s graded-spike width, an upper bound)")
    p.add_argument("--batch", type=int, default=4, help="clips per forward pass (default 4)")
    p.add_argument("--json", action="store_true", help="print energy.json instead of the table")
    p.set_defaults(func=run_energy)


def _graded_bits(export: Path | None) -> tuple[int, str]:
    from respike_nm.hardware import load_profile

    if export is not None:
        from conversion.manifest import read_manifest

        bits = {s.input_message_bits for s in read_manifest(export / "manifest.json").stages}
        return max(bits), f"input_message_bits of {export / 'manifest.json'}"
    prof = load_profile(GRADED_REFERENCE)
    return prof.limit("graded_spike_bits"), f"{prof.path} limits.graded_spike_bits (an upper bound)"


def _profiles(args):
    from respike_nm.energy.plans import MEMORY_KEY, TRANSFER_KEY
    from respike_nm.hardware import ProfileError, builtin_profiles, load_profile

    names = [t.strip() for t in args.targets.split(",") if t.strip()] or builtin_profiles()
    targets = [load_profile(n) for n in names]
    host, memory = load_profile(args.host), load_profile(args.memory_profile)
    for key in (MEMORY_KEY, TRANSFER_KEY):
        if key not in memory.costs:
            raise ProfileError(f"{memory.path}: costs.{key} missing (needed by the memory term and traffic)")
    hosts = [t for t in targets if t.target in ("gpu", "cmos")]
    chips = [t for t in targets if t.target == "neuromorphic"]
    return hosts, chips, host, memory, [*targets, host, memory]


def _batches(cfg, clips: int, batch: int):
    import torch

    from respike_nm.data.transforms import normalize
    from respike_nm.train.builder import build_datasets

    _, test, _, _ = build_datasets(cfg)
    n = min(clips, len(test))
    if n < 1:
        raise ValueError(f"{cfg.data.dataset}: no test clips to count")
    for start in range(0, n, batch):
        samples = [test[i] for i in range(start, min(n, start + batch))]
        yield normalize(torch.stack([s.video[0] for s in samples if s is not None]))


def run_energy(args) -> int:
    from respike_nm.energy.counters import count_clips
    from respike_nm.energy.plans import mac_figure, plan_counts, plan_energy
    from respike_nm.energy.report import EnergyReport, table, write_report
    from respike_nm.train.loop import load_run

    if args.out.exists():
        raise ValueError(f"{args.out}: already exists; choose a new report folder")
    if args.clips < 1 or args.batch < 1:
        raise ValueError("--clips and --batch must be at least 1")
    hosts, chips, host, memory, used = _profiles(args)
    for h in (*hosts, host):
        mac_figure(h, args.precision)  # fail before the model runs
    bits, bits_source = _graded_bits(args.export)
    model, cfg, _ = load_run(args.run_dir, quantize=True)  # what would be deployed
    model.eval()
    if model.snn is None or model.ann is None:
        raise ValueError(f"{args.run_dir}: a {model.spec.kind} run; the plans need a hybrid run")
    counts = count_clips(model, _batches(cfg, args.clips, args.batch))
    plans = plan_counts(counts, bits)
    rows = []
    for p in plans:
        if p.plan in ("a", "d"):
            rows += [plan_energy(p, h, None, memory, args.precision) for h in hosts]
        else:
            rows += [plan_energy(p, host, c, memory, args.precision) for c in chips]
    profiles = {p.name: {"path": p.path, "target": p.target, "description": p.description} for p in used}
    report = EnergyReport(str(args.run_dir.resolve()), args.precision, bits, bits_source, counts, plans,
                          rows, profiles)
    tmp = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
    tmp.mkdir(parents=True)
    try:
        write_report(report, tmp)
        os.replace(tmp, args.out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
    else:
        print(f"energy per clip, {counts.clips} clips of {args.run_dir} ({counts.fusion} fusion), "
              f"{args.precision}; plans b/c on {host.name}")
        print("\n".join(table(report)))
        print(f"wrote {args.out}/energy.json, energy.csv, plans.png, layers.png")
    return 0
