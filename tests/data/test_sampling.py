"""Temporal sampling: consecutive windows, TSN segments and TSN snippets."""

from __future__ import annotations

import numpy as np
import torch

from respike_nm.data.decompose import decompose
from respike_nm.data.records import ClipSpec
from respike_nm.data.sampling import (
    consecutive_starts,
    eval_indices,
    segment_clip,
    snippet_clip,
    train_indices,
)


def test_tiled_windows_span_the_video():
    assert consecutive_starts(100, 16, 4).tolist() == [0, 28, 56, 84]
    assert consecutive_starts(100, 16, 1).tolist() == [42]  # centre window
    assert consecutive_starts(10, 16, 3).tolist() == [0, 0, 0]  # short video: padded later


def test_eval_consecutive_are_runs_of_t_frames():
    idx = eval_indices(64, ClipSpec(frames=8, stride=4, eval_clips=2))
    assert idx.tolist() == [list(range(0, 8)), list(range(56, 64))]


def test_train_window_is_random_but_inside_the_video_and_seeded():
    spec = ClipSpec(frames=16, stride=4)
    draws = [train_indices(40, spec, np.random.default_rng(s))[0] for s in range(50)]
    starts = {int(d[0]) for d in draws}
    assert min(starts) >= 0 and max(starts) <= 24 and len(starts) > 10
    for d in draws:
        assert np.array_equal(d, np.arange(d[0], d[0] + 16))
    a = train_indices(40, spec, np.random.default_rng(7))
    b = train_indices(40, spec, np.random.default_rng(7))
    assert np.array_equal(a, b)


def test_segments_take_one_frame_per_equal_segment():
    idx = segment_clip(80, 8, 0.5)
    assert idx.tolist() == [5, 15, 25, 35, 45, 55, 65, 75]
    spec = ClipSpec(frames=8, stride=2, sampling="segments")
    for s in range(20):
        d = train_indices(80, spec, np.random.default_rng(s))[0]
        assert np.all(d // 10 == np.arange(8))  # frame k lies in segment k


def test_segments_of_a_short_video_take_every_frame_then_pad():
    assert segment_clip(5, 8, 0.5).tolist() == list(range(8))  # 5.. are padded by the decoder


def test_snippets_take_one_key_frame_group_per_equal_segment():
    # 41 frames, groups of 2: starts 0..39 cut into 4 segments of 10 starts each
    assert snippet_clip(41, 8, 2, 0.0).tolist() == [0, 1, 10, 11, 20, 21, 30, 31]
    assert snippet_clip(41, 8, 2, 0.5).tolist() == [5, 6, 15, 16, 25, 26, 35, 36]
    spec = ClipSpec(frames=8, stride=2, sampling="snippets", eval_clips=2)
    assert eval_indices(41, spec).tolist() == [snippet_clip(41, 8, 2, p).tolist() for p in (0.25, 0.75)]
    for s in range(20):
        d = train_indices(41, spec, np.random.default_rng(s))[0].reshape(4, 2)
        assert np.all(d[:, 0] // 10 == np.arange(4))  # group k starts in segment k
        assert np.all(d[:, 1] == d[:, 0] + 1) and d.max() <= 40


def test_snippet_residuals_are_differences_of_adjacent_frames():
    """With frame i holding the value i, residual j of every group is j (frames j apart), whatever the
    video's length; TSN segments spread the same residuals over the video's length instead."""
    for n in (40, 97, 300):
        video = torch.arange(n, dtype=torch.float32)
        clip = decompose(video[snippet_clip(n, 16, 4, 0.5)].reshape(1, 16, 1, 1, 1), 4)
        assert torch.equal(clip.residual.reshape(4, 3), torch.tensor([1.0, 2.0, 3.0]).expand(4, 3))
        spread = decompose(video[segment_clip(n, 16, 0.5)].reshape(1, 16, 1, 1, 1), 4).residual
        assert spread[0, 0, 0].item() >= n // 16  # one segment apart: grows with the video


def test_snippets_of_a_short_video_take_every_frame_then_pad():
    assert snippet_clip(5, 8, 4, 0.5).tolist() == list(range(8))
