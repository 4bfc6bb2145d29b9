"""Shapley value sampling: Shapley values of feature groups estimated from random
permutations. Štrumbelj and Kononenko, "Explaining prediction models and individual
predictions with feature contributions" (KAIS 2014); Castro et al., "Polynomial
calculation of the Shapley value based on sampling" (2009). Forward calls only.
Stochastic: pass ``seed`` to ``explain``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import ShapleyValueSampling as _SVS

from xrobust.explain._common import PerturbationParams
from xrobust.explain.base import EXPLAINERS, Explainer

__all__ = ["ShapleyValueSampling"]


@EXPLAINERS.register("shapley_value_sampling")
class ShapleyValueSampling(Explainer):
    """Permutation-sampled Shapley values over feature groups (Captum ShapleyValueSampling).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Linear(2, 1, bias=False)
        >>> _ = m.weight.data.copy_(torch.tensor([[2.0, -1.0]]))
        >>> ShapleyValueSampling(m, n_samples=3).explain(torch.ones(1, 2), target=0,
        ...                                               seed=0).attributions
        tensor([[ 2., -1.]])
    """

    name = "shapley_value_sampling"
    requires_gradients = False

    @dataclass(frozen=True)
    class Params(PerturbationParams):
        """Attributes: n_samples: random permutations of the feature groups."""

        n_samples: int = 25

    def _prepare(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"baselines": self.params.baseline_for(x)}

    def _explain(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, None]:
        p = self.params
        a = _SVS(self.model).attribute(
            x,
            baselines=prep["baselines"],
            target=target,
            feature_mask=p.mask_for(x),
            n_samples=p.n_samples,
            perturbations_per_eval=p.ppe(rows, x.shape[0]),
        )
        return a, None
