"""Errors raised by the data pipeline; each names the file and the problem."""

from __future__ import annotations

from pathlib import Path

from respike_nm.errors import RespikeError


class DataError(RespikeError):
    """Base class: bad input data, reported without a library traceback."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path else problem)


class VideoDecodeError(DataError):
    """A file is missing, empty, not a video, or cannot be decoded."""


class SplitFileError(DataError):
    """A split, class-index or annotation file is missing or malformed."""


class CacheFormatError(DataError):
    """An HDF5 clip cache is missing a field, has a wrong shape/dtype, or another version."""


class DecompositionError(RespikeError, ValueError):
    """A clip cannot be cut into key and residual frames (T not divisible by s)."""
