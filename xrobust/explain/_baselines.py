"""Baselines (reference inputs) for integrated gradients, deeplift, SHAP and ablations.

A baseline is given as a tensor, a number, or a name:

- ``"zeros"``: all zeros (the usual choice for images in [0, 1] and standardised tables);
- ``"blur"``: a Gaussian blur of the input itself (images), keeps low frequencies;
- ``"uniform"``: uniform noise within ``bounds`` (default: the batch's min and max);
- ``"mean"``: the mean of ``reference`` (e.g. the training data) for tabular data.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from xrobust.errors import ConfigError, DataError

__all__ = ["BASELINE_NAMES", "baseline_distribution", "blur", "resolve_baseline"]

BASELINE_NAMES = ("zeros", "blur", "uniform", "mean")

BaselineSpec = str | float | int | torch.Tensor | None


def blur(x: torch.Tensor, sigma: float | None = None) -> torch.Tensor:
    """Gaussian blur of an image batch (N, C, H, W), per channel, with reflect padding.

    ``sigma`` defaults to a tenth of the smaller side (at least 1 pixel).
    """
    if x.ndim != 4:
        raise DataError(
            f"the 'blur' baseline needs image batches (N, C, H, W), got shape {tuple(x.shape)};"
            " use 'zeros', 'mean' or 'uniform' for other data"
        )
    h, w = x.shape[-2:]
    sigma = float(sigma) if sigma is not None else max(1.0, min(h, w) / 10.0)
    radius = max(1, min(math.ceil(3 * sigma), min(h, w) - 1))
    k = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (k / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    out = F.pad(x, (radius, radius, 0, 0), mode="reflect")
    out = F.conv2d(out, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    out = F.pad(out, (0, 0, radius, radius), mode="reflect")
    return F.conv2d(out, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def _uniform(
    shape: tuple[int, ...], x: torch.Tensor, bounds: tuple[float, float] | None, seed: int
) -> torch.Tensor:
    lo, hi = bounds if bounds is not None else (float(x.min()), float(x.max()))
    if hi < lo:
        raise ConfigError(f"bounds must be (low, high) with low <= high, got {bounds}")
    g = torch.Generator(device="cpu").manual_seed(seed)
    u = torch.rand(shape, generator=g, dtype=torch.float32)
    return (lo + (hi - lo) * u).to(device=x.device, dtype=x.dtype)


def _reference_mean(x: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
    if reference is None:
        raise ConfigError(
            "the 'mean' baseline needs reference data: pass reference=x_train "
            "(rows like x) or its mean (shape of one input)"
        )
    ref = reference.detach().to(device=x.device, dtype=x.dtype)
    if ref.shape == x.shape[1:]:
        return ref.unsqueeze(0)
    if ref.ndim == x.ndim and ref.shape[1:] == x.shape[1:]:
        return ref.mean(0, keepdim=True)
    raise DataError(
        f"reference of shape {tuple(ref.shape)} does not fit inputs {tuple(x.shape[1:])}"
    )


def resolve_baseline(
    spec: BaselineSpec,
    x: torch.Tensor,
    *,
    reference: torch.Tensor | None = None,
    bounds: tuple[float, float] | None = None,
    sigma: float | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """One baseline per example: a tensor of x's shape, device and dtype.

    Example:
        >>> import torch
        >>> resolve_baseline("zeros", torch.ones(2, 3)).sum().item()
        0.0
    """
    if spec is None or (isinstance(spec, str) and spec.lower() in ("zeros", "zero")):
        return torch.zeros_like(x)
    if isinstance(spec, bool):
        raise ConfigError("baselines must be a tensor, a number or a name, not a bool")
    if isinstance(spec, int | float):
        return torch.full_like(x, float(spec))
    if isinstance(spec, torch.Tensor):
        b = spec.detach().to(device=x.device, dtype=x.dtype)
        if b.shape == x.shape[1:]:
            b = b.unsqueeze(0)
        try:
            return b.expand_as(x).clone()
        except RuntimeError as exc:
            raise DataError(
                f"baseline of shape {tuple(spec.shape)} does not fit inputs of shape "
                f"{tuple(x.shape)}; give one input's shape {tuple(x.shape[1:])} or the batch's"
            ) from exc
    if not isinstance(spec, str):
        raise ConfigError(f"baselines must be a tensor, a number or a name, got {spec!r}")
    name = spec.lower()
    if name == "blur":
        return blur(x, sigma)
    if name == "uniform":
        return _uniform(tuple(x.shape), x, bounds, seed)
    if name == "mean":
        return _reference_mean(x, reference).expand_as(x).clone()
    raise ConfigError(
        f"unknown baseline {spec!r}; expected one of {', '.join(BASELINE_NAMES)}, a number or a tensor"
    )


def baseline_distribution(
    spec: BaselineSpec,
    x: torch.Tensor,
    n: int,
    *,
    reference: torch.Tensor | None = None,
    bounds: tuple[float, float] | None = None,
    seed: int = 0,
) -> torch.Tensor:
    """Baselines for SHAP-style methods: a batch (B, *x.shape[1:]) drawn from the spec.

    ``"mean"`` with reference rows draws ``n`` of those rows (background data); ``"uniform"``
    draws ``n`` noise inputs; a tensor with the input's shape plus a leading dimension is
    used as is; other specs give a single baseline.
    """
    one = tuple(x.shape[1:])
    if isinstance(spec, torch.Tensor) and spec.ndim == x.ndim and tuple(spec.shape[1:]) == one:
        return spec.detach().to(device=x.device, dtype=x.dtype)
    if isinstance(spec, str) and spec.lower() == "uniform":
        return _uniform((n, *one), x, bounds, seed)
    if (
        isinstance(spec, str)
        and spec.lower() == "mean"
        and reference is not None
        and reference.ndim == x.ndim
        and tuple(reference.shape[1:]) == one
    ):
        g = torch.Generator(device="cpu").manual_seed(seed)
        idx = torch.randperm(reference.shape[0], generator=g)[:n]
        return reference[idx].detach().to(device=x.device, dtype=x.dtype)
    if isinstance(spec, str) and spec.lower() == "blur":
        raise ConfigError("'blur' depends on each input; it cannot be a baseline distribution")
    return resolve_baseline(spec, x[:1], reference=reference, bounds=bounds, seed=seed)


def describe(spec: Any) -> Any:
    """A JSON-friendly description of a baseline spec."""
    if isinstance(spec, torch.Tensor):
        return f"tensor{tuple(spec.shape)}"
    return spec
