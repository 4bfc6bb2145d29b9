"""Occlusion: the drop in the target score when a sliding window is replaced by a baseline.

Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks",
arXiv:1311.2901. Forward calls only (usable on black boxes). Images (N, C, H, W): square
windows over all channels, stride half a window; tabular (N, F): one feature at a time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import Occlusion as _Occlusion

from xrobust.explain._common import PerturbationParams
from xrobust.explain._masks import occlusion_window
from xrobust.explain.base import EXPLAINERS, Explainer

__all__ = ["Occlusion"]


@EXPLAINERS.register("occlusion")
class Occlusion(Explainer):
    """Sliding-window occlusion (Captum Occlusion).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Linear(3, 2)
        >>> Occlusion(m).explain(torch.ones(1, 3), target=0).attributions.shape
        torch.Size([1, 3])
    """

    name = "occlusion"
    requires_gradients = False

    @dataclass(frozen=True)
    class Params(PerturbationParams):
        """Attributes: window: side of the square window (images) or a full window shape;
        stride: step of the window (or a full strides tuple)."""

        window: int | tuple[int, ...] | None = None
        stride: int | tuple[int, ...] | None = None

    def _validate_model(self, x: torch.Tensor) -> None:
        occlusion_window(x, self.params.window, self.params.stride)

    def _prepare(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"baselines": self.params.baseline_for(x)}

    def _explain(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, None]:
        p = self.params
        win, st = occlusion_window(x, p.window, p.stride)
        a = _Occlusion(self.model).attribute(
            x,
            sliding_window_shapes=win,
            strides=st,
            baselines=prep["baselines"],
            target=target,
            perturbations_per_eval=p.ppe(rows, x.shape[0]),
        )
        return a, None
