"""Grad-CAM: a convolution's activations weighted by their pooled gradients, upsampled.

Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
Localization", arXiv:1610.02391. Images (N, C, H, W): the map (N, 1, h, w) of the layer is
upsampled to H x W and repeated over the C channels, so it has the input's shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import LayerAttribution, LayerGradCam
from torch import nn

from xrobust.explain._common import find_conv_layer, require_images
from xrobust.explain.base import EXPLAINERS, BaseParams, Explainer

__all__ = ["GradCam"]


@EXPLAINERS.register("gradcam")
class GradCam(Explainer):
    """Grad-CAM on the last ``nn.Conv2d`` (found automatically) or a named layer.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.Flatten(), nn.Linear(32, 3))
        >>> GradCam(m).explain(torch.rand(1, 1, 4, 4)).attributions.shape
        torch.Size([1, 1, 4, 4])
    """

    name = "gradcam"
    requires_gradients = True

    @dataclass(frozen=True)
    class Params(BaseParams):
        """Attributes: layer: dotted name of the layer (None: last Conv2d);
        relu_attributions: keep only positive evidence (the paper's ReLU);
        interpolate_mode: upsampling ("bilinear", "nearest", ...)."""

        layer: str | None = None
        relu_attributions: bool = True
        interpolate_mode: str = "bilinear"

    def _validate_model(self, x: torch.Tensor) -> None:
        find_conv_layer(self.model, self.params.layer)  # type: ignore[arg-type]
        require_images(x, self.name)

    def _layer(self) -> nn.Module:
        return find_conv_layer(self.model, self.params.layer)  # type: ignore[arg-type]

    def _explain(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, None]:
        p = self.params
        cam = LayerGradCam(self.model, self._layer()).attribute(
            x, target=target, relu_attributions=p.relu_attributions
        )
        up = LayerAttribution.interpolate(
            cam, tuple(x.shape[-2:]), interpolate_mode=p.interpolate_mode
        )
        return up.expand_as(x).contiguous(), None
