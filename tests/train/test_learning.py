"""Training learns: on a reduced synthetic-motion set the loss falls and the hybrid beats both of its
baselines, each of which can only reach 1/2 (2 appearances x 2 motions: key frames carry the
appearance, residual frames the motion, the class needs both).

Thresholds from measured runs (this set, 8 epochs, seeds 0-4; test top-1 on 32 clips):

    seed     hybrid  ann    snn     hybrid - better baseline
    0        0.625   0.469  0.344   0.156
    1        0.781   0.594  0.375   0.188
    2        0.562   0.375  0.406   0.156
    3        0.781   0.500  0.281   0.281
    4        0.719   0.531  0.281   0.188

The smallest margin over five seeds is 0.156; the test asks for half of it on seed 0, and for the
hybrid's training loss to fall to below half its first-epoch value (measured: to 0.08-0.22 of it).
"""

from __future__ import annotations

import pytest

from respike_nm.config import apply_overrides, load_config
from respike_nm.train.loop import train

REDUCED = ["data.size=32", "data.frames=8", "data.appearances=2", "data.motions=2",
           "data.train_per_class=16", "data.test_per_class=8", "model.ann_width=0.125",
           "model.snn_width=0.25", "train.batch_size=8", "train.warmup_epochs=0", "train.epochs=8",
           "seed=0"]
MARGIN = 0.156 / 2


@pytest.mark.slow
def test_the_tiny_hybrid_learns_and_beats_both_baselines(tmp_path):
    cfg = apply_overrides(load_config("tiny"), REDUCED)
    runs = {kind: train(cfg, kind, tmp_path / kind) for kind in ("hybrid", "ann", "snn")}
    top1 = {kind: r.history[-1]["test_top1"] for kind, r in runs.items()}
    losses = [row["train_loss"] for row in runs["hybrid"].history]
    assert losses[-1] < 0.5 * losses[0], losses
    assert top1["hybrid"] >= max(top1["ann"], top1["snn"]) + MARGIN, top1
    assert top1["hybrid"] > 0.5, top1  # above both baselines' ceiling
