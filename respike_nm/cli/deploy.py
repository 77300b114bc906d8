"""``respike-nm export`` and ``respike-nm simulate``: the only place the library reaches into
``conversion`` (lazily, inside the commands), so that ``respike_nm`` imports without Lava."""

from __future__ import annotations

import json
import os
import shutil
import sys
from dataclasses import asdict, replace
from pathlib import Path

from respike_nm.atomic import write_text_atomic

SOURCE = "source.json"


def add_parser(sub) -> None:
    ex = sub.add_parser(
        "export", help="export a trained run's SNN branch to Lava netx (one HDF5 per stage)",
        description="Fold BN, quantize to the target's fixed point, cut the SNN at every fusion "
                    "point and write one netx HDF5 per stage plus manifest.json (temporary folder, "
                    "renamed when complete). The paper-faithful resnet SNN is refused.")
    ex.add_argument("run_dir", type=Path)
    ex.add_argument("--out", required=True, type=Path, help="export folder (must not exist)")
    ex.set_defaults(func=run_export)

    sim = sub.add_parser(
        "simulate", help="run an export in Lava and verify it against the quantized PyTorch model",
        description="Load every stage with netx, run it in Lava (Loihi2SimCfg fixed_pt) on test "
                    "clips, compare spikes stage by stage with the quantized PyTorch reference, and "
                    "run the hybrid (ANN + fusion in PyTorch, SNN in Lava) to compare predictions. "
                    "Writes EXPORT_DIR/verify.json.")
    sim.add_argument("export_dir", type=Path)
    sim.add_argument("--run", type=Path, help="the trained run (default: the one it was exported from)")
    sim.add_argument("--clips", type=int, default=8, help="test clips to run (default 8)")
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


def _versions() -> dict:
    from importlib.metadata import version

    return {p: version(p) for p in ("respike-nm", "torch", "lava-nc", "lava-dl", "norse", "numpy", "h5py")}


def run_export(args) -> int:
    from conversion.export import export_model
    from conversion.manifest import file_sha256, write_manifest
    from conversion.mapping import MAPPING_NAME, map_export, write_mapping
    from respike_nm.train.loop import CHECKPOINT, load_run

    if args.out.exists():
        raise ValueError(f"{args.out}: already exists; choose a new export folder")
    model, cfg, ck = load_run(args.run_dir, quantize=True)
    model.eval()
    tmp = args.out.with_name(f".{args.out.name}.tmp-{os.getpid()}")
    try:
        manifest = export_model(model, tmp, (cfg.data.size, cfg.data.size))
        manifest = replace(manifest, checkpoint_sha256=file_sha256(args.run_dir / CHECKPOINT),
                           versions=_versions())
        write_manifest(manifest, tmp / "manifest.json")
        mapping = replace(map_export(tmp), export_dir=str(args.out))
        write_mapping(mapping, tmp / MAPPING_NAME)
        (tmp / SOURCE).write_text(json.dumps({"run_dir": str(args.run_dir.resolve())}) + "\n")
        os.replace(tmp, args.out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    for st in manifest.stages:
        print(f"stage {st.index}: {len(st.layers)} layers, input {st.input_shape} -> output "
              f"{st.output_shape}, T'={st.time_steps}, {st.hdf5}")
    print(f"exported {len(manifest.stages)} stage network(s) to {args.out}")
    _print_targets(mapping)
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
    import torch

    from conversion.hybrid import hybrid_logits
    from conversion.manifest import file_sha256
    from conversion.netx_check import check_export
    from conversion.verify import verify_model
    from respike_nm.data.transforms import normalize
    from respike_nm.train.builder import build_datasets
    from respike_nm.train.loop import CHECKPOINT, load_run

    manifest = check_export(args.export_dir)  # before netx reads a file; a failure leaves verify.json
    run_dir = args.run
    if run_dir is None:
        src = args.export_dir / SOURCE
        if not src.is_file():
            raise ValueError(f"{args.export_dir}: no {SOURCE}; name the trained run with --run")
        try:
            run_dir = Path(json.loads(src.read_text())["run_dir"])
        except (ValueError, KeyError, TypeError) as err:
            raise ValueError(f"{src}: not a source record ({err!r}); name the trained run with "
                             "--run") from None
    digest = file_sha256(run_dir / CHECKPOINT)
    if manifest.checkpoint_sha256 and digest != manifest.checkpoint_sha256:
        print(f"respike-nm: warning: {run_dir / CHECKPOINT} is not the checkpoint this export was "
              "made from (sha256 differs); results compare against the given run", file=sys.stderr)
    model, cfg, ck = load_run(run_dir, quantize=True)
    model.eval()
    _, test, _, _ = build_datasets(cfg)
    n = min(args.clips, len(test))
    samples = [test[i] for i in range(n)]
    video = normalize(torch.stack([s.video[0] for s in samples if s is not None]))
    labels = torch.tensor([s.label for s in samples if s is not None])
    stages = verify_model(model, manifest, args.export_dir, video)
    hybrid = hybrid_logits(model, manifest, args.export_dir, video)
    with torch.no_grad():
        torch_pred = model(video).argmax(-1)
    lava_pred = hybrid.logits.argmax(-1)
    result = {
        "clips": int(len(labels)),
        "stages": [{"name": f"stage{s.stage}", **{k: v for k, v in asdict(s).items() if k != "stage"}}
                   for s in stages],
        "spike_mismatch": int(sum(s.spike_mismatch for s in stages)),
        "model_mismatch": int(sum(s.model_mismatch for s in stages)),
        "prediction_agreement": float((lava_pred == torch_pred).float().mean()),
        "hybrid_top1": float((lava_pred == labels).float().mean()),
        "torch_top1": float((torch_pred == labels).float().mean()),
        "lava_steps_per_second": round(hybrid.lava_steps / hybrid.lava_seconds, 2)
        if hybrid.lava_seconds else None,
        "checkpoint_matches": digest == manifest.checkpoint_sha256,
    }
    write_text_atomic(args.export_dir / "verify.json", json.dumps(result, indent=2) + "\n")
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for s in result["stages"]:
            print(f"{s['name']}: {s['spike_mismatch']} mismatched spikes over {s['clips']} key-frame groups "
                  f"({len(s['layers'])} layers), {s['steps_per_second']:.0f} Lava steps/s")
        print(f"prediction agreement Lava hybrid vs PyTorch: {result['prediction_agreement']:.3f} "
              f"on {result['clips']} clips; total spike mismatch {result['spike_mismatch']}")
    return 0
