"""Torch datasets of clips: video files, the HDF5 clip cache, and synthetic-motion.

Every dataset yields :class:`ClipSample` ``(video uint8 [K, T, 3, S, S], label, index)`` with
K = 1 clip in training and ``spec.eval_clips`` tiled clips in evaluation; normalise batches with
:func:`respike_nm.data.transforms.normalize` where the model runs, then decompose.
Randomness (window start, crop, flip) is drawn from ``(seed, epoch, index)``, so a sample does
not depend on the worker that made it or on what came before (needed for exact resume). A clip
that fails to decode yields ``None``; :func:`collate_clips` drops it and counts it in
:attr:`ClipBatch.failed`, so a bad file never crashes a DataLoader worker.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torch.utils.data import Dataset

from respike_nm.data.errors import DataError
from respike_nm.data.records import ClipSpec, Skipped, VideoRecord
from respike_nm.data.sampling import eval_indices, train_indices
from respike_nm.data.transforms import ClipTransform
from respike_nm.data.video import _open, read_sampled
from respike_nm.layout import thwc_to_tchw

log = logging.getLogger(__name__)

Partition = Literal["train", "test"]


class ClipSample(NamedTuple):
    video: torch.Tensor  # uint8 [K, T, 3, S, S]
    label: int
    index: int


class ClipBatch(NamedTuple):
    video: torch.Tensor  # uint8 [B, K, T, 3, S, S]
    label: torch.Tensor  # int64 [B]
    index: torch.Tensor  # int64 [B]
    failed: int  # samples of this batch that could not be decoded and were dropped


def collate_clips(samples: Sequence[ClipSample | None]) -> ClipBatch:
    """Stack samples, dropping (and counting) the ``None`` of failed decodes."""
    ok = [s for s in samples if s is not None]
    failed = len(samples) - len(ok)
    if not ok:
        return ClipBatch(torch.empty(0), torch.empty(0, dtype=torch.long),
                         torch.empty(0, dtype=torch.long), failed)
    return ClipBatch(
        video=torch.stack([s.video for s in ok]),
        label=torch.tensor([s.label for s in ok], dtype=torch.long),
        index=torch.tensor([s.index for s in ok], dtype=torch.long),
        failed=failed,
    )


class ClipDataset(Dataset):
    """Shared sampling/transform logic; subclasses say where frames and labels come from."""

    def __init__(self, spec: ClipSpec, train: bool, seed: int = 0,
                 transform: Callable[..., torch.Tensor] | None = None):
        self.spec = spec
        self.train = train
        self.seed = seed
        self.epoch = 0
        self.transform = transform or ClipTransform(spec.size, train=train)
        self.failures: list[Skipped] = []  # filled in the main process only (num_workers=0)

    def set_epoch(self, epoch: int) -> None:
        """Change the random draws of training clips (call once per epoch, before iterating)."""
        self.epoch = epoch

    def labels(self) -> list[int]:
        return [self.label(i) for i in range(len(self))]

    def label(self, i: int) -> int:
        raise NotImplementedError

    def source(self, i: int) -> str:
        """Where sample ``i`` comes from (a path or a synthetic id), for error reports."""
        raise NotImplementedError

    def frames(self, i: int, choose: Callable[[int], np.ndarray]) -> np.ndarray:
        """``uint8 [K, T, H, W, 3]`` of the indices ``choose(num_frames)`` returns."""
        raise NotImplementedError

    def __getitem__(self, i: int) -> ClipSample | None:
        rng = np.random.default_rng([self.seed, self.epoch, i])
        spec = self.spec
        if self.train:
            def choose(n):
                return train_indices(n, spec, rng)
        else:
            def choose(n):
                return eval_indices(n, spec)
        try:
            clips = self.frames(i, choose)
        except DataError as exc:
            log.warning("skipping sample %d: %s", i, exc)
            self.failures.append(Skipped(self.source(i), exc.problem))
            return None
        crop_seed = int(rng.integers(2**31 - 1))
        video = torch.stack([self.transform(c, seed=crop_seed + k) for k, c in enumerate(clips)])
        return ClipSample(video, self.label(i), i)


class VideoClipDataset(ClipDataset):
    """Clips decoded from video files on the fly."""

    def __init__(self, records: Sequence[VideoRecord], spec: ClipSpec, train: bool,
                 seed: int = 0, transform: Callable[..., torch.Tensor] | None = None):
        super().__init__(spec, train, seed, transform)
        self.records = tuple(records)

    def __len__(self) -> int:
        return len(self.records)

    def label(self, i: int) -> int:
        return self.records[i].label

    def source(self, i: int) -> str:
        return str(self.records[i].path)

    def frames(self, i, choose):
        return read_sampled(self.records[i].path, choose, self.spec.decode_short_side)[0]


class SyntheticClipDataset(ClipDataset):
    """Generated clips (synthetic-motion, :mod:`respike_nm.data.synthetic`, or synthetic-binding,
    :mod:`respike_nm.data.binding`), normalised, not augmented.

    No crop and no flip: a flip would turn 'left' into 'right'. Frames are resized only when the
    generator's resolution differs from ``spec.size``.
    """

    def __init__(self, videos, spec: ClipSpec, train: bool, seed: int = 0):
        super().__init__(spec, train, seed, transform=self._to_tensor)
        self.videos = videos

    def __len__(self) -> int:
        return len(self.videos)

    def label(self, i: int) -> int:
        return self.videos.label(i)

    def source(self, i: int) -> str:
        return f"{self.videos.name}:{self.videos.partition}:{i}"

    def frames(self, i, choose):
        clip = self.videos.frames(i)
        idx = np.minimum(choose(len(clip)), len(clip) - 1)
        return clip[idx]

    def _to_tensor(self, clip: np.ndarray, seed: int | None = None) -> torch.Tensor:
        video = thwc_to_tchw(torch.as_tensor(clip))
        if video.shape[-2:] != (self.spec.size, self.spec.size):
            video = F.resize(video, [self.spec.size, self.spec.size], antialias=True)
        return video.contiguous()


def check_videos(records: Sequence[VideoRecord],
                 progress: Callable[[Sequence], Sequence] = lambda x: x
                 ) -> tuple[tuple[VideoRecord, ...], tuple[Skipped, ...]]:
    """Open each video's container (no decoding) and split off missing, empty or non-video files."""
    kept, skipped = [], []
    for rec in progress(records):
        try:
            _open(Path(rec.path)).close()
            kept.append(rec)
        except DataError as exc:
            skipped.append(Skipped(str(rec.path), exc.problem))
    return tuple(kept), tuple(skipped)
