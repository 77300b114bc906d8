"""The paper-scale step on a GPU: AMP training steps of ``paper-r18`` at 224x224 with the norse and
the SLAYER neuron backends, and whether the two backends' spikes agree.

On a machine with CUDA: for each backend, the hybrid (101 classes) on a batch of 2 random clips,
one warm-up step (SLAYER compiles its CUDA kernels with nvcc on first use), then ``--steps`` timed
fp16-autocast steps; seconds per step and peak GPU memory. Then both backends' SNNs, with the same
weights, run the same clips in evaluation mode and every layer's spikes are compared. Without CUDA
it writes the reason and exits 0. Writes bench/results/gpu_check.json.

Usage: python bench/gpu_check.py [--steps 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from respike_nm.atomic import write_text_atomic
from respike_nm.config import apply_overrides, load_config
from respike_nm.train.builder import build_model

RESULTS = Path(__file__).parent / "results"
OUT = RESULTS / "gpu_check.json"


def steps_of(backend: str, video: torch.Tensor, steps: int) -> tuple[dict, torch.nn.Module]:
    cfg = apply_overrides(load_config("paper-r18"),
                          ["model.ann_weights=null", f"model.snn_backend={backend}"])
    torch.manual_seed(0)
    model = build_model(cfg, "hybrid", 101).cuda().train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-4, momentum=0.9)
    scaler = torch.cuda.amp.GradScaler()
    labels = torch.tensor([0, 1], device="cuda")
    torch.cuda.reset_peak_memory_stats()
    times = []
    for i in range(steps + 1):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.autocast("cuda", dtype=torch.float16):
            loss = torch.nn.functional.cross_entropy(model(video), labels)
        opt.zero_grad()
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return {"backend": backend, "seconds_per_step": times,
            "median_seconds_per_step": sorted(times)[len(times) // 2],
            "peak_gpu_gib": torch.cuda.max_memory_allocated() / 2**30, "loss": float(loss)}, model


def spikes(model: torch.nn.Module, video: torch.Tensor) -> list[torch.Tensor]:
    from respike_nm.models.neurons import CubaLIF

    out = []
    hooks = [m.register_forward_hook(lambda mod, a, o: out.append(o.detach().cpu()))
             for m in model.modules() if isinstance(m, CubaLIF)]
    with torch.no_grad():
        model(video)
    for h in hooks:
        h.remove()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=5)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        reason = "no CUDA device on this machine: nothing measured"
        write_text_atomic(OUT, json.dumps({"benchmark": "gpu_check", "skipped": reason}, indent=2) + "\n")
        print(f"gpu_check: skipped ({reason})", file=sys.stderr)
        return 0
    video = torch.randn(2, 16, 3, 224, 224, device="cuda")
    rows, models = [], {}
    for backend in ("norse", "slayer"):
        row, models[backend] = steps_of(backend, video, args.steps)
        rows.append(row)
    models["norse"].load_state_dict(models["slayer"].state_dict())
    a, b = (spikes(models[k].eval(), video) for k in ("slayer", "norse"))
    mismatched = [int((x != y).sum()) for x, y in zip(a, b, strict=True)]
    out = {"benchmark": "gpu_check", "device": torch.cuda.get_device_name(0), "preset": "paper-r18",
           "batch": 2, "size": 224, "frames": 16, "amp": "fp16", "rows": rows,
           "spike_mismatch_per_layer": mismatched, "spikes_per_layer": [int(x.sum()) for x in a]}
    write_text_atomic(OUT, json.dumps(out, indent=2) + "\n")
    for r in rows:
        print(f"{r['backend']}: {r['median_seconds_per_step']:.3f} s/step, peak {r['peak_gpu_gib']:.2f} GiB")
    print(f"spikes differing between backends, per layer: {mismatched}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
