"""One function over a list of items in forked worker processes: the ``--workers`` of ``eval``,
``energy`` and ``simulate``.

Forked, not spawned: Lava fixes the start method to ``fork`` when it is imported, and a forked
worker inherits the parent's model and data, so only an item's index goes to it and only its result
comes back (pickled). Each worker computes with one torch thread.

Stops: each worker handles SIGTERM and SIGINT as the command does (:mod:`respike_nm.stopping`: a
Lava run stops its network after the current chunk of steps, then the signal is raised), and sends
the exception back. When the parent is stopped or a worker fails, the parent sends SIGTERM to the
workers still running, waits for them (each stops its own networks) and raises: a signal to the
command alone, or to its whole process group (Ctrl-C), ends every worker and leaves nothing
running.
"""

from __future__ import annotations

import os
import pickle
import signal
from collections.abc import Callable, Sequence
from typing import Any

_TASK: tuple[Callable[[Any], Any], Sequence[Any]] | None = None  # what the forked workers inherit


class WorkerError(RuntimeError):
    """A worker failed with an exception that could not be sent back as itself."""


def _run(index: int, conn) -> None:
    import torch

    from respike_nm.stopping import install

    torch.set_num_threads(1)
    function, items = _TASK
    with install():  # this worker's own clean stops (a forked Lava process of it ignores them)
        try:
            message = (True, function(items[index]))
        except BaseException as exc:  # noqa: BLE001 - every failure, signals included, goes to the parent
            message = (False, exc)
        try:  # plain pickle, by value: torch's reductions would share tensors through this process,
            data = pickle.dumps(message)  # which ends now
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            data = pickle.dumps((False, WorkerError(f"worker {index}: {message[1]!r} (not sendable: {exc})")))
        try:
            conn.send_bytes(data)
        finally:
            conn.close()


def fork_map(function: Callable[[Any], Any], items: Sequence[Any]) -> list:
    """``[function(item) for item in items]``, each call in its own forked process, in item order.
    ``function`` may be a closure: it is inherited, not pickled. The first exception raised by a
    worker (or a signal to this process) is raised here after every worker has ended."""
    import multiprocessing
    from multiprocessing.connection import wait

    global _TASK
    if not items:
        return []
    ctx = multiprocessing.get_context("fork")
    _TASK = (function, items)
    procs, conns = [], []
    try:
        for i in range(len(items)):
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_run, args=(i, send), name=f"respike-nm worker {i}")
            proc.start()
            send.close()
            procs.append(proc)
            conns.append(recv)
        results: list = [None] * len(items)
        pending = dict(zip(conns, range(len(items)), strict=True))
        while pending:
            for conn in wait(list(pending)):
                i = pending.pop(conn)
                try:
                    ok, value = pickle.loads(conn.recv_bytes())
                except EOFError:
                    procs[i].join()
                    raise WorkerError(f"worker {i} ended without a result (exit code "
                                      f"{procs[i].exitcode})") from None
                except Exception as exc:  # noqa: BLE001 - an exception type that does not unpickle
                    raise WorkerError(f"worker {i}: its result could not be read ({exc!r})") from None
                if not ok:
                    raise value
                results[i] = value
        return results
    except BaseException:
        for proc in procs:
            if proc.is_alive():
                os.kill(proc.pid, signal.SIGTERM)
        raise
    finally:
        for proc in procs:
            proc.join()
        for conn in conns:
            conn.close()
        _TASK = None
