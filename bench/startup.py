"""Start-up time of the command line: ``respike-nm --help``, ``data inspect --help``,
``data inspect`` on one small video and ``simulate`` of a folder that does not exist (exit 2),
against a bare ``python -c pass`` and ``import torch``, each run ``--repeat`` times interleaved in
one session (the machine is shared: compare ratios).

Writes bench/results/startup.json. ``--tree DIR`` times another checkout (e.g. a worktree of the
commit before a change) with the same interpreter, for a before/after figure.

Usage: python bench/startup.py [--repeat 5] [--tree DIR] [--tag NAME]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"


def _video(path: Path) -> Path:
    import av

    with av.open(str(path), "w") as box:
        stream = box.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        rng = np.random.default_rng(0)
        for _ in range(20):
            pixels = rng.integers(0, 255, (48, 64, 3), dtype=np.uint8)
            frame = av.VideoFrame.from_ndarray(pixels, format="rgb24")
            box.mux(stream.encode(frame))
        box.mux(stream.encode())
    return path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--tree", type=Path, default=ROOT, help="checkout whose command line is timed")
    ap.add_argument("--tag", default="", help="name of this measurement in startup.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clip = _video(Path(tmp) / "clip.mp4")
        cli = [sys.executable, "-m", "respike_nm.cli.main"]
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "import torch": [sys.executable, "-c", "import torch"],
            "respike-nm --help": [*cli, "--help"],
            "respike-nm data inspect --help": [*cli, "data", "inspect", "--help"],
            "respike-nm data inspect CLIP": [*cli, "data", "inspect", str(clip), "--frames", "8",
                                             "--size", "32"],
            "respike-nm simulate MISSING": [*cli, "simulate", str(Path(tmp) / "missing")],
        }
        env = {**os.environ, "PYTHONPATH": str(args.tree.resolve())}
        times: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                t0 = time.perf_counter()
                done = subprocess.run(cmd, cwd=args.tree, env=env, capture_output=True)
                if done.returncode != (2 if "MISSING" in name else 0):
                    raise SystemExit(f"{name}: exit {done.returncode}: {done.stderr.decode()[-500:]}")
                times[name].append(time.perf_counter() - t0)
    median = {k: statistics.median(v) for k, v in times.items()}
    row = {"tree": str(args.tree.resolve()), "repeat": args.repeat, "median_s": median,
           "vs_import_torch": {k: v / median["import torch"] for k, v in median.items()}}
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = RESULTS / "startup.json"
    data = json.loads(out.read_text()) if out.exists() else {}
    data[args.tag or ("current" if args.tree == ROOT else str(args.tree))] = row
    out.write_text(json.dumps(data, indent=2) + "\n")
    for k, v in median.items():
        print(f"{k:<34} {v:6.2f} s  ({row['vs_import_torch'][k]:.2f} x import torch)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
