"""The model the real-server tests and the protocol benchmark serve: xrobust's small CNN
exported to ONNX taking NHWC input, as TensorFlow models (and most served models) do."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from xrobust.models.export import export_onnx


class ChannelsLast(nn.Module):
    """``inner`` (an NCHW model) taking NHWC input."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.inner(x.permute(0, 3, 1, 2))


def export_nhwc(model: nn.Module, spec, path: Path) -> Path:
    """``model`` (NCHW, for ``spec``'s images) as an NHWC ONNX file at ``path``."""
    c, h, w = spec.input_shape
    export_onnx(ChannelsLast(model.eval()), path, (h, w, c))
    return path
