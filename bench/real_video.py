"""Real-clip benchmark: the `real-small` preset and its ablations, leave one subject out, on 2 CPU cores.

Sets (from RESPIKE_REALDATA, default ../shared/realdata; never part of the repository), every one
cut leave-one-subject-out, so no person is in both training and test:

- ``weizmann10``: 70 silhouette clips, 10 actions, 7 actors (the name begins with the actor): 7 folds.
- ``weizmann4``: 24 RGB clips, 4 actions; the actor of ``weizmann_<class>_<id>.mkv`` is id // 8.
- ``gestures``: 18 clips, 3 gestures, 2 people (``P(\\d+)`` in the name): 2 folds.

Variants (``VARIANTS``): the single branches ``ann`` and ``snn``, the ``hybrid`` trained as published
(one fused loss), the fusion ablation ``fusion-late`` and ``fusion-none`` (cross-attention after the
last stage only, or none: concatenated pooled features), the branch-balancing training methods of
:mod:`respike_nm.train.balance`, all on TSN segments (``real-small``'s sampling when they were
measured), and ``snippets``/``ann-snippets``/``snn-snippets``: the hybrid and its branches trained on
TSN snippets (residual frames of adjacent frames). ``snippets`` is ``real-small`` as shipped: inner
validation chose it (``preset_choice``).

Every (set, variant, seed, fold) is one unit of work whose result is a small JSON file under
bench/results/real_video/<set>/<variant>/seed<seed>/: ``fold<i>.json`` for the test fold (every
test video's averaged logits and prediction, the per-epoch history, the training time) and
``fold<i>-val.json`` for the inner validation run of that fold (trained on the fold's training
subjects but one, tested on that one: the only numbers any choice between methods may look at).
A unit whose file exists is done; an interrupted unit resumes from its run folder's checkpoint
under --work. So the benchmark runs one unit at a time, can be stopped at any point and continued
in a later session, and two variants can always be compared video by video.

``report`` reads the files and writes bench/results/real_video.json and real_video.png: per set and
variant, the video top-1 of each seed, a 95 % interval from a bootstrap over subjects, and exact
McNemar tests (two-sided binomial on the discordant videos) of the hybrid against each branch and of
multi-scale fusion against ``fusion-none``, seed by seed.

Usage: python bench/real_video.py run --sets weizmann10 --variants hybrid ann snn --seeds 0 1 [--val [only]]
       python bench/real_video.py report
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from respike_nm.atomic import write_text_atomic
from respike_nm.config import Config, apply_overrides, load_config
from respike_nm.data.datasets import collate_clips
from respike_nm.train.balance import gblend_weights
from respike_nm.train.builder import build_datasets
from respike_nm.train.crossval import fold_config, plan
from respike_nm.train.evaluate import eval_totals, video_means
from respike_nm.train.loop import train
from respike_nm.train.run import CHECKPOINT, load_run

RESULTS = Path(__file__).parent / "results"
UNITS = RESULTS / "real_video"
OUT_JSON = RESULTS / "real_video.json"

SETS = {  # name -> (folder, leave-one-subject-out overrides)
    "weizmann10": ("weizmann10", ["data.folds=-1", "data.group_pattern=^([a-z]+)_"]),
    "weizmann4": ("weizmann4", ["data.folds=-1", "data.group_pattern=_(\\d+)\\.", "data.group_divisor=8"]),
    "gestures": ("gestures", ["data.folds=-1", "data.group_pattern=P(\\d+)"]),
}
INNER = {  # sets with two subjects: the inner validation run holds out one trial of the other subject
    "gestures": ["data.group_pattern=T(\\d+)"],
}
SEGMENTS = "data.sampling=segments"  # real-small's sampling before inner validation chose snippets
VARIANTS = {  # name -> (model kind, overrides of real-small); each names its sampling
    "hybrid": ("hybrid", [SEGMENTS]),  # the published training (fused loss) on TSN segments
    "ann": ("ann", [SEGMENTS]),
    "snn": ("snn", [SEGMENTS]),
    "fusion-late": ("hybrid", [SEGMENTS, "model.fusion=late"]),
    "fusion-none": ("hybrid", [SEGMENTS, "model.fusion=none"]),
    # branch balancing (respike_nm/train/balance.py); aux also records each head's test loss, from
    # which a fold's Gradient-Blending weights come (its inner validation run: held-out data)
    "aux": ("hybrid", [SEGMENTS, "train.branch_loss=aux", "train.branch_metrics=true"]),
    "gblend": ("hybrid", [SEGMENTS, "train.branch_loss=aux"]),  # + train.branch_weights from aux val
    "ogm-ge": ("hybrid", [SEGMENTS, "train.branch_loss=ogm-ge"]),
    # TSN snippets instead of segments (respike_nm/data/sampling.py): the same key-frame span, but
    # residuals of frames 1 to s-1 apart, not of frames a segment or more apart; `snippets` is
    # real-small as shipped (inner validation chose it: preset_choice)
    "snippets": ("hybrid", ["data.sampling=snippets"]),
    "snn-snippets": ("snn", ["data.sampling=snippets"]),
    "ann-snippets": ("ann", ["data.sampling=snippets"]),
}
# what inner validation chooses among, per fold
CANDIDATES = ("hybrid", "aux", "gblend", "ogm-ge", "snippets")
HISTORY_KEYS = ("epoch", "train_loss", "train_top1", "test_loss", "test_top1", "test_top1_video", "seconds")


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def data_root() -> Path:
    return Path(os.environ.get("RESPIKE_REALDATA") or Path(__file__).parents[2] / "shared" / "realdata")


@dataclass(frozen=True)
class Unit:
    set: str
    variant: str
    seed: int
    fold: int
    val: bool = False  # the inner validation run of the fold

    @property
    def name(self) -> str:
        return f"{self.set}/{self.variant}/seed{self.seed}/fold{self.fold}{'-val' if self.val else ''}"

    def result(self, units: Path | None = None) -> Path:
        return (units or UNITS) / f"{self.name}.json"


RESULT_DIR = [UNITS]  # where unit files go (--results)
EXTRA: list[str] = []  # --extra: overrides for a smoke run (its results go to --results, not the record)


def set_config(root: Path, set_name: str, variant: str, seed: int, data: Path | None = None) -> Config:
    folder, cv = SETS[set_name]
    _, extra = VARIANTS[variant]
    return apply_overrides(
        load_config("real-small"),
        [f"data.data_root={data or root / folder}", *cv, *extra, f"seed={seed}", *EXTRA],
    )


def inner_root(root: Path, set_name: str, test_group: str, work: Path) -> Path:
    """A folder of links to every clip of the set except ``test_group``'s: the training subjects of
    the outer fold, cut leave-one-subject-out again for the inner validation run."""
    cfg = set_config(root, set_name, "hybrid", 0)
    folds = plan(cfg)
    out = work / "inner" / set_name / f"without-{test_group}"
    for rec, group in zip(folds.records, folds.groups, strict=True):
        if group == test_group:
            continue
        link = out / rec.path.parent.name / rec.path.name
        if not link.exists():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(rec.path.resolve())
    return out


def gblend_overrides(unit: Unit) -> list[str]:
    """Gradient-Blending's weights for ``unit``'s fold, from the per-head losses of the same fold's
    ``aux`` inner validation run (trained on the fold's training subjects but one, evaluated on that
    one every epoch): a held-out subject, never the test fold. The validation run of ``gblend``
    itself uses the same weights, so its validation score has seen that subject once already."""
    source = Unit(unit.set, "aux", unit.seed, unit.fold, True).result(RESULT_DIR[0])
    if not source.is_file():
        raise SystemExit(f"gblend needs {source} first: run the aux variant with --val")
    weights = gblend_weights(json.loads(source.read_text())["history"])
    return [f"train.branch_weights=[{', '.join(f'{w:.4f}' for w in weights)}]"]


def unit_config(root: Path, unit: Unit, work: Path) -> tuple[Config, tuple[str, ...]]:
    """The fold config of ``unit`` and the subjects it tests on. The inner validation run of outer
    fold i holds out the training subject that follows fold i's in sorted order."""
    cfg, inner = _unit_config(root, unit, work)
    if unit.variant == "gblend":
        cfg = apply_overrides(cfg, gblend_overrides(unit))
    return cfg, inner


