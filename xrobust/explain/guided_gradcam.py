"""Guided Grad-CAM: guided backpropagation multiplied by the upsampled Grad-CAM map.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", arXiv:1610.02391. Images (N, C, H, W).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import GuidedGradCam as _GuidedGradCam

from xrobust.explain._common import find_conv_layer, quiet_captum, require_images
from xrobust.explain.base import EXPLAINERS, BaseParams, Explainer

__all__ = ["GuidedGradCam"]


@EXPLAINERS.register("guided_gradcam")
class GuidedGradCam(Explainer):
    """Guided Grad-CAM on the last ``nn.Conv2d`` or a named layer.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.Flatten(),
        ...                   nn.Linear(32, 3))
        >>> GuidedGradCam(m).explain(torch.rand(2, 1, 4, 4)).attributions.shape
        torch.Size([2, 1, 4, 4])
    """

    name = "guided_gradcam"
    requires_gradients = True

    @dataclass(frozen=True)
    class Params(BaseParams):
        """Attributes: layer: dotted layer name (None: last Conv2d); interpolate_mode:
        upsampling of the Grad-CAM map (Captum's default "nearest")."""

        layer: str | None = None
        interpolate_mode: str = "nearest"

    def _validate_model(self, x: torch.Tensor) -> None:
        find_conv_layer(self.model, self.params.layer)  # type: ignore[arg-type]
        require_images(x, self.name)

    def _explain(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, None]:
        layer = find_conv_layer(self.model, self.params.layer)  # type: ignore[arg-type]
        with quiet_captum():
            a = _GuidedGradCam(self.model, layer).attribute(
                x, target=target, interpolate_mode=self.params.interpolate_mode
            )
        return a, None
