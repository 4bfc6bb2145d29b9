"""Tabular helpers: named per-feature attributions and global importance.

Example:
    >>> import torch
    >>> gi = global_importance(torch.tensor([[1.0, -2.0], [3.0, 0.0]]), ["a", "b"])
    >>> gi.ranking()
    ['a', 'b']
    >>> gi.mean_abs
    [2.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch

from xrobust.errors import DataError
from xrobust.explain.base import Explanation

__all__ = ["GlobalImportance", "global_importance", "named_attributions"]


@dataclass
class GlobalImportance:
    """Mean |attribution| per feature over a set of examples, with its spread.

    Attributes:
        feature_names: one name per feature.
        mean_abs: mean of |attribution| per feature.
        std_abs: standard deviation of |attribution| per feature (0 for one example).
        mean_signed: mean signed attribution per feature (direction of the effect).
        n: number of examples.
        method: explainer that produced the attributions, if known.
    """

    feature_names: list[str]
    mean_abs: list[float]
    std_abs: list[float]
    mean_signed: list[float]
    n: int
    method: str | None = None

    def ranking(self) -> list[str]:
        """Feature names from most to least important."""
        order = sorted(range(len(self.mean_abs)), key=lambda i: -self.mean_abs[i])
        return [self.feature_names[i] for i in order]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GlobalImportance:
        """Inverse of :meth:`to_dict`."""
        return cls(**d)


def _as_2d(attributions: torch.Tensor | Explanation) -> tuple[torch.Tensor, str | None, Any]:
    if isinstance(attributions, Explanation):
        a, method, names = (
            attributions.attributions,
            attributions.method,
            attributions.feature_names,
        )
        if attributions.multi_target:
            raise DataError("global importance needs one target per example, not several")
    else:
        a, method, names = attributions, None, None
    if a.ndim != 2:
        raise DataError(
            f"tabular attributions must have shape (N, F), got {tuple(a.shape)}; for images "
            "use the heatmap figures instead"
        )
    return a.detach().float().cpu(), method, names


def global_importance(
    attributions: torch.Tensor | Explanation, feature_names: Sequence[str] | None = None
) -> GlobalImportance:
    """Global importance of tabular features: mean |attribution| with its spread.

    Args:
        attributions: (N, F) attributions or an :class:`Explanation` of them.
        feature_names: F names; default the explanation's, else "x0".."x{F-1}".
    """
    a, method, names = _as_2d(attributions)
    names = list(feature_names) if feature_names is not None else names
    f = a.shape[1]
    names = [str(n) for n in names] if names is not None else [f"x{i}" for i in range(f)]
    if len(names) != f:
        raise DataError(f"{len(names)} feature names for {f} features")
    absa = a.abs()
    std = absa.std(0, unbiased=False) if a.shape[0] > 1 else torch.zeros(f)
    return GlobalImportance(
        feature_names=names,
        mean_abs=absa.mean(0).tolist(),
        std_abs=std.tolist(),
        mean_signed=a.mean(0).tolist(),
        n=int(a.shape[0]),
        method=method,
    )


def named_attributions(
    explanation: Explanation, index: int = 0, feature_names: Sequence[str] | None = None
) -> dict[str, float]:
    """Attributions of one example as {feature name: value}, most important first."""
    a, _, names = _as_2d(explanation)
    names = list(feature_names) if feature_names is not None else names
    names = [str(n) for n in names] if names is not None else [f"x{i}" for i in range(a.shape[1])]
    row = a[index].tolist()
    pairs = sorted(zip(names, row), key=lambda kv: -abs(kv[1]))
    return dict(pairs)