def _unit_config(root: Path, unit: Unit, work: Path) -> tuple[Config, tuple[str, ...]]:
    cfg = set_config(root, unit.set, unit.variant, unit.seed)
    folds = plan(cfg)
    if not unit.val:
        return fold_config(cfg, unit.fold), folds.test_groups(unit.fold)
    test = folds.test_groups(unit.fold)
    inner = set_config(root, unit.set, unit.variant, unit.seed, inner_root(root, unit.set, test[0], work))
    if unit.set in INNER:  # too few subjects to leave one out again: another grouping of the rest
        inner = apply_overrides(inner, INNER[unit.set])
    if VARIANTS[unit.variant][0] == "hybrid":  # each head's loss on the held-out subject, every epoch
        inner = apply_overrides(inner, ["train.branch_metrics=true"])
    ifolds = plan(inner)
    groups = sorted(set(ifolds.groups) | set(test))
    rest = sorted(set(ifolds.groups))
    held = rest[groups.index(test[0]) % len(rest)] if unit.set not in INNER else rest[0]
    fold = next(i for i in range(ifolds.k) if ifolds.test_groups(i) == (held,))
    return fold_config(inner, fold), (held,)


def video_logits(run: Path) -> tuple[list[dict], tuple[str, ...]]:
    """Every test video of a run: its file, label, logits averaged over its clips, and prediction."""
    model, cfg, ck = load_run(run)
    _, test, _, _ = build_datasets(cfg)
    loader = DataLoader(test, batch_size=cfg.train.batch_size, collate_fn=collate_clips)
    t = eval_totals(model, loader, torch.device("cpu"), activity=False)
    out = []
    for v, mean in video_means(t).items():
        out.append(
            {
                "file": Path(test.source(v)).name,
                "label": t.labels[v],
                "logits": [round(float(x), 5) for x in mean],
                "pred": int(mean.argmax()),
            }
        )
    return out, tuple(ck.classes)


