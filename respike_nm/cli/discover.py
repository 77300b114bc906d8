"""``respike-nm list presets|datasets|profiles|models``: what exists, read from the registries."""

from __future__ import annotations

import json

WHAT = ("presets", "datasets", "profiles", "models")


def add_parser(sub) -> None:
    ls = sub.add_parser("list", help="list presets, datasets, hardware profiles or models",
                        description="What this installation offers, read from the same registries the "
                                    "commands use: config presets, dataset names, shipped hardware "
                                    "profiles, and model kinds with their SNN and fusion variants.")
    ls.add_argument("what", choices=WHAT)
    ls.add_argument("--json", action="store_true", help="print a JSON list of objects")
    ls.set_defaults(func=run_list)


def _first_line(text: str | None) -> str:
    return " ".join((text or "").strip().split("\n\n")[0].split())


def entries(what: str) -> list[dict]:
    """Rows of ``respike-nm list WHAT``: each has a ``name`` and a one-line ``description``."""
    if what == "presets":
        from respike_nm.config import PRESETS

        rows = []
        for name, make in PRESETS.items():
            cfg = make()
            m = cfg.model
            desc = _first_line(make.__doc__) or (f"the paper's set-up: {m.ann_arch}, {cfg.data.dataset}, "
                                                 f"{cfg.data.size}px, {cfg.train.epochs} epochs")
            rows.append({"name": name, "dataset": cfg.data.dataset, "ann_arch": m.ann_arch,
                         "snn_arch": m.snn_arch, "fusion": m.fusion, "epochs": cfg.train.epochs,
                         "description": desc})
        return rows
    if what == "datasets":
        import sys

        from respike_nm.data.factory import DATASETS, SYNTHETIC

        def describe(d: str) -> str:
            if d in SYNTHETIC:
                return _first_line(sys.modules[SYNTHETIC[d].__module__].__doc__)
            return {"cache": "an HDF5 clip cache (respike-nm data cache) given as --data-root",
                    "folder": "videos in one folder per class under --data-root"}.get(
                d, f"{d} videos and official splits under --data-root")

        return [{"name": d, "kind": "synthetic" if d in SYNTHETIC else "cache" if d == "cache" else "video",
                 "needs_data_root": d not in SYNTHETIC, "description": describe(d)} for d in DATASETS]
    if what == "profiles":
        from respike_nm.hardware import builtin_profiles, load_profile

        rows = []
        for name in builtin_profiles():
            p = load_profile(name)
            rows.append({"name": name, "target": p.target, "description": _first_line(p.description),
                         "costs": sorted(p.costs), "limits": sorted(p.limits)})
        return rows
    from respike_nm.models import list_models
    from respike_nm.models.respike import FUSIONS
    from respike_nm.models.snn import SNN_ARCHS

    return [{"name": k, "snn_archs": list(SNN_ARCHS) if k != "ann" else [],
             "fusions": list(FUSIONS) if k == "hybrid" else [],
             "description": {"hybrid": "ReSpike: ANN on key frames + SNN on residual frames, fused",
                             "ann": "key-frame-only baseline (the ANN branch and the head)",
                             "snn": "residual-only baseline (the SNN branch and the head)"}[k]}
            for k in list_models()]


def run_list(args) -> int:
    rows = entries(args.what)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['description']}")
    return 0
