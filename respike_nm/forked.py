"""One function over a list of items in forked worker processes: the ``--workers`` of ``eval``,
``energy`` and ``simulate``.

Forked, not spawned: Lava fixes the start method to ``fork`` when it is imported, and a forked
worker inherits the parent's model and data, so only an item's index goes to it and only its result
comes back (pickled). Each worker computes with one torch thread.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

_TASK: tuple[Callable[[Any], Any], Sequence[Any]] | None = None  # what the forked workers inherit


def _run(index: int):
    import torch

    torch.set_num_threads(1)
    function, items = _TASK
    return function(items[index])


def fork_map(function: Callable[[Any], Any], items: Sequence[Any]) -> list:
    """``[function(item) for item in items]``, each call in its own forked process, in item order.
    ``function`` may be a closure: it is inherited, not pickled."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    global _TASK
    if not items:
        return []
    _TASK = (function, items)
    try:
        with ProcessPoolExecutor(len(items), mp_context=multiprocessing.get_context("fork")) as pool:
            return list(pool.map(_run, range(len(items))))
    finally:
        _TASK = None
