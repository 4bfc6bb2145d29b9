"""Deconvolution, written against xrobust's explainer API (Captum does the math).

Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks",
arXiv:1311.2901: the target logit is propagated back to the input as for the gradient,
except that each ReLU passes on the positive part of the signal coming back (not the
gradient masked by the forward activation). On a model without ReLUs it is the gradient:
for a linear model ``W x + b`` the attribution is ``W[target]`` for every input.
"""

from __future__ import annotations

import torch
from captum.attr import Deconvolution as _Deconvolution

from xrobust.explain import Explainer

__all__ = ["Deconvolution"]


class Deconvolution(Explainer):
    """Deconvolution (Zeiler and Fergus, arXiv:1311.2901), any input shape (N, ...)."""

    name = "deconvolution"  # must equal the entry point's name
    requires_gradients = True

    def _explain(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, None]:
        return _Deconvolution(self.model).attribute(x, target=target), None
