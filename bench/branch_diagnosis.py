"""Why the hybrid trails its better branch: probes, per-branch losses, head norms (issue 24, item 2).

Reads what ``bench/real_video.py`` left: the fold runs under --work (checkpoints) and the unit files
under bench/results/real_video. For one set and seed, over its leave-one-subject-out folds:

1. **Linear probes.** Each run's pooled branch features (what its head sees: the SNN output averaged
   over T' and pooled, the ANN's last stage pooled; :meth:`ReSpike.forward` ``with_features``) of the
   training videos and the test videos, evaluation clips, averaged per video. A multinomial logistic
   regression (L2, standardised features, L-BFGS) is fitted on the fold's training videos and scored
   on its test videos: the hybrid's ANN features, its SNN features, both; the ``ann`` model's and the
   ``snn`` model's features. A branch whose features inside the hybrid probe worse than the same
   branch trained alone was not made to learn by the fused loss.
2. **Each head's loss over the epochs**, on the training clips and on the held-out subject of each
   fold's inner validation run (``fold<i>-val.json``), with each head's overfitting-to-generalisation
   ratio (Wang et al. 2020): ``ΔO / ΔG`` between the first and the last epoch.
3. **The head's weights per branch**: the Frobenius norm of the head's columns on each branch, and
   the spread (std over classes, mean over test clips) of each branch's share of the logits.

Writes bench/results/branch_diagnosis.json and branch_diagnosis.png.

Usage: python bench/branch_diagnosis.py [--set weizmann10] [--seed 0] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from respike_nm.atomic import write_text_atomic
from respike_nm.data.datasets import VideoClipDataset, collate_clips
from respike_nm.train.balance import HEADS, gain_and_overfitting
from respike_nm.train.builder import build_datasets, clip_spec
from respike_nm.train.run import load_run

RESULTS = Path(__file__).parent / "results"
UNITS = RESULTS / "real_video"


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@torch.no_grad()
def video_features(model, ds) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """``({branch: [videos, C]}, labels, share spread [videos, branches])`` of ``ds`` (eval clips)."""
    model.eval()
    feats: dict[str, list] = {}
    labels, spreads = [], []
    for batch in DataLoader(ds, batch_size=4, collate_fn=collate_clips):
        b, k = batch.video.shape[:2]
        _, f = model(batch.video.flatten(0, 1), with_features=True)
        for name, x in f.parts.items():
            feats.setdefault(name, []).append(x.reshape(b, k, f.g, -1).mean(dim=(1, 2)).numpy())
        if len(f.parts) == 2:
            shares = model.branch_logits(f)
            spreads.append(
                np.stack([shares[n].std(dim=-1).reshape(b, k).mean(1).numpy() for n in ("ann", "snn")], 1)
            )
        labels.append(batch.label.numpy())
    return (
        {n: np.concatenate(v) for n, v in feats.items()},
        np.concatenate(labels),
        np.concatenate(spreads) if spreads else np.zeros((0, 2)),
    )


def probe(
    xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, classes: int, l2: float = 1e-2
) -> float:
    """Test accuracy of an L2 logistic regression fitted on standardised training features."""
    mu, sd = xtr.mean(0), xtr.std(0) + 1e-6
    a = torch.tensor((xtr - mu) / sd, dtype=torch.float64)
    b = torch.tensor((xte - mu) / sd, dtype=torch.float64)
    y = torch.tensor(ytr)
    w = torch.zeros(a.shape[1], classes, dtype=torch.float64, requires_grad=True)
    c = torch.zeros(classes, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, c], max_iter=500, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = torch.nn.functional.cross_entropy(a @ w + c, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return float(((b @ w + c).argmax(1).numpy() == yte).mean())


def fold_probes(work: Path, set_name: str, seed: int, fold: int) -> dict:
    out, weights = {}, {}
    for variant in ("hybrid", "ann", "snn"):
        run = work / "runs" / set_name / variant / f"seed{seed}" / f"fold{fold}"
        model, cfg, ck = load_run(run)
        train_ds, test_ds, _, _ = build_datasets(cfg)
        plain_train = VideoClipDataset(
            train_ds.records, clip_spec(cfg), train=False
        )  # eval clips, no augmentation
        ftr, ytr, _ = video_features(model, plain_train)
        fte, yte, spread = video_features(model, test_ds)
        k = len(ck.classes)
        for name in ftr:
            out[f"{variant}:{name}"] = probe(ftr[name], ytr, fte[name], yte, k)
        if variant == "hybrid":
            out["hybrid:both"] = probe(
                np.concatenate([ftr["snn"], ftr["ann"]], 1),
                ytr,
                np.concatenate([fte["snn"], fte["ann"]], 1),
                yte,
                k,
            )
            cs = ftr["snn"].shape[1]
            w = model.head.weight.detach()
            weights = {
                "norm_snn": float(w[:, :cs].norm()),
                "norm_ann": float(w[:, cs:].norm()),
                "share_std_ann": float(spread[:, 0].mean()),
                "share_std_snn": float(spread[:, 1].mean()),
                "videos": len(yte),
            }
    return {"fold": fold, "probes": out, "head": weights, "classes": k}


@torch.no_grad()
def share_decisions(work: Path, set_name: str, seed: int, variant: str, folds: int) -> dict | None:
    """Over the test videos of every fold run of a hybrid ``variant``: how many each branch's share of
    the head gets right alone, how many the fused head gets right, and on how many the SNN share
    turns the ANN share's decision (wrong to right, right to wrong). None if a run is missing."""
    counts = dict.fromkeys(("videos", "fused", "ann_share", "snn_share", "snn_fixes", "snn_breaks"), 0)
    for f in range(folds):
        run = work / "runs" / set_name / variant / f"seed{seed}" / f"fold{f}"
        if not (run / "checkpoint.pt").is_file():
            return None
        model, cfg, _ = load_run(run)
        model.eval()
        _, test_ds, _, _ = build_datasets(cfg)
        for batch in DataLoader(test_ds, batch_size=4, collate_fn=collate_clips):
            b, k = batch.video.shape[:2]
            _, feats = model(batch.video.flatten(0, 1), with_features=True)
            shares = {n: x.reshape(b, k, -1).mean(1) for n, x in model.branch_logits(feats).items()}
            y = batch.label
            right = {n: shares[n].argmax(1) == y for n in ("ann", "snn")}
            fused = (shares["ann"] + shares["snn"]).argmax(1) == y
            counts["videos"] += b
            counts["fused"] += int(fused.sum())
            counts["ann_share"] += int(right["ann"].sum())
            counts["snn_share"] += int(right["snn"].sum())
            counts["snn_fixes"] += int((fused & ~right["ann"]).sum())
            counts["snn_breaks"] += int((~fused & right["ann"]).sum())
    return counts


