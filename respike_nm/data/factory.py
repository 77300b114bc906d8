"""Datasets by name: the one place that maps ``--dataset NAME`` to a dataset object."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from respike_nm.data.binding import SyntheticBindingConfig, SyntheticBindingVideos
from respike_nm.data.cache import CacheItem, H5ClipDataset, video_items
from respike_nm.data.datasets import (
    ClipDataset,
    Partition,
    SyntheticClipDataset,
    VideoClipDataset,
    check_videos,
)
from respike_nm.data.folds import FoldSpec
from respike_nm.data.names import DATASETS, SYNTHETIC_DATASETS
from respike_nm.data.records import ClipSpec, DatasetIndex, Skipped
from respike_nm.data.splits import build_index
from respike_nm.data.synthetic import SyntheticMotionConfig, SyntheticMotionVideos
from respike_nm.errors import UsageError

SYNTHETIC = dict(zip(SYNTHETIC_DATASETS, (SyntheticMotionVideos, SyntheticBindingVideos), strict=True))
SyntheticConfig = SyntheticMotionConfig | SyntheticBindingConfig


@dataclass(frozen=True)
class DataSource:
    """Where a dataset's clips come from. ``root``: the dataset folder (the .h5 file for
    ``cache``); ``split``: official split number (UCF-101/HMDB-51); ``seed``: the folder split's
    and synthetic generator's seed; ``synthetic``: the generator's sizes (its type follows
    ``name``; None: the generator's defaults); ``folds``: ``folder`` only, the cross-validation
    fold to use instead of the seeded split."""

    name: str = "synthetic-motion"
    root: Path | None = None
    split: int = 1
    seed: int = 0
    synthetic: SyntheticConfig | None = None
    folds: FoldSpec | None = None

    def __post_init__(self):
        if self.folds is not None and self.name != "folder":
            raise UsageError(f"data.folds applies to the folder dataset only, not {self.name!r}")
        if self.name not in DATASETS:
            raise UsageError(f"unknown dataset {self.name!r}; valid: {', '.join(DATASETS)}")
        if self.name not in SYNTHETIC and self.root is None:
            raise UsageError(f"dataset {self.name!r} needs a data root (--data-root)")
        if self.name in SYNTHETIC and self.synthetic is None:
            default = SyntheticBindingConfig if self.name == "synthetic-binding" else SyntheticMotionConfig
            object.__setattr__(self, "synthetic", default())


def video_index(source: DataSource) -> DatasetIndex:
    kwargs = {"split": source.split} if source.name in ("ucf101", "hmdb51") else {}
    if source.name == "folder":
        kwargs = {"seed": source.seed, "folds": source.folds}
    return build_index(source.name, source.root, **kwargs)


def make_dataset(source: DataSource, partition: Partition, spec: ClipSpec, train: bool,
                 seed: int = 0, check_files: bool = False) -> tuple[ClipDataset, tuple[str, ...],
                                                                      tuple[Skipped, ...]]:
    """A clip dataset with its class names and the inputs skipped while building it."""
    if source.name in SYNTHETIC:
        # the clip length and the redraw period follow the clip spec: with segment == s every
        # key frame is independent of the motion (docs/synthetic_motion.md)
        cfg = replace(source.synthetic, frames=spec.frames, segment=spec.stride)
        videos = SYNTHETIC[source.name](cfg, partition)
        return SyntheticClipDataset(videos, spec, train, seed), tuple(videos.classes), ()
    if source.name == "cache":
        ds = H5ClipDataset(source.root, partition, spec, train, seed)
        return ds, ds.classes, ds.info.skipped
    index = video_index(source)
    records, skipped = index.partition(partition), index.skipped
    if check_files:
        records, bad = check_videos(records)
        skipped = skipped + bad
    return VideoClipDataset(records, spec, train, seed), index.classes, skipped


def cache_source(source: DataSource, max_frames: int | None = None
                 ) -> tuple[tuple[str, ...], int, Iterator[CacheItem | Skipped], tuple[Skipped, ...]]:
    """``(classes, number of videos, items, skipped)`` to feed :func:`write_cache`."""
    if source.name in SYNTHETIC:
        parts = {p: SYNTHETIC[source.name](source.synthetic, p) for p in ("train", "test")}

        def items():
            for p, videos in parts.items():
                for i in range(len(videos)):
                    yield CacheItem(videos.frames(i)[:max_frames], videos.label(i), p,
                                    f"{source.name}:{p}:{i}", 25.0)

        n = sum(len(v) for v in parts.values())
        return tuple(parts["train"].classes), n, items(), ()
    if source.name == "cache":
        raise UsageError("a cache cannot be built from a cache; name the original dataset")
    index = video_index(source)
    return (index.classes, len(index.train) + len(index.test), video_items(index, max_frames),
            index.skipped)
