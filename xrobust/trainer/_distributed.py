"""torchrun support: detect the launcher's environment, set up and query the process group."""

from __future__ import annotations

import atexit
import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from xrobust.device import resolve_device
from xrobust.errors import ConfigError

_log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ConfigError(f"environment variable {name}={raw!r} is not an integer") from exc


def setup(device: str | torch.device) -> DistContext:
    """Resolve the device and, under torchrun (WORLD_SIZE > 1), join the process group.

    The backend is NCCL on CUDA and gloo otherwise; each process uses ``cuda:LOCAL_RANK``.
    A group initialised by the caller is reused.
    """
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1 and not (dist.is_available() and dist.is_initialized()):
        return DistContext(0, 1, 0, resolve_device(device))
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but torch.distributed is not available in this build")
    local_rank = _env_int("LOCAL_RANK", 0)
    dev = resolve_device(device)
    if dev.type == "cuda":
        dev = torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(dev)
    if not dist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
        atexit.register(_destroy)
        _log.info("joined process group: backend %s, world size %d", backend, world)
    return DistContext(dist.get_rank(), dist.get_world_size(), local_rank, dev)


def _destroy() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(t: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum ``t`` over all processes (in place; identity when not distributed)."""
    if ctx.enabled:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
