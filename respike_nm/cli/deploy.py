"""``respike-nm export`` and ``respike-nm simulate``: the only place the library reaches into
``conversion`` (lazily, inside the commands), so that ``respike_nm`` imports without Lava."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from respike_nm.cli import positive_int

VERIFY_FAILED = 3  # simulate's exit code when Lava and PyTorch disagree anywhere (2: bad input)


def add_parser(sub) -> None:
    ex = sub.add_parser(
        "export", help="export a trained run's SNN branch to Lava netx (one HDF5 per stage)",
        description="Fold BN, quantize to the target's fixed point, cut the SNN at every fusion "
                    "point and write one netx HDF5 per stage plus manifest.json (temporary folder, "
                    "renamed when complete). The paper-faithful resnet SNN is refused.")
    ex.add_argument("run_dir", type=Path)
    ex.add_argument("--out", required=True, type=Path, help="export folder (must not exist)")
    ex.add_argument("--json", action="store_true", help="print the manifest and the mapping report as JSON")
    ex.set_defaults(func=run_export)

    sim = sub.add_parser(
        "simulate", help="run an export in Lava and verify it against the quantized PyTorch model",
        description="Load every stage with netx, run it in Lava (Loihi2SimCfg fixed_pt) on test "
                    "clips, compare spikes stage by stage with the quantized PyTorch reference, and "
                    "run the hybrid (ANN + fusion in PyTorch, SNN in Lava) to compare predictions. "
                    "Writes EXPORT_DIR/verify.json. Exit code 0: every spike of every layer, every "
                    "prediction and every exported integer agree; 3: something differs (each difference "
                    "named on stderr); 2: bad input. Layers that never fired are named in a warning.")
    sim.add_argument("export_dir", type=Path)
    sim.add_argument("--run", type=Path, help="the trained run (default: the one it was exported from)")
    sim.add_argument("--clips", type=positive_int, default=8, help="test clips to run (default 8)")
    sim.add_argument("--workers", type=positive_int, default=1,
                     help="processes to split the clips over, each with its own Lava networks (default 1)")
    sim.add_argument("--json", action="store_true")
    sim.set_defaults(func=run_simulate)

    mp = sub.add_parser(
        "map", help="hardware mapping report of an export: cores, chips and limits per target",
        description="Per layer: neurons, synapses, fan-in, fan-out, weight bits, synaptic memory; per "
                    "neuromorphic profile: cores and chips needed and every limit exceeded (conventions "
                    "in conversion/mapping.py). `export` writes the same report as mapping.json.")
    mp.add_argument("export_dir", type=Path)
    mp.add_argument("--targets", nargs="+", metavar="NAME_OR_FILE",
                    help="hardware profiles (default: every shipped neuromorphic profile)")
    mp.add_argument("--json", action="store_true")
    mp.set_defaults(func=run_map)


def run_export(args) -> int:
    from conversion.mapping import MAPPING_NAME, mapping_to_dict
    from conversion.pipeline import export_run
    from respike_nm.records import to_data

    result = export_run(args.run_dir, args.out)
    if args.json:
        print(json.dumps({"out": str(result.out), "manifest": to_data(result.manifest),
                          "mapping": mapping_to_dict(result.mapping)}, indent=2))
        return 0
    for st in result.manifest.stages:
        print(f"stage {st.index}: {len(st.layers)} layers, input {st.input_shape} -> output "
              f"{st.output_shape}, T'={st.time_steps}, {st.hdf5}")
    print(f"exported {len(result.manifest.stages)} stage network(s) to {args.out}")
    _print_targets(result.mapping)
    print(f"hardware mapping in {args.out / MAPPING_NAME} (per layer: respike-nm map {args.out})")
    return 0


def run_map(args) -> int:
    from conversion.mapping import map_export, mapping_to_dict
    from respike_nm.hardware import load_profile

    profiles = [load_profile(t) for t in args.targets] if args.targets else None
    report = map_export(args.export_dir, profiles)
    if args.json:
        print(json.dumps(mapping_to_dict(report), indent=2))
        return 0
    print(f"{'layer':<16} {'input':>12} {'output':>12} {'neurons':>8} {'synapses':>9} {'fan-in':>6} "
          f"{'fan-out':>7} {'w.bits':>6} {'memory bits':>11}")
    for la in report.layers:
        shape_in, shape_out = ("x".join(map(str, s)) for s in (la.input_shape, la.output_shape))
        print(f"{la.name:<16} {shape_in:>12} {shape_out:>12} {la.neurons:>8} {la.synapses:>9} "
              f"{la.fan_in:>6} {la.fan_out:>7} {la.weight_bits:>6} "
              f"{la.memory_bits:>11}")
    print(f"total: {sum(la.neurons for la in report.layers)} neurons, "
          f"{sum(la.synapses for la in report.layers)} synapses "
          "(memory bits: one stored weight per connection, at the weight bits used)")
    _print_targets(report)
    return 0


def _print_targets(report) -> None:
    """One line per target: cores, chips, whether it fits, and the limits exceeded."""
    print(f"{'target':<11} {'cores':>5} {'chips':>5} {'fits':>4}  limits exceeded")
    for t in report.targets:
        over: dict[tuple[str, str], list[str]] = {}
        for e in t.exceeded:
            over.setdefault((e.limit, e.effect), []).append(e.layer)
        text = "; ".join(f"{limit} ({effect}: {_layers(names)})" for (limit, effect), names in over.items())
        print(f"{t.profile:<11} {_count(t.cores):>5} {_count(t.chips):>5} {'yes' if t.fits else 'no':>4}  "
              f"{text or '-'}")


def _layers(names: list[str]) -> str:
    return names[0] if len(names) == 1 else f"{len(names)} layers"


def _count(n: int | None) -> str:
    return "-" if n is None else str(n)


def run_simulate(args) -> int:
    from conversion.pipeline import checkpoint_differs, simulate_export
    from respike_nm.records import to_data

    report = simulate_export(args.export_dir, args.run, args.clips, args.workers)
    if report is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    if not report.checkpoint_matches:
        print(f"respike-nm: warning: {checkpoint_differs(report.run_dir)}", file=sys.stderr)
    if report.silent_layers:
        print(f"respike-nm: warning: {len(report.silent_layers)} of {report.layers} layers never fired on "
              f"the {report.clips} clips verified ({_layers(list(report.silent_layers))}): their agreement "
              f"shows only that both stay silent; {report.layers_fired} layer(s) actually tested "
              "(train longer or verify more clips)", file=sys.stderr)
    if args.json:
        print(json.dumps(to_data(report), indent=2))
    else:
        _print_verification(report)
    if not report.passed:
        print(f"respike-nm: verification failed: {'; '.join(report.problems)}", file=sys.stderr)
        return VERIFY_FAILED
    return 0


def _print_verification(report) -> None:
    """Per stage and layer: firing rate of the reference and mismatched spikes; then the totals."""
    for s in report.stages:
        print(f"stage{s.stage}: {s.clips} key-frame groups x {s.time_steps} steps, "
              f"{s.steps_per_second:.0f} Lava steps/s")
        counted = dict(zip(s.compared, s.layer_mismatch, strict=True))
        for name, rate in zip(s.layers, s.layer_rates, strict=True):
            n = counted.get(name)
            print(f"  {name:<20} firing rate {100 * rate:6.2f} %  "
                  f"{'not compared' if n is None else f'{n} mismatched spikes'}"
                  f"{'  (never fired)' if name in s.silent else ''}")
    print(f"spike mismatch over all {report.layers} layers: {report.spike_mismatch} "
          f"({report.layers_fired} of {report.layers} layers fired); prediction agreement Lava hybrid vs "
          f"PyTorch: {report.prediction_agreement:.3f} on {report.clips} clips")
    print("verification passed" if report.passed else "verification FAILED")
