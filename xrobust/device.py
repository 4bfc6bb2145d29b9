"""The one place that resolves devices and mixed precision.

Example:
    >>> from xrobust.device import resolve_device
    >>> resolve_device("cpu").type
    'cpu'
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import platform
import sys
from collections.abc import Iterator

import torch

from xrobust.errors import ConfigError

__all__ = [
    "allocator_configured_by_user",
    "amp_dtype",
    "autocast",
    "maybe_tune_allocator",
    "model_device",
    "parse_precision",
    "precision_name",
    "resolve_device",
    "search_dtype",
    "set_auto_tune_allocator",
    "tune_allocator",
]

_log = logging.getLogger(__name__)

#: opt out of the automatic tuning of :func:`maybe_tune_allocator` with ``=0``
ENV_TUNE_MALLOC = "XROBUST_TUNE_MALLOC"
#: allocators a user may preload instead of glibc's malloc
_ALLOCATORS = ("jemalloc", "tcmalloc", "mimalloc", "hoard", "snmalloc", "scudo")
#: the automatic tuning: [done once, enabled]
_AUTO = {"done": False, "enabled": True}

# glibc mallopt parameters
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_MAX = -1, -2, -4


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """Turn ``"auto"`` (or None) into cuda, then mps, then cpu; validate explicit names.

    Raises:
        ConfigError: an explicit device is unknown or not available here.
    """
    if isinstance(device, torch.device):
        return device
    name = "auto" if device is None else str(device).strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(
            f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps'"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {device!r} asked for, but CUDA is not available here; use 'cpu' or 'auto'"
        )
    if dev.type == "mps":
        mps = getattr(torch.backends, "mps", None)
        if mps is None or not mps.is_available():
            raise ConfigError(f"device {device!r} asked for, but MPS is not available here")
    return dev


def model_device(model: torch.nn.Module) -> torch.device:
    """The device of a module's first parameter or buffer (cpu for a module with none)."""
    for t in model.parameters():
        return t.device
    for t in model.buffers():
        return t.device
    return torch.device("cpu")


def amp_dtype(device: torch.device, amp: bool | str | torch.dtype | None) -> torch.dtype | None:
    """The autocast dtype to use, or None for full precision.

    ``amp`` may be False/None (off), True/"auto" (bf16 where the CUDA device supports it,
    fp16 otherwise), "bf16"/"fp16", or a torch dtype. Autocast is only used on CUDA; on
    other devices this returns None.
    """
    if amp is None or amp is False:
        return None
    if device.type != "cuda":
        return None
    if amp is True or amp == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if isinstance(amp, torch.dtype):
        return amp
    table = {
        "bf16": torch.bfloat16,
        "bfloat16": torch.bfloat16,
        "fp16": torch.float16,
        "float16": torch.float16,
    }
    if str(amp).lower() not in table:
        raise ConfigError(
            f"unknown amp setting {amp!r}; expected true/false, 'auto', 'bf16' or 'fp16'"
        )
    return table[str(amp).lower()]


#: the precisions of an attack's search: fp32 (no autocast) and the two reduced types
PRECISIONS = ("fp32", "bf16", "fp16")
_PRECISION_ALIASES = {
    "fp32": "fp32", "float32": "fp32", "float": "fp32", "full": "fp32",
    "bf16": "bf16", "bfloat16": "bf16",
    "fp16": "fp16", "float16": "fp16", "half": "fp16",
}  # fmt: skip
_PRECISION_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def parse_precision(value: str | torch.dtype | None) -> str:
    """``value`` as one of :data:`PRECISIONS` (``"fp32"``, ``"bf16"``, ``"fp16"``); also
    accepts ``"float32"``, ``"bfloat16"``, ``"float16"``, ``"half"``, a torch dtype, or None
    (fp32).

    Raises:
        ConfigError: anything else, naming the accepted values.

    Example:
        >>> from xrobust.device import parse_precision
        >>> parse_precision("bfloat16")
        'bf16'
    """
    if value is None:
        return "fp32"
    if isinstance(value, torch.dtype):
        for name, dt in _PRECISION_DTYPES.items():
            if value == (dt or torch.float32):
                return name
        raise ConfigError(f"precision {value} is not supported; expected fp32, bf16 or fp16")
    key = str(value).strip().lower()
    if key not in _PRECISION_ALIASES:
        raise ConfigError(f"unknown precision {value!r}; expected 'fp32', 'bf16' or 'fp16'")
    return _PRECISION_ALIASES[key]


def precision_name(dtype: torch.dtype | None) -> str:
    """The precision name of an autocast dtype (None: ``"fp32"``)."""
    return parse_precision(dtype)


