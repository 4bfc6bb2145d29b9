"""``small_cnn``: a LeNet-like CNN for small images (1x8x8, 1x28x28, any C x H x W >= 8)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from xrobust.data.spec import DatasetSpec
from xrobust.errors import ConfigError
from xrobust.models._build import MODELS

__all__ = ["SmallCNN", "small_cnn"]


class SmallCNN(nn.Module):
    """Two (conv 3x3 -> ReLU -> max-pool 2) stages, then a hidden linear layer and a head.

    Args:
        input_shape: (C, H, W) with H, W >= 8.
        num_classes: number of output logits.
        channels: output channels of the two conv stages.
        hidden: width of the hidden linear layer.
        dropout: dropout before the head.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_classes: int,
        channels: Sequence[int] = (16, 32),
        hidden: int = 64,
        dropout: float = 0.25,
    ) -> None:
        super().__init__()
        if len(input_shape) != 3:
            raise ConfigError(
                f"small_cnn needs image inputs C x H x W, got input shape {tuple(input_shape)}"
            )
        c, h, w = (int(v) for v in input_shape)
        if h < 8 or w < 8:
            raise ConfigError(f"small_cnn needs images of at least 8x8, got {h}x{w}")
        c1, c2 = (int(v) for v in channels)
        if min(c1, c2, int(hidden)) < 1:
            raise ConfigError("small_cnn channels and hidden must be >= 1")
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        self.features = nn.Sequential(
            nn.Conv2d(c, c1, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(c1, c2, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(c2 * (h // 4) * (w // 4), int(hidden)),
            nn.ReLU(),
            nn.Dropout(float(dropout)) if dropout > 0 else nn.Identity(),
            nn.Linear(int(hidden), num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


@MODELS.register("small_cnn")
def small_cnn(
    spec: DatasetSpec,
    channels: Sequence[int] = (16, 32),
    hidden: int = 64,
    dropout: float = 0.25,
) -> nn.Module:
    """LeNet-like CNN for ``spec`` (image modality, H and W at least 8); dropout 0.25 before
    the head by default.

    Example:
        >>> import torch
        >>> from xrobust.data.spec import DatasetSpec
        >>> spec = DatasetSpec("d", "image", (1, 8, 8), 10, tuple("0123456789"), (0.0, 1.0))
        >>> small_cnn(spec)(torch.zeros(2, 1, 8, 8)).shape
        torch.Size([2, 10])
    """
    return SmallCNN(spec.input_shape, spec.num_classes, channels, hidden, dropout)
