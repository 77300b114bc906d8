"""``respike-nm demo``: the whole story on the embedded synthetic-motion data, one command.

Stages, each the same subcommand a user would run: data inspection (decomposition strip), training
of the ``tiny`` hybrid and its two baselines, their evaluation, export of the hybrid's SNN to Lava
netx, Lava simulation verified against PyTorch, and the energy report for every hardware profile.
Writes ``DIR/summary.md``, ``DIR/summary.json`` and the PNG figures. A failing stage stops the demo
with its name; nothing is skipped in silence.
"""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

from respike_nm.atomic import write_text_atomic
from respike_nm.cli import positive_int
from respike_nm.errors import RespikeError

MODELS = ("hybrid", "ann", "snn")
# --quick: the same stages at a size that runs in a few minutes (for tests), not for accuracy.
QUICK_SETS = ("train.epochs=1", "data.train_per_class=4", "data.test_per_class=2")


class DemoError(RespikeError, RuntimeError):
    """A demo stage failed; the message names the stage."""


def add_parser(sub) -> None:
    p = sub.add_parser(
        "demo", help="run the whole pipeline on synthetic-motion: train, export, simulate, energy",
        description="Train the tiny hybrid and its ann/snn baselines on synthetic-motion, evaluate "
                    "them, export the hybrid's SNN to Lava netx, simulate and verify it against "
                    "PyTorch, and report energy for every hardware profile. Writes DIR/summary.md, "
                    "DIR/summary.json and PNG figures.")
    p.add_argument("--out", type=Path, default=Path("demo_out"), help="output folder (default demo_out)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, for a smoke run (not for accuracy)")
    p.add_argument("--clips", type=positive_int, help="clips for simulate and energy (default 20, quick 2)")
    p.add_argument("--json", action="store_true", help="print summary.json instead of summary.md")
    p.set_defaults(func=run_demo)


