"""Atomic writes: a temporary name in the same folder, then a rename, so a reader never sees half a
file or folder and a failure leaves the previous one (or nothing) in place.

- :func:`write_text_atomic`: a text file.
- :func:`atomic_file`: any file a writer fills through a path (HDF5, PNG, a checkpoint).
- :func:`atomic_dir`: a whole output folder that must not exist yet (exports, reports).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

TEMP_GLOB = ".*.tmp-*"  # what temp_name and atomic_dir's temporary folders look like


def temp_name(path: Path) -> Path:
    """``.<name>.tmp-<pid><suffix>`` beside ``path`` (the suffix kept, for writers that infer a format)."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def leftover_temps(folder: Path) -> list[Path]:
    """Temporary files of :func:`atomic_file` that a killed write left in ``folder``."""
    return [p for p in folder.glob(TEMP_GLOB) if p.is_file()]


@contextmanager
def atomic_file(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it onto ``path``, on failure delete it."""
    path = Path(path)
    tmp = temp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary file and ``os.replace``; returns the path."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(text)
    return path


@contextmanager
def atomic_dir(out: str | Path, what: str = "output folder") -> Iterator[Path]:
    """Yield a fresh temporary folder beside ``out``; rename it to ``out`` when the block succeeds,
    remove it when it fails. ``out`` must not exist (a ``ValueError`` says so, naming it)."""
    out = Path(out)
    if out.exists():
        raise ValueError(f"{out}: already exists; choose a new {what}")
    tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True)
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
