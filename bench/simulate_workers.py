"""``simulate --workers``: wall time of verifying the tiny hybrid's export in Lava on ``--clips`` test
clips with 1 and 2 worker processes, interleaved, on this machine; the reports must agree (except
speeds). The run gets enough test videos for the clips asked; ``clips`` in the JSON is what ran.

The model has the `tiny` preset's shapes (64x64, quarter widths, multi-scale fusion: 3 stage
networks), trained for one epoch on a few clips (Lava's time does not depend on what it learnt).
Writes bench/results/simulate_workers.json (or ``--out``).

Usage: python bench/simulate_workers.py [--clips 8] [--rounds 2] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

from conversion.pipeline import export_run, simulate_export
from respike_nm.atomic import write_text_atomic
from respike_nm.config import apply_overrides, load_config
from respike_nm.records import to_data
from respike_nm.train.loop import train

RESULTS = Path(__file__).parent / "results"
SPEEDS = ("steps_per_second", "lava_steps_per_second")


def _without_speeds(obj):
    if isinstance(obj, dict):
        return {k: _without_speeds(v) for k, v in obj.items() if k not in SPEEDS}
    if isinstance(obj, (list, tuple)):
        return [_without_speeds(v) for v in obj]
    return obj


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--out", type=Path, default=RESULTS / "simulate_workers.json")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run, export = Path(tmp) / "run", Path(tmp) / "export"
        base = load_config("tiny")
        per_class = -(-args.clips // (base.data.appearances * base.data.motions))  # enough test videos
        cfg = apply_overrides(base, ["train.epochs=1", "data.train_per_class=2",
                                     f"data.test_per_class={per_class}"])
        train(cfg, "hybrid", run)
        export_run(run, export)
        times: dict[int, list[float]] = {1: [], 2: []}
        reports = {}
        for _ in range(args.rounds):
            for workers in (1, 2):
                t0 = time.perf_counter()
                reports[workers] = to_data(simulate_export(export, run, args.clips, workers))
                times[workers].append(time.perf_counter() - t0)
                print(f"workers {workers}: {times[workers][-1]:.1f} s", flush=True)
    same = _without_speeds(reports[1]) == _without_speeds(reports[2])
    median = {w: statistics.median(t) for w, t in times.items()}
    out = {"benchmark": "simulate_workers", "model": "tiny shapes, 3 stage networks",
           "clips": reports[1]["clips"],
           "seconds": times, "median_seconds": median, "speedup_2_workers": median[1] / median[2],
           "reports_equal_except_speeds": same, "cpus": os.cpu_count(),
           "machine": platform.machine(), "load_average_end": os.getloadavg()[0]}
    write_text_atomic(args.out, json.dumps(out, indent=2) + "\n")
    print(f"1 worker {median[1]:.1f} s, 2 workers {median[2]:.1f} s: x{median[1] / median[2]:.2f}; "
          f"reports equal: {same}")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
