"""Feature ablation: the drop in the target score when each feature group is replaced by a
baseline. Forward calls only (usable on black boxes). Images: square patches; tabular: one
feature per column; or a user feature mask.

A classic occlusion-style method; see Zeiler and Fergus, arXiv:1311.2901.
"""

from __future__ import annotations

import torch
from captum.attr import FeatureAblation as _FeatureAblation

from xrobust.explain._common import PerturbationParams
from xrobust.explain.base import EXPLAINERS, Explainer

__all__ = ["FeatureAblation"]


@EXPLAINERS.register("feature_ablation")
class FeatureAblation(Explainer):
    """Group ablation (Captum FeatureAblation).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Linear(2, 1, bias=False)
        >>> _ = m.weight.data.copy_(torch.tensor([[2.0, -1.0]]))
        >>> FeatureAblation(m).explain(torch.ones(1, 2), target=0).attributions
        tensor([[ 2., -1.]])
    """

    name = "feature_ablation"
    requires_gradients = False
    Params = PerturbationParams

    def _prepare(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"baselines": self.params.baseline_for(x)}

    def _explain(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, None]:
        p = self.params
        a = _FeatureAblation(self.model).attribute(
            x,
            baselines=prep["baselines"],
            target=target,
            feature_mask=p.mask_for(x),
            perturbations_per_eval=p.ppe(rows, x.shape[0]),
        )
        return a, None
