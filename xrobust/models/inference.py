"""Forward-only probes of a classifier: probabilities, confidence along directions, and a
query counter. They need no gradients, so they work on any model that answers batches.

The dashboard's pages use these instead of doing tensor maths themselves.

Example:
    >>> import torch
    >>> from xrobust.models.inference import (
    ...     confidence_along, count_queries, predict_proba, random_directions)
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> x = torch.rand(5, 4)
    >>> with count_queries(model) as q:
    ...     p = predict_proba(model, x)
    >>> tuple(p.shape), q.queries
    ((5, 3), 5)
    >>> d = random_directions(x, "linf", k=2, seed=0)
    >>> confidence_along(model, x, torch.zeros(5, dtype=torch.long), d[0], [0.0, 0.1]).shape
    torch.Size([5, 2])
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xrobust._modelstate import eval_mode as _eval
from xrobust.errors import ConfigError, DataError
from xrobust.norms import Norm, get_norm

__all__ = [
    "QueryCount",
    "confidence_along",
    "count_queries",
    "dataset_statistics",
    "direction_to",
    "predict_proba",
    "random_directions",
    "unit_direction",
]


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    if p is None:
        b = next(model.buffers(), None)
        return b.device if b is not None else torch.device("cpu")
    return p.device


def predict_proba(model: Any, x: torch.Tensor, *, batch_size: int = 256) -> torch.Tensor:
    """Softmax probabilities of a logit model on a batch, in eval mode and without gradients.

    Args:
        model: a module returning logits (N, C), or a
            :class:`~xrobust.models.classifier.Classifier` (its declared output kind says
            whether its scores are logits, probabilities or one-hot labels).
        x: inputs (N, ...).
        batch_size: rows per forward pass.

    Returns:
        float32 probabilities (N, C) on the CPU. The model's mode is restored.
    """
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
    from xrobust.models.classifier import Classifier

    if isinstance(model, Classifier):
        parts = [
            model.scores(x[i : i + batch_size]).float().cpu() for i in range(0, len(x), batch_size)
        ]
        if not parts:
            return torch.empty(0, 0)
        s = torch.cat(parts)
        return torch.softmax(s, 1) if model.output == "logits" else s
    dev = _device(model)
    out = []
    with _eval(model), torch.no_grad():
        for i in range(0, x.shape[0], batch_size):
            logits = model(x[i : i + batch_size].to(dev))
            if logits.ndim != 2:
                raise DataError(f"the model returned shape {tuple(logits.shape)}; expected (N, C)")
            out.append(torch.softmax(logits.float(), 1).cpu())
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out)


def unit_direction(delta: torch.Tensor, norm: str | Norm) -> torch.Tensor:
    """Each row of ``delta`` scaled to norm 1 in ``norm`` (a name of
    :func:`xrobust.norms.list_norms` or a norm object); zero rows stay 0."""
    return get_norm(norm).normalize(delta)


def direction_to(x: torch.Tensor, x_to: torch.Tensor, norm: str | Norm) -> torch.Tensor:
    """Unit directions (in ``norm``) from each row of ``x`` towards ``x_to`` (e.g. its
    adversarial example); 0 where the two are equal."""
    if x.shape != x_to.shape:
        raise DataError(f"shapes differ: {tuple(x.shape)} and {tuple(x_to.shape)}")
    return unit_direction(x_to.float() - x.float(), norm)


def random_directions(x: torch.Tensor, norm: str | Norm, k: int, seed: int = 0) -> torch.Tensor:
    """``k`` random unit directions per example: (k, N, ...), from the norm's
    :meth:`~xrobust.norms.Norm.random_unit` (Linf: random signs, a corner of the ball;
    L2: Gaussian directions scaled to norm 1). Seeded, drawn on the CPU."""
    n = get_norm(norm)
    if k < 1:
        raise ConfigError(f"k must be >= 1, got {k}")
    g = torch.Generator().manual_seed(int(seed))
    return n.random_unit((k * x.shape[0], *x.shape[1:]), g).reshape(k, *x.shape)


def confidence_along(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    direction: torch.Tensor,
    magnitudes: Sequence[float],
    *,
    bounds: tuple[float, float] | None = None,
    batch_size: int = 256,
) -> torch.Tensor:
    """Probability of class ``y`` at ``x + m * direction`` (clipped to ``bounds``) for each
    magnitude ``m``: a (N, M) tensor. With a unit ``direction`` in some norm, ``m`` is the
    distance from ``x`` in that norm (before clipping)."""
    if direction.shape != x.shape:
        raise DataError(
            f"direction of shape {tuple(direction.shape)} does not match x {tuple(x.shape)}"
        )
    mags = [float(m) for m in magnitudes]
    if not mags:
        raise ConfigError("confidence_along needs at least one magnitude")
    yy = y.long().cpu()
    cols = []
    for m in mags:
        xm = x + m * direction.to(x.dtype)
        if bounds is not None:
            xm = xm.clamp(float(bounds[0]), float(bounds[1]))
        p = predict_proba(model, xm, batch_size=batch_size)
        cols.append(p.gather(1, yy.view(-1, 1)).squeeze(1))
    return torch.stack(cols, 1)


def dataset_statistics(
    dataset: object, limit: int | None = 5000
) -> tuple[torch.Tensor, torch.Tensor] | tuple[None, None]:
    """Per-feature mean and (population) standard deviation of a dataset's inputs, over at
    most ``limit`` examples: what the tabular corruptions (``missing_features``,
    ``feature_noise``) need. ``(None, None)`` for an empty dataset."""
    from xrobust.data import as_tensors

    x, _ = as_tensors(dataset, limit=limit)
    if len(x) == 0:
        return None, None
    return x.mean(0), x.std(0, unbiased=False)


@dataclass
class QueryCount:
    """Model evaluations seen by :func:`count_queries`: ``queries`` counts examples (rows)
    and ``calls`` counts forward calls."""

    queries: int = 0
    calls: int = 0


@contextlib.contextmanager
def count_queries(model: Any) -> Iterator[QueryCount]:
    """Count the rows the model evaluates inside the ``with`` block (forward hook; the
    hook is removed on exit, the model is otherwise untouched). A
    :class:`~xrobust.models.classifier.Classifier` counts by itself: the block's share of
    its counters is reported."""
    counter = QueryCount()
    from xrobust.models.classifier import Classifier

    if isinstance(model, Classifier):
        q0, c0 = model.queries, model.calls
        try:
            yield counter
        finally:
            counter.queries, counter.calls = model.queries - q0, model.calls - c0
        return

    def hook(_m: nn.Module, args: tuple, _out: object) -> None:
        counter.calls += 1
        if args and isinstance(args[0], torch.Tensor) and args[0].ndim > 0:
            counter.queries += int(args[0].shape[0])

    handle = model.register_forward_hook(hook)
    try:
        yield counter
    finally:
        handle.remove()
