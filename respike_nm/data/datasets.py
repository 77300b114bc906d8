"""Torch datasets of clips: video files, the HDF5 clip cache, and synthetic-motion.

Every dataset yields :class:`ClipSample` ``(video uint8 [K, T, 3, S, S], label, index)`` with
K = 1 clip in training and ``spec.eval_clips`` tiled clips in evaluation; normalise batches with
:func:`respike_nm.data.transforms.normalize` where the model runs, then decompose. ``index`` is
always the video's: :class:`EveryWindowDataset` (``eval_protocol``/``train_clips`` ``all``) makes
each non-overlapping window of each video one item with K = 1, so several items share an index
and evaluation aggregates them per video.
Randomness (window start, crop, flip) is drawn from ``(seed, epoch, index)``, so a sample does
not depend on the worker that made it or on what came before (needed for exact resume). A clip
that fails to decode yields ``None``; :func:`collate_clips` drops it and counts it in
:attr:`ClipBatch.failed`, so a bad file never crashes a DataLoader worker.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal, NamedTuple

import numpy as np
import torch
import torchvision.transforms.v2.functional as F
from torch.utils.data import Dataset

from respike_nm.data.errors import DataError
from respike_nm.data.records import ClipSpec, Skipped, VideoRecord
from respike_nm.data.sampling import consecutive_clip, eval_indices, train_indices, window_starts
from respike_nm.data.transforms import ClipTransform
from respike_nm.data.video import _open, probe_video, read_sampled
from respike_nm.errors import UsageError
from respike_nm.layout import thwc_to_tchw
from respike_nm.progress import Progress, no_progress

log = logging.getLogger(__name__)

Partition = Literal["train", "test"]


class ClipSample(NamedTuple):
    video: torch.Tensor  # uint8 [K, T, 3, S, S]
    label: int
    index: int  # the video's index in its dataset (shared by the windows of one video)


class ClipBatch(NamedTuple):
    video: torch.Tensor  # uint8 [B, K, T, 3, S, S]
    label: torch.Tensor  # int64 [B]
    index: torch.Tensor  # int64 [B], the videos' indices
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
        self.transform = transform or ClipTransform(spec.size, train=train, scale=spec.train_crop_scale,
                                                    crop_fraction=spec.eval_crop_fraction)
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

    def num_frames(self, i: int) -> int:
        """Frames of video ``i`` (what ``choose`` is given), without decoding it; 0 when unknown."""
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
        return self.sample(i, choose, rng)

    def sample(self, i: int, choose: Callable[[int], np.ndarray],
               rng: np.random.Generator) -> ClipSample | None:
        """Video ``i``'s clips at the frame indices ``choose`` picks, cropped with draws from ``rng``
        (None when it fails to decode)."""
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

    def num_frames(self, i: int) -> int:
        return video_frame_count(self.records[i].path)


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

    def num_frames(self, i: int) -> int:
        return self.videos.cfg.frames  # every generated clip has the config's length

    def frames(self, i, choose):
        clip = self.videos.frames(i)
        idx = np.minimum(choose(len(clip)), len(clip) - 1)
        return clip[idx]

    def _to_tensor(self, clip: np.ndarray, seed: int | None = None) -> torch.Tensor:
        video = thwc_to_tchw(torch.as_tensor(clip))
        if video.shape[-2:] != (self.spec.size, self.spec.size):
            video = F.resize(video, [self.spec.size, self.spec.size], antialias=True)
        return video.contiguous()


class EveryWindowDataset(Dataset):
    """Every non-overlapping T-frame window of every video of ``videos``, one item each.

    The published protocol (``eval_protocol``/``train_clips`` ``all``): item ``j`` is window
    ``starts[j]`` of video ``video[j]`` as a :class:`ClipSample` with K = 1 and the video's index,
    cropped (and, in training, flipped) with draws from ``(seed, epoch, j)``. The windows are cut
    from each video's frame count (:meth:`ClipDataset.num_frames`), read once here.
    """

    def __init__(self, videos: ClipDataset, progress: Progress | None = None):
        if videos.spec.sampling != "consecutive":
            raise UsageError("every-window clips need sampling 'consecutive', not "
                             f"{videos.spec.sampling!r}")
        self.videos = videos
        ids = range(len(videos))
        t0 = time.perf_counter()
        walk = progress(ids, "count frames", len(ids)) if progress else ids
        counts = [videos.num_frames(v) for v in walk]
        log.info("frame counts of %d videos read in %.2f s", len(ids), time.perf_counter() - t0)
        starts = [window_starts(n, videos.spec.frames) for n in counts]
        self.counts = np.asarray(counts, dtype=np.int64)  # [V]
        self.video = np.repeat(np.arange(len(ids), dtype=np.int64), [len(s) for s in starts])  # [N]
        self.start = np.concatenate(starts) if starts else np.zeros(0, np.int64)  # [N]

    @property
    def spec(self) -> ClipSpec:
        return self.videos.spec

    @property
    def train(self) -> bool:
        return self.videos.train

    @property
    def failures(self) -> list[Skipped]:
        return self.videos.failures

    def set_epoch(self, epoch: int) -> None:
        self.videos.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.video)

    def label(self, j: int) -> int:
        return self.videos.label(int(self.video[j]))

    def labels(self) -> list[int]:
        return [self.label(j) for j in range(len(self))]

    def source(self, j: int) -> str:
        return f"{self.videos.source(int(self.video[j]))} (frames {self.start[j]}+{self.spec.frames})"

    def __getitem__(self, j: int) -> ClipSample | None:
        v = self.videos
        if not 0 <= j < len(self):
            raise IndexError(f"window {j} out of range for {len(self)} windows")
        rng = np.random.default_rng([v.seed, v.epoch, j])
        window = consecutive_clip(int(self.start[j]), v.spec.frames)[None]
        return v.sample(int(self.video[j]), lambda n: window, rng)


def with_clip_protocol(ds: ClipDataset, progress: Progress | None = None
                       ) -> ClipDataset | EveryWindowDataset:
    """``ds`` as its spec's protocol wants it: every window of every video (``eval_protocol``
    ``all`` for an evaluation set, ``train_clips`` ``all`` for a training set), else unchanged."""
    every = ds.spec.train_clips == "all" if ds.train else ds.spec.eval_protocol == "all"
    return EveryWindowDataset(ds, progress) if every else ds


_FRAME_COUNTS: dict[tuple[str, int, int], int] = {}


def video_frame_count(path: str | os.PathLike) -> int:
    """A video file's frame count, as :func:`read_sampled` sees it: the container's header, or its
    packets counted when the header says nothing (0 when the file cannot be read: the decode then
    fails and is counted). Kept per process by (path, size, mtime), so train and test sets and
    repeated builds read each file once."""
    try:
        st = os.stat(path)
    except OSError:
        return 0
    key = (os.fspath(path), st.st_size, st.st_mtime_ns)
    if key not in _FRAME_COUNTS:
        try:
            _FRAME_COUNTS[key] = probe_video(path).num_frames
        except DataError:
            return 0
    return _FRAME_COUNTS[key]


def check_videos(records: Sequence[VideoRecord], progress: Progress = no_progress
                 ) -> tuple[tuple[VideoRecord, ...], tuple[Skipped, ...]]:
    """Open each video's container (no decoding) and split off missing, empty or non-video files."""
    kept, skipped = [], []
    for rec in progress(records, "check videos", len(records)):
        try:
            _open(Path(rec.path)).close()
            kept.append(rec)
        except DataError as exc:
            skipped.append(Skipped(str(rec.path), exc.problem))
    return tuple(kept), tuple(skipped)