def mean_curves(files: list[Path], keys: list[str]) -> dict | None:
    """The per-epoch mean over the unit files whose history records every one of ``keys``."""
    hists = [json.loads(p.read_text())["history"] for p in files]
    hists = [h for h in hists if h and all(k in h[0] for k in keys)]
    if not hists:
        return None
    n = min(len(h) for h in hists)
    curves = {k: [float(np.mean([h[e][k] for h in hists])) for e in range(n)] for k in keys}
    return {"folds": len(hists), "epochs": n, "curves": curves}


def loss_curves(units: Path, set_name: str, seed: int, variant: str = "hybrid") -> dict | None:
    """Each head's train and held-out loss per epoch, mean over the folds' inner validation runs,
    and each head's overfitting-to-generalisation ratio between the first and the last epoch."""
    files = sorted((units / set_name / variant / f"seed{seed}").glob("fold*-val.json"))
    out = mean_curves(files, [f"{part}_loss_{x}" for x in HEADS for part in ("train", "test")])
    if out is None:
        return None
    first, last = ({k: v[i] for k, v in out["curves"].items()} for i in (0, -1))
    out["ogr"] = {}
    for x in HEADS:
        gain, d_over = gain_and_overfitting(first, last, x)
        out["ogr"][x] = {
            "generalisation_gain": gain,
            "overfitting_change": d_over,
            "ratio": d_over / gain if gain > 0 else None,
        }
    return out


def train_curves(units: Path, set_name: str, seed: int, variant: str = "hybrid") -> dict | None:
    """Each head's training loss per epoch (for ``fused`` and ``ogm-ge`` runs: each branch's share of
    the head's logits), mean over the test-fold runs that recorded it."""
    files = sorted((units / set_name / variant / f"seed{seed}").glob("fold[0-9].json"))
    return mean_curves(files, [f"train_loss_{x}" for x in HEADS])


