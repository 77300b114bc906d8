"""``respike-nm nir``: write a trained run's SNN branch as NIR (reaches into ``conversion`` lazily)."""

from __future__ import annotations

import json
from dataclasses import asdict, replace
from pathlib import Path

from respike_nm.errors import UsageError


def add_parser(sub) -> None:
    p = sub.add_parser(
        "nir", help="export a trained run's SNN branch as NIR (portable; read back with norse)",
        description="Fold BN and write the SNN branch as NIR graphs (Conv2d + CubaLIF, dt = one time step): "
                    "one .nir file when the SNN is one stage network, else a folder with stage<i>.nir. "
                    "Float weights by default; --quantized writes the chip's quantized weights, decays and "
                    "thresholds (Loihi's truncating fixed-point leak has no NIR counterpart). The resnet "
                    "SNN is refused.")
    p.add_argument("run_dir", type=Path)
    p.add_argument("--out", required=True, type=Path,
                   help="a .nir file (single stage network) or a folder; must not exist")
    p.add_argument("--quantized", action="store_true", help="export the quantized model")
    p.add_argument("--json", action="store_true", help="print the written stages as JSON")
    p.set_defaults(func=run_nir)


def run_nir(args) -> int:
    from conversion.nir_export import SUFFIX, export_nir
    from respike_nm.atomic import atomic_dir
    from respike_nm.train.run import load_run

    if args.out.exists():
        raise UsageError(f"{args.out}: already exists; choose a new file or folder")
    model, cfg, _ = load_run(args.run_dir, quantize=args.quantized)
    model.eval()
    frame = (cfg.data.size, cfg.data.size)
    if args.out.suffix == SUFFIX:
        stages = export_nir(model, args.out, frame)
    else:
        with atomic_dir(args.out, "NIR folder") as tmp:
            stages = export_nir(model, tmp, frame)
        stages = [replace(s, path=args.out / s.path.name) for s in stages]
    if args.json:
        print(json.dumps([{**asdict(s), "path": str(s.path)} for s in stages], indent=2))
        return 0
    for s in stages:
        print(f"stage {s.index}: {len(s.layers)} layers, input {s.input_shape} -> output {s.output_shape}, "
              f"{'quantized' if s.quantized else 'float'}, {s.path}")
    print(f"wrote {len(stages)} NIR graph(s) to {args.out}")
    return 0
