"""Input x gradient: the elementwise product of the input with its gradient.

Shrikumar et al., "Not Just a Black Box: Learning Important Features Through Propagating
Activation Differences", arXiv:1605.01713. Any input shape (N, ...).
"""

from __future__ import annotations

import torch
from captum.attr import InputXGradient as _InputXGradient

from xrobust.explain.base import EXPLAINERS, Explainer

__all__ = ["InputXGradient"]


@EXPLAINERS.register("input_x_gradient")
class InputXGradient(Explainer):
    """x * d logit_t / d x.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Linear(2, 1, bias=False)
        >>> _ = m.weight.data.copy_(torch.tensor([[2.0, 3.0]]))
        >>> InputXGradient(m).explain(torch.ones(1, 2), target=0).attributions
        tensor([[2., 3.]])
    """

    name = "input_x_gradient"
    requires_gradients = True

    def _explain(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, None]:
        return _InputXGradient(self.model).attribute(x, target=target), None
