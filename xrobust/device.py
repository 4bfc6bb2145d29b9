"""The one place that resolves devices and mixed precision.

Example:
    >>> from xrobust.device import resolve_device
    >>> resolve_device("cpu").type
    'cpu'
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from xrobust.errors import ConfigError

__all__ = ["amp_dtype", "autocast", "model_device", "resolve_device"]


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


@contextlib.contextmanager
def autocast(device: torch.device, dtype: torch.dtype | None) -> Iterator[None]:
    """Autocast on ``device`` with ``dtype``, or a no-op when dtype is None."""
    if dtype is None:
        yield
        return
    with torch.autocast(device_type=device.type, dtype=dtype):
        yield
