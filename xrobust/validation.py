"""Checks shared by the attacks, the explainers and the audit.

One definition of each fact the layers test about their inputs and a model's outputs, so
that two layers can never disagree about them (e.g. whether a model "returns
probabilities"). Every check raises a :class:`~xrobust.errors.XRobustError` subclass with
a message that says what was expected, or returns a plain answer.

* :func:`probability_kind` / :func:`looks_like_probabilities`: softmax or sigmoid outputs
  where logits are expected.
* :func:`check_batch`: a non-empty floating-point batch (N, ...) without NaN or Inf.
* :func:`check_labels`: integer class labels (N,) matching a batch.
* :func:`check_in_bounds`: inputs inside the valid input range.
* :func:`check_logits`: model outputs of shape (N, C).

Example:
    >>> import torch
    >>> from xrobust.validation import looks_like_probabilities, probability_kind
    >>> probability_kind(torch.softmax(torch.randn(4, 3), 1))
    'softmax'
    >>> probability_kind(torch.sigmoid(torch.randn(4, 3)))
    'sigmoid'
    >>> looks_like_probabilities(torch.randn(4, 3) * 5)
    False
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import torch

from xrobust.errors import DataError, ModelError

__all__ = [
    "ProbabilityKind",
    "check_batch",
    "check_in_bounds",
    "check_labels",
    "check_logits",
    "looks_like_probabilities",
    "output_determinism",
    "probability_kind",
]

ProbabilityKind = Literal["softmax", "sigmoid"]

#: how far outside [0, 1] (and a row sum away from 1) outputs may be and still count as
#: probabilities
PROBABILITY_ATOL = 1e-3


def probability_kind(out: torch.Tensor, atol: float = PROBABILITY_ATOL) -> ProbabilityKind | None:
    """What kind of probabilities model outputs ``out`` (N, C) look like, or None (logits).

    ``"softmax"``: every row is non-negative and sums to 1. ``"sigmoid"``: every value lies
    in [0, 1] (more than one class). Gradient attacks on such outputs saturate (the
    cross-entropy applies a second softmax), which makes models look more robust than they
    are. Empty, non-finite, one-column or non-2-D outputs give None.

    Example:
        >>> import torch
        >>> probability_kind(torch.tensor([[0.2, 0.8], [0.5, 0.5]]))
        'softmax'
        >>> probability_kind(torch.tensor([[2.0, -1.0]])) is None
        True
    """
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] == 0:
        return None
    if out.shape[1] < 2:
        return None
    z = out.detach().double()
    if not bool(torch.isfinite(z).all()):
        return None
    if not bool((z >= -atol).all()):
        return None
    if bool(((z.sum(dim=1) - 1).abs() <= atol).all()):
        return "softmax"
    if bool((z <= 1 + atol).all()):
        return "sigmoid"
    return None


def looks_like_probabilities(out: torch.Tensor, atol: float = PROBABILITY_ATOL) -> bool:
    """True when model outputs look like probabilities (softmax or sigmoid) rather than
    logits; see :func:`probability_kind`.

    Example:
        >>> import torch
        >>> looks_like_probabilities(torch.softmax(torch.randn(4, 3), 1))
        True
    """
    return probability_kind(out, atol) is not None


def check_batch(x: Any, *, name: str = "x") -> torch.Tensor:
    """``x`` as a non-empty floating-point batch (N, ...) with N >= 1 and no NaN or Inf.

    Raises:
        DataError: not a tensor, no batch dimension, empty, integer dtype, NaN or Inf.

    Example:
        >>> import torch
        >>> check_batch(torch.zeros(2, 3)).shape
        torch.Size([2, 3])
    """
    if not isinstance(x, torch.Tensor):
        raise DataError(f"{name} must be a torch.Tensor batch, got {type(x).__name__}")
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(
            f"{name} must be a non-empty batch of shape (N, ...) with N >= 1, got shape "
            f"{tuple(x.shape)} (add a batch dimension with {name}.unsqueeze(0))"
        )
    if not x.is_floating_point():
        raise DataError(
            f"{name} must be floating point, got {x.dtype}; convert with {name}.float()"
        )
    # a sum is finite exactly when no element is NaN/Inf (barring float overflow, which the
    # exact check then clears); cheaper than materialising isfinite(x) on every call
    if not bool(torch.isfinite(x.sum())) and not bool(torch.isfinite(x).all()):
        raise DataError(f"{name} contains NaN or Inf values")
    return x


def check_labels(
    y: Any, n: int, *, num_classes: int | None = None, name: str = "labels"
) -> torch.Tensor:
    """``y`` as integer class labels of shape (n,), each in [0, num_classes).

    Raises:
        DataError: wrong shape, floating-point or bool dtype, negative, or a class the
            model does not have.

    Example:
        >>> import torch
        >>> check_labels(torch.tensor([0, 2]), 2, num_classes=3).tolist()
        [0, 2]
    """
    if not isinstance(y, torch.Tensor):
        try:
            y = torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"{name} must be a tensor or array, got {type(y).__name__}") from exc
    if y.dim() != 1 or y.shape[0] != n:
        raise DataError(f"{name} must have shape ({n},) to match the inputs, got {tuple(y.shape)}")
    if y.is_floating_point() or y.dtype == torch.bool or y.is_complex():
        raise DataError(f"{name} must be integer class indices, got dtype {y.dtype}")
    if n and int(y.min()) < 0:
        raise DataError(f"{name} must be >= 0, got {int(y.min())}")
    if n and num_classes is not None and int(y.max()) >= num_classes:
        raise DataError(
            f"{name} go up to {int(y.max())} but the model has {num_classes} outputs "
            f"(classes 0..{num_classes - 1})"
        )
    return y


def check_in_bounds(
    x: torch.Tensor, bounds: Sequence[float] | None, *, tol: float = 1e-6, name: str = "inputs"
) -> None:
    """Raise when ``x`` leaves ``bounds`` = (low, high) by more than ``tol`` (None: no bounds).

    Raises:
        DataError: naming the range found and what to pass instead.

    Example:
        >>> import torch
        >>> check_in_bounds(torch.rand(2, 3), (0.0, 1.0))
    """
    if bounds is None or x.numel() == 0:
        return
    lo_b, hi_b = float(bounds[0]), float(bounds[1])
    lo, hi = float(x.min()), float(x.max())
    if lo < lo_b - tol or hi > hi_b + tol:
        raise DataError(
            f"{name} range over [{lo:.4g}, {hi:.4g}], outside the bounds ({lo_b:g}, {hi_b:g}); "
            "pass bounds=(low, high) matching your data (inputs are expected in input space, "
            "normalisation inside the model)"
        )


def check_logits(
    out: Any,
    n: int,
    *,
    num_classes: int | None = None,
    min_classes: int = 2,
    finite: bool = False,
) -> torch.Tensor:
    """``out`` as model outputs of shape (n, C), C >= min_classes (== num_classes if given).

    Args:
        out: what the model returned for a batch of ``n``.
        n: the batch size.
        num_classes: the number of classes the outputs must have.
        min_classes: the fewest outputs per example accepted (attacks need 2; an
            explainer can attribute a single score).
        finite: also require every output to be finite.

    Raises:
        ModelError: not a tensor, wrong shape, a single output, or (``finite``) NaN/Inf.

    Example:
        >>> import torch
        >>> check_logits(torch.zeros(4, 3), 4).shape
        torch.Size([4, 3])
    """
    if not isinstance(out, torch.Tensor):
        raise ModelError(
            f"the model returned {type(out).__name__}; expected a tensor of logits of shape "
            f"(N, classes) for a batch of N = {n}"
        )
    if out.dim() != 2 or out.shape[0] != n:
        want = f"({n}, {num_classes})" if num_classes is not None else f"({n}, classes)"
        raise ModelError(
            f"the model must return logits of shape (N, classes) for a batch of N; got "
            f"{tuple(out.shape)}, expected {want}"
        )
    if out.shape[1] < min_classes:
        raise ModelError(
            "the model returns a single output; expected one logit per class (N, C >= 2)"
        )
    if num_classes is not None and out.shape[1] != num_classes:
        raise ModelError(
            f"the model returns {out.shape[1]} outputs per example; expected one logit for "
            f"each of the {num_classes} classes"
        )
    if finite and not bool(torch.isfinite(out).all()):
        raise ModelError("the model returned NaN or infinite outputs")
    return out


def output_determinism(forward: Any, x: torch.Tensor, rtol: float = 1e-5) -> dict[str, Any]:
    """Ask ``forward`` twice about the same inputs: ``{"deterministic", "max_abs_diff",
    "changed_predictions", "n"}``. Outputs may differ by ``rtol * (1 + max |output|)``
    (float noise of batched kernels); more means dropout left on, a random layer or a
    noisy server: attacks then chase noise and robust accuracy is not reproducible.

    Example:
        >>> import torch
        >>> output_determinism(torch.nn.Linear(3, 2).eval(), torch.rand(4, 3))["deterministic"]
        True
    """
    with torch.no_grad():
        a = torch.as_tensor(forward(x)).detach().float().cpu()
        b = torch.as_tensor(forward(x)).detach().float().cpu()
    diff = float((a - b).abs().max()) if a.numel() else 0.0
    scale = float(a.abs().max()) if a.numel() else 1.0
    flips = int((a.argmax(1) != b.argmax(1)).sum()) if a.numel() and a.dim() == 2 else 0
    return {
        "deterministic": diff <= rtol * (1.0 + scale),
        "max_abs_diff": diff,
        "changed_predictions": flips,
        "n": len(x),
    }
