"""GradientSHAP: expected gradients between random baselines and noisy inputs.

Lundberg and Lee, "A Unified Approach to Interpreting Model Predictions",
arXiv:1705.07874 (the expected-gradients approximation of SHAP values). Any input shape
(N, ...). Stochastic: pass ``seed`` to ``explain`` for reproducible maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from captum.attr import GradientShap as _GradientShap

from xrobust.errors import ConfigError
from xrobust.explain._baselines import baseline_distribution
from xrobust.explain._common import BaselineParams, quiet_captum
from xrobust.explain.base import EXPLAINERS, Explainer

__all__ = ["GradientShap"]


@EXPLAINERS.register("gradient_shap")
class GradientShap(Explainer):
    """GradientSHAP over a baseline distribution.

    The distribution comes from ``baselines``: "uniform" (default: ``n_baselines`` noise
    inputs), "mean" with ``reference`` rows (that many background rows), "zeros", or a
    tensor (B, *input shape). When ``n_samples`` rows per example exceed the memory budget
    the samples are split over several passes and averaged (the same estimator).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> e = GradientShap(nn.Linear(3, 2), n_samples=8).explain(torch.ones(1, 3), seed=0)
        >>> e.delta.shape
        torch.Size([1])
    """

    name = "gradient_shap"
    requires_gradients = True

    @dataclass(frozen=True)
    class Params(BaselineParams):
        """Attributes: n_samples: random points per example; stdevs: noise added to the
        inputs; n_baselines: size of a drawn baseline distribution."""

        baselines: object = "uniform"
        n_samples: int = 20
        stdevs: float = 0.0
        n_baselines: int = 16
        multiply_by_inputs: bool = True

    def _rows_per_example(self) -> int:
        return self.params.n_samples

    def _validate_model(self, x: torch.Tensor) -> None:
        if self.params.n_samples < 1:
            raise ConfigError(f"n_samples must be at least 1, got {self.params.n_samples}")

    def _explain(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        p = self.params
        dist = baseline_distribution(
            p.baselines,  # type: ignore[arg-type]
            x,
            p.n_baselines,
            reference=p.reference,
            bounds=p.bounds,
            seed=p.baseline_seed,
        )
        n = x.shape[0]
        per_pass = max(1, rows // n) if self.params.internal_batch_size is None else p.n_samples
        method = _GradientShap(self.model, multiply_by_inputs=p.multiply_by_inputs)
        total_a = torch.zeros_like(x)
        deltas = []
        done = 0
        while done < p.n_samples:
            k = min(per_pass, p.n_samples - done)
            with quiet_captum():
                a, d = method.attribute(
                    x,
                    baselines=dist,
                    n_samples=k,
                    stdevs=p.stdevs,
                    target=target,
                    return_convergence_delta=True,
                )
            total_a += a * (k / p.n_samples)
            deltas.append(d.view(n, k))
            done += k
        delta = torch.cat(deltas, 1).mean(1)
        return total_a, delta
