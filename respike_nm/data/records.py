"""Typed records that cross the data pipeline's boundaries."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import torch

from respike_nm.data.errors import DecompositionError


def check_divisible(frames: int, stride: int) -> None:
    """Raise :class:`DecompositionError` unless ``frames`` splits into groups of ``stride``."""
    if stride < 2:
        raise DecompositionError(f"stride s={stride} must be at least 2 (a key frame and a residual)")
    if frames < stride or frames % stride:
        raise DecompositionError(
            f"clip length T={frames} is not divisible by the group stride s={stride}; "
            f"choose T as a multiple of s (e.g. T={max(1, frames // stride) * stride})"
        )


Sampling = Literal["consecutive", "segments"]


@dataclass(frozen=True)
class VideoMeta:
    """What a container says about its first video stream."""

    path: str
    num_frames: int  # from the container, or counted packets when it does not say
    fps: float
    width: int
    height: int
    codec: str
    duration_s: float | None
    header_frames: int = 0  # the frame count the container's header announces (0: it announces none)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class VideoRecord:
    """One labelled video of a dataset."""

    path: Path
    label: int
    class_name: str


@dataclass(frozen=True)
class Skipped:
    """An input left out of a dataset or cache, with the reason."""

    path: str
    reason: str


@dataclass(frozen=True)
class DatasetIndex:
    """A dataset's classes and its train/test videos, with what was skipped while reading it."""

    name: str
    classes: tuple[str, ...]
    train: tuple[VideoRecord, ...]
    test: tuple[VideoRecord, ...]
    skipped: tuple[Skipped, ...] = ()

    def partition(self, name: Literal["train", "test"]) -> tuple[VideoRecord, ...]:
        if name not in ("train", "test"):
            raise ValueError(f"partition must be 'train' or 'test', not {name!r}")
        return self.train if name == "train" else self.test


@dataclass(frozen=True)
class ClipSpec:
    """How clips are cut from a video and decomposed.

    frames: T, frames per clip. stride: s, frames per key-frame group (T % s == 0).
    sampling: ``consecutive`` takes T frames in a row at the native rate (HMDB-51/UCF-101 in the
    paper); ``segments`` takes one frame from each of T equal segments (TSN, Kinetics).
    size: square crop side in pixels. eval_clips: clips per video at evaluation, tiled evenly
    through the video (``consecutive``) or as shifted segment offsets (``segments``).
    short_side: frames are scaled while decoding so their shorter side has this many pixels
    (0: ``round(size * 8/7)``, the 256-for-224 convention; None: decode at full resolution).
    The random and centre crops are then taken from the scaled frames.
    """

    frames: int = 16
    stride: int = 4
    sampling: Sampling = "consecutive"
    size: int = 112
    eval_clips: int = 1
    short_side: int | None = 0

    def __post_init__(self):
        check_divisible(self.frames, self.stride)
        if self.sampling not in ("consecutive", "segments"):
            raise ValueError(f"sampling must be 'consecutive' or 'segments', not {self.sampling!r}")
        if self.size < 8:
            raise ValueError(f"size must be at least 8 pixels, not {self.size}")
        if self.eval_clips < 1:
            raise ValueError(f"eval_clips must be at least 1, not {self.eval_clips}")

    @property
    def decode_short_side(self) -> int | None:
        """The short side frames are decoded at (None: full resolution)."""
        if self.short_side == 0:
            return round(self.size * 8 / 7)
        return self.short_side

    @property
    def groups(self) -> int:
        """Key frames per clip, T / s."""
        return self.frames // self.stride


class DecomposedClip(NamedTuple):
    """Key frames ``[B, T/s, C, H, W]`` and residual frames ``[B, T/s, s-1, C, H, W]``."""

    key: torch.Tensor
    residual: torch.Tensor