def run_unit(root: Path, unit: Unit, work: Path) -> dict:
    cfg, groups = unit_config(root, unit, work)
    kind = VARIANTS[unit.variant][0]
    run = work / "runs" / unit.name
    resume = (run / CHECKPOINT).is_file()
    t0 = time.perf_counter()
    res = train(
        cfg,
        kind,
        run,
        resume=resume,
        overwrite=not resume,
        on_epoch=lambda row: log(
            f"  {unit.name} epoch {row['epoch']}: loss {row['train_loss']:.3f} "
            f"train {row['train_top1']:.2f} test {row.get('test_top1_video', 0):.2f} "
            f"({row['seconds']:.0f} s)"
        ),
    )
    videos, classes = video_logits(run)
    history = [
        {k: r[k] for k in r if k in HISTORY_KEYS or k.startswith(("train_loss_", "test_loss_"))}
        for r in res.history
    ]
    correct = sum(v["pred"] == v["label"] for v in videos)
    return {
        "unit": unit.name,
        "set": unit.set,
        "variant": unit.variant,
        "kind": kind,
        "seed": unit.seed,
        "fold": unit.fold,
        "validation": unit.val,
        "test_groups": list(groups),
        "overrides": SETS[unit.set][1]
        + VARIANTS[unit.variant][1]
        + (gblend_overrides(unit) if unit.variant == "gblend" else []),
        "classes": list(classes),
        "videos": videos,
        "video_top1": correct / max(len(videos), 1),
        "train_seconds": round(float(res.summary.seconds), 1),
        "wall_seconds": round(time.perf_counter() - t0, 1),
        "epochs": len(history),
        "history": history,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.machine(),
    }


