"""Temporal sampling: consecutive windows and TSN segments."""

from __future__ import annotations

import numpy as np

from respike_nm.data.records import ClipSpec
from respike_nm.data.sampling import consecutive_starts, eval_indices, segment_clip, train_indices


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
