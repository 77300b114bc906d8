"""Training benchmark: the `tiny` presets on both synthetic sets, seeds 0-4, 2 CPU cores.

Rows (each trained once per seed; the seed fixes the clips, the initialisation and the batch order):

- synthetic-motion (`tiny`): the default hybrid (multi-scale cross-attention after SNN stages 2-4 on
  the deployable plain SNN), its quantization-aware twin, the `ann` and `snn` baselines, the hybrid
  with late fusion, with head-only fusion (`none`) and with the paper-faithful `resnet` SNN.
- synthetic-binding (`tiny-binding`, docs/synthetic_binding.md): `ann`, `snn`, `none`, `late`,
  the default multi-scale hybrid and the `resnet` one: the task where the fusion itself matters.
- the hybrid on the real `gestures` clips (seed 0, when RESPIKE_REALDATA is set).

Every finished run is appended at once to bench/results/train_tiny_runs.jsonl, with the epochs it
ran, its wall time and the machine's load average when it started (runs that shared the machine are
slower than they should be). `--resume` skips runs already there; `--report` trains nothing and
writes bench/results/train_tiny.json and .png and prints Markdown tables (per seed, then the spread)
from that file. Without either flag the file is started afresh.

Usage: python bench/train_tiny.py [--quick] [--seeds 0 1 2 3 4] [--only NAME ...] [--resume | --report]
"""

from __future__ import annotations

import argparse
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
from respike_nm.records import to_data
from respike_nm.train.builder import build_datasets, build_model
from respike_nm.train.loop import train

RESULTS = Path(__file__).parent / "results"
RUNS = RESULTS / "train_tiny_runs.jsonl"
BUDGET_MIN = 10.0

# (name, config preset, model kind, overrides)
MOTION = (
    ("hybrid", "tiny", "hybrid", []),
    ("hybrid-qat", "tiny", "hybrid", ["quant.enabled=true"]),
    ("ann", "tiny", "ann", []),
    ("snn", "tiny", "snn", []),
    ("hybrid-late", "tiny", "hybrid", ["model.fusion=late"]),
    ("hybrid-none", "tiny", "hybrid", ["model.fusion=none"]),
    ("hybrid-resnet", "tiny", "hybrid", ["model.snn_arch=resnet"]),
)
BINDING = (
    ("binding-ann", "tiny-binding", "ann", []),
    ("binding-snn", "tiny-binding", "snn", []),
    ("binding-none", "tiny-binding", "hybrid", ["model.fusion=none"]),
    ("binding-late", "tiny-binding", "hybrid", ["model.fusion=late"]),
    ("binding-hybrid", "tiny-binding", "hybrid", []),
    ("binding-resnet", "tiny-binding", "hybrid", ["model.snn_arch=resnet"]),
)


def ceilings(preset: str) -> dict:
    """Exact accuracy ceilings of the single-branch and head-only models (docs/synthetic_*.md)."""
    d = load_config(preset).data
    a, m = d.appearances, d.motions
    if d.dataset == "synthetic-binding":
        return {"ann": 1 / (2 * m), "snn": 1 / a, "none": 0.75, "chance": 1 / (a * m)}
    return {"ann": 1 / m, "snn": 1 / a, "chance": 1 / (a * m)}


def done_runs() -> list[dict]:
    return [json.loads(line) for line in RUNS.read_text().splitlines() if line] if RUNS.exists() else []


def record(row: dict) -> dict:
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RUNS, "a") as f:
        f.write(json.dumps(row) + "\n")
    return row


