"""Pure tensor maths shared by every gradient attack: the losses, and name-based
shortcuts to the norm objects of :mod:`xrobust.attacks.norms` (projections, steps,
random starts).

Every function works on a batch (first dimension N) of any shape, takes ``eps`` as a
float or a per-example tensor of shape (N,), and has no side effects. Nothing here
assumes softmax outputs: losses take raw logits.

Example:
    >>> import torch
    >>> from xrobust.attacks import _functional as F
    >>> d = torch.tensor([[3.0, 4.0]])
    >>> F.lp_norm(d, "l2")
    tensor([5.])
    >>> F.project(d, 1.0, "l2")
    tensor([[0.6000, 0.8000]])
"""

from __future__ import annotations

import torch
import torch.nn.functional as tF

from xrobust.attacks import norms as _norms
from xrobust.errors import ConfigError

__all__ = [
    "NORMS",
    "ball_bounds",
    "ce_loss",
    "clip_to_ball_and_bounds",
    "dlr_loss",
    "dlr_targeted_loss",
    "gradient_step",
    "lp_norm",
    "margin_loss",
    "normalize",
    "per_example_loss",
    "project",
    "random_start",
]

NORMS: tuple[str, ...] = tuple(_norms.NORMS)
_TINY = 1e-12


def check_norm(norm: str) -> str:
    """Normalise a norm name ("linf", "Linf", "inf", "l2", "L2", "2") or raise ConfigError."""
    return _norms.get_norm(norm).name


def lp_norm(delta: torch.Tensor, norm: str) -> torch.Tensor:
    """Per-example norm of ``delta`` (shape (N, ...)) -> shape (N,)."""
    return _norms.get_norm(norm).measure(delta)


def normalize(g: torch.Tensor, norm: str) -> torch.Tensor:
    """The steepest-ascent direction of unit ``norm`` for gradient ``g``.

    For linf it is ``sign(g)``; for l2 it is ``g / ||g||_2`` (zero where g is zero).
    """
    return _norms.get_norm(norm).direction(g)


def project(delta: torch.Tensor, eps: float | torch.Tensor, norm: str) -> torch.Tensor:
    """Project perturbations onto the ``norm`` ball of radius ``eps`` (per example)."""
    return _norms.get_norm(norm).project(delta, eps)


def ball_bounds(
    x: torch.Tensor, eps: float | torch.Tensor, bounds: tuple[float, float] | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise lower/upper limits of the linf ball intersected with the bounds."""
    e = eps.reshape(-1, *([1] * (x.dim() - 1))) if isinstance(eps, torch.Tensor) else eps
    lo, hi = x - e, x + e
    if bounds is not None:
        lo = lo.clamp_min(bounds[0])
        hi = hi.clamp_max(bounds[1])
    return lo, hi


def clip_to_ball_and_bounds(
    x_adv: torch.Tensor,
    x: torch.Tensor,
    eps: float | torch.Tensor,
    norm: str,
    bounds: tuple[float, float] | None,
) -> torch.Tensor:
    """Project ``x_adv`` onto the eps-ball around ``x``, then clip to ``bounds``."""
    return _norms.get_norm(norm).clip(x_adv, x, eps, bounds)


def gradient_step(
    x_adv: torch.Tensor,
    grad: torch.Tensor,
    step_size: float | torch.Tensor,
    norm: str,
) -> torch.Tensor:
    """One ascent step of size ``step_size`` along the normalised gradient."""
    return _norms.get_norm(norm).step(x_adv, grad, step_size)


def random_start(
    x: torch.Tensor,
    eps: float | torch.Tensor,
    norm: str,
    bounds: tuple[float, float] | None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """A point drawn uniformly from the ``norm`` ball of radius ``eps`` around ``x``,
    clipped to ``bounds`` (see :meth:`xrobust.attacks.norms.Norm.random_start`)."""
    return _norms.get_norm(norm).random_start(x, eps, bounds, generator)


# --------------------------------------------------------------------------- losses
# All losses return one value per example (shape (N,)) to be maximised by the attack.


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of raw logits against labels (per example)."""
    return tF.cross_entropy(logits, y, reduction="none")


def _other_max(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """max_{j != y} logits_j per example."""
    masked = logits.scatter(1, y[:, None], float("-inf"))
    return masked.amax(dim=1)


def margin_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Carlini-Wagner style logit margin ``max_{j != y} z_j - z_y`` (positive = fooled)."""
    return _other_max(logits, y) - logits.gather(1, y[:, None]).squeeze(1)


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Difference of Logits Ratio (Croce and Hein 2020), untargeted; needs >= 3 classes."""
    zs, ind = logits.sort(dim=1)
    top_is_y = (ind[:, -1] == y).to(logits.dtype)
    zy = logits.gather(1, y[:, None]).squeeze(1)
    num = zy - zs[:, -2] * top_is_y - zs[:, -1] * (1.0 - top_is_y)
    return -num / (zs[:, -1] - zs[:, -3] + _TINY)


def dlr_targeted_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR loss (Croce and Hein 2020); needs >= 4 classes."""
    zs, _ = logits.sort(dim=1)
    zy = logits.gather(1, y[:, None]).squeeze(1)
    zt = logits.gather(1, target[:, None]).squeeze(1)
    return -(zy - zt) / (zs[:, -1] - 0.5 * (zs[:, -3] + zs[:, -4]) + _TINY)


def per_example_loss(
    name: str, logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None = None
) -> torch.Tensor:
    """Loss ``name`` ("ce", "margin", "dlr") per example, oriented so that higher is
    better for the attacker. With ``target`` the loss pulls towards the target class."""
    if target is None:
        if name == "ce":
            return ce_loss(logits, y)
        if name == "margin":
            return margin_loss(logits, y)
        if name == "dlr":
            return dlr_loss(logits, y)
    else:
        if name == "ce":
            return -ce_loss(logits, target)
        if name == "margin":
            return -margin_loss(logits, target)
        if name == "dlr":
            return dlr_targeted_loss(logits, y, target)
    raise ConfigError(f"unknown loss {name!r}; expected 'ce', 'margin' or 'dlr'")
