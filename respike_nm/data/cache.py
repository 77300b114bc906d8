"""HDF5 clip cache: videos pre-decoded to ``uint8`` frames, with labels and metadata.

Layout (format ``respike-nm-clip-cache``, version 1)::

    /frames     uint8 [N_frames, H, W, 3]   every video's frames, concatenated, chunked + compressed
    /offset     int64 [V]                    first row of video v in /frames
    /length     int64 [V]                    frames of video v
    /label      int64 [V]
    /partition  uint8 [V]                    0 train, 1 test
    /source     str   [V]                    original path (or synthetic id)
    /fps        float32 [V]
    attrs: format, format_version, dataset, classes (JSON), frame_size (H, W), skipped (JSON)

All videos are resized to one frame size (aspect ratio not kept) so frames stack in one array.
The file is written under a temporary name beside the target and renamed only when complete; a
full disk or a signal drops it. An existing target is replaced only on request, and only when it is
a clip cache (its ``format`` attribute), never a user's other file.
"""

from __future__ import annotations

import errno
import io
import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import torch
import torchvision.transforms.v2.functional as F

from respike_nm import __version__
from respike_nm.atomic import atomic_file
from respike_nm.data.datasets import ClipDataset, Partition
from respike_nm.data.errors import CacheFormatError, DataError
from respike_nm.data.records import ClipSpec, DatasetIndex, Skipped
from respike_nm.data.video import read_frames
from respike_nm.errors import UsageError
from respike_nm.layout import tchw_to_thwc, thwc_to_tchw
from respike_nm.progress import Progress, no_progress

FORMAT = "respike-nm-clip-cache"
FORMAT_VERSION = 1
_FIELDS = {  # name: (dtype kind, ndim)
    "frames": ("u", 4), "offset": ("i", 1), "length": ("i", 1), "label": ("i", 1),
    "partition": ("u", 1), "source": ("O", 1), "fps": ("f", 1),
}


@dataclass(frozen=True)
class CacheItem:
    """One video to cache: frames ``uint8 [N, H, W, 3]`` at any size."""

    frames: np.ndarray
    label: int
    partition: Partition
    source: str
    fps: float


@dataclass(frozen=True)
class CacheSummary:
    path: str
    videos: int
    frames: int
    bytes: int
    skipped: tuple[Skipped, ...]


def video_items(index: DatasetIndex, max_frames: int | None = None
                ) -> Iterator[CacheItem | Skipped]:
    """Decode every video of ``index`` (train, then test); a failure yields a :class:`Skipped`."""
    for part in ("train", "test"):
        for rec in index.partition(part):
            try:
                frames, meta = read_frames(rec.path)
            except DataError as exc:
                yield Skipped(str(rec.path), exc.problem)
                continue
            yield CacheItem(frames[:max_frames], rec.label, part, str(rec.path), meta.fps)