class _Stages:
    """Runs named stages, prints a header each, records their time, names the one that fails."""

    def __init__(self, total: int):
        self.total, self.done, self.log = total, 0, []

    def run(self, name: str, fn, *args):
        self.done += 1
        print(f"\n== [{self.done}/{self.total}] {name}", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        try:
            out = fn(*args)
        except Exception as exc:  # noqa: BLE001 - any failure is reported with the stage's name
            raise DemoError(f"demo stage '{name}' failed: {exc}") from exc
        self.log.append({"stage": name, "seconds": round(time.perf_counter() - t0, 1)})
        return out


def run_demo(args) -> int:
    # Lava fixes multiprocessing's start method when first imported; it must come before training
    # touches multiprocessing (see conversion.lava_sim).
    import conversion.lava_sim  # noqa: F401

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    clips = args.clips or (2 if args.quick else 20)
    sets = list(QUICK_SETS if args.quick else ())
    st = _Stages(total=4 + len(MODELS) * 2)
    t0 = time.perf_counter()

    st.run("data: decompose synthetic-motion clips into key and residual frames", _data, out)
    runs = {}
    for m in MODELS:
        runs[m] = st.run(f"train: tiny {m} on synthetic-motion", _train, out, m, sets)
    evals = {m: st.run(f"eval: {m}", _eval, runs[m]) for m in MODELS}
    export = st.run("export: the hybrid's SNN branch to Lava netx", _export, runs["hybrid"], out)
    verify = st.run("simulate: Lava (Loihi 2 fixed point) against the quantized PyTorch model",
                    _simulate, export, clips)
    if verify["silent_layers"]:
        print(f"respike-nm: warning: {len(verify['silent_layers'])} of {verify['layers']} layers never fired "
              "in the verification; their agreement with Lava was not tested", file=sys.stderr)
    energy = st.run("energy: every hardware profile, every deployment plan", _energy, runs["hybrid"],
                    export, out, clips)

    figures = _figures(out, runs, evals)
    summary = {"quick": args.quick, "seconds": round(time.perf_counter() - t0, 1), "stages": st.log,
               "accuracy": evals, "verification": verify, "energy": energy, "figures": figures,
               "outputs": {"runs": {m: str(p) for m, p in runs.items()}, "export": str(export)}}
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_text_atomic(out / "summary.md", summary_markdown(summary))
    if getattr(args, "json", False):
        print(json.dumps(summary, indent=2))
        return 0
    print(summary_markdown(summary))
    print(f"demo finished in {summary['seconds']:.0f} s; outputs in {out}/ (summary.md, summary.json)")
    return 0


def _data(out: Path) -> None:
    from respike_nm.data.inspect import inspect_synthetic
    from respike_nm.data.records import ClipSpec

    rows = inspect_synthetic(4, ClipSpec(frames=16, stride=4, size=64), out / "data")
    if not rows:
        raise DemoError("data inspect wrote no strip")
    shutil.copyfile(rows[0]["strip"], out / "decomposition.png")


def _train(out: Path, model: str, sets: list[str]) -> Path:
    from respike_nm.config import apply_overrides, load_config
    from respike_nm.train.loop import train

    run = out / "runs" / model
    if run.exists():
        shutil.rmtree(run)

    def on_epoch(row: dict) -> None:
        acc = f" test top-1 {row['test_top1']:.3f}" if "test_top1" in row else ""
        print(f"epoch {row['epoch']:>3}: loss {row['train_loss']:.4f}{acc} ({row['seconds']:.0f} s)",
              file=sys.stderr)

    train(apply_overrides(load_config("tiny"), sets), model, run, on_epoch=on_epoch)
    return run


def _eval(run: Path) -> dict:
    from respike_nm.train.evaluate import evaluate_run
    from respike_nm.train.run import read_summary

    ev = evaluate_run(run)
    summary = read_summary(run)
    q = summary.quantization
    return {"model": ev.model, "test_top1": ev.result.top1, "test_top1_video": ev.result.top1_video,
            "epochs": ev.epochs, "quantized_top1": q.quantized_top1 if q else None,
            "train_seconds": summary.seconds, "params": summary.params}


def _export(run: Path, out: Path) -> Path:
    from conversion.pipeline import export_run

    export = out / "hybrid-lava"
    if export.exists():
        shutil.rmtree(export)
    export_run(run, export)
    return export


def _simulate(export: Path, clips: int) -> dict:
    from conversion.pipeline import simulate_export

    v = simulate_export(export, clips=clips)
    if not v.passed:
        raise DemoError(f"Lava and PyTorch differ: {'; '.join(v.problems)}")
    return {"clips": v.clips, "spike_mismatch": v.spike_mismatch,
            "prediction_agreement": v.prediction_agreement, "hybrid_top1": v.hybrid_top1,
            "torch_top1": v.torch_top1, "lava_steps_per_second": v.lava_steps_per_second,
            "layers": v.layers, "layers_fired": v.layers_fired, "silent_layers": list(v.silent_layers)}


def _energy(run: Path, export: Path, out: Path, clips: int) -> dict:
    from respike_nm.api import price_run
    from respike_nm.cli.energy import graded_bits
    from respike_nm.energy.report import REPORT_NAME, read_energy_report

    target = out / "energy"
    if target.exists():
        shutil.rmtree(target)
    price_run(run, target, *graded_bits(export), clips=clips)
    return energy_digest(read_energy_report(target / REPORT_NAME))


def energy_digest(report) -> dict:
    """Per plan and target pair of an :class:`~respike_nm.energy.report.EnergySummary`: energy per
    clip in uJ (compute only, and with the memory term)."""
    rows = []
    for e in report.energy:
        target = e.host + (f" + {e.chip}" if e.chip else "")
        rows.append({"plan": f"{e.plan}: {e.title}", "target": target, "uj_per_clip": e.compute_pj * 1e-6,
                     "uj_per_clip_with_memory": e.compute_plus_memory_pj * 1e-6,
                     "kind": "/".join(e.kinds)})
    return {"per": report.per, "rows": rows, "caveats": list(report.caveats)}


def _figures(out: Path, runs: dict, evals: dict) -> list[str]:
    from matplotlib.figure import Figure

    from respike_nm.train.run import read_metrics

    fig = Figure(figsize=(8, 3))
    a1, a2 = fig.subplots(1, 2)
    for m, run in runs.items():
        rows = read_metrics(run)
        ep = [r.epoch for r in rows]
        a1.plot(ep, [r.train_loss for r in rows], marker=".", label=m)
        a2.plot(ep, [r.test_top1 for r in rows], marker=".", label=m)
    a1.set(xlabel="epoch", ylabel="training loss", title="training curves")
    a2.set(xlabel="epoch", ylabel="test top-1", ylim=(0, 1.05), title="test accuracy")
    a2.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "training_curves.png", dpi=110)

    fig = Figure(figsize=(4, 3))
    ax = fig.subplots()
    ax.bar(list(evals), [e["test_top1"] for e in evals.values()], color=["#4a7", "#57a", "#a75"])
    ax.set(ylim=(0, 1.05), ylabel="test top-1", title="tiny models on synthetic-motion")
    fig.tight_layout()
    fig.savefig(out / "accuracy.png", dpi=110)
    pngs = ["decomposition.png", "training_curves.png", "accuracy.png"]
    pngs += [str(p.relative_to(out)) for p in sorted((out / "energy").glob("*.png"))]
    return pngs


