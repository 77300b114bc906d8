"""Counting overhead: forward time of the tiny hybrid with the energy counters on versus off.

The counters are forward hooks (respike_nm.energy.counters.count_ops); the overhead is their extra
work per forward pass (an all-ones convolution per SNN synapse, nonzero counts per ANN layer).
Two ways, interleaved on the same clips, median of each: ``on`` enters ``count_ops`` for every
forward (registering and removing every hook each time: the ratio of the goal), ``steady`` times
forwards inside one ``count_ops`` (as ``respike-nm energy`` counts its batches: hooks registered
once per command). Writes bench/results/energy_overhead.json.

``--vs OLD_TREE`` compares two versions of the counters in one run: this script runs alternately
against the library in OLD_TREE (a checkout of an older commit) and in this repository, each in a
fresh process, ``--rounds`` times, and reports per round the ratio new / old of the counted forward
time (hooks attached once, and registered per forward). Writes bench/results/energy_overhead_vs.json.

Usage: python bench/energy_overhead.py [--repeats 10] [--batch 4] [--vs OLD_TREE --rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from respike_nm.config import load_config
from respike_nm.energy.counters import count_ops
from respike_nm.train.builder import build_datasets, build_model

RESULTS = Path(__file__).parent / "results"


def timed(model, video, counted: bool) -> float:
    t0 = time.perf_counter()
    with torch.no_grad():
        if counted:
            with count_ops(model):
                model(video)
        else:
            model(video)
    return time.perf_counter() - t0


def timed_steady(model, video) -> float:
    """One forward with the counters already attached."""
    t0 = time.perf_counter()
    with torch.no_grad():
        model(video)
    return time.perf_counter() - t0


def compare(old_tree: Path, rounds: int, repeats: int, batch: int) -> None:
    """Alternate old and new library, one fresh process each, ``rounds`` times; ratios pair by pair."""
    import subprocess
    import sys

    trees = {"old": old_tree.resolve(), "new": Path(__file__).resolve().parents[1]}
    runs: dict[str, list[dict]] = {"old": [], "new": []}
    for i in range(rounds):
        for name in ("old", "new") if i % 2 == 0 else ("new", "old"):
            env = {**os.environ, "PYTHONPATH": str(trees[name])}
            done = subprocess.run([sys.executable, __file__, "--repeats", str(repeats), "--batch", str(batch),
                                   "--stdout"], capture_output=True, text=True, env=env, cwd=trees[name])
            if done.returncode:
                raise SystemExit(f"{name}: {done.stderr[-2000:]}")
            runs[name].append(json.loads(done.stdout.strip().splitlines()[-1]))
            steady = runs[name][-1]["seconds_steady_median"]
            print(f"round {i + 1}/{rounds} {name}: steady {steady * 1e3:.1f} ms", file=sys.stderr)
    pairs = list(zip(runs["old"], runs["new"], strict=True))
    res = {"benchmark": "energy_overhead_vs", "old_tree": str(trees["old"]), "rounds": rounds,
           "ratio_new_over_old_steady": [n["seconds_steady_median"] / o["seconds_steady_median"]
                                         for o, n in pairs],
           "ratio_new_over_old_on": [n["seconds_on_median"] / o["seconds_on_median"] for o, n in pairs],
           "overhead_old_steady": [o["overhead_ratio_steady"] for o, _ in pairs],
           "overhead_new_steady": [n["overhead_ratio_steady"] for _, n in pairs],
           "old": runs["old"], "new": runs["new"]}
    res["median_ratio_steady"] = statistics.median(res["ratio_new_over_old_steady"])
    res["median_ratio_on"] = statistics.median(res["ratio_new_over_old_on"])
    RESULTS.mkdir(exist_ok=True)
    tmp = RESULTS / ".energy_overhead_vs.json.tmp"
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, RESULTS / "energy_overhead_vs.json")
    print(f"new / old counted forward: steady x{res['median_ratio_steady']:.3f}, per-forward hooks "
          f"x{res['median_ratio_on']:.3f} (median of {rounds} paired rounds)")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--vs", type=Path, help="an older checkout to compare the counters with")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--stdout", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.vs is not None:
        compare(args.vs, args.rounds, args.repeats, args.batch)
        return
    cfg = load_config("tiny")
    _, test, classes, _ = build_datasets(cfg)
    video = torch.stack([test[i].video[0] for i in range(args.batch)])  # uint8: the model normalises
    model = build_model(cfg, "hybrid", len(classes), quantize=True).eval()
    timed(model, video, False), timed(model, video, True)  # warm-up
    off, on, steady = [], [], []
    with count_ops(model):
        timed_steady(model, video)  # warm-up
    for _ in range(args.repeats):
        off.append(timed(model, video, False))
        on.append(timed(model, video, True))
        with count_ops(model):
            steady.append(timed_steady(model, video))
    res = {
        "model": f"tiny hybrid (quantized SNN, {cfg.model.fusion} fusion), untrained weights",
        "clips_per_forward": args.batch, "clip_shape": list(video.shape[1:]), "repeats": args.repeats,
        "seconds_off_median": statistics.median(off), "seconds_on_median": statistics.median(on),
        "overhead_ratio": statistics.median(on) / statistics.median(off),
        "seconds_steady_median": statistics.median(steady),
        "overhead_ratio_steady": statistics.median(steady) / statistics.median(off),
        "seconds_off": off, "seconds_on": on, "seconds_steady": steady,
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor(),
        "cpus": os.cpu_count(),
    }
    if args.stdout:
        print(json.dumps(res))
        return
    RESULTS.mkdir(exist_ok=True)
    tmp = RESULTS / ".energy_overhead.json.tmp"
    tmp.write_text(json.dumps(res, indent=2) + "\n")
    os.replace(tmp, RESULTS / "energy_overhead.json")
    print(f"forward {res['seconds_off_median'] * 1e3:.1f} ms off, {res['seconds_on_median'] * 1e3:.1f} ms "
          f"on: counting costs x{res['overhead_ratio']:.2f}; hooks attached once: "
          f"{res['seconds_steady_median'] * 1e3:.1f} ms, x{res['overhead_ratio_steady']:.2f}")


if __name__ == "__main__":
    main()
