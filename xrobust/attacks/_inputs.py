"""Checks and conversions of what a caller hands to an attack: tensors, labels, eps,
targets, model outputs, and batches of datasets. Every failure is a DataError,
ConfigError or ModelError that says what was wrong and what was expected."""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from typing import Any

import torch

from xrobust import validation
from xrobust.attacks.checks import AttackWarning
from xrobust.attacks.norms import Norm
from xrobust.errors import ConfigError, DataError

_BOUND_TOL = 1e-6


def as_tensor_pair(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x, y)`` as tensors (arrays and lists are converted)."""
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"inputs must be a tensor or array, got {type(x).__name__}") from exc
    if not isinstance(y, torch.Tensor):
        try:
            y = torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"labels must be a tensor or array, got {type(y).__name__}") from exc
    return x, y


def validate(x: torch.Tensor, y: torch.Tensor, bounds: tuple[float, float] | None) -> None:
    """Shapes, dtypes, finiteness and range of a batch to attack (the shared checks of
    :mod:`xrobust.validation`, with the attack's own advice on bounds)."""
    validation.check_batch(x, name="inputs")
    validation.check_labels(y, x.shape[0], name="labels")
    if bounds is not None:
        lo, hi = float(x.min()), float(x.max())
        if lo < bounds[0] - _BOUND_TOL or hi > bounds[1] + _BOUND_TOL:
            raise DataError(
                f"inputs range over [{lo:.4g}, {hi:.4g}], outside the attack's bounds "
                f"{bounds}; pass bounds=(low, high) matching your data (inputs are "
                "expected in input space, normalisation inside the model)"
            )


def per_example_eps(eps: Any, x: torch.Tensor) -> torch.Tensor:
    """A radius per row of ``x`` from a number or a tensor (N,), checked."""
    n = x.shape[0]
    if isinstance(eps, torch.Tensor):
        e = eps.detach().to(x.device, x.dtype).reshape(-1)
        if e.numel() == 1:
            e = e.expand(n).clone()
    else:
        try:
            e = torch.full((n,), float(eps), device=x.device, dtype=x.dtype)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"eps must be a number or a tensor (N,), got {eps!r}") from exc
    if e.shape[0] != n:
        raise ConfigError(f"per-example eps has {e.shape[0]} entries for {n} inputs")
    if not bool(torch.isfinite(e).all()) or bool((e < 0).any()):
        raise ConfigError("eps must be finite and >= 0 for every example")
    return e


def check_logits(logits: torch.Tensor, n: int) -> None:
    """The model's clean outputs are finite logits of shape (N, C >= 2)."""
    validation.check_logits(logits, n, min_classes=2, finite=True)


def check_labels(y: torch.Tensor, num_classes: int) -> None:
    """Every label names one of the model's outputs."""
    validation.check_labels(y, y.shape[0], num_classes=num_classes, name="labels")


def warn_if_probabilities(logits: torch.Tensor) -> None:
    """An AttackWarning when the model's outputs look like probabilities."""
    if validation.looks_like_probabilities(logits):
        warnings.warn(
            "model outputs look like probabilities (non-negative rows summing to 1, or "
            "values in [0, 1]); attacks expect logits: remove the final softmax/sigmoid "
            "or robustness will be overestimated",
            AttackWarning,
            stacklevel=5,
        )


def as_target(target: Any, n: int, num_classes: int, dev: torch.device) -> torch.Tensor | None:
    """Target classes (N,) from an int, a tensor or None, checked against the classes."""
    if target is None:
        return None
    if isinstance(target, bool):
        raise ConfigError("target must be a class index or a tensor of class indices")
    if isinstance(target, int):
        t = torch.full((n,), target, dtype=torch.long, device=dev)
    else:
        t = torch.as_tensor(target).to(dev)
        if t.is_floating_point():
            raise ConfigError("target must hold integer class indices")
        t = t.long().reshape(-1)
        if t.numel() == 1:
            t = t.expand(n).clone()
    if t.shape[0] != n:
        raise ConfigError(f"target has {t.shape[0]} entries for {n} inputs")
    if int(t.min()) < 0 or int(t.max()) >= num_classes:
        raise ConfigError(f"target classes must be in [0, {num_classes - 1}]")
    return t


def rows_like(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """A per-row mask (N,) shaped to broadcast against ``like`` (N, ...)."""
    return mask.reshape(-1, *([1] * (like.dim() - 1)))


def outside(
    x_adv: torch.Tensor,
    x: torch.Tensor,
    eps: torch.Tensor,
    norm: Norm,
    bounds: tuple[float, float] | None,
) -> torch.Tensor:
    """Rows of ``x_adv`` outside their eps-ball (beyond rounding) or the bounds."""
    tol = 1e-5 * (1.0 + eps)
    bad = norm.measure(x_adv - x) > eps + tol
    if bounds is not None:
        flat = x_adv.reshape(x_adv.shape[0], -1)
        bad |= (flat < bounds[0]).any(1) | (flat > bounds[1]).any(1)
    return bad


def length(data: Any, limit: int | None) -> int:
    """Number of examples in ``data`` (capped at ``limit``), or -1 when unknown."""
    try:
        if isinstance(data, tuple | list) and len(data) == 2:
            total = len(data[0])
        elif hasattr(data, "dataset"):
            total = len(data.dataset)
        else:
            total = len(data)
    except TypeError:
        return -1
    return min(total, limit) if limit is not None else total


def batches(
    data: Any, batch_size: int, limit: int | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """``(x, y)`` batches of a tensor pair, a Dataset or a DataLoader, at most ``limit``
    examples in all."""
    done, cap = 0, math.inf if limit is None else limit
    for xb, yb in _raw_batches(data, batch_size):
        if done >= cap:
            return
        if done + len(xb) > cap:
            keep = int(cap - done)
            xb, yb = xb[:keep], yb[:keep]
        done += len(xb)
        yield xb, yb


def _raw_batches(data: Any, batch_size: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]
        return
    from torch.utils.data import DataLoader, Dataset

    if isinstance(data, DataLoader):
        loader: Any = data
    elif isinstance(data, Dataset):
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    else:
        raise DataError(
            "run_loader needs a DataLoader, a Dataset of (x, y) items or an (x, y) tensor "
            f"pair, got {type(data).__name__}"
        )
    for batch in loader:
        if not isinstance(batch, tuple | list) or len(batch) < 2:
            raise DataError("each batch must be an (x, y) pair")
        yield batch[0], batch[1]
