"""Normalisation inside the model, so that attacks and explainers work in input space.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from xrobust.models.normalize import NormalizedModel, Normalize
    >>> m = NormalizedModel(Normalize((0.5,), (0.25,), input_ndim=3), nn.Flatten())
    >>> m(torch.ones(1, 1, 2, 2)).tolist()
    [[2.0, 2.0, 2.0, 2.0]]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from xrobust.errors import ConfigError

__all__ = ["Normalize", "NormalizedModel"]


class Normalize(nn.Module):
    """``(x - mean) / std`` per channel (images, C x H x W) or per feature (tabular, (F,)).

    Args:
        mean: one value per channel/feature (or a single value for all).
        std: same length as ``mean``; every value must be finite and > 0.
        input_ndim: number of dimensions of one input without the batch dimension
            (3 for C x H x W images, 1 for feature vectors).
    """

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, mean: Sequence[float], std: Sequence[float], input_ndim: int = 3) -> None:
        super().__init__()
        mean_t = torch.as_tensor(list(mean), dtype=torch.float32).flatten()
        std_t = torch.as_tensor(list(std), dtype=torch.float32).flatten()
        if mean_t.numel() == 0 or mean_t.numel() != std_t.numel():
            raise ConfigError(
                f"normalisation mean and std must be non-empty and of equal length, "
                f"got {mean_t.numel()} and {std_t.numel()} values"
            )
        if not all(math.isfinite(v) and v > 0 for v in std_t.tolist()):
            raise ConfigError(f"normalisation std must be finite and > 0, got {std_t.tolist()}")
        if not all(math.isfinite(v) for v in mean_t.tolist()):
            raise ConfigError(f"normalisation mean must be finite, got {mean_t.tolist()}")
        if input_ndim < 1:
            raise ConfigError(f"input_ndim must be >= 1, got {input_ndim}")
        # Broadcast over the first non-batch dimension: (C, 1, 1) for images, (F,) for vectors.
        view = (-1,) + (1,) * (input_ndim - 1)
        self.input_ndim = int(input_ndim)
        self.register_buffer("mean", mean_t.view(view))
        self.register_buffer("std", std_t.view(view))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"mean={self.mean.flatten().tolist()}, std={self.std.flatten().tolist()}"


class NormalizedModel(nn.Module):
    """A network preceded by a :class:`Normalize` layer; takes inputs in input space.

    Attributes:
        normalize: the normalisation layer.
        net: the wrapped network, which sees normalised inputs.
    """

    def __init__(self, normalize: Normalize, net: nn.Module) -> None:
        super().__init__()
        self.normalize = normalize
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(self.normalize(x))
