"""Common corruptions at five severities, in plain torch.

Image corruptions act on batches ``(N, C, H, W)``; tabular ones on ``(N, F)``. Every
corruption keeps the result inside the data bounds, keeps dtype and device, and draws its
randomness from an explicit ``torch.Generator`` so that a chunk of examples is corrupted
identically whether the audit runs in one process or is sharded across ranks.

Severities follow the spirit of Hendrycks and Dietterich, "Benchmarking Neural Network
Robustness to Common Corruptions and Perturbations" (arXiv:1903.12261): 1 is mild, 5 is
severe. Parameters are expressed relative to the data range ``high - low`` so that they
mean the same on [0, 1] and [0, 255] data.

Example:
    >>> import torch
    >>> from xrobust.audit.corruptions import corrupt
    >>> x = torch.rand(2, 1, 8, 8)
    >>> y = corrupt("gaussian_noise", x, 3, bounds=(0.0, 1.0), generator=torch.Generator().manual_seed(0))
    >>> y.shape == x.shape and bool((y >= 0).all() and (y <= 1).all())
    True
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from xrobust.errors import ConfigError, DataError
from xrobust.registry import Registry

__all__ = ["CORRUPTIONS", "Corruption", "corrupt", "list_corruptions"]


@dataclass(frozen=True)
class Corruption:
    """A registered corruption.

    Attributes:
        name: registry name.
        modality: "image" or "tabular".
        fn: ``fn(x, level, ctx) -> corrupted x`` where ``level`` is the severity's
            parameter from ``levels``.
        levels: the parameter for severities 1..5.
        description: what the parameter means.
    """

    name: str
    modality: str
    fn: Callable[[torch.Tensor, float, _Ctx], torch.Tensor]
    levels: tuple[float, float, float, float, float]
    description: str


@dataclass
class _Ctx:
    low: float
    high: float
    generator: torch.Generator
    train_mean: torch.Tensor | None
    feature_std: torch.Tensor | None

    @property
    def span(self) -> float:
        return self.high - self.low


CORRUPTIONS: Registry[Corruption] = Registry("corruption")


def _register(name: str, modality: str, levels: tuple[float, ...], description: str):
    def deco(fn: Callable) -> Callable:
        CORRUPTIONS.register(name)(Corruption(name, modality, fn, tuple(levels), description))  # type: ignore[arg-type]
        return fn

    return deco


def _randn(shape: torch.Size, ctx: _Ctx, like: torch.Tensor) -> torch.Tensor:
    return torch.randn(shape, generator=ctx.generator, dtype=torch.float32).to(
        like.device, like.dtype
    )


# ----------------------------------------------------------------------- images
@_register(
    "gaussian_noise",
    "image",
    (0.04, 0.08, 0.12, 0.18, 0.26),
    "additive Gaussian noise, std as a fraction of the data range",
)
def _gaussian_noise(x: torch.Tensor, level: float, ctx: _Ctx) -> torch.Tensor:
    return x + level * ctx.span * _randn(x.shape, ctx, x)


def _gaussian_kernel(sigma: float, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    radius = max(1, math.ceil(3 * sigma))
    t = torch.arange(-radius, radius + 1, device=device, dtype=torch.float64)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    return (k / k.sum()).to(dtype)


@_register(
    "gaussian_blur",
    "image",
    (0.5, 0.75, 1.0, 1.5, 2.0),
    "Gaussian blur, sigma in pixels at 28 pixels (scaled with the image size)",
)
def _gaussian_blur(x: torch.Tensor, level: float, ctx: _Ctx) -> torch.Tensor:
    _, c, h, w = x.shape
    sigma = level * max(h, w) / 28.0
    k = _gaussian_kernel(sigma, x.device, x.dtype)
    r = (k.numel() - 1) // 2
    mode = "reflect" if min(h, w) > r else "replicate"
    y = F.pad(x, (r, r, 0, 0), mode=mode)
    y = F.conv2d(y, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    y = F.pad(y, (0, 0, r, r), mode=mode)
    return F.conv2d(y, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


@_register(
    "brightness",
    "image",
    (0.1, 0.2, 0.3, 0.4, 0.5),
    "added brightness, as a fraction of the data range",
)
def _brightness(x: torch.Tensor, level: float, ctx: _Ctx) -> torch.Tensor:
    return x + level * ctx.span


@_register(
    "contrast",
    "image",
    (0.75, 0.5, 0.4, 0.3, 0.15),
    "contrast factor around each image's mean (1 = unchanged)",
)
def _contrast(x: torch.Tensor, level: float, ctx: _Ctx) -> torch.Tensor:
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * level + mean


@_register(
    "occlusion",
    "image",
    (0.15, 0.25, 0.35, 0.45, 0.55),
    "one square patch at a random position, side as a fraction of the image side, "
    "filled with the lower bound",
)
def _occlusion(x: torch.Tensor, level: float, ctx: _Ctx) -> torch.Tensor:
    n, _, h, w = x.shape
    ph, pw = max(1, round(level * h)), max(1, round(level * w))
    top = torch.randint(0, h - ph + 1, (n,), generator=ctx.generator)
    left = torch.randint(0, w - pw + 1, (n,), generator=ctx.generator)
    rows = torch.arange(h).view(1, h, 1)
    cols = torch.arange(w).view(1, 1, w)
    mask = (
        (rows >= top.view(n, 1, 1))
        & (rows < (top + ph).view(n, 1, 1))
        & (cols >= left.view(n, 1, 1))
        & (cols < (left + pw).view(n, 1, 1))
    )
    mask = mask.unsqueeze(1).to(x.device)
    return torch.where(mask, torch.full_like(x, ctx.low), x)


# ----------------------------------------------------------------------- tabular
@_register(
    "feature_noise",
    "tabular",
    (0.1, 0.25, 0.5, 0.75, 1.0),
    "additive Gaussian noise, std as a multiple of each feature's training std",
)
def _feature_noise(x: torch.Tensor, level: float, ctx: _Ctx) -> torch.Tensor:
    std = ctx.feature_std if ctx.feature_std is not None else torch.ones(x.shape[1:])
    return x + level * std.to(x.device, x.dtype) * _randn(x.shape, ctx, x)


@_register(
    "missing_features",
    "tabular",
    (0.1, 0.2, 0.3, 0.4, 0.5),
    "fraction of features (chosen at random per example) replaced by the training mean",
)
def _missing_features(x: torch.Tensor, level: float, ctx: _Ctx) -> torch.Tensor:
    if ctx.train_mean is None:
        raise DataError("missing_features needs the training mean of the features")
    n, f = x.shape[0], int(x[0].numel())
    k = max(1, round(level * f))
    scores = torch.rand((n, f), generator=ctx.generator)
    idx = scores.argsort(dim=1)[:, :k]
    mask = torch.zeros((n, f), dtype=torch.bool).scatter_(1, idx, True).view(x.shape).to(x.device)
    mean = ctx.train_mean.to(x.device, x.dtype).reshape(1, *x.shape[1:]).expand_as(x)
    return torch.where(mask, mean, x)


# ----------------------------------------------------------------------- API
def list_corruptions(modality: str | None = None) -> list[str]:
    """Registered corruption names, optionally only those of one modality."""
    return [n for n, c in CORRUPTIONS.items() if modality is None or c.modality == modality]


def corrupt(
    name: str,
    x: torch.Tensor,
    severity: int,
    *,
    bounds: tuple[float, float],
    generator: torch.Generator | None = None,
    train_mean: torch.Tensor | None = None,
    feature_std: torch.Tensor | None = None,
) -> torch.Tensor:
    """Apply corruption ``name`` at ``severity`` (1..5) to a batch.

    Args:
        name: a registered corruption (see :func:`list_corruptions`).
        x: batch, ``(N, C, H, W)`` for image corruptions, ``(N, F)`` for tabular ones.
        severity: 1 (mild) to 5 (severe).
        bounds: (low, high) valid input range; the result is clipped to it.
        generator: CPU generator for the random parts (default: a fresh one seeded 0).
        train_mean: per-feature training mean (``missing_features``).
        feature_std: per-feature training std (``feature_noise``; default 1).

    Returns:
        The corrupted batch, same shape, dtype and device as ``x``.

    Raises:
        ConfigError: unknown corruption or severity outside 1..5.
        DataError: the batch's shape does not fit the corruption's modality.
    """
    c = CORRUPTIONS.get(name)
    if severity not in (1, 2, 3, 4, 5):
        raise ConfigError(f"severity must be an integer in 1..5, got {severity!r}")
    if c.modality == "image" and x.dim() != 4:
        raise DataError(f"{name} needs an image batch (N, C, H, W), got shape {tuple(x.shape)}")
    if c.modality == "tabular" and x.dim() != 2:
        raise DataError(f"{name} needs a tabular batch (N, F), got shape {tuple(x.shape)}")
    low, high = float(bounds[0]), float(bounds[1])
    if not math.isfinite(high - low):
        # unbounded data: measure the range on the batch itself
        low_t, high_t = float(x.min()), float(x.max())
        span_low, span_high = low_t, high_t
    else:
        span_low, span_high = low, high
    ctx = _Ctx(
        low=span_low,
        high=span_high,
        generator=generator if generator is not None else torch.Generator().manual_seed(0),
        train_mean=train_mean,
        feature_std=feature_std,
    )
    with torch.no_grad():
        y = c.fn(x, c.levels[severity - 1], ctx)
        return y.clamp(low, high) if math.isfinite(high - low) else y
