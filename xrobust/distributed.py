"""torchrun support shared by the trainer, the audit and the CLI.

One :class:`DistContext` says where this process stands (rank, world size, local rank,
device) and offers the few collectives the library uses: summing tensors, a barrier, and
gathering / broadcasting picklable Python objects. Outside ``torchrun`` (no initialised
process group and ``WORLD_SIZE`` unset or 1) it is a single process and every collective
is the identity.

* :func:`current`: the context of an already initialised group (or a single process).
* :func:`setup`: resolve the device and, under torchrun, join the group (the trainer).
* :func:`process_group`: a context manager that joins the group when launched by
  torchrun and leaves it afterwards if it created it (the CLI).

Example:
    >>> from xrobust.distributed import current
    >>> ctx = current()
    >>> ctx.world_size, ctx.is_main, ctx.gather_objects([1, 2])
    (1, True, [[1, 2]])
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from xrobust.errors import ConfigError

__all__ = [
    "DistContext",
    "all_reduce_sum",
    "barrier",
    "current",
    "launched_by_torchrun",
    "process_group",
    "setup",
]

_log = logging.getLogger(__name__)
#: how long a rank waits at exit for the others before leaving the group anyway (seconds)
_EXIT_BARRIER_S = 30


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size, local rank and (when resolved) device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device | None = None

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files and reports progress."""
        return self.rank == 0

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over all processes (in place; identity when not distributed)."""
        if self.enabled:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def barrier(self) -> None:
        """Wait for every process (no-op when not distributed)."""
        if self.enabled:
            dist.barrier()

    def gather_objects(self, obj: Any) -> list[Any]:
        """Every rank's ``obj`` in rank order (all ranks get the list)."""
        if not self.enabled:
            return [obj]
        out: list[Any] = [None] * self.world_size
        dist.all_gather_object(out, obj)
        return out

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.enabled:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from exc


def _initialised() -> bool:
    return dist.is_available() and dist.is_initialized()


def launched_by_torchrun() -> bool:
    """True when the environment says this is one of several torchrun processes."""
    return _env_int("WORLD_SIZE", 1) > 1


def local_device(device: torch.device, local_rank: int) -> torch.device:
    """``cuda:LOCAL_RANK`` for an unindexed CUDA device under torchrun, else ``device``."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    return device


def current(device: torch.device | None = None) -> DistContext:
    """The context of the initialised process group, or of a single process.

    Args:
        device: the resolved device; an unindexed CUDA device becomes ``cuda:LOCAL_RANK``
            in a group.
    """
    if not _initialised():
        return DistContext(0, 1, 0, device)
    local_rank = _env_int("LOCAL_RANK", dist.get_rank())
    dev = local_device(device, local_rank) if device is not None else None
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dev)


def _backend(device: torch.device | None) -> str:
    cuda = device.type == "cuda" if device is not None else torch.cuda.is_available()
    return "nccl" if cuda else "gloo"


def _join(device: torch.device | None) -> None:
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
    backend = _backend(device)
    dist.init_process_group(backend=backend)
    _log.info("joined process group: backend %s, world size %d", backend, dist.get_world_size())


def setup(device: str | torch.device) -> DistContext:
    """Resolve the device and, under torchrun (WORLD_SIZE > 1), join the process group.

    The backend is NCCL on CUDA and gloo otherwise; each process uses ``cuda:LOCAL_RANK``.
    A group initialised by the caller is reused; one created here is left at exit.
    """
    from xrobust.device import resolve_device

    dev = resolve_device(device)
    if not launched_by_torchrun() and not _initialised():
        return DistContext(0, 1, 0, dev)
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = local_device(dev, local_rank)
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    if not _initialised():
        _join(dev)
        atexit.register(_destroy)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dev)


@contextlib.contextmanager
def process_group() -> Iterator[DistContext]:
    """Join the torchrun process group for the duration when launched by torchrun.

    Yields the context (a single process outside torchrun). A group that already exists
    is used and left alone; a group created here is destroyed on exit.
    """
    created = False
    if launched_by_torchrun() and not _initialised():
        _join(None)
        created = True
    try:
        yield current()
    finally:
        if created:
            _destroy()


def _destroy() -> None:
    """Leave the process group. On gloo the ranks first meet at a barrier (bounded: a rank
    that is gone is named in a warning, never waited for): a rank that tears its group down
    while another is still closing its connections can make that one abort at exit."""
    if not _initialised():
        return
    if dist.get_backend() == "gloo" and dist.get_world_size() > 1:
        try:
            dist.monitored_barrier(timeout=datetime.timedelta(seconds=_EXIT_BARRIER_S))
        except Exception as exc:  # a peer that crashed or left: leave anyway
            _log.warning("leaving the process group without the other ranks: %s", exc)
    dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``t`` over all processes of ``ctx`` (in place; identity when not distributed)."""
    return ctx.all_reduce_sum(t)


def barrier(ctx: DistContext) -> None:
    """Wait for every process of ``ctx``."""
    ctx.barrier()
