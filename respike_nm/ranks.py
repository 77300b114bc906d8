"""The processes of a ``torchrun`` launch as shards of ``eval``, ``energy`` and ``simulate``.

Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) every process runs the same command; each
takes its contiguous part of the items (:func:`part`: whole batches, clips), computes the totals the
command adds up, and :func:`gather` brings all ranks' totals to rank 0 in rank order, where the
command merges them exactly as it merges its ``--workers``' shards (the parts are consecutive, so
the merge equals one process's pass) and writes or prints the result; the other ranks write and
print nothing. ``--workers`` splits a rank's part further over forked processes on its machine.

The totals travel pickled through the launch's key-value store (TCP, any machine).
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from respike_nm.errors import UsageError

# Ranks reach the gather when their parts are done, which on a large test set can be hours apart
# (torch's default of 30 minutes would fail the earlier ones).
GATHER_TIMEOUT = timedelta(days=7)


@dataclass(frozen=True)
class Launch:
    """This process's place in the launch: ``rank`` of ``world`` processes, ``local_rank`` on its
    machine (``world`` 1: not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """The process that merges, writes and prints."""
        return self.rank == 0


def launch() -> Launch:
    """The launch described by torchrun's environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as err:
        raise UsageError(f"WORLD_SIZE, RANK and LOCAL_RANK must be integers ({err})") from None
    if world < 1 or not 0 <= rank < world:
        raise UsageError(f"RANK={rank} is not a rank of WORLD_SIZE={world}")
    return Launch(rank, world, local)


def part(items: Sequence[Any], rank: int, parts: int) -> Sequence[Any]:
    """The ``rank``-th of ``parts`` contiguous slices of ``items`` (sizes differ by at most one,
    earlier slices the larger; empty when there are fewer items than parts)."""
    size, extra = divmod(len(items), parts)
    start = rank * size + min(rank, extra)
    return items[start:start + size + (rank < extra)]


def split(items: Sequence[Any], parts: int) -> list[Sequence[Any]]:
    """``items`` in ``parts`` contiguous slices (:func:`part`), none empty: at most ``len(items)``."""
    n = min(parts, len(items))
    return [part(items, i, n) for i in range(n)]


def gather(totals: Any, where: Launch) -> list | None:
    """Every rank's ``totals`` in rank order on rank 0 (``None`` on the others); ``[totals]`` when
    not launched. A collective: every rank must call it, once per command.

    Through the launch's key-value store (``torch.distributed.rendezvous("env://")``, the store a
    process group would use), not a process group: each rank sets its pickled totals, rank 0 (whose
    process serves the store) reads them all, so no rank waits for another to leave. A gloo group
    did not end cleanly here: destroying it hung when a peer had gone, and leaving it to the
    interpreter's exit sometimes aborted a rank ("terminate called without an active exception").
    A process group that already exists (the launch set one up) is used instead."""
    if where.world == 1:
        return [totals]
    import torch.distributed as dist

    if dist.is_initialized():
        group = dist.new_group(backend="gloo", timeout=GATHER_TIMEOUT)
        out = [None] * where.world if where.main else None
        dist.gather_object(totals, out, dst=0, group=group)
        return out
    store, rank, world = next(dist.rendezvous("env://", timeout=GATHER_TIMEOUT))
    store.set(f"respike-nm/totals/{rank}", pickle.dumps(totals))
    if not where.main:
        return None
    return [pickle.loads(store.get(f"respike-nm/totals/{r}")) for r in range(world)]  # get waits for each
