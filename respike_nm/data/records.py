"""Typed records that cross the data pipeline's boundaries."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal, NamedTuple, get_args

import torch

from respike_nm.data.errors import DecompositionError
from respike_nm.errors import UsageError


def check_divisible(frames: int, stride: int) -> None:
    """Raise :class:`DecompositionError` unless ``frames`` splits into groups of ``stride``."""
    if stride < 2:
        raise DecompositionError(f"stride s={stride} must be at least 2 (a key frame and a residual)")
    if frames < stride or frames % stride:
        raise DecompositionError(
            f"clip length T={frames} is not divisible by the group stride s={stride}; "
            f"choose T as a multiple of s (e.g. T={max(1, frames // stride) * stride})"
        )


Sampling = Literal["consecutive", "segments", "snippets"]
EvalProtocol = Literal["tiled", "all"]
TrainClips = Literal["one", "all"]
EvalResize = Literal["short_side_8_7", "crop_size"]
EVAL_CROP_FRACTIONS = {"short_side_8_7": 7 / 8, "crop_size": 1.0}  # centre crop side / short side


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
    paper); ``segments`` takes one frame from each of T equal segments (TSN, Kinetics);
    ``snippets`` takes s consecutive frames (one key-frame group) from each of T/s equal segments.
    size: square crop side in pixels.
    eval_protocol: ``tiled`` evaluates ``eval_clips`` clips per video, tiled evenly through the
    video (``consecutive``) or as shifted segment offsets (``segments``); ``all`` evaluates every
    non-overlapping T-frame window (starts 0, T, 2T, ... while start + T <= frames; a video shorter
    than T gives one padded clip), as the published code does (``consecutive`` only).
    train_clips: ``one`` random window per video and epoch; ``all``: every non-overlapping window
    of every video, each one item of the epoch with its own crop and flip (the published code).
    eval_resize: ``short_side_8_7`` scales the short side to ``size * 8/7`` and centre-crops
    ``size`` (the 256-for-224 convention); ``crop_size`` scales it to ``size`` and centre-crops
    ``size`` (the published code's Resize(224) + CenterCrop(224)).
    train_crop_scale: the range of the training crop's area relative to the frame (RandomResizedCrop's
    ``scale``; torchvision's ImageNet default 0.08-1 can miss a small actor entirely).
    short_side: frames are scaled while decoding so their shorter side has this many pixels
    (0: what ``eval_resize`` centre-crops from, ``round(size * 8/7)`` or ``size``; None: decode
    at full resolution). The random and centre crops are then taken from the scaled frames.
    """

    frames: int = 16
    stride: int = 4
    sampling: Sampling = "consecutive"
    size: int = 112
    eval_clips: int = 1
    short_side: int | None = 0
    eval_protocol: EvalProtocol = "tiled"
    train_clips: TrainClips = "one"
    eval_resize: EvalResize = "short_side_8_7"
    train_crop_scale: tuple[float, float] = (0.08, 1.0)  # RandomResizedCrop's area range in training

    def __post_init__(self):
        check_divisible(self.frames, self.stride)
        if self.sampling not in get_args(Sampling):
            raise UsageError(f"sampling must be one of {', '.join(get_args(Sampling))}, "
                             f"not {self.sampling!r}")
        if self.size < 8:
            raise UsageError(f"size must be at least 8 pixels, not {self.size}")
        if self.eval_clips < 1:
            raise UsageError(f"eval_clips must be at least 1, not {self.eval_clips}")
        for name, valid in (("eval_protocol", ("tiled", "all")), ("train_clips", ("one", "all")),
                            ("eval_resize", tuple(EVAL_CROP_FRACTIONS))):
            if getattr(self, name) not in valid:
                raise UsageError(f"{name} must be one of {', '.join(valid)}, not {getattr(self, name)!r}")
        low, high = self.train_crop_scale if len(self.train_crop_scale) == 2 else (0, 0)
        if not 0 < low <= high <= 1:
            raise UsageError("the training crop scale (data.train_crop_scale) must be two area fractions "
                             f"0 < low <= high <= 1, not {list(self.train_crop_scale)}")
        if self.sampling != "consecutive" and "all" in (self.eval_protocol, self.train_clips):
            raise UsageError("eval_protocol 'all' and train_clips 'all' cut non-overlapping windows of "
                             f"consecutive frames; they need sampling 'consecutive', not {self.sampling!r}")

    @property
    def eval_crop_fraction(self) -> float:
        """Side of the evaluation centre crop relative to the short side (7/8 or 1)."""
        return EVAL_CROP_FRACTIONS[self.eval_resize]

    @property
    def decode_short_side(self) -> int | None:
        """The short side frames are decoded at (None: full resolution)."""
        if self.short_side == 0:
            return round(self.size / self.eval_crop_fraction)
        return self.short_side

    @property
    def groups(self) -> int:
        """Key frames per clip, T / s."""
        return self.frames // self.stride


class DecomposedClip(NamedTuple):
    """Key frames ``[B, T/s, C, H, W]`` and residual frames ``[B, T/s, s-1, C, H, W]``."""

    key: torch.Tensor
    residual: torch.Tensor
