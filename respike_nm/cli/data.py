"""``respike-nm data inspect`` and ``respike-nm data cache``."""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

from tqdm import tqdm

from respike_nm import stopping
from respike_nm.cli import at_least, positive_int
from respike_nm.data.errors import DataError
from respike_nm.errors import UsageError


def add_parser(sub) -> None:
    from respike_nm.data.names import DATASETS

    data = sub.add_parser("data", help="inspect videos, build the HDF5 clip cache")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="SUBCOMMAND")

    ins = dsub.add_parser(
        "inspect", help="decode clips, decompose them into key and residual frames, report",
        description="Decode each clip (files, or folders searched recursively), take its centre "
                    "clip of T frames, decompose it and print frames, fps, size, key frames and "
                    "residual energy (mean squared residual, normalised units).",
    )
    ins.add_argument("paths", nargs="*", type=Path, help="video files or folders")
    ins.add_argument("--synthetic", type=_count, default=0, metavar="N",
                     help="also inspect N synthetic-motion clips (one per class, in order)")
    _add_clip_args(ins)
    ins.add_argument("--out", type=Path, help="write a PNG strip per clip into this folder")
    ins.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    ins.set_defaults(func=run_inspect)

    cache = dsub.add_parser(
        "cache", help="pre-decode a dataset into an HDF5 clip cache",
        description="Decode every video of a dataset to uint8 frames at one frame size and write "
                    "them, with labels and metadata, to one HDF5 file (temporary file, then rename).",
    )
    cache.add_argument("--dataset", required=True, choices=[d for d in DATASETS if d != "cache"])
    cache.add_argument("--data-root", type=Path, help="dataset folder (not for synthetic-motion)")
    cache.add_argument("--split", type=positive_int, default=1, help="official split number (UCF/HMDB)")
    cache.add_argument("--seed", type=_count, default=0, help="folder split / synthetic seed")
    cache.add_argument("--frame-size", default="128x170", metavar="HxW",
                       help="stored frame size for video datasets (default 128x170)")
    cache.add_argument("--max-frames", type=positive_int, help="keep at most this many frames per video")
    cache.add_argument("--compression", default="lzf", choices=["lzf", "gzip"])
    cache.add_argument("--out", type=Path, required=True, help="the .h5 file to write (new)")
    cache.add_argument("--overwrite", action="store_true",
                       help="replace the clip cache already at --out (never any other file)")
    cache.add_argument("--json", action="store_true", help="print the summary as JSON")
    cache.set_defaults(func=run_cache)


def _add_clip_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--frames", type=positive_int, default=16, help="T, frames per clip (default 16)")
    p.add_argument("--stride", type=positive_int, default=4,
                   help="s, frames per key-frame group (default 4)")
    p.add_argument("--size", type=positive_int, default=112, help="crop side in pixels (default 112)")


_count = at_least(0)


def run_inspect(args) -> int:
    from respike_nm.data.figures import save_strip
    from respike_nm.data.inspect import inspect_synthetic, inspect_video, strip_name
    from respike_nm.data.records import ClipSpec, check_divisible
    from respike_nm.data.video import find_videos

    check_divisible(args.frames, args.stride)
    if args.out is not None and args.out.exists() and not args.out.is_dir():
        raise DataError(args.out, "is a file; --out takes a folder for the PNG strips")
    spec = ClipSpec(frames=args.frames, stride=args.stride, size=args.size)
    files = find_videos(args.paths)
    if not files and not args.synthetic:
        raise DataError(None, "nothing to inspect: give video files or folders, or --synthetic N")
    clips, failed = [], []
    for path in tqdm(files, desc="inspect", unit="clip", file=sys.stderr, disable=len(files) < 2):
        try:
            report, parts = inspect_video(path, spec)
        except DataError as exc:
            failed.append({"path": str(path), "error": exc.problem})
            continue
        row = report.to_dict()
        if args.out:
            row["strip"] = str(save_strip(parts, args.out / f"{strip_name(path)}.png", title=str(path)))
        clips.append(row)
    if args.synthetic:
        clips.extend(inspect_synthetic(args.synthetic, spec, args.out))
    result = {"decoded": len(clips), "failed": failed, "clips": clips}
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print_table(clips, failed)
    return 1 if failed else 0


def _print_table(clips: list[dict], failed: list[dict]) -> None:
    head = f"{'frames':>6} {'fps':>6} {'size':>9} {'keys':>4} {'res/key':>7} {'res.energy':>10}  clip"
    print(head)
    print("-" * len(head))
    for c in clips:
        fps = "-" if c["fps"] is None else f"{c['fps']:.2f}"
        size = f"{c['width']}x{c['height']}"
        print(f"{c['frames']:>6} {fps:>6} {size:>9} {c['key_frames']:>4} "
              f"{c['residuals_per_key']:>7} {c['residual_energy']:>10.4f}  {c['path']}")
    print(f"\n{len(clips)} decoded, {len(failed)} failed")
    for c in clips:
        for w in c.get("warnings", ()):
            print(f"  WARNING {c['path']}: {w}")
    for f in failed:
        print(f"  FAILED {f['path']}: {f['error']}")


def _frame_size(text: str) -> tuple[int, int]:
    m = re.fullmatch(r"(\d+)x(\d+)", text)
    if not m or min(int(m[1]), int(m[2])) < 8:
        raise UsageError(f"--frame-size must look like HxW with sides >= 8, not {text!r}")
    return int(m[1]), int(m[2])


def run_cache(args) -> int:
    from respike_nm.data.cache import check_cache_out, write_cache
    from respike_nm.data.factory import DataSource, cache_source

    check_cache_out(args.out, args.overwrite)  # before the index is built and the bar drawn
    source = DataSource(args.dataset, args.data_root, args.split, args.seed)
    classes, n, items, skipped = cache_source(source, args.max_frames)
    if source.synthetic is not None:
        size = (source.synthetic.height, source.synthetic.width)
    else:
        size = _frame_size(args.frame_size)
    bar = tqdm(total=n, desc=f"cache {args.dataset}", unit="video", file=sys.stderr)

    def progress(it):
        for x in it:
            yield x
            bar.update(1)

    try:
        with stopping.deferred():  # a signal is noted, polled between videos, never raised inside HDF5
            summary = write_cache(args.out, progress(items), classes, args.dataset, size,
                                  args.compression, skipped=skipped, overwrite=args.overwrite,
                                  stop=stopping.requested)
    finally:
        bar.close()
    out = {"path": summary.path, "videos": summary.videos, "frames": summary.frames,
           "bytes": summary.bytes, "classes": len(classes),
           "skipped": [{"path": s.path, "reason": s.reason} for s in summary.skipped]}
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        print(f"wrote {summary.path}: {summary.videos} videos, {summary.frames} frames, "
              f"{len(classes)} classes, {summary.bytes / 1e6:.1f} MB")
        print(f"skipped {len(summary.skipped)}")
        for s in summary.skipped:
            print(f"  {s.path}: {s.reason}")
    return 0
