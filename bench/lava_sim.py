"""Lava simulation speed: Lava's own process models, ours on the Loihi protocol, ours asynchronous, and
the PyTorch reference.

Cases: the `tiny` config's hybrid (its SNN branch exported to netx; a trained run with ``--run``,
else seeded random weights scaled so every layer spikes), and the three stage sizes of
docs/fixed-point.md, "Speed" (3x10x14 -> 8 -> 12, 16x32x48 -> 32 -> 64, 32x64x96 -> 64 -> 64; 3x3
convs, stride 1, T' = 3).
Each case runs the same input three ways side by side in this process: "stock" (Lava's own models,
scipy Conv, Loihi protocol), "loihi" (our vectorised Conv, Loihi protocol) and "async" (our Conv, every
process on its AsyncProtocol twin: what `simulate` runs), counts the spikes (all layers) in which ours
differ from the stock run and from the quantized PyTorch reference (conversion/verify.py), and times that
reference on the same clips.
Writes bench/results/lava_sim.json and .png.

Usage: python bench/lava_sim.py [--run RUN_DIR] [--clips N] [--repeat R]
(N test videos of the tiny model, default 4; R runs per measurement, the fastest counts, default 3)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from conversion.export import export_model, export_stage
from conversion.lava_sim import LavaRunResult, run_stage
from conversion.manifest import StageManifest
from conversion.verify import reference_stage, stage_inputs
from respike_nm.config import load_config
from respike_nm.models.deploy import cut_stages
from respike_nm.models.fixed_point import DEFAULT_SPEC, graded_integers
from respike_nm.models.snn import SNNSpec, SpikingConv
from respike_nm.train.builder import build_datasets, build_model

RESULTS = Path(__file__).parent / "results"
# name, (C, H, W), channels, clips (stock Lava runs ~3 steps/s on the largest)
DESIGN_STAGES = [("3x10x14->8->12", (3, 10, 14), (8, 12), 100),
                 ("16x32x48->32->64", (16, 32, 48), (32, 64), 10),
                 ("32x64x96->64->64", (32, 64, 96), (64, 64), 3)]
TIME_STEPS = 3


# mode: (stock_conv, protocol)
MODES = {"stock": (True, "loihi"), "loihi": (False, "loihi"), "async": (False, "async")}


@dataclass(frozen=True)
class SpeedCase:
    """One stage network, three ways of running it in Lava and the reference, on the same clips.

    ``*_steps_per_s``: Lava steps (clips x T' + pipeline flush) per second of ``net.run``;
    ``*_clip_steps_per_s``: clip time steps (clips x T') per second, comparable with
    ``torch_clip_steps_per_s`` (the quantized PyTorch reference, all clips batched, CPU);
    ``*_vs_torch``: the reference's time over that run's. Mismatches: differing spikes summed over
    all layers.
    """

    name: str
    input_shape: tuple[int, int, int]
    channels: tuple[int, ...]
    clips: int
    time_steps: int
    lava_steps: int
    stock_steps_per_s: float
    loihi_steps_per_s: float
    async_steps_per_s: float
    stock_clip_steps_per_s: float
    loihi_clip_steps_per_s: float
    async_clip_steps_per_s: float
    torch_clip_steps_per_s: float
    loihi_vs_torch: float
    async_vs_torch: float
    async_vs_loihi: float
    mismatch_loihi_vs_stock: int
    mismatch_async_vs_stock: int
    mismatch_async_vs_reference: int
    layer_rates: tuple[float, ...]
    setup_s: dict[str, float]


_T0 = time.perf_counter()


def log(msg: str) -> None:
    print(f"[lava_sim {time.perf_counter() - _T0:6.1f} s] {msg}", file=sys.stderr, flush=True)


def _mismatch(a: LavaRunResult, b: LavaRunResult) -> int:
    return int(sum(np.count_nonzero(x != y) for x, y in zip(a.layer_spikes, b.layer_spikes, strict=True)))


def measure(name: str, layers: list[SpikingConv], record: StageManifest, hdf5: Path,
            x: torch.Tensor, repeat: int) -> SpeedCase:
    """Run stage ``layers`` (exported as ``record`` at ``hdf5``) on ``x [N, C, H, W, T]`` four ways.

    Each way runs ``repeat`` times, interleaved; the fastest run counts (the machine is shared).
    """
    graded = graded_integers(x, layers[0].quant, record.input_scale).numpy()
    runs: dict[str, LavaRunResult] = {}
    torch_s = float("inf")
    for k in range(repeat):
        for mode, (stock, protocol) in MODES.items():
            log(f"{name}: Lava, {mode}, {graded.shape[0]} clips, run {k + 1}/{repeat}")
            run = run_stage(hdf5, graded, time_steps=record.time_steps, stock_conv=stock, protocol=protocol,
                            input_message_bits=record.input_message_bits)
            log(f"  setup {run.setup_seconds:.1f} s, {run.steps} steps in {run.run_seconds:.2f} s")
            if mode in runs and _mismatch(run, runs[mode]):
                raise RuntimeError(f"{name}: two Lava runs of the same input differ")
            if mode not in runs or run.run_seconds < runs[mode].run_seconds:
                runs[mode] = run
        t0 = time.perf_counter()
        ref = reference_stage(layers, x, record.input_scale).spikes
        torch_s = min(torch_s, time.perf_counter() - t0)
    stock, loihi, fast = runs["stock"], runs["loihi"], runs["async"]
    clip_steps = stock.clips * stock.time_steps
    return SpeedCase(
        name=name, input_shape=tuple(record.input_shape), channels=tuple(s[0] for s in record.layer_shapes),
        clips=stock.clips, time_steps=stock.time_steps, lava_steps=stock.steps,
        stock_steps_per_s=round(stock.steps_per_second, 2),
        loihi_steps_per_s=round(loihi.steps_per_second, 2),
        async_steps_per_s=round(fast.steps_per_second, 2),
        stock_clip_steps_per_s=round(clip_steps / stock.run_seconds, 2),
        loihi_clip_steps_per_s=round(clip_steps / loihi.run_seconds, 2),
        async_clip_steps_per_s=round(clip_steps / fast.run_seconds, 2),
        torch_clip_steps_per_s=round(clip_steps / torch_s, 2),
        loihi_vs_torch=round(torch_s / loihi.run_seconds, 3),
        async_vs_torch=round(torch_s / fast.run_seconds, 3),
        async_vs_loihi=round(loihi.run_seconds / fast.run_seconds, 2),
        mismatch_loihi_vs_stock=_mismatch(loihi, stock), mismatch_async_vs_stock=_mismatch(fast, stock),
        mismatch_async_vs_reference=int(sum(np.count_nonzero(a.astype(bool) != (r.numpy() > 0))
                                            for a, r in zip(fast.layer_spikes, ref, strict=True))),
        layer_rates=tuple(round(float(r.mean()), 4) for r in ref),
        setup_s={mode: round(run.setup_seconds, 2) for mode, run in runs.items()},
    )


def _spiking(layers: list[SpikingConv], g: torch.Generator, mean: float = 0.3, gain: float = 2.5) -> None:
    """Seeded random weights with a positive ``mean`` (in units of their spread) and BN statistics, so that
    every layer spikes."""
    with torch.no_grad():
        for layer in layers:
            conv, bn = layer.synapse.conv, layer.synapse.bn
            fan_in = conv.weight[0].numel()
            conv.weight.copy_((torch.randn(conv.weight.shape, generator=g) + mean) * gain / fan_in ** 0.5)
            bn.running_mean.copy_(torch.randn(conv.out_channels, generator=g) * 0.3)
            bn.running_var.copy_(torch.rand(conv.out_channels, generator=g) * 1.5 + 0.5)
            bn.weight.copy_(torch.rand(conv.out_channels, generator=g) * 0.8 + 0.6)
            bn.bias.copy_(torch.randn(conv.out_channels, generator=g) * 0.3)
            layer.eval()


def tiny_model(run_dir: Path | None):
    """The tiny config's hybrid, quantized: a trained run, or seeded random spiking weights."""
    if run_dir is not None:
        from respike_nm.train.run import load_run

        model, cfg, _ = load_run(run_dir, quantize=True)
        return model.eval(), cfg, f"trained run {run_dir}"
    cfg = load_config("tiny")
    torch.manual_seed(0)
    model = build_model(cfg, "hybrid", cfg.data.appearances * cfg.data.motions, quantize=True).eval()
    layers = [layer for stage in cut_stages(model, quantized=True) for layer in stage.layers]
    _spiking(layers, torch.Generator().manual_seed(0))
    return model, cfg, "seeded random weights (no --run)"


def tiny_cases(run_dir: Path | None, videos: int, work: Path, repeat: int) -> tuple[list[SpeedCase], dict]:
    model, cfg, source = tiny_model(run_dir)
    _, test, _, _ = build_datasets(cfg)
    video = torch.stack([test[i].video[0] for i in range(videos)])  # uint8: the model normalises
    t0 = time.perf_counter()
    manifest = export_model(model, work / "tiny", (cfg.data.size, cfg.data.size))
    export_s = time.perf_counter() - t0
    log(f"tiny: exported {len(manifest.stages)} stage(s) in {export_s:.2f} s ({source})")
    inputs = stage_inputs(model, video)
    stages = cut_stages(model, quantized=True)
    cases = [measure(f"tiny stage{rec.index} ({len(rec.layers)} layers)", list(stage.layers), rec,
                     work / "tiny" / rec.hdf5, x, repeat)
             for stage, rec, x in zip(stages, manifest.stages, inputs, strict=True)]
    info = {"weights": source, "videos": videos, "frame": cfg.data.size, "export_seconds": round(export_s, 3),
            "stages": len(manifest.stages), "layers": sum(len(s.layers) for s in manifest.stages)}
    return cases, info


def design_case(name: str, shape: tuple[int, int, int], channels: tuple[int, ...], clips: int,
                work: Path, seed: int, repeat: int) -> SpeedCase:
    snn = SNNSpec(quant=DEFAULT_SPEC)
    layers, cin = [], shape[0]
    for i, cout in enumerate(channels):
        layers.append(SpikingConv(cin, cout, 1, snn, graded_input=i == 0))
        cin = cout
    _spiking(layers, torch.Generator().manual_seed(seed), mean=0.1)  # 0.3 makes wide layers fire at 80-95 %
    path = work / f"design{seed}.net"
    record = export_stage(layers, path, input_shape=shape, time_steps=TIME_STEPS)
    x = torch.randn(clips, *shape, TIME_STEPS, generator=torch.Generator().manual_seed(100 + seed))
    return measure(name, layers, record, path, x, repeat)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", type=Path, help="trained tiny run directory (else seeded random weights)")
    parser.add_argument("--clips", type=int, default=4, help="test videos of the tiny model")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement; the fastest counts")
    args = parser.parse_args()
    if args.clips < 1 or args.repeat < 1:
        parser.error("--clips and --repeat must be at least 1")
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        cases, tiny = tiny_cases(args.run, args.clips, work, args.repeat)
        for i, (name, shape, channels, clips) in enumerate(DESIGN_STAGES):
            cases.append(design_case(name, shape, channels, clips, work, i, args.repeat))
    out = {"benchmark": "lava_sim", "tiny": tiny, "repeat": args.repeat, "cases": [asdict(c) for c in cases],
           "total_seconds": round(time.perf_counter() - t_start, 1),
           "machine": f"{platform.machine()} {os.cpu_count()} cpus, torch threads {torch.get_num_threads()}"}
    RESULTS.mkdir(parents=True, exist_ok=True)
    _write_atomic(RESULTS / "lava_sim.json", json.dumps(out, indent=2) + "\n")
    _plot(cases, RESULTS / "lava_sim.png")
    print("| stage | stock Lava steps/s | ours, Loihi protocol | ours, async | PyTorch ref. clip-steps/s | "
          "async / PyTorch | mismatches |")
    print("|---|---|---|---|---|---|---|")
    for c in cases:
        print(f"| {c.name} | {c.stock_steps_per_s:g} | {c.loihi_steps_per_s:g} | {c.async_steps_per_s:g} | "
              f"{c.torch_clip_steps_per_s:g} | {c.async_vs_torch:g} | {c.mismatch_loihi_vs_stock} / "
              f"{c.mismatch_async_vs_stock} / {c.mismatch_async_vs_reference} |")
    return 0


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _plot(cases: list[SpeedCase], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [("Lava's models, Loihi protocol", "stock_clip_steps_per_s", "#b55"),
              ("our Conv, Loihi protocol", "loihi_clip_steps_per_s", "#db4"),
              ("our Conv, async", "async_clip_steps_per_s", "#4a7"),
              ("PyTorch reference", "torch_clip_steps_per_s", "#57a")]
    fig, ax = plt.subplots(figsize=(8.5, 3.4))
    xs = np.arange(len(cases))
    for k, (label, field, color) in enumerate(series):
        ax.bar(xs + (k - 1.5) * 0.2, [getattr(c, field) for c in cases], 0.2, label=label, color=color)
    ax.set_yscale("log")
    ax.set_xticks(xs, [c.name.replace(" (", "\n(") for c in cases], fontsize=7)
    ax.set_ylabel("clip time steps / s")
    ax.set_title("Lava fixed-point simulation speed (same spikes), 2 CPU cores", fontsize=9)
    ax.legend(fontsize=7)
    fig.tight_layout()
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except ValueError as exc:  # bad run directory or config: one line, no traceback
        print(f"bench/lava_sim.py: error: {exc}", file=sys.stderr)
        sys.exit(2)
