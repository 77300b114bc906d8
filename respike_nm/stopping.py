"""Clean stops: SIGTERM and SIGINT become exceptions at points where cleanup can run.

The command line installs :func:`install` once. Outside a Lava run, SIGTERM raises
:class:`Terminated` and SIGINT ``KeyboardInterrupt`` at once, so ``finally`` blocks run. Inside
:func:`deferred` (``conversion.lava_sim.run_stage`` wraps its network in it) the signal is only
noted: raising in the middle of Lava's process start-up can land in a place where Python ignores
the exception (it was swallowed inside ``logging``'s fork handler), leaving the run going. The run
polls :func:`requested` between chunks of steps, stops its network, and the exception is raised
when the block ends. Forked Lava processes inherit the handler and ignore the signal: the main
process stops them through ``net.stop()``, which also releases their shared memory.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager


class Terminated(BaseException):
    """SIGTERM, as an exception (like ``KeyboardInterrupt`` for SIGINT)."""


_main_pid: int | None = None
_depth = 0
_pending: int | None = None


def _exception(signum: int) -> BaseException:
    return Terminated() if signum == signal.SIGTERM else KeyboardInterrupt()


def _handler(signum, frame) -> None:
    global _pending
    if os.getpid() != _main_pid:
        return  # a forked Lava process: its parent stops it
    if _depth:
        _pending = signum
        return
    raise _exception(signum)


@contextmanager
def install() -> Iterator[None]:
    """Handle SIGTERM and SIGINT as described above for the duration of the block."""
    global _main_pid, _pending
    _main_pid, _pending = os.getpid(), None
    previous = {s: signal.signal(s, _handler) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
        _main_pid = None


def requested() -> bool:
    """Whether a signal arrived during the current :func:`deferred` block."""
    return _pending is not None


@contextmanager
def deferred() -> Iterator[None]:
    """Hold signals until the block ends (it should poll :func:`requested` and finish early)."""
    global _depth, _pending
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if not _depth and _pending is not None:
            signum, _pending = _pending, None
            raise _exception(signum)
