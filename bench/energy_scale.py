"""Paper-scale pricing: ReSpike presets against 3D CNNs, and what pricing one costs.

For each preset (default ``paper-r18`` and ``paper-r50``), in a fresh process so that peak resident
memory is its own: ``respike-nm price``'s work (build the hybrid without ANN weights, count one
clip's dense operations from shapes on the meta device, price every plan on every target over a
firing-rate sweep of 13 points, 0.5-30 %), timed, with its peak RSS. Beside it, in its own fresh
process, the same dense counts the old way, by a real forward pass of one all-zero clip under the
counters (``count_clips``): time and peak RSS side by side, and the two counts compared.

Writes bench/results/energy_scale.json (per preset: timing, dense GMACs, break-even rates against
R(2+1)D-18 and plan d, the SNN-paper-convention ratios, the README table's rows) and
bench/results/energy_scale_<preset>.png (the price command's plot).

Usage: python bench/energy_scale.py [--presets paper-r18 paper-r50]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).parent / "results"
TABLE_RATE = 0.10  # the firing rate of the README table (the measured real-small runs fire 2-13 %)
TABLE_HOST, TABLE_CHIP = "h100", "loihi2"


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def price(preset: str) -> dict:
    from respike_nm.api import price_preset
    from respike_nm.cli.energy import graded_bits
    from respike_nm.config import apply_overrides, load_config
    from respike_nm.energy.counters import count_shapes
    from respike_nm.energy.scale import sweep_rates
    from respike_nm.train.builder import build_model

    t0 = time.perf_counter()  # the counting step alone (build + dense counts from shapes)
    cfg = apply_overrides(load_config(preset), ["model.ann_weights=null"])
    count_shapes(build_model(cfg, "hybrid", 101, quantize=True), (cfg.data.frames, 3, cfg.data.size,
                                                                  cfg.data.size))
    count_seconds = time.perf_counter() - t0
    bits, source = graded_bits(None)
    out = Path(tempfile.mkdtemp()) / "scale"
    t0 = time.perf_counter()
    res = price_preset(preset, out, rates=sweep_rates(0.005, 0.30, 13) + [TABLE_RATE], graded_bits=bits,
                       graded_bits_source=source)
    seconds = time.perf_counter() - t0
    shutil.copy(out / "scale.png", RESULTS / f"energy_scale_{preset}.png")
    shutil.rmtree(out.parent)
    return {"seconds": seconds, "count_seconds": count_seconds, "peak_rss_gib": _rss_gib(), "result": res}


def forward(preset: str) -> dict:
    """The dense counts by a real forward pass of one all-zero clip (the old way)."""
    import torch

    from respike_nm.config import apply_overrides, load_config
    from respike_nm.energy.counters import count_clips
    from respike_nm.train.builder import build_model

    t0 = time.perf_counter()
    cfg = apply_overrides(load_config(preset), ["model.ann_weights=null"])
    model = build_model(cfg, "hybrid", 101, quantize=True).eval()
    clip = torch.zeros(1, cfg.data.frames, 3, cfg.data.size, cfg.data.size)
    counts = count_clips(model, [clip])
    dense = {c.name: c.dense_macs + c.dense_acs for c in counts.layers}
    return {"seconds": time.perf_counter() - t0, "peak_rss_gib": _rss_gib(), "dense": dense}


def digest(preset: str, priced: dict, old: dict) -> dict:
    from respike_nm.config import apply_overrides, load_config
    from respike_nm.energy.counters import count_shapes
    from respike_nm.train.builder import build_model

    res = priced["result"]
    cfg = apply_overrides(load_config(preset), ["model.ann_weights=null"])
    model = build_model(cfg, "hybrid", 101, quantize=True)
    shapes = count_shapes(model, (cfg.data.frames, 3, cfg.data.size, cfg.data.size))
    new = {c.name: c.dense_macs + c.dense_acs for c in shapes.layers}
    same = new.keys() == old["dense"].keys() and all(new[k] == old["dense"][k] for k in new)
    rows = [r for r in res["rows"] if r["rate"] == TABLE_RATE]
    on = {(r["plan"], r["host"], r["chip"]): r for r in rows}
    paper = {(p["plan"], p["rate"]): p for p in res["snn_paper_convention"]["rows"]}
    table = []
    for plan in ["b", "c", "d", *[f"e:{k}" for k in res["documented"]]]:
        chip = TABLE_CHIP if plan in ("b", "c") else None
        r = on.get((plan, TABLE_HOST, chip))
        if r is None:
            continue
        p = paper[(plan, TABLE_RATE)]
        table.append({"plan": plan, "title": r["title"], "gmacs": res["dense_gmacs"].get(plan),
                      "snn_paper_mj": p["attention_pj"] / 1e9,
                      "snn_paper_no_attention_mj": p["no_attention_pj"] / 1e9,
                      "target": f"{TABLE_HOST}" + (f" + {chip}" if chip else ""),
                      "compute_mj": r["compute_pj"] / 1e9, "memory_mj": r["memory_pj"] / 1e9,
                      "kinetics400_top1": res["documented"].get(plan[2:], {}).get("kinetics400_top1")})
    even = [b for b in res["break_even"] if b["plan"] == "b" and b["against"] in ("d", "e:r2plus1d_18")]
    grid = [g for g in res["convention_grid"] if g["rate"] == TABLE_RATE]
    return {"preset": preset, "clip": res["clip"], "dense_gmacs": res["dense_gmacs"],
            "skipped_plans": res["skipped_plans"], "table_rate": TABLE_RATE, "table": table,
            "break_even_b": even, "convention_grid_at_table_rate": grid,
            "price_seconds": priced["seconds"], "shapes_count_seconds": priced["count_seconds"],
            "shapes_peak_rss_gib": priced["peak_rss_gib"],
            "forward_count_seconds": old["seconds"], "forward_count_peak_rss_gib": old["peak_rss_gib"],
            "shapes_equal_forward_counts": same}


def _child(mode: str, preset: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--one", mode, preset], capture_output=True, text=True)
    sys.stderr.write(done.stderr[-2000:])
    if done.returncode:
        raise SystemExit(f"{mode} {preset}: failed")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--presets", nargs="+", default=["paper-r18", "paper-r50"])
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        mode, preset = args.one
        print(json.dumps(price(preset) if mode == "price" else forward(preset)))
        return 0
    rows = []
    for preset in args.presets:
        print(f"{preset}: pricing from shapes ...", file=sys.stderr)
        priced = _child("price", preset)
        print(f"{preset}: counting by a forward pass ...", file=sys.stderr)
        old = _child("forward", preset)
        rows.append(digest(preset, priced, old))
        r = rows[-1]
        print(f"{preset}: counted from shapes in {r['shapes_count_seconds']:.1f} s, the whole sweep priced "
              f"in {r['price_seconds']:.1f} s, peak {r['shapes_peak_rss_gib']:.2f} GiB "
              f"(forward-pass count: {r['forward_count_seconds']:.1f} s, "
              f"{r['forward_count_peak_rss_gib']:.2f} GiB); counts equal: {r['shapes_equal_forward_counts']}",
              file=sys.stderr)
    from respike_nm.atomic import write_text_atomic

    out = {"benchmark": "energy_scale", "machine": f"{platform.machine()} {os.cpu_count()} cpus",
           "rows": rows}
    write_text_atomic(RESULTS / "energy_scale.json", json.dumps(out, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