def plot(doc: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    names = list(doc["probe_means"])
    axes[0].bar(
        range(len(names)),
        [doc["probe_means"][n] for n in names],
        color=["C0" if "ann" in n else "C1" if "snn" in n else "C2" for n in names],
    )
    axes[0].set_xticks(range(len(names)), names, rotation=35, ha="right", fontsize=8)
    axes[0].set_ylim(0, 1.02)
    axes[0].set_ylabel("linear-probe video top-1 (test folds)")
    axes[0].set_title("what each branch's features hold", fontsize=9)
    lc = doc.get("loss_curves")
    if lc:
        for i, x in enumerate(HEADS):
            axes[1].plot(lc["curves"][f"train_loss_{x}"], color=f"C{i}", ls="--", label=f"{x} train")
            axes[1].plot(lc["curves"][f"test_loss_{x}"], color=f"C{i}", label=f"{x} held-out subject")
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("cross-entropy")
        axes[1].legend(fontsize=7)
        axes[1].set_title(f"each head's loss (mean of {lc['folds']} inner validation runs)", fontsize=9)
    elif doc.get("train_curves"):
        tc = doc["train_curves"]
        for i, x in enumerate(HEADS):
            axes[1].plot(
                range(1, tc["epochs"] + 1),
                tc["curves"][f"train_loss_{x}"],
                color=f"C{i}",
                label=f"{x} (training clips)",
            )
        axes[1].axhline(np.log(doc["classes"]), color="grey", lw=0.8, ls=":", label="chance (ln K)")
        axes[1].set_xlabel("epoch")
        axes[1].set_ylabel("cross-entropy of each head")
        axes[1].legend(fontsize=7)
        axes[1].set_title(f"each head's training loss (mean of {tc['folds']} folds)", fontsize=9)
    else:
        axes[1].axis("off")
    h = doc["head_means"]
    axes[2].bar([0, 1], [h["norm_ann"], h["norm_snn"]], color=["C0", "C1"])
    axes[2].bar([3, 4], [h["share_std_ann"], h["share_std_snn"]], color=["C0", "C1"], alpha=0.6)
    axes[2].set_xticks(
        [0, 1, 3, 4], ["|W_ann|", "|W_snn|", "ANN share\nspread", "SNN share\nspread"], fontsize=8
    )
    axes[2].set_title("the fused head: weight norm and logit share per branch", fontsize=9)
    fig.suptitle(
        f"{doc['set']}, seed {doc['seed']}: the shipped hybrid against its branches trained alone",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(RESULTS / "branch_diagnosis.png", dpi=120)
    plt.close(fig)


def probe_rows(args) -> list[dict]:
    """The probes and head figures of every fold whose three runs exist under --work."""
    folds = sorted(
        int(p.stem.removeprefix("fold"))
        for p in (args.results / args.set / "hybrid" / f"seed{args.seed}").glob("fold[0-9].json")
    )
    rows = []
    for f in folds:
        if not all(
            (args.work / "runs" / args.set / v / f"seed{args.seed}" / f"fold{f}" / "checkpoint.pt").is_file()
            for v in ("hybrid", "ann", "snn")
        ):
            log(f"fold {f}: a run is missing under {args.work}; skipped")
            continue
        log(f"fold {f}: probes")
        rows.append(fold_probes(args.work, args.set, args.seed, f))
    return rows


def reused_rows(args) -> list[dict]:
    """The fold rows of the last branch_diagnosis.json, if it was made for the same set and seed."""
    path = RESULTS / "branch_diagnosis.json"
    if not path.is_file():
        raise SystemExit(f"--curves-only: {path} does not exist yet; run without --curves-only first")
    old = json.loads(path.read_text())
    if (old["set"], old["seed"]) != (args.set, args.seed):
        raise SystemExit(
            f"--curves-only: {path} is for {old['set']} seed {old['seed']}, not {args.set} seed {args.seed}"
        )
    return old["folds"]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", default="weizmann10")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--work", type=Path, default=Path(os.environ.get("RESPIKE_BENCH_WORK", "/tmp/respike_real_video"))
    )
    ap.add_argument("--results", type=Path, default=UNITS, help="the unit files of bench/real_video.py")
    ap.add_argument(
        "--curves-only",
        action="store_true",
        help="keep the probes and head figures of the last branch_diagnosis.json (same set and seed) and "
        "recompute only the loss curves from the unit files (no model is run)",
    )
    ap.add_argument(
        "--shares",
        nargs="*",
        default=[],
        metavar="VARIANT",
        help="hybrid variants (e.g. hybrid snippets) whose fold runs to score share by share (test videos)",
    )
    args = ap.parse_args()
    torch.set_num_threads(2)
    rows = reused_rows(args) if args.curves_only else probe_rows(args)
    if not rows:
        log("no fold has all three runs")
        return 1
    total = sum(r["head"]["videos"] for r in rows)
    probe_means = {
        k: float(sum(r["probes"][k] * r["head"]["videos"] for r in rows) / total) for k in rows[0]["probes"]
    }
    head_means = {k: float(np.mean([r["head"][k] for r in rows])) for k in rows[0]["head"] if k != "videos"}
    doc = {
        "benchmark": "branch_diagnosis",
        "set": args.set,
        "seed": args.seed,
        "folds": rows,
        "probe_means": probe_means,
        "head_means": head_means,
        "loss_curves": loss_curves(args.results, args.set, args.seed),
        "train_curves": train_curves(args.results, args.set, args.seed),
        "share_decisions": {
            v: share_decisions(args.work, args.set, args.seed, v, len(rows)) for v in args.shares
        },
        "classes": rows[0]["classes"],
    }
    write_text_atomic(RESULTS / "branch_diagnosis.json", json.dumps(doc, indent=2) + "\n")
    plot(doc)
    print(
        json.dumps(
            {
                "probe_means": probe_means,
                "head_means": head_means,
                "ogr": (doc["loss_curves"] or {}).get("ogr"),
                "share_decisions": doc["share_decisions"],
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
