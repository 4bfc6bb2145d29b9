"""Guided backpropagation: gradients with negative signals cut at every ReLU module.

Springenberg et al., "Striving for Simplicity: The All Convolutional Net",
arXiv:1412.6806. Any input shape (N, ...); only ``nn.ReLU`` modules are guided
(functional ``F.relu`` calls pass plain gradients).
"""

from __future__ import annotations

import torch
from captum.attr import GuidedBackprop as _GuidedBackprop

from xrobust.explain._common import quiet_captum
from xrobust.explain.base import EXPLAINERS, Explainer

__all__ = ["GuidedBackprop"]


@EXPLAINERS.register("guided_backprop")
class GuidedBackprop(Explainer):
    """Guided backpropagation (Captum GuidedBackprop).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> GuidedBackprop(m).explain(torch.ones(1, 3)).attributions.shape
        torch.Size([1, 3])
    """

    name = "guided_backprop"
    requires_gradients = True

    def _explain(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, None]:
        with quiet_captum():
            return _GuidedBackprop(self.model).attribute(x, target=target), None
