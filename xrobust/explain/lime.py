"""LIME: a sparse linear surrogate fitted to the model around each input.

Ribeiro, Singh, Guestrin, "'Why Should I Trust You?': Explaining the Predictions of Any
Classifier", arXiv:1602.04938. Forward calls only (black boxes welcome); feature groups
are image patches or tabular columns; each example is explained on its own. Stochastic:
pass ``seed`` to ``explain``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum._utils.models.linear_model import SkLearnLasso, SkLearnRidge
from captum.attr import Lime as _Lime

from xrobust.errors import ConfigError
from xrobust.explain._common import PerturbationParams
from xrobust.explain.base import EXPLAINERS, Explainer

__all__ = ["Lime"]


@EXPLAINERS.register("lime")
class Lime(Explainer):
    """LIME with Captum's defaults (Lasso surrogate, exponential cosine kernel).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> e = Lime(nn.Linear(3, 2), n_samples=32).explain(torch.ones(1, 3), seed=0)
        >>> e.attributions.shape
        torch.Size([1, 3])
    """

    name = "lime"
    requires_gradients = False

    @dataclass(frozen=True)
    class Params(PerturbationParams):
        """Attributes: n_samples: perturbed samples the surrogate is fitted on;
        surrogate: "lasso" (Captum's default, sparse) or "ridge" (the LIME package's);
        alpha: regularisation strength of the surrogate."""

        n_samples: int = 200
        surrogate: str = "lasso"
        alpha: float = 0.01

    def _validate_model(self, x: torch.Tensor) -> None:
        if self.params.surrogate not in ("lasso", "ridge"):
            raise ConfigError(
                f"lime surrogate must be 'lasso' or 'ridge', got {self.params.surrogate!r}"
            )

    def _prepare(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"baselines": self.params.baseline_for(x)}

    def _explain(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, None]:
        p = self.params
        cls = SkLearnLasso if p.surrogate == "lasso" else SkLearnRidge
        a = _Lime(self.model, interpretable_model=cls(alpha=p.alpha)).attribute(
            x,
            baselines=prep["baselines"],
            target=target,
            feature_mask=p.mask_for(x),
            n_samples=p.n_samples,
            perturbations_per_eval=p.ppe(rows, 1),
        )
        return a, None