def run(name: str, preset: str, kind: str, overrides: list[str], workdir: Path, seed: int) -> dict:
    budget = [f"train.max_minutes={BUDGET_MIN}", f"seed={seed}"]
    cfg = apply_overrides(load_config(preset), overrides + budget)
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = train(cfg, kind, workdir / f"{name}-s{seed}")
    s = res.summary
    row = {"name": name, "config": preset, "model": kind, "overrides": overrides, "seed": seed,
           "dataset": cfg.data.dataset, "test_top1": s.test_top1, "epochs": s.epochs,
           "epochs_planned": cfg.train.epochs, "train_seconds": round(time.perf_counter() - t0, 1),
           "load_at_start": round(load, 2), "params": s.params,
           "quantization": to_data(s.quantization) if s.quantization else None,
           "curve": [round(h["test_top1"], 4) for h in res.history if "test_top1" in h]}
    print(f"{name} seed {seed}: top-1 {row['test_top1']:.3f} after {row['epochs']} epochs in "
          f"{row['train_seconds']:.0f} s", file=sys.stderr)
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


def quantized(r: dict) -> float | None:
    q = r.get("quantization")
    return None if not q else q["quantized_top1"]


def spread(rows: list[dict]) -> list[dict]:
    """Per run name: every seed's top-1, mean / min / max, and the quantized top-1 per seed."""
    out = []
    for name in dict.fromkeys(r["name"] for r in rows):
        sel = sorted((r for r in rows if r["name"] == name), key=lambda r: r["seed"])
        acc = [r["test_top1"] for r in sel]
        out.append({"name": name, "config": sel[0]["config"], "seeds": [r["seed"] for r in sel],
                    "top1": acc, "mean": sum(acc) / len(acc), "min": min(acc), "max": max(acc),
                    "quantized": [quantized(r) for r in sel],
                    "float": [(r.get("quantization") or {}).get("float_top1") for r in sel],
                    "epochs": [r["epochs"] for r in sel], "train_seconds": [r["train_seconds"] for r in sel],
                    "params": sel[0]["params"]})
    return out


def targets(by: dict[str, dict], cmotion: dict, cbind: dict) -> dict:
    """The issue's targets, per seed."""
    out = {}
    h = by.get("hybrid")
    if h:
        out["hybrid_top1_ge_0.95_every_seed"] = all(a >= 0.95 for a in h["top1"])
        out["ptq_within_2_points_every_seed"] = all(
            q is not None and f - q <= 0.02 for f, q in zip(h["top1"], h["quantized"], strict=True))
    qat = by.get("hybrid-qat")
    if h and qat:
        fl = dict(zip(h["seeds"], h["top1"], strict=True))
        pairs = zip(qat["seeds"], qat["top1"], strict=True)
        out["qat_within_2_points_every_seed"] = all(fl[s] - a <= 0.02 for s, a in pairs if s in fl)
    for name, key, ceil in (("ann", "ann", cmotion), ("snn", "snn", cmotion),
                            ("binding-ann", "ann", cbind), ("binding-snn", "snn", cbind),
                            ("binding-none", "none", cbind)):
        if name in by:
            out[f"{name}_max_vs_ceiling"] = [round(max(by[name]["top1"]), 3), round(ceil[key], 3)]
    b = by.get("binding-hybrid")
    if b:
        out["binding_hybrid_ge_0.90_every_seed"] = all(a >= 0.90 for a in b["top1"])
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="2 epochs per run (a smoke run, not for accuracy)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--only", nargs="+", help="train only these run names")
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--report", action="store_true")
    args = ap.parse_args()
    extra = ["train.epochs=2"] if args.quick else []
    if not (args.resume or args.report) and RUNS.exists():
        RUNS.unlink()
    rows = done_runs()
    have = {(r["name"], r["seed"]) for r in rows}
    todo = [(n, p, k, extra + o, s) for s in args.seeds for n, p, k, o in MOTION + BINDING]
    real = os.environ.get("RESPIKE_REALDATA")
    if real and Path(real, "gestures").is_dir():
        todo.append(("hybrid-gestures", "tiny", "hybrid", extra + [
            "data.dataset=folder", f"data.data_root={Path(real, 'gestures')}", "data.size=112",
            "data.eval_clips=3", "train.batch_size=4"], 0))
    if args.only:
        todo = [t for t in todo if t[0] in args.only]
    with tempfile.TemporaryDirectory() as tmp:
        for name, preset, kind, o, seed in todo:
            if (name, seed) not in have and not args.report:
                rows.append(run(name, preset, kind, o, Path(tmp), seed))
    order = {name: i for i, (name, *_rest) in enumerate(MOTION + BINDING)}
    rows.sort(key=lambda r: (order.get(r["name"], len(order)), r["seed"]))
    by = {r["name"]: r for r in spread(rows)}
    cm, cb = ceilings("tiny"), ceilings("tiny-binding")
    out = {
        "benchmark": "train_tiny", "budget_minutes_per_model": BUDGET_MIN,
        "ceilings": {"synthetic-motion": cm, "synthetic-binding": cb},
        "runs": rows, "by_model": list(by.values()), "targets": targets(by, cm, cb),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}",
    }
    out["step_time"] = _previous().get("step_time") if args.report else step_time_ratio()
    RESULTS.mkdir(parents=True, exist_ok=True)
    name = "train_tiny_quick" if args.quick else "train_tiny"
    (RESULTS / f"{name}.json").write_text(json.dumps(out, indent=2) + "\n")
    _plot(out, RESULTS / f"{name}.png")
    _print_tables(out)
    return 0


