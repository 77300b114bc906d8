"""Temporal sampling: which decoded frame indices make a clip of T frames.

``consecutive`` (HMDB-51/UCF-101 in the paper): T frames in a row at the native rate; training
takes one window at a random start, evaluation tiles ``n`` windows evenly through the video.
:func:`window_starts` gives instead every non-overlapping window (``eval_protocol``/``train_clips``
``all``, the published code's torchvision ``VideoClips`` with ``step_between_clips = T``).
``segments`` (TSN, Kinetics): the video is cut into T equal segments and one frame is taken from
each, at a random position in training, at evenly shifted positions in evaluation.
``snippets`` (TSN's snippets): the video is cut into T/s equal segments and s consecutive frames are
taken from each (a key frame and its s-1 successors), placed as ``segments`` places its frames: the
key frames span the whole video as with ``segments``, while every residual frame is the difference
of frames 1 to s-1 apart at the native rate, as with ``consecutive``.

Short videos: indices may point past the last frame; the decoder then repeats the last frame
(the padding policy of :mod:`respike_nm.data.video`). Segment sampling of a video with fewer than T
frames takes every frame once, then pads, so both modes share one policy.
"""

from __future__ import annotations

import numpy as np

from respike_nm.data.records import ClipSpec
from respike_nm.errors import UsageError


def consecutive_starts(num_frames: int, frames: int, n: int) -> np.ndarray:
    """Start frames of ``n`` windows of ``frames`` tiled evenly through ``num_frames``: ``int64 [n]``."""
    room = max(0, num_frames - frames)
    if n == 1:
        return np.array([room // 2], dtype=np.int64)
    return np.round(np.linspace(0, room, n)).astype(np.int64)


def window_starts(num_frames: int, frames: int) -> np.ndarray:
    """Starts of every non-overlapping window of ``frames``: ``0, T, 2T, ...`` while
    ``start + T <= num_frames``, ``int64 [max(1, num_frames // T)]``.

    The remainder frames after the last whole window are left out (as torchvision's ``unfold`` does);
    a video shorter than T gives one window at 0, padded by the decoder (torchvision drops it).
    """
    if frames < 1:
        raise UsageError(f"window length must be at least 1 frame, not {frames}")
    return np.arange(max(1, num_frames // frames), dtype=np.int64) * frames


def consecutive_clip(start: int, frames: int) -> np.ndarray:
    """Indices ``[frames]`` of one window."""
    return np.arange(start, start + frames, dtype=np.int64)


def segment_clip(num_frames: int, frames: int, position: float) -> np.ndarray:
    """One frame per segment at relative ``position`` in [0, 1) of each segment: ``int64 [frames]``."""
    if num_frames < frames:
        return np.arange(frames, dtype=np.int64)  # every frame once, then padding past the end
    edges = np.linspace(0, num_frames, frames + 1)
    idx = np.floor(edges[:-1] + position * np.diff(edges)).astype(np.int64)
    return np.minimum(idx, num_frames - 1)


def snippet_clip(num_frames: int, frames: int, stride: int, position: float | np.ndarray) -> np.ndarray:
    """``frames / stride`` snippets of ``stride`` consecutive frames, one per equal segment of the
    video, each starting at relative ``position`` in [0, 1) (one value, or one per segment) of the
    room its segment leaves: ``int64 [frames]``."""
    if num_frames < frames:
        return np.arange(frames, dtype=np.int64)  # every frame once, then padding past the end
    edges = np.linspace(0, num_frames - stride + 1, frames // stride + 1)
    starts = np.floor(edges[:-1] + position * np.diff(edges)).astype(np.int64)
    starts = np.minimum(starts, num_frames - stride)
    return (starts[:, None] + np.arange(stride)).reshape(-1)


def train_indices(num_frames: int, spec: ClipSpec, rng: np.random.Generator) -> np.ndarray:
    """Frame indices of one random training clip: ``int64 [1, T]``."""
    if spec.sampling == "consecutive":
        start = int(rng.integers(0, max(0, num_frames - spec.frames) + 1))
        return consecutive_clip(start, spec.frames)[None]
    if spec.sampling == "snippets":
        positions = rng.random(spec.frames // spec.stride)
        return snippet_clip(num_frames, spec.frames, spec.stride, positions)[None]
    if num_frames < spec.frames:
        return segment_clip(num_frames, spec.frames, 0.0)[None]
    edges = np.linspace(0, num_frames, spec.frames + 1)
    idx = np.floor(edges[:-1] + rng.random(spec.frames) * np.diff(edges)).astype(np.int64)
    return np.minimum(idx, num_frames - 1)[None]


def eval_indices(num_frames: int, spec: ClipSpec) -> np.ndarray:
    """Frame indices of the ``spec.eval_clips`` evaluation clips: ``int64 [eval_clips, T]``."""
    n = spec.eval_clips
    if spec.sampling == "consecutive":
        starts = consecutive_starts(num_frames, spec.frames, n)
        return np.stack([consecutive_clip(int(s), spec.frames) for s in starts])
    positions = (np.arange(n) + 0.5) / n
    if spec.sampling == "snippets":
        return np.stack([snippet_clip(num_frames, spec.frames, spec.stride, float(p)) for p in positions])
    return np.stack([segment_clip(num_frames, spec.frames, float(p)) for p in positions])
