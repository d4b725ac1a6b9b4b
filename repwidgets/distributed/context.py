"""Who this process is in a distributed job, and the few collectives the steps use.

A :class:`Context` hides ``torch.distributed`` behind six operations so that every
step runs unchanged on one process (``Context.single()``, no process group) and on
N ranks launched by ``torchrun`` (``Context.from_env()``: gloo on the CPU, NCCL on
CUDA). Steps shard their work with :meth:`Context.shard` (contiguous blocks, so the
rows a rank writes are one slice) and combine with :meth:`Context.all_reduce_sum` or
:meth:`Context.all_gather_object`. ``bytes_communicated`` counts the payload this rank
put into collectives (a tensor's bytes for an all-reduce, which a ring all-reduce sends
about twice over; the pickled size of an object), for the benchmark.

Example:
    >>> ctx = Context.single()
    >>> ctx.shard(10)
    range(0, 10)
    >>> Context(rank=1, world=3).shard(10)
    range(4, 7)
"""

from __future__ import annotations

import datetime
import os
import pickle

import torch

__all__ = ["Context", "shard_range"]


def shard_range(n: int, rank: int, world: int) -> range:
    """Rank ``rank``'s contiguous block of ``range(n)``: the blocks of ranks
    ``0..world-1`` partition ``range(n)`` in order, sizes differing by at most one.

    Example:
        >>> [shard_range(5, r, 2) for r in range(2)]
        [range(0, 3), range(3, 5)]
    """
    if n < 0:
        raise ValueError(f"Cannot shard a negative count ({n}).")
    base, extra = divmod(n, world)
    start = rank * base + min(rank, extra)
    return range(start, start + base + (1 if rank < extra else 0))


class Context:
    """This process's rank, the world size, its device, and the collectives.

    Args:
        rank: this process's rank, ``0 <= rank < world``.
        world: the number of processes.
        device: where this rank computes (``cuda:<LOCAL_RANK>`` under ``from_env`` on a
            GPU machine, else the CPU).

    With ``world == 1`` every collective is the identity and needs no process group; a
    context with ``world > 1`` built directly (not by :meth:`from_env`) only shards:
    its collectives need the process group that ``from_env`` opens.

    Example:
        >>> ctx = Context.single()
        >>> ctx.all_reduce_sum(torch.ones(2))
        tensor([1., 1.])
    """

    def __init__(self, rank: int = 0, world: int = 1, device: str | torch.device = "cpu") -> None:
        if world < 1 or not 0 <= rank < world:
            raise ValueError(
                f"Need 0 <= rank < world and world >= 1, got rank={rank}, world={world}."
            )
        self.rank = int(rank)
        self.world = int(world)
        self.device = torch.device(device)
        self.bytes_communicated = 0
        self._group_open = False

    # --- construction ---------------------------------------------------------------
    @classmethod
    def single(cls, device: str | torch.device = "cpu") -> Context:
        """One process, no process group (the notebook, tests, ``repwidgets run``)."""
        return cls(0, 1, device)

    @classmethod
    def from_env(cls, timeout_s: float = 1800.0) -> Context:
        """The context torchrun describes in ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``.

        With ``WORLD_SIZE > 1`` this opens the default process group (NCCL when CUDA is
        available, gloo otherwise) and picks ``cuda:<LOCAL_RANK>``; without those
        variables it is :meth:`single` on CUDA when present, else the CPU.
        """
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
        cuda = torch.cuda.is_available()
        device = torch.device(f"cuda:{local % torch.cuda.device_count()}" if cuda else "cpu")
        if cuda:
            torch.cuda.set_device(device)
        ctx = cls(rank, world, device)
        if world > 1:
            import torch.distributed as dist

            if not dist.is_initialized():
                dist.init_process_group(
                    backend="nccl" if cuda else "gloo",
                    timeout=datetime.timedelta(seconds=timeout_s),
                )
            ctx._group_open = True
        return ctx

    @property
    def is_main(self) -> bool:
        """True on rank 0, the rank that writes shared files and shows progress."""
        return self.rank == 0

    def shard(self, n: int) -> range:
        """This rank's contiguous block of ``range(n)`` (see :func:`shard_range`)."""
        return shard_range(n, self.rank, self.world)

    # --- collectives ------------------------------------------------------------------
    def _dist(self):
        if not self._group_open:
            raise RuntimeError(
                f"Context(rank={self.rank}, world={self.world}) has no process group: build "
                "it with Context.from_env() under torchrun to use collectives."
            )
        import torch.distributed as dist

        return dist

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """The elementwise sum of ``t`` over ranks (same shape and dtype on each rank);
        with one rank, ``t`` itself. The result is on ``t``'s device."""
        if self.world == 1:
            return t
        dist = self._dist()
        work = t.detach().to(self.device).contiguous().clone()
        dist.all_reduce(work, op=dist.ReduceOp.SUM)
        self.bytes_communicated += work.numel() * work.element_size()
        return work.to(t.device)

    def all_gather_object(self, obj) -> list:
        """``obj`` of every rank (picklable), in rank order."""
        if self.world == 1:
            return [obj]
        dist = self._dist()
        out: list = [None] * self.world
        dist.all_gather_object(out, obj)
        self.bytes_communicated += len(pickle.dumps(obj))
        return out

    def broadcast_object(self, obj, src: int = 0):
        """Rank ``src``'s ``obj`` on every rank (the others' argument is ignored)."""
        if self.world == 1:
            return obj
        dist = self._dist()
        box = [obj if self.rank == src else None]
        dist.broadcast_object_list(box, src=src)
        if self.rank == src:
            self.bytes_communicated += len(pickle.dumps(obj))
        return box[0]

    def barrier(self) -> None:
        """Wait until every rank gets here."""
        if self.world > 1:
            self._dist().barrier()

    def close(self) -> None:
        """Destroy the process group this context opened (nothing for one process)."""
        if self._group_open:
            import torch.distributed as dist

            if dist.is_initialized():
                dist.destroy_process_group()
            self._group_open = False

    def __repr__(self) -> str:
        return f"Context(rank={self.rank}, world={self.world}, device={self.device})"
