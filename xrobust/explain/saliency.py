"""Saliency: the gradient of the target logit with respect to the input.

Simonyan, Vedaldi, Zisserman, "Deep Inside Convolutional Networks: Visualising Image
Classification Models and Saliency Maps", arXiv:1312.6034. Any input shape (N, ...).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import Saliency as _Saliency

from xrobust.explain.base import EXPLAINERS, BaseParams, Explainer

__all__ = ["Saliency"]


@EXPLAINERS.register("saliency")
class Saliency(Explainer):
    """|d logit_t / d x| (or the signed gradient with ``abs=False``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> Saliency(nn.Linear(3, 2)).explain(torch.ones(1, 3), target=0).attributions.shape
        torch.Size([1, 3])
    """

    name = "saliency"
    requires_gradients = True

    @dataclass(frozen=True)
    class Params(BaseParams):
        """Attributes: abs: return absolute gradients (Captum's default)."""

        abs: bool = True

    def _explain(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, None]:
        a = _Saliency(self.model).attribute(x, target=target, abs=self.params.abs)
        return a, None
