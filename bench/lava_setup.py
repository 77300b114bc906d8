"""A stage network's fixed cost in Lava: building, compiling, starting and stopping it, with the process
models found by Lava's own search for every process of every compile, and with the run config's map
answering for the instances by class (:class:`conversion.lava_sim.ModelsByClass`, what ``simulate``
and ``predict --lava`` use).

Each stage network of the `tiny` preset's shapes (64x64, multi-scale fusion: 3 networks; random
weights: the fixed cost does not depend on them) runs 2 clips both ways, interleaved, ``--rounds``
times after one warm-up round; reported are the medians of the whole ``run_stage`` call and of its
set-up (compile and process start) and whether both ways gave the same spikes. Writes
bench/results/lava_setup.json.

Usage: python bench/lava_setup.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from lava.magma.core.run_configs import Loihi2SimCfg

from conversion import lava_sim
from conversion.export import export_model
from respike_nm.atomic import write_text_atomic
from respike_nm.config import load_config
from respike_nm.train.builder import build_datasets, build_model

RESULTS = Path(__file__).parent / "results"
OURS = lava_sim.run_config


def _searching_config(stock_conv: bool = False, protocol: str = "async") -> Loihi2SimCfg:
    """The same models, but a map keyed by class only: Lava's compiler searches for every process."""
    cfg = OURS(stock_conv, protocol)
    return Loihi2SimCfg(select_tag="fixed_pt", exception_proc_model_map=dict(cfg.exception_proc_model_map))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    cfg = load_config("tiny")
    _, _, classes, _ = build_datasets(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, "hybrid", len(classes), quantize=True).eval()
    rng = np.random.default_rng(0)
    ours = OURS
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        manifest = export_model(model, tmp, (cfg.data.size, cfg.data.size))
        for st in manifest.stages:
            graded = rng.integers(-64, 64, (2, *st.input_shape, st.time_steps)).astype(np.int32)
            times = {"search": [], "by_class": []}
            setups = {"search": [], "by_class": []}
            spikes = {}
            for r in range(args.rounds + 1):
                for way, config in (("search", _searching_config), ("by_class", ours)):
                    lava_sim.run_config = config
                    try:
                        t0 = time.perf_counter()
                        run = lava_sim.run_manifest_stage(tmp, st, graded)
                        wall = time.perf_counter() - t0
                    finally:
                        lava_sim.run_config = ours
                    spikes[way] = run.layer_spikes
                    if r:  # round 0 warms both up (first imports)
                        times[way].append(wall)
                        setups[way].append(run.setup_seconds)
            pairs = zip(spikes["search"], spikes["by_class"], strict=True)
            same = all(np.array_equal(a, b) for a, b in pairs)
            med = {w: statistics.median(v) for w, v in times.items()}
            med_setup = {w: statistics.median(v) for w, v in setups.items()}
            rows.append({"stage": st.index, "layers": len(st.layers), "clips": 2,
                         "seconds": times, "median_seconds": med, "median_setup_seconds": med_setup,
                         "by_class_vs_search": med["by_class"] / med["search"],
                         "setup_by_class_vs_search": med_setup["by_class"] / med_setup["search"],
                         "same_spikes": same,
                         "spikes": int(sum(int(s.sum()) for s in spikes["by_class"]))})
            print(f"stage {st.index} ({len(st.layers)} layers): run_stage {med['search']:.3f} s -> "
                  f"{med['by_class']:.3f} s, set-up {med_setup['search']:.3f} s -> "
                  f"{med_setup['by_class']:.3f} s; "
                  f"same spikes: {same}", flush=True)
    out = {"benchmark": "lava_setup", "model": "tiny shapes, random weights, 3 stage networks",
           "rounds": args.rounds, "stages": rows, "cpus": os.cpu_count(), "machine": platform.machine(),
           "load_average_end": os.getloadavg()[0]}
    write_text_atomic(RESULTS / "lava_setup.json", json.dumps(out, indent=2) + "\n")
    return 0 if all(r["same_spikes"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
