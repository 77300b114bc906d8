"""Training benchmark: the `tiny` config on synthetic-motion, 2 CPU cores, <= 10 minutes per model.

Trains the hybrid, the two single-branch baselines and the quantization-aware hybrid, then the
hybrid on the real `gestures` clips (when RESPIKE_REALDATA is set), and times a training step of
the hybrid against the `ann` baseline on the same clips, interleaved, as a ratio.
Writes bench/results/train_tiny.json and .png; prints a Markdown table for the README.

Usage: python bench/train_tiny.py [--quick]   (--quick: 2 epochs each, for a smoke run)
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from respike_nm.config import apply_overrides, load_config
from respike_nm.data.transforms import normalize
from respike_nm.train.builder import build_datasets, build_model
from respike_nm.train.loop import train

RESULTS = Path(__file__).parent / "results"
BUDGET_MIN = 10.0


def run(name: str, kind: str, overrides: list[str], workdir: Path) -> dict:
    cfg = apply_overrides(load_config("tiny"), overrides + [f"train.max_minutes={BUDGET_MIN}"])
    t0 = time.perf_counter()
    res = train(cfg, kind, workdir / name)
    s = res.summary
    row = {"name": name, "model": kind, "dataset": cfg.data.dataset, "test_top1": s["test_top1"],
           "epochs": s["epochs"], "train_seconds": round(time.perf_counter() - t0, 1),
           "params": s["params"], "quantization": s.get("quantization")}
    print(f"{name}: top-1 {row['test_top1']:.3f} in {row['train_seconds']:.0f} s", file=sys.stderr)
    return row


def step_time_ratio(steps: int = 10) -> dict:
    """Seconds per training step (forward + backward + update) of hybrid and ann, same batches."""
    cfg = load_config("tiny")
    train_ds, _, classes, _ = build_datasets(cfg)
    batch = torch.stack([train_ds[i].video[0] for i in range(cfg.train.batch_size)])
    video, labels = normalize(batch), torch.tensor([train_ds.label(i) for i in range(len(batch))])
    models = {k: build_model(cfg, k, len(classes)) for k in ("hybrid", "ann")}
    opts = {k: torch.optim.AdamW(m.parameters(), 1e-4) for k, m in models.items()}
    times = {k: 0.0 for k in models}
    for i in range(steps + 2):
        for k, m in models.items():
            t0 = time.perf_counter()
            loss = torch.nn.functional.cross_entropy(m(video), labels)
            opts[k].zero_grad()
            loss.backward()
            opts[k].step()
            if i >= 2:  # two warm-up rounds
                times[k] += time.perf_counter() - t0
    per = {k: v / steps for k, v in times.items()}
    return {"batch": len(batch), "hybrid_step_s": round(per["hybrid"], 4), "ann_step_s": round(per["ann"], 4),
            "ratio_hybrid_vs_ann": round(per["hybrid"] / per["ann"], 2)}


def main() -> int:
    quick = "--quick" in sys.argv
    extra = ["train.epochs=2"] if quick else []
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        rows.append(run("hybrid", "hybrid", extra, work))
        rows.append(run("ann", "ann", extra, work))
        rows.append(run("snn", "snn", extra, work))
        rows.append(run("hybrid-qat", "hybrid", extra + ["quant.enabled=true"], work))
        rows.append(run("hybrid-resnet-multiscale", "hybrid", extra + [
            "model.snn_arch=resnet", "model.fusion=multiscale", "train.fusion_lr_scale=1.0"], work))
        rows.append(run("hybrid-plain-multiscale", "hybrid", extra + ["model.fusion=multiscale"], work))
        real = os.environ.get("RESPIKE_REALDATA")
        if real and Path(real, "gestures").is_dir():
            rows.append(run("hybrid-gestures", "hybrid", extra + [
                "data.dataset=folder", f"data.data_root={Path(real, 'gestures')}", "data.size=112",
                "data.eval_clips=3", "train.batch_size=4"], work))
    cfg = load_config("tiny")
    a, m = cfg.data.appearances, cfg.data.motions
    out = {
        "benchmark": "train_tiny", "config": "tiny", "budget_minutes_per_model": BUDGET_MIN,
        "ceilings": {"ann": 1 / m, "snn": 1 / a, "chance": 1 / (a * m)},
        "runs": rows, "step_time": step_time_ratio(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}",
    }
    by = {r["name"]: r for r in rows}
    if "hybrid" in by and "hybrid-qat" in by:
        out["qat_loss_points"] = round(100 * (by["hybrid"]["test_top1"] - by["hybrid-qat"]["test_top1"]), 1)
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "train_tiny_quick" if quick else "train_tiny"
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    _plot(out, RESULTS / f"{name}.png")
    print("| run | model | test top-1 | epochs | training time | parameters |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['name']} | {r['model']} | {r['test_top1']:.3f} | {r['epochs']} | "
              f"{r['train_seconds']:.0f} s | {r['params']:,} |")
    print(f"\nstep time hybrid / ann: {out['step_time']['ratio_hybrid_vs_ann']}x")
    return 0


def _plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = out["runs"]
    fig, ax = plt.subplots(figsize=(6, 3))
    ax.bar([r["name"] for r in rows], [r["test_top1"] for r in rows], color="#4a7")
    for k, v in (("ann ceiling 1/M", out["ceilings"]["ann"]), ("snn ceiling 1/A", out["ceilings"]["snn"])):
        ax.axhline(v, ls="--", lw=1, color="gray")
        ax.text(len(rows) - 0.5, v, k, fontsize=7, va="bottom", ha="right")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test top-1")
    ax.set_title("tiny config, 2 CPU cores", fontsize=9)
    plt.setp(ax.get_xticklabels(), rotation=20, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
