"""Which share of the data this process reads: (rank, world size), and its DataLoader worker.

The DataModule takes rank and world size from the Trainer and hands them to its datasets
explicitly, so DataLoader workers never have to guess. Guessing is what goes wrong: a
worker started with "spawn" or "forkserver" is a fresh interpreter in which
torch.distributed is not initialised, so asking torch there says "rank 0 of 1" on every
rank, and every rank would read the same data. Datasets built outside Lightning resolve
their rank with :func:`detect_distribution` when they are *constructed* (in the main
process), for the same reason.

:func:`detect_distribution` knows, in this order:

=============================== ===================================================
torch.distributed initialised   ``get_rank()``, ``get_world_size()``
torchrun (and torch.distributed ``RANK``, ``WORLD_SIZE``
.launch)
Lightning's own launcher        ``LOCAL_RANK``, ``NODE_RANK``, ``WORLD_SIZE`` (the children it
                                starts; one node, or ``LOCAL_WORLD_SIZE`` for several)
srun                            ``SLURM_PROCID``, ``SLURM_NTASKS``
nothing of the above            rank 0 of 1
=============================== ===================================================
"""

from __future__ import annotations

import os

import torch.distributed as dist
from torch.utils.data import get_worker_info

from .errors import DataError


def detect_distribution() -> tuple[int, int]:
    """(rank, world size) of this process, from torch.distributed or the launcher's environment."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return int(env["RANK"]), int(env["WORLD_SIZE"])
    if "LOCAL_RANK" in env and "WORLD_SIZE" in env:
        local_rank, node_rank = int(env["LOCAL_RANK"]), int(env.get("NODE_RANK", "0"))
        if node_rank == 0:
            return local_rank, int(env["WORLD_SIZE"])
        if "LOCAL_WORLD_SIZE" in env:
            return node_rank * int(env["LOCAL_WORLD_SIZE"]) + local_rank, int(env["WORLD_SIZE"])
        raise DataError(
            "cannot tell this process's global rank from LOCAL_RANK and NODE_RANK alone; set "
            "LOCAL_WORLD_SIZE, or pass rank and world_size to the dataset"
        )
    if "SLURM_PROCID" in env and "SLURM_NTASKS" in env:
        return int(env["SLURM_PROCID"]), int(env["SLURM_NTASKS"])
    return 0, 1


def resolve_distribution(rank: int | None, world_size: int | None) -> tuple[int, int]:
    """Explicit values where given, detected ones otherwise; checked."""
    detected = detect_distribution() if rank is None or world_size is None else (0, 1)
    rank = detected[0] if rank is None else rank
    world_size = detected[1] if world_size is None else world_size
    if not 0 <= rank < world_size:
        raise DataError(f"rank {rank} is outside a world of {world_size} processes")
    return rank, world_size


def worker_info() -> tuple[int, int]:
    """(worker id, number of workers) of the calling DataLoader worker; (0, 1) in the main process."""
    worker = get_worker_info()
    return (worker.id, worker.num_workers) if worker is not None else (0, 1)


def share(n: int, parts: int, part: int) -> tuple[int, int]:
    """The contiguous range ``[start, stop)`` of ``n`` items that ``part`` of ``parts`` takes.

    Sizes differ by at most one, the first ``n % parts`` parts taking one more; the ranges
    tile ``[0, n)`` exactly, whatever ``n`` and ``parts`` (a part may be empty).
    """
    base, extra = divmod(n, parts)
    start = part * base + min(part, extra)
    return start, start + base + (part < extra)
