"""Streaming prediction speed (`respike-nm predict`): windows per second and per-window latency.

Four classifiers on the same windows of one video file, side by side in this process, on the CPU:
the PyTorch model as trained, the PyTorch model with SNN quantization on (the reference the Lava path
must match), and the hybrid with its SNN stage networks run in Lava two ways: ``lava`` (what
``predict --lava`` does: the networks start with the first window and keep running) and
``lava-per-window`` (each window builds, runs and stops every stage network). Measured through
:func:`respike_nm.predict.predict_source`, so decoding, the eval crop and normalisation are included
(and, for ``lava``, the networks' start in the first window):

- ``windows_per_s``: windows / wall time of the whole pass (open, decode, crop, model);
- ``latency_s``: per window, from the decoder handing over its last frame to the prediction
  (median, p90, max); the Lava path also reports the Lava runs alone (``lava_run_s_per_window``,
  set-up and process start excluded), the share of the latency that is set-up, and the top-1
  agreement with the quantized PyTorch model.

The video (``--windows`` W windows, default 12: T + (W - 1) s frames, 120x160, mpeg4) is made here.
The model is ``--run DIR`` (exported into a temporary folder unless ``--export DIR``), else a 1-epoch run of
``--config`` (default ``tiny``) trained into a temporary folder with few clips (``--set`` adds
overrides); the speed does not depend on how well it learned.
Writes bench/results/predict_speed.json (or ``--out``).

Usage: python bench/predict_speed.py [--config tiny | --run RUN_DIR [--export DIR]] [--windows 12]
(from a worktree: PYTHONPATH=. so that its own respike_nm and conversion are imported)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np
import torch

import conversion.lava_sim  # noqa: F401  first: Lava fixes the fork start method before training does
from conversion.hybrid import HybridClassifier
from conversion.netx_check import check_export
from conversion.pipeline import export_run
from respike_nm.atomic import write_text_atomic
from respike_nm.config import apply_overrides, load_config
from respike_nm.predict import WindowPrediction, predict_source, torch_classifier
from respike_nm.train.builder import clip_spec
from respike_nm.train.loop import train
from respike_nm.train.run import load_run

RESULTS = Path(__file__).parent / "results"
QUICK_TRAIN = ["train.epochs=1", "data.train_per_class=4", "data.test_per_class=1", "train.warmup_epochs=0"]


def make_video(path: Path, frames: int, height: int = 120, width: int = 160) -> Path:
    """A moving bright square on a gradient, mpeg4 in AVI at 25 fps."""
    y, x = np.mgrid[:height, :width]
    with av.open(str(path), "w") as box:
        stream = box.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for t in range(frames):
            img = np.stack([(x + 3 * t) % 256, y % 256, (x + y) % 256], -1).astype(np.uint8)
            left = (4 * t) % (width - 30)
            img[40:70, left:left + 30] = 250
            box.mux(stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")))
        box.mux(stream.encode())
    return path


def measure(name: str, video: Path, classify, classes, spec) -> tuple[dict, list[WindowPrediction]]:
    t0 = time.perf_counter()
    items = list(predict_source(str(video), classify, classes, spec, topk=1))
    wall = time.perf_counter() - t0
    windows = [i for i in items if isinstance(i, WindowPrediction)]
    if items[-1].error:
        raise RuntimeError(f"{video}: {items[-1].error}")
    lat = sorted(w.latency_s for w in windows)
    row = {"path": name, "windows": len(windows), "seconds": round(wall, 3),
           "windows_per_s": round(len(windows) / wall, 3),
           "latency_s": {"median": round(statistics.median(lat), 4),
                         "p90": round(float(np.percentile(lat, 90)), 4), "max": round(lat[-1], 4)}}
    print(f"{name:<16} {row['windows_per_s']:>9.2f} windows/s  latency median "
          f"{row['latency_s']['median'] * 1e3:8.1f} ms  p90 {row['latency_s']['p90'] * 1e3:8.1f} ms",
          file=sys.stderr)
    return row, windows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default="tiny",
                    help="preset or YAML, trained for 1 epoch when --run is not given (default tiny)")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="extra overrides of that quick training (repeatable)")
    ap.add_argument("--run", type=Path, help="an existing training run")
    ap.add_argument("--export", type=Path, help="its export (default: exported here into a temporary folder)")
    ap.add_argument("--windows", type=int, default=12, help="windows per path (default 12)")
    ap.add_argument("--out", type=Path, default=RESULTS / "predict_speed.json")
    args = ap.parse_args()
    if args.windows < 1:
        ap.error("--windows must be at least 1")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        run = args.run
        if run is None:
            run = tmp / "run"
            cfg = apply_overrides(load_config(args.config), QUICK_TRAIN + args.overrides)
            train(cfg, "hybrid", run)
        export = args.export
        if export is None:
            export = export_run(run, tmp / "export").out
        model, cfg, ck = load_run(run)
        qmodel, _, _ = load_run(run, quantize=True)
        qmodel.eval()
        spec = clip_spec(cfg)
        video = make_video(tmp / "clip.avi", spec.frames + (args.windows - 1) * spec.stride)
        manifest = check_export(export)
        lava = HybridClassifier(qmodel, manifest, export)  # networks kept running (predict --lava)
        per_window = HybridClassifier(qmodel, manifest, export, live=False)  # built and stopped per window
        # warm-up: the first forward of each model carries one-off costs (allocator, kernels)
        for m in (model, qmodel):
            with torch.no_grad():
                m.eval()(torch.zeros(1, spec.frames, 3, spec.size, spec.size))
        torch_row, _ = measure("torch", video, torch_classifier(model), ck.classes, spec)
        quant_row, quant_windows = measure("torch-quantized", video, torch_classifier(qmodel), ck.classes,
                                           spec)
        rows = [torch_row, quant_row]
        for name, classifier in (("lava", lava), ("lava-per-window", per_window)):
            try:
                row, windows = measure(name, video, classifier, ck.classes, spec)
            finally:
                classifier.close()
            row["lava_run_s_per_window"] = round(classifier.lava_seconds / classifier.calls, 4)
            row["lava_steps_per_window"] = classifier.lava_steps // classifier.calls
            row["setup_seconds_once"] = round(classifier.setup_seconds, 3)  # live: one start; per window: 0
            row["setup_share_of_latency"] = round(
                1 - row["lava_run_s_per_window"] / row["latency_s"]["median"], 3)
            row["top1_agreement_with_quantized"] = float(np.mean(
                [a.top[0].name == b.top[0].name for a, b in zip(windows, quant_windows, strict=True)]))
            rows.append(row)
        stages = len(manifest.stages)
    out = {
        "benchmark": "predict_speed", "config": cfg.name, "run": str(args.run) if args.run else "1-epoch run",
        "model": ck.kind, "fusion": cfg.model.fusion, "stage_networks": stages,
        "T": spec.frames, "s": spec.stride, "size": spec.size, "video": "120x160 mpeg4, 25 fps",
        "torch_threads": torch.get_num_threads(), "device": "cpu", "paths": rows,
        "total_seconds": round(time.perf_counter() - t_start, 1),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, load average "
                   f"{os.getloadavg()[0]:.2f} at the end",
    }
    write_text_atomic(args.out, json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
