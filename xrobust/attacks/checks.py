"""Sanity checks on a model under attack, as pure functions returning findings.

Attacks call them and turn findings into :class:`AttackWarning`s; the audit calls the
same functions to report them.

Example:
    >>> import torch
    >>> from xrobust.attacks.checks import output_looks_like_probabilities
    >>> output_looks_like_probabilities(torch.softmax(torch.randn(4, 3), 1))
    True
    >>> output_looks_like_probabilities(torch.randn(4, 3) * 5)
    False
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from xrobust._modelstate import frozen_eval
from xrobust.validation import looks_like_probabilities

__all__ = [
    "AttackWarning",
    "GradientStats",
    "gradient_stats",
    "gradient_stats_from_grad",
    "model_in_train_mode",
    "output_looks_like_probabilities",
]


class AttackWarning(UserWarning):
    """A finding that makes an attack's result less trustworthy (probability outputs,
    vanishing or non-finite gradients, a model left in train mode)."""


def output_looks_like_probabilities(logits: torch.Tensor, atol: float = 1e-3) -> bool:
    """True when model outputs look like probabilities rather than logits.

    The one definition shared with the explainers and the audit
    (:func:`xrobust.validation.looks_like_probabilities`): every row is non-negative and
    sums to 1 (softmax), or every value lies in [0, 1] (sigmoid) with more than one class.
    Gradient attacks on such outputs saturate (the cross-entropy applies a second
    softmax), which makes models look more robust than they are.
    """
    return looks_like_probabilities(logits, atol)


def model_in_train_mode(model: nn.Module) -> bool:
    """True when a submodule whose output can depend on the mode is in train mode.

    Dropout and normalisation layers depend on it, and so may any module defined outside
    ``torch.nn`` (its ``forward`` can read ``self.training``); plain torch.nn layers such
    as Linear, Conv or ReLU do not, so a freshly built ``nn.Sequential`` of them is fine.
    """
    for m in model.modules():
        if not m.training:
            continue
        if isinstance(m, _MODE_DEPENDENT) or not type(m).__module__.startswith("torch.nn"):
            return True
    return False


_MODE_DEPENDENT = (
    nn.modules.dropout._DropoutNd,
    nn.modules.batchnorm._NormBase,
    nn.AlphaDropout,
)


@dataclass(frozen=True)
class GradientStats:
    """Input-gradient health for a batch.

    Attributes:
        n: number of examples.
        zero_fraction: fraction of examples whose input gradient is exactly zero.
        nonfinite_fraction: fraction of examples with a NaN or infinite gradient entry.
        mean_abs: mean absolute gradient value over the finite entries.
    """

    n: int
    zero_fraction: float
    nonfinite_fraction: float
    mean_abs: float

    @property
    def healthy(self) -> bool:
        """No example has a zero or non-finite gradient."""
        return self.zero_fraction == 0.0 and self.nonfinite_fraction == 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {**asdict(self), "healthy": self.healthy}


def gradient_stats_from_grad(grad: torch.Tensor) -> GradientStats:
    """Statistics of an input gradient of shape (N, ...)."""
    flat = grad.detach().reshape(grad.shape[0], -1).float()
    n = flat.shape[0]
    if n == 0:
        return GradientStats(0, 0.0, 0.0, 0.0)
    finite = torch.isfinite(flat)
    nonfinite = (~finite).any(dim=1)
    zero = (flat == 0).all(dim=1)
    vals = flat[finite].abs()
    return GradientStats(
        n=n,
        zero_fraction=float(zero.float().mean()),
        nonfinite_fraction=float(nonfinite.float().mean()),
        mean_abs=float(vals.mean()) if vals.numel() else 0.0,
    )


def gradient_stats(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> GradientStats:
    """Cross-entropy input-gradient statistics of ``model`` at ``(x, y)``.

    The model is evaluated in eval mode (restored afterwards) and no parameter gradient
    is computed or left behind.
    """
    with frozen_eval(model):
        xg = x.detach().clone().requires_grad_(True)
        with torch.enable_grad():
            logits = model(xg)
            loss = torch.nn.functional.cross_entropy(logits.float(), y, reduction="sum")
            (g,) = torch.autograd.grad(loss, xg)
        return gradient_stats_from_grad(g)
