"""Paper-scale step on the CPU: forward + backward of ``paper-r18`` and ``real-small`` at 224x224.

For each preset, in a fresh process (so that peak resident memory is its own): the hybrid with the
preset's widths (UCF-101's 101 classes), a batch of 2 random clips of T = 16 frames at 224x224,
one warm-up step, then ``--steps`` timed SGD steps (forward, loss, backward, update). Reports
seconds per step, peak resident memory (``ru_maxrss``), parameters and dense MACs per branch of
one clip (the operation counters on one clip; SNN synaptic operations counted as if every input
were active). The ANN's ImageNet weights do not change the cost, so ``paper-r18`` runs without
them (they need the torch hub cache). Writes bench/results/paper_scale.json.

Usage: python bench/paper_scale.py [--steps 3] [--presets paper-r18 real-small]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
CLASSES = 101  # UCF-101
OVERRIDES = {"paper-r18": ["model.ann_weights=null"], "real-small": ["data.size=224"]}


def one(preset: str, steps: int) -> dict:
    import torch

    from respike_nm.config import apply_overrides, load_config
    from respike_nm.energy.counters import count_clips
    from respike_nm.train.builder import build_model

    cfg = apply_overrides(load_config(preset), OVERRIDES.get(preset, []))
    torch.manual_seed(0)
    model = build_model(cfg, "hybrid", CLASSES)
    t, size = cfg.data.frames, cfg.data.size
    branches = {name: {"params": sum(p.numel() for p in m.parameters()), "dense_macs": 0.0}
                for name, m in model.named_children() if any(True for _ in m.parameters())}
    with torch.no_grad():
        counts = count_clips(model.eval(), [torch.zeros(1, t, 3, size, size)])
    for layer in counts.layers:
        branches.setdefault(layer.branch, {"params": 0, "dense_macs": 0.0})["dense_macs"] += (
            layer.dense_macs + layer.dense_acs)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    video = torch.randn(2, t, 3, size, size)
    labels = torch.tensor([0, 1])
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(video), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if i:  # the first step is warm-up
            times.append(time.perf_counter() - t0)
        print(f"  {preset}: step {i + 1}/{steps + 1} {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    return {"preset": preset, "overrides": OVERRIDES.get(preset, []), "ann_arch": cfg.model.ann_arch,
            "snn_width": cfg.model.snn_width, "fusion": cfg.model.fusion, "size": size, "frames": t,
            "stride": cfg.data.stride, "batch": 2, "steps": steps, "seconds_per_step": times,
            "median_seconds_per_step": sorted(times)[len(times) // 2],
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20,
            "params": sum(p.numel() for p in model.parameters()), "branches": branches,
            "torch_threads": torch.get_num_threads()}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--presets", nargs="+", default=["paper-r18", "real-small"])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one, args.steps)))
        return 0
    rows = []
    for preset in args.presets:
        done = subprocess.run([sys.executable, __file__, "--one", preset, "--steps", str(args.steps)],
                              capture_output=True, text=True)
        sys.stderr.write(done.stderr[-2000:])
        if done.returncode:
            print(f"{preset}: failed", file=sys.stderr)
            return 1
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
    out = {"benchmark": "paper_scale", "device": "cpu",
           "machine": f"{platform.machine()} {os.cpu_count()} cpus", "rows": rows}
    from respike_nm.atomic import write_text_atomic

    write_text_atomic(RESULTS / "paper_scale.json", json.dumps(out, indent=2) + "\n")
    for r in rows:
        macs = {k: round(v["dense_macs"] / 1e9, 2) for k, v in r["branches"].items()}
        print(f"{r['preset']}: {r['median_seconds_per_step']:.1f} s/step (batch 2, 224x224, T 16), "
              f"peak RSS {r['peak_rss_gib']:.1f} GiB, {r['params'] / 1e6:.1f} M params, GMACs/clip {macs}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
