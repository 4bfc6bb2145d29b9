"""``resnet``: a small pre-activation ResNet (He et al., "Identity Mappings in Deep Residual
Networks", arXiv:1603.05027) for images such as 3x32x32, with configurable width and depth."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from xrobust.data.spec import DatasetSpec
from xrobust.errors import ConfigError
from xrobust.models._build import MODELS

__all__ = ["PreActBlock", "PreActResNet", "resnet"]


class PreActBlock(nn.Module):
    """BN -> ReLU -> conv3x3 -> BN -> ReLU -> conv3x3, plus an identity (or 1x1) shortcut."""

    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.shortcut: nn.Module | None = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(x))
        skip = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + skip


class PreActResNet(nn.Module):
    """CIFAR-style pre-activation ResNet: 3 stages of ``(depth - 2) // 6`` blocks each,
    widths ``width``, ``2 * width``, ``4 * width``; global average pooling; linear head.

    Args:
        in_channels: input channels.
        num_classes: number of output logits.
        depth: 6n + 2 (8, 14, 20, 32, ...).
        width: channels of the first stage.
    """

    def __init__(self, in_channels: int, num_classes: int, depth: int = 8, width: int = 16) -> None:
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ConfigError(
                f"resnet depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {depth}"
            )
        if width < 1:
            raise ConfigError(f"resnet width must be >= 1, got {width}")
        n = (depth - 2) // 6
        self.stem = nn.Conv2d(in_channels, width, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        c = width
        for stage, c_out in enumerate((width, 2 * width, 4 * width)):
            for i in range(n):
                blocks.append(PreActBlock(c, c_out, 2 if (stage > 0 and i == 0) else 1))
                c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c)
        self.head = nn.Linear(c, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.blocks(self.stem(x))
        out = F.relu(self.bn(out))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(out, 1), 1))


@MODELS.register("resnet")
def resnet(spec: DatasetSpec, depth: int = 8, width: int = 16) -> nn.Module:
    """Small pre-activation ResNet for image ``spec`` (3x32x32 or any C x H x W >= 8).

    Example:
        >>> import torch
        >>> from xrobust.data.spec import DatasetSpec
        >>> spec = DatasetSpec("c", "image", (3, 32, 32), 10, tuple("abcdefghij"), (0.0, 1.0))
        >>> resnet(spec, depth=8, width=8)(torch.zeros(2, 3, 32, 32)).shape
        torch.Size([2, 10])
    """
    if len(spec.input_shape) != 3:
        raise ConfigError(f"resnet needs image inputs C x H x W, got {tuple(spec.input_shape)}")
    c, h, w = spec.input_shape
    if h < 8 or w < 8:
        raise ConfigError(f"resnet needs images of at least 8x8, got {h}x{w}")
    return PreActResNet(int(c), spec.num_classes, int(depth), int(width))
