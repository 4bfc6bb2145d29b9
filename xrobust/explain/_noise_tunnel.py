"""Shared code of smoothgrad and vargrad: Captum's NoiseTunnel over saliency or
integrated gradients, with the number of noisy copies per pass chosen from the budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from captum.attr import IntegratedGradients as _IG
from captum.attr import NoiseTunnel as _NoiseTunnel
from captum.attr import Saliency as _Saliency

from xrobust.errors import ConfigError
from xrobust.explain._common import BaselineParams, quiet_captum
from xrobust.explain.base import Explainer

_BASES = ("saliency", "integrated_gradients")


class NoiseTunnelExplainer(Explainer):
    """Base of smoothgrad and vargrad; ``nt_type`` is set by the subclass."""

    nt_type: ClassVar[str] = "smoothgrad"
    requires_gradients = True

    @dataclass(frozen=True)
    class Params(BaselineParams):
        """Attributes:
        base: "saliency" or "integrated_gradients".
        nt_samples: noisy copies per example.
        stdevs: standard deviation of the Gaussian noise, in input units (0.15 is 15% of
            a [0, 1] range, in the 10-20% Smilkov et al. recommend).
        nt_samples_batch_size: noisy copies per pass; None: from the memory budget.
        abs: absolute gradients for the saliency base.
        n_steps: integration steps for the integrated_gradients base.
        """

        base: str = "saliency"
        nt_samples: int = 16
        stdevs: float = 0.15
        nt_samples_batch_size: int | None = None
        abs: bool = True
        n_steps: int = 32

    def _validate_model(self, x: torch.Tensor) -> None:
        if self.params.base not in _BASES:
            raise ConfigError(
                f"{self.name} base must be one of {', '.join(_BASES)}, got {self.params.base!r}"
            )
        if self.params.nt_samples < 1:
            raise ConfigError(f"nt_samples must be at least 1, got {self.params.nt_samples}")

    def _prepare(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.params.base == "integrated_gradients":
            return {"baselines": self.params.baseline_for(x)}
        return {}

    def _explain(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, None]:
        p = self.params
        n = x.shape[0]
        ig = p.base == "integrated_gradients"
        per_copy = n * (p.n_steps if ig else 1)
        bs = p.nt_samples_batch_size or max(1, min(p.nt_samples, rows // per_copy))
        kwargs: dict[str, object] = {}
        if ig:
            method = _IG(self.model)
            kwargs = {
                "baselines": prep["baselines"],
                "n_steps": p.n_steps,
                "internal_batch_size": max(rows, n * bs),
            }
        else:
            method = _Saliency(self.model)
            kwargs = {"abs": p.abs}
        with quiet_captum():
            a = _NoiseTunnel(method).attribute(
                x,
                nt_type=self.nt_type,
                nt_samples=p.nt_samples,
                nt_samples_batch_size=bs,
                stdevs=p.stdevs,
                target=target,
                **kwargs,
            )
        return a, None
