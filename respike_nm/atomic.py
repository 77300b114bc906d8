"""Atomic writes: a temporary name in the same folder, then a rename, so a reader never sees half a
file or folder and a failure leaves the previous one (or nothing) in place.

- :func:`write_text_atomic`: a text file.
- :func:`atomic_file`: any file a writer fills through a path (HDF5, PNG, a checkpoint).
- :func:`atomic_dir`: a whole output folder that must not exist yet (exports, reports).

When the file system refuses a write (read-only, full, over quota, no permission) each of them
raises an ``OSError`` with that ``errno`` naming the file or folder the caller asked for, not the
hidden temporary name (:func:`named_writes`); the command line reports it as the user's error.
"""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from respike_nm.errors import UsageError

TEMP_GLOB = ".*.tmp-*"  # what temp_name and atomic_dir's temporary folders look like
REFUSALS = {  # the file system's refusals of a write, as the error message words them
    errno.EROFS: "read-only file system", errno.ENOSPC: "no space left on device",
    errno.EDQUOT: "disk quota exceeded", errno.EACCES: "permission denied",
}


def temp_name(path: Path) -> Path:
    """``.<name>.tmp-<pid><suffix>`` beside ``path`` (the suffix kept, for writers that infer a format)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def leftover_temps(folder: Path) -> list[Path]:
    """Temporary files of :func:`atomic_file` that a killed write left in ``folder``."""
    return [p for p in folder.glob(TEMP_GLOB) if p.is_file()]


def _refusal(exc: BaseException, tmp: Path) -> int | None:
    """The ``errno`` of the file system's refusal behind ``exc``, raised while writing ``tmp`` (a file,
    or a folder and what is under it), or None when ``exc`` is something else.

    An ``OSError`` tells by its ``errno`` (when it names no file or a file under ``tmp``: an error
    reading an input is not the output's). A bare ``RuntimeError`` (``torch.save``'s, for a full disk
    or a file it cannot open) is judged by the folder itself: mounted read-only, no block or inode
    left, or not writable. Any other exception is not a refusal."""
    if isinstance(exc, OSError):
        name = _filename(exc)
        ours = name is None or name == tmp or tmp in name.parents
        return exc.errno if ours and exc.errno in REFUSALS else None
    if type(exc) is not RuntimeError:
        return None
    folder = tmp if tmp.is_dir() else tmp.parent
    try:
        fs = os.statvfs(folder)
    except OSError:
        return None
    if fs.f_flag & os.ST_RDONLY:
        return errno.EROFS
    blocks = fs.f_bfree if os.geteuid() == 0 else fs.f_bavail  # root may write the reserved blocks
    if blocks == 0 or (fs.f_files and not fs.f_ffree):
        return errno.ENOSPC
    if not os.access(folder, os.W_OK):
        return errno.EACCES
    return None


def _filename(exc: BaseException) -> Path | None:
    name = getattr(exc, "filename", None) if isinstance(exc, OSError) else None
    return None if name is None else Path(os.fsdecode(name))


@contextmanager
def named_writes(tmp: Path, path: Path) -> Iterator[None]:
    """Re-raise a refused write (:func:`_refusal`) under the temporary ``tmp`` as an ``OSError`` naming
    ``path``, or the file under ``path`` that stands where the failed one stood under ``tmp``."""
    try:
        yield
    except Exception as exc:
        code = _refusal(exc, tmp)
        if code is None:
            raise
        name = _filename(exc)
        where = path / name.relative_to(tmp) if name is not None and tmp in name.parents else path
        raise OSError(code, REFUSALS[code], str(where)) from exc


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on failure delete it."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        with named_writes(tmp, path):
            yield tmp
            os.replace(tmp, path)
    finally:
        if tmp.exists():  # unlinking a name that is not there fails on a read-only file system
            tmp.unlink()


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``; returns the path."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return path


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``; returns the path.

    For HDF5 written in memory first (``h5py.File(io.BytesIO())``): a full disk is then a plain
    ``OSError`` of Python's own write, where inside HDF5 it leaves a file that cannot be closed
    (h5py reports the failed flush from a destructor, or crashes releasing it)."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_bytes(data)
    return path


@contextmanager
def atomic_dir(out: str | Path, what: str = "output folder") -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``out``; rename it to ``out`` when the block succeeds,
    remove it when it fails. ``out`` must not exist (a ``ValueError`` says so, naming it)."""
    out = Path(out)
    if out.exists():
        raise UsageError(f"{out}: already exists; choose a new {what}")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        with named_writes(tmp, out):
            tmp.mkdir(parents=True)
            yield tmp
            os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
