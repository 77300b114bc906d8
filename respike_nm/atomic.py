"""Atomic file writes: a temporary name in the same folder, then a rename, so a reader never sees
half a file and a failure leaves the previous one in place."""

from __future__ import annotations

import os
from pathlib import Path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` through ``.<name>.tmp-<pid>`` and ``os.replace``; returns the path."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
