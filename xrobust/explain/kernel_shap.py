"""Kernel SHAP: SHAP values of feature groups from a weighted linear regression over
random coalitions. Lundberg and Lee, "A Unified Approach to Interpreting Model
Predictions", arXiv:1705.07874. Forward calls only (black boxes welcome); each example is
explained on its own. Stochastic: pass ``seed`` to ``explain``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import KernelShap as _KernelShap

from xrobust.explain._common import PerturbationParams
from xrobust.explain.base import EXPLAINERS, Explainer

__all__ = ["KernelShap"]


@EXPLAINERS.register("kernel_shap")
class KernelShap(Explainer):
    """Kernel SHAP over feature groups (Captum KernelShap).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> e = KernelShap(nn.Linear(3, 2), n_samples=32).explain(torch.ones(1, 3), seed=0)
        >>> e.attributions.shape
        torch.Size([1, 3])
    """

    name = "kernel_shap"
    requires_gradients = False

    @dataclass(frozen=True)
    class Params(PerturbationParams):
        """Attributes: n_samples: coalitions sampled per example."""

        n_samples: int = 200

    def _prepare(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"baselines": self.params.baseline_for(x)}

    def _explain(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, None]:
        p = self.params
        a = _KernelShap(self.model).attribute(
            x,
            baselines=prep["baselines"],
            target=target,
            feature_mask=p.mask_for(x),
            n_samples=p.n_samples,
            perturbations_per_eval=p.ppe(rows, 1),
        )
        return a, None