def _silent_note(v: dict) -> list[str]:
    """A warning when layers never fired: their agreement shows only that both stay silent."""
    if not v["silent_layers"]:
        return [f"Every layer fired on these clips: all {v['layers']} were tested.", ""]
    return [f"**Only {v['layers_fired']} of {v['layers']} layers fired on these clips**; the other "
            f"{len(v['silent_layers'])} ({', '.join(v['silent_layers'])}) agree only in staying silent, "
            "so they were not tested (a short training leaves deep SNN layers silent; the full demo "
            "trains longer).", ""]


def summary_markdown(s: dict) -> str:
    lines = ["# respike-nm demo", "",
             f"{'Quick run (tiny sizes, accuracies mean nothing). ' if s['quick'] else ''}"
             f"Finished in {s['seconds']:.0f} s.", "", "## Accuracy (synthetic-motion, test top-1)", "",
             "| model | top-1 | quantized (Loihi 2) | epochs | training time | parameters |",
             "|---|---|---|---|---|---|"]
    for m, e in s["accuracy"].items():
        q = "" if e["quantized_top1"] is None else f"{e['quantized_top1']:.3f}"
        lines.append(f"| {m} | {e['test_top1']:.3f} | {q} | {e['epochs']} | {e['train_seconds']:.0f} s | "
                     f"{e['params']:,} |")
    v = s["verification"]
    lines += ["", "## Lava verification", "",
              f"{v['clips']} clips: {v['spike_mismatch']} mismatched spikes over all {v['layers']} layers, "
              f"prediction agreement {v['prediction_agreement']:.3f} (Lava hybrid vs PyTorch).", "",
              *_silent_note(v),
              "## Energy per clip", "", "| plan | target | uJ (compute) | uJ (with memory) | figures |",
              "|---|---|---|---|---|"]
    for r in s["energy"]["rows"]:
        mem = "" if r["uj_per_clip_with_memory"] is None else f"{r['uj_per_clip_with_memory']:.3g}"
        lines.append(f"| {r['plan']} | {r['target']} | {r['uj_per_clip']:.3g} | {mem} | {r['kind'] or ''} |")
    lines += ["", "Caveats:", ""] + [f"- {c}" for c in s["energy"]["caveats"]]
    lines += ["", "Figures: " + ", ".join(s["figures"]), ""]
    return "\n".join(lines)
