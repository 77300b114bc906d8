"""Training benchmark: the `tiny` config on synthetic-motion, 2 CPU cores, <= 10 minutes per model.

For every seed (default 0 1 2: the seed fixes the synthetic clips, the initialisation and the
batch order) trains the hybrid, the two single-branch baselines and the quantization-aware hybrid;
then, with seed 0 only, the fusion variants and the hybrid on the real `gestures` clips (when
RESPIKE_REALDATA is set); and times a training step of the hybrid against the `ann` baseline on
the same clips, interleaved, as a ratio. Writes bench/results/train_tiny.json and .png; prints
Markdown tables for the README (per-seed rows, then mean / min / max per model).

Every finished run is appended to bench/results/train_tiny_runs.jsonl at once, so an interrupted
benchmark keeps what it measured: `--resume` skips the runs already there, `--report` trains
nothing and writes the JSON, PNG and tables from that file (runs listed there with a "note", e.g.
carried from an earlier benchmark, are reported as such).

Usage: python bench/train_tiny.py [--quick] [--seeds 0 1 2] [--resume | --report]
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
RUNS = RESULTS / "train_tiny_runs.jsonl"
BUDGET_MIN = 10.0


def done_runs() -> list[dict]:
    return [json.loads(line) for line in RUNS.read_text().splitlines() if line] if RUNS.exists() else []


def record(row: dict) -> dict:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RUNS, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def run(name: str, kind: str, overrides: list[str], workdir: Path, seed: int = 0) -> dict:
    budget = [f"train.max_minutes={BUDGET_MIN}", f"seed={seed}"]
    cfg = apply_overrides(load_config("tiny"), overrides + budget)
    t0 = time.perf_counter()
    res = train(cfg, kind, workdir / f"{name}-s{seed}")
    s = res.summary
    row = {"name": name, "model": kind, "seed": seed, "dataset": cfg.data.dataset,
           "test_top1": s["test_top1"],
           "epochs": s["epochs"], "train_seconds": round(time.perf_counter() - t0, 1),
           "params": s["params"], "quantization": s.get("quantization")}
    print(f"{name} seed {seed}: top-1 {row['test_top1']:.3f} in {row['train_seconds']:.0f} s",
          file=sys.stderr)
    return record(row)


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


SEEDED = (("hybrid", "hybrid", []), ("ann", "ann", []), ("snn", "snn", []),
          ("hybrid-qat", "hybrid", ["quant.enabled=true"]))
VARIANTS = (("hybrid-late-fusion", "hybrid", ["model.fusion=late"]),
            ("hybrid-resnet-multiscale", "hybrid", [
                "model.snn_arch=resnet", "model.fusion=multiscale", "train.fusion_lr_scale=1.0"]),
            ("hybrid-plain-multiscale", "hybrid", ["model.fusion=multiscale"]))


def spread(rows: list[dict]) -> list[dict]:
    """Mean / min / max of test top-1 (and the quantized top-1) per run name over seeds."""
    out = []
    for name in dict.fromkeys(r["name"] for r in rows):
        sel = [r for r in rows if r["name"] == name]
        acc = [r["test_top1"] for r in sel]
        q = [r["quantization"]["quantized_top1"] for r in sel if r.get("quantization")]
        out.append({"name": name, "seeds": [r["seed"] for r in sel], "mean": sum(acc) / len(acc),
                    "min": min(acc), "max": max(acc), "quantized_mean": sum(q) / len(q) if q else None,
                    "train_seconds_mean": sum(r["train_seconds"] for r in sel) / len(sel),
                    "params": sel[0]["params"]})
    return out


def main() -> int:
    quick = "--quick" in sys.argv
    seeds = [int(a) for a in sys.argv[sys.argv.index("--seeds") + 1:] if a.isdigit()] \
        if "--seeds" in sys.argv else [0, 1, 2]
    extra = ["train.epochs=2"] if quick else []
    if not ("--resume" in sys.argv or "--report" in sys.argv) and RUNS.exists():
        RUNS.unlink()
    rows = done_runs()
    have = {(r["name"], r["seed"]) for r in rows}
    todo = [(name, kind, extra + o, seed) for seed in seeds for name, kind, o in SEEDED]
    todo += [(name, kind, extra + o, 0) for name, kind, o in VARIANTS]
    real = os.environ.get("RESPIKE_REALDATA")
    if real and Path(real, "gestures").is_dir():
        todo.append(("hybrid-gestures", "hybrid", extra + [
            "data.dataset=folder", f"data.data_root={Path(real, 'gestures')}", "data.size=112",
            "data.eval_clips=3", "train.batch_size=4"], 0))
    with tempfile.TemporaryDirectory() as tmp:
        for name, kind, o, seed in todo:
            if (name, seed) not in have and "--report" not in sys.argv:
                rows.append(run(name, kind, o, Path(tmp), seed))
    order = {(name, seed): i for i, (name, _, _, seed) in enumerate(todo)}
    rows.sort(key=lambda r: order.get((r["name"], r["seed"]), len(order)))
    cfg = load_config("tiny")
    a, m = cfg.data.appearances, cfg.data.motions
    out = {
        "benchmark": "train_tiny", "config": "tiny", "budget_minutes_per_model": BUDGET_MIN,
        "seeds": sorted({r["seed"] for r in rows if r["name"] == "hybrid"}),
        "ceilings": {"ann": 1 / m, "snn": 1 / a, "chance": 1 / (a * m)},
        "runs": rows, "by_model": spread(rows), "step_time": step_time_ratio(),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}",
    }
    loss = [100 * (h["quantization"]["float_top1"] - h["quantization"]["quantized_top1"])
            for h in rows if h["name"] == "hybrid"]
    qat = {r["seed"]: r["test_top1"] for r in rows if r["name"] == "hybrid-qat"}
    out["ptq_loss_points_max"] = round(max(loss), 1) if loss else None
    out["qat_vs_float_points"] = {s: round(100 * (r["test_top1"] - qat[s]), 1)
                                  for r in rows if r["name"] == "hybrid" and (s := r["seed"]) in qat}
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "train_tiny_quick" if quick else "train_tiny"
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    _plot(out, RESULTS / f"{name}.png")
    print("| run | seeds | test top-1 mean | min | max | quantized mean | training time | parameters |")
    print("|---|---|---|---|---|---|---|---|")
    for r in out["by_model"]:
        qm = "" if r["quantized_mean"] is None else f"{r['quantized_mean']:.3f}"
        print(f"| {r['name']} | {','.join(map(str, r['seeds']))} | {r['mean']:.3f} | {r['min']:.3f} | "
              f"{r['max']:.3f} | {qm} | {r['train_seconds_mean']:.0f} s | {r['params']:,} |")
    print(f"\nstep time hybrid / ann: {out['step_time']['ratio_hybrid_vs_ann']}x")
    return 0


def _plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    groups = out["by_model"]
    fig, ax = plt.subplots(figsize=(7, 3.2))
    x = range(len(groups))
    ax.bar(x, [g["mean"] for g in groups], color="#4a7", label="mean over seeds")
    for i, g in enumerate(groups):  # every seed as a dot, so the spread is visible
        accs = [r["test_top1"] for r in out["runs"] if r["name"] == g["name"]]
        ax.scatter([i] * len(accs), accs, color="k", s=10, zorder=3)
    for k, v in (("ann ceiling 1/M", out["ceilings"]["ann"]), ("snn ceiling 1/A", out["ceilings"]["snn"])):
        ax.axhline(v, ls="--", lw=1, color="gray")
        ax.text(len(groups) - 0.5, v, k, fontsize=7, va="bottom", ha="right")
    ax.set_xticks(list(x), [g["name"] for g in groups])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test top-1")
    ax.set_title(f"tiny config, 2 CPU cores; dots: seeds {out['seeds']}", fontsize=9)
    plt.setp(ax.get_xticklabels(), rotation=20, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