def fold_count(root: Path, set_name: str) -> int:
    return plan(set_config(root, set_name, "hybrid", 0)).k


def planned_units(set_name: str, k: int, seeds, variants, val: str | None) -> list[Unit]:
    """The units of one set in the order they run: seed, variant, fold; with ``val="both"`` each
    candidate's inner validation run comes before its test run, with ``val="only"`` only the
    validation runs (what a choice between methods needs, and all it may look at)."""
    out = []
    for seed in seeds:
        for v in variants:
            for f in range(k):
                if val and v in CANDIDATES:
                    runs = (True,) if val == "only" else (True, False)
                else:
                    runs = () if val == "only" else (False,)
                out += [Unit(set_name, v, seed, f, r) for r in runs]
    return out


def cmd_run(args) -> int:
    root = data_root()
    if not (root / "MANIFEST.tsv").is_file():
        log(f"real_video: skipped, {root} is not the real-clip folder (set RESPIKE_REALDATA)")
        return 0
    torch.set_num_threads(args.threads)
    EXTRA.extend(args.extra)
    RESULT_DIR[0] = args.results
    for s in args.sets:
        for unit in planned_units(s, fold_count(root, s), args.seeds, args.variants, args.val):
            if unit.result(args.results).is_file():
                continue
            log(f"{unit.name}: training")
            doc = run_unit(root, unit, args.work)
            unit.result(args.results).parent.mkdir(parents=True, exist_ok=True)
            write_text_atomic(unit.result(args.results), json.dumps(doc, indent=1) + "\n")
            log(f"{unit.name}: video top-1 {doc['video_top1']:.2f} ({doc['train_seconds']:.0f} s)")
    return 0


# ------------------------------------------------------------------------------------ report