def search_dtype(
    device: torch.device, precision: str = "fp32", amp: bool | str | torch.dtype | None = None
) -> torch.dtype | None:
    """The autocast dtype of an attack's search passes, or None for fp32.

    ``precision`` ("bf16", "fp16") applies on every device (CPU autocast included); the
    deprecated ``amp`` keeps its old meaning (:func:`amp_dtype`: CUDA only) and is read only
    when ``precision`` is "fp32". Whatever the search runs in, attacks verify every verdict
    with an fp32 forward pass (:meth:`xrobust.attacks.context.AttackContext.verify`).

    Example:
        >>> import torch
        >>> from xrobust.device import search_dtype
        >>> search_dtype(torch.device("cpu"), "bf16")
        torch.bfloat16
    """
    name = parse_precision(precision)
    if name != "fp32":
        return _PRECISION_DTYPES[name]
    return amp_dtype(device, amp)


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Autocast on ``device`` with ``dtype``, or a no-op when dtype is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield


def tune_allocator() -> bool:
    """Keep large CPU tensors' memory in the heap instead of mmapping and unmapping it on
    every pass (glibc only; a no-op returning False elsewhere). Returns whether it applied.

    PyTorch's CPU allocator uses malloc; glibc serves large blocks with fresh mmaps that
    page-fault on first touch, so a loop of forward/backward passes can spend a large
    share of its time in page faults (PGD-20 on the digits CNN ran 1.4-1.7x faster with it
    on the 2-core test machine, see BENCHMARKS.md "Attacks"). This
    changes the whole process: freed memory up to 1 GiB stays with the process instead of
    going back to the system. ``xrobust attack`` and ``xrobust audit`` call it on CPU
    (``--no-tune-malloc`` to opt out); library calls (``audit()``, an attack's ``run``) on the
    CPU do it through :func:`maybe_tune_allocator`, which leaves an allocator you configured
    alone. Calling this function applies the settings unconditionally.

    Example:
        >>> from xrobust.device import tune_allocator
        >>> tune_allocator()  # doctest: +SKIP
        True
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(_M_MMAP_MAX, 0)
        ok &= libc.mallopt(_M_TRIM_THRESHOLD, 1 << 30)
        ok &= libc.mallopt(_M_TOP_PAD, 64 << 20)
        return bool(ok)
    except (OSError, AttributeError):
        return False


def allocator_configured_by_user(environ: dict[str, str] | None = None) -> str | None:
    """What says that the user chose malloc's behaviour, or None: a glibc ``MALLOC_*``
    variable (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_ARENA_MAX``, ...), ``GLIBC_TUNABLES`` with
    a ``glibc.malloc`` entry, or another allocator in ``LD_PRELOAD`` (jemalloc, tcmalloc,
    mimalloc, ...)."""
    env = os.environ if environ is None else environ
    for k in sorted(env):
        if k.startswith("MALLOC_"):
            return k
    if "glibc.malloc" in env.get("GLIBC_TUNABLES", ""):
        return "GLIBC_TUNABLES"
    preload = env.get("LD_PRELOAD", "").lower()
    if any(a in preload for a in _ALLOCATORS):
        return "LD_PRELOAD"
    return None


def set_auto_tune_allocator(enabled: bool) -> None:
    """Turn :func:`maybe_tune_allocator` off (``xrobust attack/audit --no-tune-malloc``) or
    on again for this process."""
    _AUTO["enabled"] = bool(enabled)


def maybe_tune_allocator(device: torch.device | str | None = "cpu") -> bool:
    """:func:`tune_allocator` once per process, when it is safe and wanted: on the CPU, with
    glibc on Linux, unless the user configured malloc (:func:`allocator_configured_by_user`),
    set ``XROBUST_TUNE_MALLOC=0`` or turned it off (:func:`set_auto_tune_allocator`).
    ``audit()`` and every attack's ``run`` call it, so the library runs as fast as the CLI.
    Returns whether this call applied the settings.

    Example:
        >>> from xrobust.device import maybe_tune_allocator
        >>> maybe_tune_allocator("cpu")  # doctest: +SKIP
        True
    """
    dev = torch.device(device) if device is not None else torch.device("cpu")
    if dev.type != "cpu" or _AUTO["done"] or not _AUTO["enabled"]:
        return False
    if os.environ.get(ENV_TUNE_MALLOC, "").strip().lower() in ("0", "false", "no", "off"):
        return False
    _AUTO["done"] = True
    who = allocator_configured_by_user()
    if who is not None:
        _log.debug("allocator left as configured (%s)", who)
        return False
    if not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc":
        return False
    applied = tune_allocator()
    _log.debug("allocator tuned for CPU tensors: %s", applied)
    return applied
