"""DeepLIFT (rescale rule): attributions from activation differences to a baseline.

Shrikumar, Greenside, Kundaje, "Learning Important Features Through Propagating Activation
Differences", arXiv:1704.02685. Any input shape (N, ...). Nonlinearities must be modules
(``nn.ReLU``) for the rescale rule; functional ones are treated like plain gradients.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import DeepLift as _DeepLift

from xrobust.explain._common import BaselineParams, quiet_captum
from xrobust.explain.base import EXPLAINERS, Explainer

__all__ = ["DeepLift"]


@EXPLAINERS.register("deeplift")
class DeepLift(Explainer):
    """DeepLIFT with a configurable baseline; ``delta`` is its summation-to-delta error.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> e = DeepLift(m).explain(torch.ones(2, 3), target=1)
        >>> bool(e.delta.abs().max() < 1e-4)
        True
    """

    name = "deeplift"
    requires_gradients = True

    @dataclass(frozen=True)
    class Params(BaselineParams):
        """Attributes: multiply_by_inputs: global (True) or local attributions."""

        multiply_by_inputs: bool = True

    def _rows_per_example(self) -> int:
        return 2  # inputs and baselines go through the model together

    def _prepare(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"baselines": self.params.baseline_for(x)}

    def _explain(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        with quiet_captum():
            a, d = _DeepLift(
                self.model, multiply_by_inputs=self.params.multiply_by_inputs
            ).attribute(
                x, baselines=prep["baselines"], target=target, return_convergence_delta=True
            )
        return a, d