def mcnemar_exact(a: np.ndarray, b: np.ndarray) -> dict:
    """Exact McNemar test of two classifiers' correctness on the same videos: two-sided binomial
    p-value of the discordant pairs (``a`` right and ``b`` wrong: n01; the reverse: n10)."""
    from math import comb

    n01, n10 = int(np.sum(a & ~b)), int(np.sum(~a & b))
    n = n01 + n10
    k = min(n01, n10)
    p = min(1.0, 2 * sum(comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0
    return {"a_only": n01, "b_only": n10, "p": p}


def bootstrap_subjects(
    correct: np.ndarray, subjects: list[str], reps: int = 10000, seed: int = 0
) -> list[float]:
    """95 % percentile interval of the accuracy, resampling subjects (with all their videos)."""
    names = sorted(set(subjects))
    by = {s: correct[[i for i, x in enumerate(subjects) if x == s]] for s in names}
    rng = np.random.default_rng(seed)
    acc = []
    for _ in range(reps):
        pick = rng.integers(0, len(names), len(names))
        c = np.concatenate([by[names[i]] for i in pick])
        acc.append(c.mean())
    return [float(np.percentile(acc, 2.5)), float(np.percentile(acc, 97.5))]


def load_units(units: Path = UNITS) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(units.rglob("fold*.json"))]


def outcomes(units: list[dict], set_name: str, variant: str, seed: int, k: int, val: bool = False):
    """``(files, correct, subjects)`` over all folds, in a fixed file order; None if a fold is missing."""
    rows = [
        u
        for u in units
        if (u["set"], u["variant"], u["seed"], u["validation"]) == (set_name, variant, seed, val)
    ]
    if len({u["fold"] for u in rows}) < k:
        return None
    files, correct, subjects = [], [], []
    for u in sorted(rows, key=lambda u: u["fold"]):
        for v in u["videos"]:
            files.append(v["file"])
            correct.append(v["pred"] == v["label"])
            subjects.append(u["test_groups"][0] if len(u["test_groups"]) == 1 else str(u["fold"]))
    order = np.argsort(files)
    return [files[i] for i in order], np.array(correct)[order], [subjects[i] for i in order]


COMPARISONS = (
    ("hybrid", "ann"),
    ("hybrid", "snn"),
    ("hybrid", "fusion-none"),
    ("fusion-late", "fusion-none"),
    ("hybrid", "fusion-late"),
    ("snippets", "hybrid"),
    ("snippets", "ann"),
    ("snippets", "snn"),
    ("snippets", "ann-snippets"),
    ("snippets", "snn-snippets"),
    ("snn-snippets", "snn"),
    ("aux", "hybrid"),  # each balancing method against the published training and the better branch
    ("aux", "ann"),
    ("gblend", "hybrid"),
    ("gblend", "ann"),
    ("ogm-ge", "hybrid"),
    ("ogm-ge", "ann"),
    ("selected", "ann"),
    ("selected", "snn"),
    ("selected", "hybrid"),
)


def selections(units: list[dict], set_name: str, seed: int, k: int) -> list[dict] | None:
    """Per fold, the candidate training method with the best inner-validation video top-1 (ties: the
    lower validation loss of the last epoch, then the order of CANDIDATES); None until every
    candidate's validation run of every fold exists. Only validation units are looked at."""
    val = {
        (u["variant"], u["fold"]): u
        for u in units
        if u["set"] == set_name and u["seed"] == seed and u["validation"] and u["variant"] in CANDIDATES
    }
    if len(val) < k * len(CANDIDATES):
        return None
    picks = []
    for f in range(k):
        ranked = sorted(
            CANDIDATES,
            key=lambda v: (
                -val[v, f]["video_top1"],
                val[v, f]["history"][-1]["test_loss"],
                CANDIDATES.index(v),
            ),
        )
        picks.append(
            {
                "fold": f,
                "chosen": ranked[0],
                "validation_top1": {v: val[v, f]["video_top1"] for v in CANDIDATES},
            }
        )
    return picks


def selected_units(units: list[dict], set_name: str, seed: int, k: int) -> list[dict]:
    """The test units of the methods that inner validation chose, as a variant ``selected``."""
    picks = selections(units, set_name, seed, k)
    if picks is None:
        return []
    test = {
        (u["variant"], u["fold"]): u
        for u in units
        if u["set"] == set_name and u["seed"] == seed and not u["validation"]
    }
    return [
        {**test[p["chosen"], p["fold"]], "variant": "selected"}
        for p in picks
        if (p["chosen"], p["fold"]) in test
    ]


def preset_choice(units: list[dict], folds: dict[str, int]) -> dict | None:
    """The training method for ``real-small``: the candidate with the most inner-validation videos
    right, pooled over every (set, seed) whose candidates' validation runs are all complete (ties: the
    order of CANDIDATES, the published method first); None until one such (set, seed) exists. Test
    folds are not looked at."""
    totals, videos, used = dict.fromkeys(CANDIDATES, 0), 0, []
    for s, k in folds.items():
        for seed in sorted({u["seed"] for u in units if u["set"] == s}):
            outs = {v: outcomes(units, s, v, seed, k, val=True) for v in CANDIDATES}
            if any(o is None for o in outs.values()):
                continue
            used.append([s, seed])
            videos += len(outs[CANDIDATES[0]][0])
            for v, (_, correct, _) in outs.items():
                totals[v] += int(correct.sum())
    if not used:
        return None
    chosen = max(CANDIDATES, key=lambda v: (totals[v], -CANDIDATES.index(v)))
    return {"chosen": chosen, "validation_correct": totals, "validation_videos": videos, "from": used}


def report(units: list[dict], folds: dict[str, int]) -> dict:
    out = {"sets": {}, "preset_choice": preset_choice(units, folds)}
    for s, k in folds.items():
        entry = {"folds": k, "variants": {}, "mcnemar": [], "selections": {}, "validation": {}}
        seeds = sorted({u["seed"] for u in units if u["set"] == s})
        for v in CANDIDATES:  # each candidate's inner-validation top-1, once all its folds exist
            for seed in seeds:
                o = outcomes(units, s, v, seed, k, val=True)
                if o is not None:
                    entry["validation"].setdefault(v, {})[seed] = {
                        "videos": len(o[0]),
                        "correct": int(o[1].sum()),
                        "video_top1": float(o[1].mean()),
                    }
        for seed in seeds:
            picks = selections(units, s, seed, k)
            if picks is not None:
                entry["selections"][seed] = picks
                units = units + selected_units(units, s, seed, k)
        for v in (*VARIANTS, "selected"):
            per_seed = {}
            for seed in seeds:
                o = outcomes(units, s, v, seed, k)
                if o is None:
                    continue
                files, correct, subjects = o
                secs = [
                    u["train_seconds"]
                    for u in units
                    if (u["set"], u["variant"], u["seed"]) == (s, v, seed) and not u["validation"]
                ]
                per_seed[seed] = {
                    "videos": len(files),
                    "correct": int(correct.sum()),
                    "video_top1": float(correct.mean()),
                    "ci95_subject_bootstrap": bootstrap_subjects(correct, subjects),
                    "train_seconds_per_fold": float(np.median(secs)),  # median: robust to a contended fold
                }
            if per_seed:
                accs = [r["video_top1"] for r in per_seed.values()]
                entry["variants"][v] = {"seeds": per_seed, "mean_over_seeds": float(np.mean(accs))}
        for a, b in COMPARISONS:
            for seed in seeds:
                oa, ob = outcomes(units, s, a, seed, k), outcomes(units, s, b, seed, k)
                if oa is None or ob is None:
                    continue
                assert oa[0] == ob[0], "the two variants were tested on different videos"
                entry["mcnemar"].append({"a": a, "b": b, "seed": seed, **mcnemar_exact(oa[1], ob[1])})
        out["sets"][s] = entry
    return out


def plot(rep: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = [s for s in rep["sets"] if rep["sets"][s]["variants"]]
    if not sets:
        return
    fig, axes = plt.subplots(1, len(sets), figsize=(4.2 * len(sets), 3.6), squeeze=False)
    for ax, s in zip(axes[0], sets, strict=True):
        vs = list(rep["sets"][s]["variants"])
        for i, v in enumerate(vs):
            seeds = rep["sets"][s]["variants"][v]["seeds"]
            for j, (_, r) in enumerate(sorted(seeds.items())):
                x = i + (j - (len(seeds) - 1) / 2) * 0.18
                lo, hi = r["ci95_subject_bootstrap"]
                ax.errorbar(
                    [x],
                    [r["video_top1"]],
                    yerr=[[r["video_top1"] - lo], [hi - r["video_top1"]]],
                    fmt="o",
                    color=plt.cm.tab20([*VARIANTS, "selected"].index(v) % 20),  # one colour per variant
                    capsize=3,
                    alpha=0.9,
                )
        branches = [rep["sets"][s]["variants"][b]["mean_over_seeds"] for b in ("ann", "snn") if b in vs]
        if branches:  # the line the hybrid must not fall below
            label = "better branch alone (ann, snn on segments)"
            ax.axhline(max(branches), color="0.5", ls="--", lw=1, label=label)
            ax.legend(loc="lower left", fontsize=7, frameon=False)
        ax.set_xticks(range(len(vs)), vs, rotation=30, ha="right", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.grid(axis="y", alpha=0.3)
        ax.set_title(f"{s} (leave one subject out, {rep['sets'][s]['folds']} folds)", fontsize=9)
        ax.set_ylabel("video top-1 (each seed; 95 % CI over subjects)", fontsize=8)
    fig.tight_layout()
    fig.savefig(RESULTS / "real_video.png", dpi=120)
    plt.close(fig)


def top1_cell(x: dict) -> str:
    """One seed's video top-1 as the tables write it: accuracy [95 % interval] (right/videos)."""
    lo, hi = x["ci95_subject_bootstrap"]
    return f"{x['video_top1']:.3f} [{lo:.2f}, {hi:.2f}] ({x['correct']}/{x['videos']})"


def table(rep: dict) -> str:
    lines = [
        "| set | variant | video top-1 per seed [95 % CI over subjects] | train s / fold (median) |",
        "|---|---|---|---|",
    ]
    for s, e in rep["sets"].items():
        for v, r in e["variants"].items():
            per = "; ".join(f"seed {seed}: {top1_cell(x)}" for seed, x in sorted(r["seeds"].items()))
            secs = np.mean([x["train_seconds_per_fold"] for x in r["seeds"].values()])
            lines.append(f"| {s} | {v} | {per} | {secs:.0f} |")
    lines += [
        "",
        "| set | a vs b | seed | a right, b wrong | b right, a wrong | exact McNemar p |",
        "|---|---|---|---|---|---|",
    ]
    for s, e in rep["sets"].items():
        for m in e["mcnemar"]:
            lines.append(
                f"| {s} | {m['a']} vs {m['b']} | {m['seed']} | {m['a_only']} | {m['b_only']} | {m['p']:.3f} |"
            )
    val = [
        (s, v, seed, x)
        for s, e in rep["sets"].items()
        for v, r in e["validation"].items()
        for seed, x in sorted(r.items())
    ]
    if val:
        lines += [
            "",
            "| set | method | seed | inner-validation video top-1 (held-out actor of each training fold) |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {s} | {v} | {seed} | {x['video_top1']:.3f} ({x['correct']}/{x['videos']}) |"
            for s, v, seed, x in val
        ]
    picks = [(s, seed, p) for s, e in rep["sets"].items() for seed, ps in e["selections"].items() for p in ps]
    if picks:
        lines += [
            "",
            "| set | seed | fold | chosen on validation | validation top-1 of "
            + ", ".join(CANDIDATES)
            + " |",
            "|---|---|---|---|---|",
        ]
        for s, seed, p in picks:
            vals = " ".join(f"{p['validation_top1'][v]:.2f}" for v in CANDIDATES)
            lines.append(f"| {s} | {seed} | {p['fold']} | {p['chosen']} | {vals} |")
    c = rep.get("preset_choice")
    if c:
        lines += [
            "",
            f"`real-small`'s training method, chosen on validation only: **{c['chosen']}** "
            f"({c['validation_correct'][c['chosen']]} of {c['validation_videos']} held-out videos, from "
            + ", ".join(f"{s} seed {seed}" for s, seed in c["from"])
            + ")",
        ]
    return "\n".join(lines)


# the single branches a hybrid variant is compared with: trained alone on the same sampling
BRANCHES = {"snippets": ("ann-snippets", "snn-snippets")}
FUSIONS = ("hybrid", "fusion-late", "fusion-none")  # the fusion ablation (segments, fused loss)


def shipped(rep: dict) -> str:
    """The variant that is `real-small` as shipped: the training method inner validation chose."""
    return (rep.get("preset_choice") or {}).get("chosen", "hybrid")


def better_branch(entry: dict, seed, branches=("ann", "snn")) -> str | None:
    """Of ``branches`` (ANN first), the one with more test videos right for ``seed`` (the ANN on a
    tie), or None while either is missing."""
    got = {b: entry["variants"].get(b, {}).get("seeds", {}).get(seed) for b in branches}
    got = {b: r["correct"] for b, r in got.items() if r is not None}
    return max(got, key=lambda b: (got[b], b == branches[0])) if len(got) == 2 else None


def readme_columns(rep: dict) -> tuple[str, tuple[str, str], tuple[str, ...]]:
    """The README table's variants: `real-small` as shipped, its two branches, the fusion ablation."""
    ship = shipped(rep)
    return ship, BRANCHES.get(ship, ("ann", "snn")), tuple(v for v in FUSIONS if v != ship)


def readme_table(rep: dict) -> str:
    """The README's real-footage table: per set and seed `real-small` as shipped, its branches
    trained alone and the fusion ablation (video top-1, 95 % interval over subjects, videos right),
    and the exact McNemar tests of `real-small` against its better branch and of multi-scale fusion
    against none."""
    ship, branches, fusions = readme_columns(rep)
    variants = (ship, *branches, *fusions)

    def cell(r: dict | None, seed) -> str:
        x = r and r["seeds"].get(seed)
        return top1_cell(x) if x else "-"

    def paired(e: dict, a: str, b: str | None, seed) -> str:
        m = [m for m in e["mcnemar"] if (m["a"], m["b"], str(m["seed"])) == (a, b, str(seed))]
        return f"{m[0]['a_only']} vs {m[0]['b_only']}, p = {m[0]['p']:.3f}" if m else "-"

    lines = [
        "| set | seed | "
        + " | ".join(variants)
        + f" | {ship} vs better branch | hybrid vs fusion-none |",
        "|" + "---|" * (len(variants) + 4),
    ]
    for s, e in rep["sets"].items():
        for seed in sorted(e["variants"].get(ship, {}).get("seeds", {}), key=int):
            b = better_branch(e, seed, branches)
            cells = [cell(e["variants"].get(v), seed) for v in variants]
            vs = f"{b}: {paired(e, ship, b, seed)}" if b else "-"
            ms = paired(e, "hybrid", "fusion-none", seed)
            lines.append(f"| {s} | {seed} | " + " | ".join(cells) + f" | {vs} | {ms} |")
    return "\n".join(lines)


def cmd_report(args) -> int:
    units = load_units(args.results)
    root = data_root()
    folds = {}
    for s in SETS:
        done = [u for u in units if u["set"] == s and not u["validation"]]
        if done:
            folds[s] = (
                fold_count(root, s) if (root / "MANIFEST.tsv").is_file() else max(u["fold"] for u in done) + 1
            )
    rep = report(units, folds)
    doc = {"benchmark": "real_video", "preset": "real-small", "units": len(units), **rep}
    if args.results != UNITS:  # a smoke run's report is printed, never written over the record
        print(json.dumps(rep["sets"], indent=1)[:3000])
        print(table(rep))
        return 0
    write_text_atomic(OUT_JSON, json.dumps(doc, indent=2) + "\n")
    plot(rep)
    print(table(rep))
    print("\nREADME (## Real footage):\n" + readme_table(rep))
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="train the missing units, one at a time")
    r.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    r.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    r.add_argument("--seeds", nargs="+", type=int, default=[0])
    r.add_argument(
        "--val",
        nargs="?",
        const="both",
        choices=["both", "only"],
        help="also the inner validation run of every fold (candidate methods only: CANDIDATES); "
        "--val only: just those",
    )
    r.add_argument("--threads", type=int, default=2)
    r.add_argument(
        "--work", type=Path, default=Path(os.environ.get("RESPIKE_BENCH_WORK", "/tmp/respike_real_video"))
    )
    r.add_argument("--results", type=Path, default=UNITS, help="where unit files go (a smoke run: elsewhere)")
    r.add_argument(
        "--extra", nargs="*", default=[], help="config overrides for a smoke run, e.g. train.epochs=1"
    )
    rp = sub.add_parser("report", help="tabulate and plot the finished units")
    rp.add_argument("--results", type=Path, default=UNITS, help="read unit files from here")
    args = ap.parse_args()
    return cmd_run(args) if args.cmd == "run" else cmd_report(args)


if __name__ == "__main__":
    raise SystemExit(main())
