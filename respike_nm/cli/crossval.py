"""``respike-nm crossval``: train every cross-validation fold of a folder dataset, report mean ± std."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from respike_nm.cli import positive_int
from respike_nm.errors import UsageError


def _folds(text: str) -> int:
    """``K`` (>= 2) or ``loso`` (one fold per group: leave one subject out, data.folds=-1)."""
    if text.lower() == "loso":
        return -1
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 2 or 'loso', not {text!r}") from None
    if k < 2 and k != -1:
        raise argparse.ArgumentTypeError(f"must be at least 2 (or 'loso'), not {k}")
    return k


def add_parser(sub) -> None:
    from respike_nm.cli.train import add_config_options

    cv = sub.add_parser(
        "crossval", help="cross-validate on a folder dataset, holding subjects out",
        description="Cut a class-folder dataset into K folds (stratified by class; with --group-pattern "
                    "whole subjects go to one fold, so none is in both training and test), train one "
                    "run per fold into OUT/fold-<i>/ (ordinary run folders), and write "
                    "OUT/crossval.json: per-fold accuracies, their mean and sample std, and the fold "
                    "of every file.",
    )
    add_config_options(cv, "the first fold run's own config")
    cv.add_argument("--dataset", default="folder", choices=["folder"], help="the dataset (folder only)")
    cv.add_argument("--data-root", help="overrides data.data_root: ROOT/<class>/<video files>")
    cv.add_argument("--folds", type=_folds, metavar="K|loso",
                    help="number of folds (data.folds); 'loso': one fold per group (leave one subject "
                         "out); required unless --resume or the config sets data.folds")
    cv.add_argument("--group-pattern", metavar="REGEX",
                    help="data.group_pattern: searched in each file name, its first capture group (or "
                         r"the match) is the subject, e.g. 'P(\d+)' for PS7A2P1T3.avi")
    cv.add_argument("--group-divisor", type=positive_int, metavar="N",
                    help="data.group_divisor: the subject is the captured integer // N (weizmann4: 8)")
    cv.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a config value, e.g. --set train.epochs=3 (repeatable)")
    cv.add_argument("--out", required=True, type=Path, help="cross-validation folder: new or empty")
    cv.add_argument("--resume", action="store_true",
                    help="continue OUT: finished folds are read back, an interrupted one continues from "
                         "its checkpoint")
    cv.add_argument("--dry-run", action="store_true",
                    help="check as the run does, print the folds (groups, class counts); train nothing")
    cv.add_argument("--quiet", action="store_true", help="no progress bars or per-epoch lines")
    cv.add_argument("--json", action="store_true", help="print crossval.json at the end")
    cv.set_defaults(func=run_crossval_cmd)


def _resolve(args):
    """The train command's config resolution, then the fold options. On ``--resume`` without
    ``--config`` the config comes from the first fold run that has a checkpoint."""
    from respike_nm.cli.train import resolve_config
    from respike_nm.config import apply_overrides
    from respike_nm.train.crossval import fold_dir
    from respike_nm.train.run import CHECKPOINT

    shim = argparse.Namespace(**vars(args))
    if args.resume and args.config is None:
        runs = sorted((p for p in args.out.glob("fold-*") if (p / CHECKPOINT).is_file()),
                      key=lambda p: p.name)
        if not runs:
            raise UsageError(f"{args.out}: no fold run with a {CHECKPOINT} to resume; pass --config")
        shim.out = runs[0]
    else:
        shim.out, shim.resume = fold_dir(args.out, 0), False
    cfg = resolve_config(shim)
    extra = ["data.fold=0", f"name={cfg.name.rsplit('-fold', 1)[0]}"] if shim.resume else []
    if args.folds is not None:
        extra.append(f"data.folds={args.folds}")
    if args.group_pattern is not None:
        extra.append(f"data.group_pattern={json.dumps(args.group_pattern)}")
    if args.group_divisor is not None:
        extra.append(f"data.group_divisor={args.group_divisor}")
    return apply_overrides(cfg, extra)


def _dry_run(folds) -> int:
    print(f"{folds.k} folds of {len(folds.records)} videos in {folds.root} ({', '.join(folds.classes)})")
    for i in range(folds.k):
        index = folds.index(i)
        per_class = [sum(r.label == c for r in index.test) for c in range(len(folds.classes))]
        groups = ", ".join(folds.test_groups(i)) or "-"
        print(f"fold-{i}: test {len(index.test)} videos {per_class} (groups {groups}), "
              f"train {len(index.train)}")
    return 0


def run_crossval_cmd(args) -> int:
    from respike_nm.cli.train import _progress
    from respike_nm.train.crossval import RESULT, prepare, run_crossval

    cfg = _resolve(args)
    if args.dry_run:
        return _dry_run(prepare(cfg, args.out, args.resume))

    def on_fold(i, k, folds):
        groups = ", ".join(folds.test_groups(i))
        held = f", holding out {groups}" if groups else ""
        print(f"fold {i + 1}/{k} (fold-{i}): {sum(f == i for f in folds.folds)} test videos{held}",
              file=sys.stderr)

    def on_epoch(row):
        if not args.quiet and "test_top1" in row:
            print(f"  epoch {row['epoch']:>3}: loss {row['train_loss']:.4f} test top-1 "
                  f"{row['test_top1']:.3f} ({row['seconds']:.0f} s)", file=sys.stderr)

    def on_fold_done(row):
        print(f"  fold-{row.fold}: test top-1 {_pct(row.test_top1)} per clip, {_pct(row.test_top1_video)} "
              f"per video", file=sys.stderr)

    result = run_crossval(cfg, args.model, args.out, resume=args.resume, progress=_progress(args.quiet),
                          on_fold=on_fold, on_epoch=on_epoch, on_fold_done=on_fold_done)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    for name, s in result.summary.items():
        std = "n/a" if s.std is None else f"{s.std:.3f}"
        mean = "n/a" if s.mean is None else f"{s.mean:.3f}"
        print(f"{result.model} {name}: {mean} ± {std} (sample std over {s.n} folds)")
    print(f"written to {args.out / RESULT}")
    return 0


def _pct(x) -> str:
    return "n/a" if x is None else f"{x:.3f}"