def _previous() -> dict:
    path = RESULTS / "train_tiny.json"
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _print_tables(out: dict) -> None:
    seeds = sorted({r["seed"] for r in out["runs"]})
    head = " | ".join(f"seed {s}" for s in seeds)
    print(f"| run | {head} | mean | min | max | quantized (per seed) |")
    print("|---|" + "---|" * (len(seeds) + 4))
    for g in out["by_model"]:
        acc = dict(zip(g["seeds"], g["top1"], strict=True))
        cells = " | ".join(f"{acc[s]:.3f}" if s in acc else "" for s in seeds)
        q = ", ".join(f"{v:.3f}" for v in g["quantized"] if v is not None)
        print(f"| {g['name']} | {cells} | {g['mean']:.3f} | {g['min']:.3f} | {g['max']:.3f} | {q} |")
    print("\n| run | epochs | training time per seed (s) | parameters |\n|---|---|---|---|")
    for g in out["by_model"]:
        print(f"| {g['name']} | {', '.join(map(str, g['epochs']))} | "
              f"{', '.join(f'{t:.0f}' for t in g['train_seconds'])} | {g['params']:,} |")
    print(f"\ntargets: {json.dumps(out['targets'])}")
    if out.get("step_time"):
        print(f"step time hybrid / ann: {out['step_time']['ratio_hybrid_vs_ann']}x")


def _plot(out: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [("synthetic-motion", "tiny"), ("synthetic-binding", "tiny-binding")]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True)
    for ax, (title, preset) in zip(axes, panels, strict=True):
        groups = [g for g in out["by_model"] if g["config"] == preset and g["name"] != "hybrid-gestures"]
        x = range(len(groups))
        ax.bar(x, [g["mean"] for g in groups], color="#4a7", label="mean over seeds")
        for i, g in enumerate(groups):  # every seed as a dot, so the spread is visible
            ax.scatter([i] * len(g["top1"]), g["top1"], color="k", s=10, zorder=3)
        ceil = out["ceilings"][title]
        lines = [("ann ceiling", ceil["ann"]), ("snn ceiling", ceil["snn"])]
        if "none" in ceil:
            lines.append(("head-only ceiling 3/4", ceil["none"]))
        for label, v in lines:
            ax.axhline(v, ls="--", lw=1, color="gray")
            ax.text(len(groups) - 0.5, v, label, fontsize=7, va="bottom", ha="right")
        ax.set_xticks(list(x), [g["name"].replace("binding-", "") for g in groups])
        plt.setp(ax.get_xticklabels(), rotation=25, fontsize=8)
        ax.set_title(f"{title} ({preset}); dots: seeds", fontsize=9)
        ax.set_ylim(0, 1.05)
    axes[0].set_ylabel("test top-1")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
