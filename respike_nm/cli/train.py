"""``respike-nm train`` and ``respike-nm eval``."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from tqdm import tqdm

from respike_nm.cli import positive_int


def add_config_options(parser, on_resume: str) -> None:
    """``--config`` and ``--model``, as every command that trains takes them (:func:`resolve_config`)."""
    from respike_nm.config import PRESETS
    from respike_nm.models import list_models

    parser.add_argument("--config", help=f"preset ({', '.join(PRESETS)}) or YAML file (default: tiny; "
                                         f"with --resume, {on_resume})")
    parser.add_argument("--model", default="hybrid", choices=list_models())


def add_parser(sub) -> None:
    tr = sub.add_parser(
        "train", help="train the hybrid model or a baseline",
        description="Train ReSpike (hybrid), or its key-frame-only (ann) or residual-only (snn) "
                    "baseline, through the same code path. Writes RUN_DIR/metrics.jsonl (one line "
                    "per epoch), RUN_DIR/checkpoint.pt (every epoch, atomically) and "
                    "RUN_DIR/summary.json. Under torchrun, trains with DistributedDataParallel.",
    )
    add_config_options(tr, "the run's own config")
    tr.add_argument("--dataset", help="overrides data.dataset")
    tr.add_argument("--data-root", help="overrides data.data_root")
    tr.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    tr.add_argument("--out", required=True, type=Path,
                    help="run directory: new or empty (--overwrite: replace a run there)")
    tr.add_argument("--resume", action="store_true",
                    help="continue RUN_DIR from its checkpoint, with its own config (--set train.epochs=N "
                         "extends it)")
    tr.add_argument("--overwrite", action="store_true", help="replace the run already in RUN_DIR")
    tr.add_argument("--dry-run", action="store_true",
                    help="print the resolved config and the model (parameters, MACs per branch); "
                         "train nothing")
    tr.add_argument("--quiet", action="store_true", help="no progress bars")
    tr.add_argument("--json", action="store_true", help="print summary.json at the end")
    tr.set_defaults(func=run_train)

    ev = sub.add_parser("eval", help="evaluate a trained run on its test set")
    ev.add_argument("run_dir", type=Path)
    ev.add_argument("--quantized", choices=["as-trained", "on", "off"], default="as-trained",
                    help="evaluate with SNN quantization as trained, forced on, or off")
    ev.add_argument("--workers", type=positive_int, default=1,
                    help="evaluate on the CPU in this many processes (same result; default 1)")
    ev.add_argument("--json", action="store_true")
    ev.set_defaults(func=run_eval)


def _progress(quiet: bool):
    def bar(it, desc="", total=0):
        return tqdm(it, desc=desc, total=total or None, file=sys.stderr, leave=False, disable=quiet)

    return bar


def resolve_config(args):
    from respike_nm.config import apply_overrides, from_dict, load_config

    if args.resume and args.config is None:
        from respike_nm.train.checkpoint import load_checkpoint
        from respike_nm.train.run import CHECKPOINT, check_run_dir

        check_run_dir(args.out, resume=True)
        cfg = from_dict(load_checkpoint(args.out / CHECKPOINT).config)
    else:
        cfg = load_config(args.config or "tiny")
    extra = []
    if args.dataset:
        extra.append(f"data.dataset={args.dataset}")
    if args.data_root:
        extra.append(f"data.data_root={args.data_root}")
    return apply_overrides(cfg, extra + list(args.overrides))


def run_train(args) -> int:
    from respike_nm.records import to_data
    from respike_nm.train.loop import train

    cfg = resolve_config(args)
    if args.dry_run:
        return _dry_run(cfg, args)

    def on_epoch(row):
        if args.quiet:
            return
        acc = f" test top-1 {row['test_top1']:.3f}" if "test_top1" in row else ""
        dropped = sum(row.get(k, 0) for k in ("train_failed", "test_failed"))
        lost = f", {dropped} clip(s) failed to decode and were left out" if dropped else ""
        print(f"epoch {row['epoch']:>3}: loss {row['train_loss']:.4f} train top-1 "
              f"{row['train_top1']:.3f}{acc} ({row['seconds']:.0f} s{lost})", file=sys.stderr)

    result = train(cfg, args.model, args.out, resume=args.resume, progress=_progress(args.quiet),
                   on_epoch=on_epoch, overwrite=args.overwrite)
    if result.summary:
        s = result.summary
        if args.json:
            print(json.dumps(to_data(s), indent=2))
        else:
            q = s.quantization
            qtext = f"; float {q.float_top1:.3f} vs quantized {q.quantized_top1:.3f} ({q.mode})" if q else ""
            print(f"{s.model}: test top-1 {s.test_top1:.3f} after {s.epochs} epochs, "
                  f"{s.seconds:.0f} s, {s.params} parameters{qtext}")
            print(f"run written to {args.out}")
    return 0


def _dry_run(cfg, args) -> int:
    from respike_nm.api import describe_model
    from respike_nm.config import to_yaml

    summary = describe_model(cfg, args.model)
    if args.json:
        print(json.dumps({"config": cfg.to_dict(), **summary}, indent=2))
        return 0
    print(to_yaml(cfg), end="")
    print(f"# {summary['model']}: {summary['params']} parameters, {summary['classes']} classes")
    for name, b in summary["branches"].items():
        print(f"#   {name:<7} {b['params']:>10} parameters {b['dense_macs'] / 1e6:>10.1f} M dense MACs "
              "per clip")
    return 0


def run_eval(args) -> int:
    from respike_nm.train.evaluate import evaluate_run

    quantize = {"as-trained": None, "on": True, "off": False}[args.quantized]
    ev = evaluate_run(args.run_dir, quantize, progress=_progress(False), workers=args.workers)
    if ev is None:  # a torchrun rank other than 0: rank 0 reports
        return 0
    res = ev.result
    if args.json:
        print(json.dumps(ev.to_dict(), indent=2))
    else:
        print(f"{ev.model} ({ev.epochs} epochs): top-1 {res.top1:.3f} per clip, {res.top1_video:.3f} per "
              f"video, top-5 {res.top5:.3f}, on {res.videos} test videos")
    return 0
