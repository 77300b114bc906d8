"""The one signature of a progress callback: ``progress(iterable, desc, total) -> iterable``.

The library wraps long loops (decoding an index, epochs, evaluation, checking videos, writing a
cache) in the callback it is given; the command line passes a tqdm bar, and the default,
:func:`no_progress`, shows nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

Progress = Callable[[Iterable, str, int], Iterable]


def no_progress(it: Iterable, desc: str = "", total: int = 0) -> Iterable:
    """The iterable itself: no progress shown."""
    return it
