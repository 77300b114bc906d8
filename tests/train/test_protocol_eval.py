"""Evaluation with any number of clips per video: clip level per clip, video level over a video's clips."""

from __future__ import annotations

import math

import numpy as np
import torch
from conftest import SMALL_TRAIN, frame_pattern, write_video
from torch import nn
from torch.utils.data import DataLoader

from respike_nm.config import apply_overrides, load_config
from respike_nm.data.datasets import ClipSample, collate_clips
from respike_nm.data.splits import build_index
from respike_nm.data.transforms import IMAGENET_MEAN, IMAGENET_STD, normalize
from respike_nm.train import builder
from respike_nm.train.evaluate import evaluate, evaluate_run
from respike_nm.train.loop import train


class ChannelMean(nn.Module):
    """Logits = the normalised input's mean per colour channel: 3 classes, a known function of the clip.
    Evaluation hands a model its clips as decoded (uint8); the model normalises them, as ReSpike does."""

    def forward(self, video):  # [B, K, T, 3, H, W] -> [B, K, 3]
        return normalize(video).mean(dim=(-4, -2, -1))


# (video, label, clip colour RGB): video 0 has 3 clips whose majority and last say class 1 but whose
# mean says class 0 (right); video 1 one clip; video 2 two clips, the first saying class 1 (right), the
# last and the mean class 2: video level 2/3, its first clips alone 3/3, its last clips alone 1/3
CLIPS = [
    (0, 0, (250, 0, 0)), (0, 0, (0, 60, 0)), (0, 0, (0, 60, 0)),
    (1, 2, (0, 0, 200)),
    (2, 1, (0, 80, 0)), (2, 1, (0, 0, 90)),
]


def _logits(rgb):
    """Hand arithmetic: (v / 255 - mean) / std per channel (the model's mean of a constant clip)."""
    return np.array([(c / 255 - m) / s for c, m, s in zip(rgb, IMAGENET_MEAN, IMAGENET_STD, strict=True)])


def _sample(v, label, rgbs):
    video = torch.stack([torch.tensor(rgb, dtype=torch.uint8).view(1, 3, 1, 1).expand(4, 3, 2, 2)
                         for rgb in rgbs])  # [K, T=4, 3, 2, 2]
    return ClipSample(video, label, v)


def _expected():
    logits = {v: [] for v, _, _ in CLIPS}
    labels = {v: y for v, y, _ in CLIPS}
    clip_hits, loss = 0, 0.0
    for v, y, rgb in CLIPS:
        lg = _logits(rgb)
        logits[v].append(lg)
        clip_hits += int(np.argmax(lg) == y)
        loss += -(lg[y] - math.log(np.exp(lg).sum()))
    video_hits = sum(int(np.argmax(np.mean(logits[v], axis=0)) == labels[v]) for v in logits)
    return clip_hits / len(CLIPS), video_hits / len(logits), loss / len(CLIPS)


def test_video_level_averages_a_videos_clips_across_items_and_batches():
    clip_top1, video_top1, loss = _expected()
    assert (clip_top1, video_top1) == (3 / 6, 2 / 3)  # the case separates the two levels
    last = {v: np.argmax(_logits(rgb)) == y for v, y, rgb in CLIPS}  # each video's last clip alone
    first = {v: np.argmax(_logits(rgb)) == y for v, y, rgb in reversed(CLIPS)}
    assert (sum(first.values()), sum(last.values())) == (3, 1)
    items = [_sample(v, y, [rgb]) for v, y, rgb in CLIPS]  # protocol all: one clip per item
    loader = DataLoader(items, batch_size=2, collate_fn=collate_clips)  # video 0 spans two batches
    res = evaluate(ChannelMean(), loader, torch.device("cpu"), activity=False)
    assert (res.clips, res.videos, res.failed) == (6, 3, 0)
    assert res.top1 == clip_top1 and res.top1_video == video_top1 and res.top5 == res.top5_video == 1.0
    assert math.isclose(res.loss, loss, rel_tol=1e-5)


def test_tiled_samples_of_k_clips_give_the_same_video_level():
    # the tiled protocol: each video one sample of K clips (K = 2 here, equal for every sample)
    pairs = [(0, 0, [(250, 0, 0), (0, 60, 0)]), (1, 2, [(0, 0, 200), (0, 0, 200)]),
             (2, 1, [(0, 0, 90), (0, 80, 0)])]
    loader = DataLoader([_sample(*p) for p in pairs], batch_size=2, collate_fn=collate_clips)
    res = evaluate(ChannelMean(), loader, torch.device("cpu"), activity=False)
    hits = [int(np.argmax(np.mean([_logits(c) for c in rgbs], axis=0)) == y) for _, y, rgbs in pairs]
    clip_hits = [int(np.argmax(_logits(c)) == y) for _, y, rgbs in pairs for c in rgbs]
    assert (res.clips, res.videos) == (6, 3)
    assert res.top1_video == sum(hits) / 3 and res.top1 == sum(clip_hits) / 6


def _folder(tmp_path):
    lengths = {"a": [8, 20, 5], "b": [17, 24, 9]}
    for cls, ns in lengths.items():
        (tmp_path / "data" / cls).mkdir(parents=True)
        for i, n in enumerate(ns):
            write_video(tmp_path / "data" / cls / f"{cls}{i}.mov", frame_pattern(n, 32, 40))
    return tmp_path / "data", {f"{c}{i}.mov": n for c, ns in lengths.items() for i, n in enumerate(ns)}


def test_training_and_evaluation_on_every_window_of_a_folder(tmp_path):
    root, length = _folder(tmp_path)
    cfg = apply_overrides(load_config("tiny"), SMALL_TRAIN + [
        "data.dataset=folder", f"data.data_root={root}", "data.frames=8", "data.size=32",
        "data.eval_protocol=all", "data.train_clips=all", "data.eval_resize=crop_size", "train.epochs=1"])
    index = build_index("folder", root, seed=cfg.seed)

    def windows(recs):  # brute force: whole 8-frame windows, at least one per video
        return sum(max(1, len(range(0, length[r.path.name] - 7, 8))) for r in recs)

    n_train, n_test = windows(index.train), windows(index.test)
    assert (n_train, n_test) != (len(index.train), len(index.test))  # more windows than videos
    train_ds, test_ds, _, _ = builder.build_datasets(cfg)
    assert (len(train_ds), len(test_ds)) == (n_train, n_test)
    res = train(cfg, "hybrid", tmp_path / "run")
    assert res.history[0]["train_samples"] == n_train  # every training window visited in the epoch
    ev = evaluate_run(tmp_path / "run", device=torch.device("cpu")).result
    assert (ev.clips, ev.videos, ev.failed) == (n_test, len(index.test), 0)
    assert ev.top1 == res.history[-1]["test_top1"]
    video, labels = builder.test_clips(cfg, 10)  # one clip per test video, not per window
    assert video.shape == (len(index.test), 8, 3, 32, 32)
    assert labels.tolist() == [r.label for r in index.test]