def resize_frames(frames: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``uint8 [N, H, W, 3]`` to ``uint8 [N, size[0], size[1], 3]`` (antialiased)."""
    if frames.shape[1:3] == tuple(size):
        return frames
    video = F.resize(thwc_to_tchw(torch.as_tensor(frames)), list(size), antialias=True)
    return tchw_to_thwc(video).contiguous().numpy()


def is_clip_cache(path: str | Path) -> bool:
    """Whether ``path`` is a regular HDF5 file with this format's marker (any version)."""
    path = Path(path)
    try:
        if not (path.is_file() and h5py.is_hdf5(path)):
            return False
        with h5py.File(path, "r") as f:
            return f.attrs.get("format") == FORMAT
    except OSError:
        return False


def check_cache_out(out: str | Path, overwrite: bool = False) -> None:
    """Refuse an ``out`` whose replacement would lose something (``ValueError`` naming it): a folder,
    any existing file unless ``overwrite``, and even then anything but a clip cache."""
    out = Path(out)
    if out.is_dir():
        raise UsageError(f"{out}: is a folder; the cache is one .h5 file")
    if not (out.exists() or out.is_symlink()):
        return
    if not overwrite:
        raise UsageError(f"{out}: already exists; pass --overwrite to replace the clip cache there")
    if not is_clip_cache(out):
        raise UsageError(f"{out}: is not a clip cache (an HDF5 file marked {FORMAT!r}); "
                         "not replacing it, choose another --out")


class CacheStopped(Exception):
    """:func:`write_cache`'s ``stop()`` answered True; the file was dropped."""


class _Disk:
    """The temporary file as h5py's ``fileobj`` driver sees it: a failed write (no space left, a
    quota) is kept in :attr:`error` instead of reaching HDF5, which cannot close a file after one
    (h5py 3.16 with HDF5 2.0 then crashes with a segmentation fault when the file is released).
    Later writes are dropped, reads past the end give zeros (as the POSIX driver's do) and the writer
    abandons the file at its next :meth:`check`."""

    def __init__(self, raw: io.FileIO):
        self.raw = raw
        self.error: OSError | None = None

    def seek(self, pos: int, whence: int = os.SEEK_SET) -> int:
        return self.raw.seek(pos, whence)

    def tell(self) -> int:
        return self.raw.tell()

    def read(self, size: int) -> bytes:
        data = self.raw.read(size)
        return data if len(data) == size else data + bytes(size - len(data))

    def write(self, data) -> int:
        view = memoryview(data).cast("B")
        try:
            while view and self.error is None:
                n = self.raw.write(view)
                if not n:
                    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                view = view[n:]
        except OSError as exc:
            self.error = exc
        return len(data)

    def truncate(self, size: int | None = None) -> int:
        if self.error is None:
            try:
                return self.raw.truncate(size)
            except OSError as exc:
                self.error = exc
        return self.tell() if size is None else size

    def flush(self) -> None:
        pass  # unbuffered

    def check(self, out: Path) -> None:
        """A :class:`DataError` naming ``out`` when a write failed."""
        if self.error is None:
            return
        if self.error.errno == errno.ENOSPC:
            why = "no space left on device"
        else:
            why = f"cannot write ({self.error.strerror or self.error})"
        raise DataError(out, f"{why} while writing the cache; nothing was written")


def write_cache(
    out: str | Path,
    items: Iterable[CacheItem | Skipped],
    classes: Sequence[str],
    dataset: str,
    frame_size: tuple[int, int],
    compression: str = "lzf",
    progress: Progress = no_progress,
    skipped: Sequence[Skipped] = (),
    overwrite: bool = False,
    stop: Callable[[], bool] = lambda: False,
) -> CacheSummary:
    """Write the cache to ``out`` atomically (temporary file, then rename).

    ``items`` may interleave :class:`Skipped` entries for inputs that could not be read; they are
    stored in the file's ``skipped`` attribute with ``skipped`` from building the index. An existing
    ``out`` is refused unless ``overwrite`` and a clip cache (:func:`check_cache_out`). A full disk
    is a :class:`DataError`; ``stop()``, asked after every video, ends it with :class:`CacheStopped`
    (the command line passes :func:`respike_nm.stopping.requested` inside
    :func:`~respike_nm.stopping.deferred`, so that a signal is never raised inside HDF5). Either way
    nothing is written and an existing ``out`` is kept.
    """
    out = Path(out)
    check_cache_out(out, overwrite)
    out.parent.mkdir(parents=True, exist_ok=True)
    skipped = list(skipped)
    with atomic_file(out) as tmp:
        videos, frames = _write(tmp, out, progress(items, "cache", 0), classes, dataset, frame_size,
                                compression, skipped, stop)
    return CacheSummary(str(out), videos, frames, out.stat().st_size, tuple(skipped))


def _write(tmp: Path, out: Path, items: Iterable[CacheItem | Skipped], classes: Sequence[str],
           dataset: str, frame_size: tuple[int, int], compression: str,
           skipped: list[Skipped], stop: Callable[[], bool]) -> tuple[int, int]:
    """Fill ``tmp`` (the layout in the module docstring); ``(videos, frames)`` written. Asks
    ``stop()`` and checks for a failed write after every video."""
    h, w = frame_size
    rows: dict[str, list] = {k: [] for k in ("offset", "length", "label", "partition", "source", "fps")}
    with open(tmp, "w+b", buffering=0) as raw:
        disk = _Disk(raw)
        with h5py.File(disk, "w") as f:
            frames = f.create_dataset(
                "frames", shape=(0, h, w, 3), maxshape=(None, h, w, 3), dtype=np.uint8,
                chunks=(4, h, w, 3), compression=compression,
            )
            total = 0
            for item in items:
                if stop():
                    raise CacheStopped(out)
                if isinstance(item, Skipped):
                    skipped.append(item)
                    continue
                data = resize_frames(item.frames, (h, w))
                frames.resize(total + len(data), axis=0)
                frames[total:] = data
                disk.check(out)
                for key, value in (("offset", total), ("length", len(data)), ("label", item.label),
                                   ("partition", 0 if item.partition == "train" else 1),
                                   ("source", item.source), ("fps", item.fps)):
                    rows[key].append(value)
                total += len(data)
            if stop():
                raise CacheStopped(out)
            if not rows["offset"]:
                raise DataError(out, "no video could be read; nothing to cache"
                                + (f" ({len(skipped)} skipped, first: {skipped[0].path}: "
                                   f"{skipped[0].reason})" if skipped else ""))
            for key, dtype in (("offset", np.int64), ("length", np.int64), ("label", np.int64),
                               ("partition", np.uint8), ("fps", np.float32)):
                f.create_dataset(key, data=np.asarray(rows[key], dtype=dtype))
            f.create_dataset("source", data=rows["source"], dtype=h5py.string_dtype())
            f.attrs.update(
                format=FORMAT, format_version=FORMAT_VERSION, dataset=dataset,
                classes=json.dumps(list(classes)), frame_size=np.array([h, w]),
                skipped=json.dumps([[s.path, s.reason] for s in skipped]),
                writer=f"respike-nm {__version__}",
            )
        disk.check(out)  # closing wrote what HDF5 still held
    return len(rows["offset"]), total


@dataclass(frozen=True)
class CacheInfo:
    """What :func:`read_cache_info` validated: classes, sizes and per-video tables."""

    path: str
    dataset: str
    classes: tuple[str, ...]
    frame_size: tuple[int, int]
    offset: np.ndarray
    length: np.ndarray
    label: np.ndarray
    partition: np.ndarray
    skipped: tuple[Skipped, ...]


def read_cache_info(path: str | Path) -> CacheInfo:
    """Open and validate a cache; :class:`CacheFormatError` names the file and the bad field."""
    path = Path(path)
    if not path.is_file():
        raise CacheFormatError(path, "no such cache file")
    try:
        f = h5py.File(path, "r")
    except OSError as exc:
        raise CacheFormatError(path, f"not a readable HDF5 file ({exc})") from None
    with f:
        if f.attrs.get("format") != FORMAT:
            raise CacheFormatError(path, f"attribute 'format' is not {FORMAT!r}: not a clip cache")
        version = int(f.attrs.get("format_version", -1))
        if version != FORMAT_VERSION:
            raise CacheFormatError(path, f"format_version {version}, this reader reads "
                                         f"{FORMAT_VERSION}; rebuild it with 'respike-nm data cache'")
        for name, (kind, ndim) in _FIELDS.items():
            if name not in f:
                raise CacheFormatError(path, f"missing dataset '/{name}'")
            ds = f[name]
            if ds.ndim != ndim or (kind != "O" and ds.dtype.kind != kind):
                raise CacheFormatError(path, f"dataset '/{name}' has shape {ds.shape} and dtype "
                                             f"{ds.dtype}; expected {ndim} dims of kind '{kind}'")
        n = len(f["offset"])
        for name in ("length", "label", "partition", "source", "fps"):
            if len(f[name]) != n:
                raise CacheFormatError(path, f"dataset '/{name}' has {len(f[name])} rows, "
                                             f"'/offset' has {n}")
        try:
            classes = tuple(json.loads(f.attrs["classes"]))
            skipped = tuple(Skipped(p, r) for p, r in json.loads(f.attrs.get("skipped", "[]")))
        except (KeyError, ValueError, TypeError) as exc:
            raise CacheFormatError(path, f"attribute 'classes' or 'skipped' is malformed ({exc})"
                                   ) from None
        offset, length = f["offset"][:], f["length"][:]
        label, partition = f["label"][:], f["partition"][:]
        if n and (np.any(length < 1) or np.any(offset + length > len(f["frames"]))):
            raise CacheFormatError(path, "'/offset' + '/length' point past the end of '/frames'")
        if n and (label.min() < 0 or label.max() >= len(classes)):
            raise CacheFormatError(path, f"'/label' holds values outside 0..{len(classes) - 1}")
        fh, fw = f["frames"].shape[1:3]
        return CacheInfo(str(path), str(f.attrs.get("dataset", "")), classes, (fh, fw),
                         offset, length, label, partition, skipped)


class H5ClipDataset(ClipDataset):
    """Clips read from an HDF5 clip cache; safe with several DataLoader workers.

    The file is opened lazily in each process (h5py handles must not cross a fork).
    """

    def __init__(self, path: str | Path, partition: Partition, spec: ClipSpec, train: bool,
                 seed: int = 0, transform=None):
        super().__init__(spec, train, seed, transform)
        self.info = read_cache_info(path)
        self.path = Path(path)
        self.rows = np.flatnonzero(self.info.partition == (0 if partition == "train" else 1))
        self._file: h5py.File | None = None
        self._pid: int | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return self.info.classes

    def __len__(self) -> int:
        return len(self.rows)

    def label(self, i: int) -> int:
        return int(self.info.label[self.rows[i]])

    def source(self, i: int) -> str:
        return f"{self.path}[{int(self.rows[i])}]"

    def num_frames(self, i: int) -> int:
        return int(self.info.length[self.rows[i]])

    def _frames_ds(self) -> h5py.Dataset:
        if self._file is None or self._pid != os.getpid():
            self._file = h5py.File(self.path, "r")
            self._pid = os.getpid()
        return self._file["frames"]

    def frames(self, i, choose):
        row = self.rows[i]
        off, n = int(self.info.offset[row]), int(self.info.length[row])
        idx = np.minimum(np.asarray(choose(n)), n - 1)  # padding policy: repeat the last frame
        flat = idx.reshape(-1)
        uniq, inverse = np.unique(flat, return_inverse=True)
        try:
            data = self._frames_ds()[off + uniq]
        except OSError as exc:
            raise CacheFormatError(self.path, f"cannot read frames of video {row} ({exc})") from None
        return data[inverse].reshape(*idx.shape, *data.shape[1:])

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_file"] = None
        return state
