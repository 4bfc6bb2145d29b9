"""Shared option groups and helpers of the explainers (baselines, layers, warnings)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from xrobust.errors import ConfigError, DataError, ModelError
from xrobust.explain._baselines import BaselineSpec, resolve_baseline
from xrobust.explain.base import BaseParams, quiet_captum

__all__ = ["BaselineParams", "find_conv_layer", "quiet_captum"]


@dataclass(frozen=True)
class BaselineParams(BaseParams):
    """Options of methods that compare against a baseline.

    Attributes:
        baselines: "zeros", "blur", "uniform", "mean", a number, or a tensor (one input's
            shape or the batch's).
        reference: data for the "mean" baseline: training rows, or their mean.
        bounds: (low, high) for the "uniform" baseline; default the batch's range.
        baseline_seed: seed of the "uniform" baseline's noise.
    """

    baselines: BaselineSpec = "zeros"
    reference: torch.Tensor | None = None
    bounds: tuple[float, float] | None = None
    baseline_seed: int = 0

    def baseline_for(self, x: torch.Tensor) -> torch.Tensor:
        return resolve_baseline(
            self.baselines,
            x,
            reference=self.reference,
            bounds=self.bounds,
            seed=self.baseline_seed,
        )


def find_conv_layer(model: nn.Module, layer: str | nn.Module | None) -> nn.Module:
    """The layer Grad-CAM attributes to: ``layer`` by name (or module), else the last
    ``nn.Conv2d`` in registration order.

    Raises:
        ModelError: no convolution in the model, or the named layer does not exist.
    """
    if isinstance(layer, nn.Module):
        return layer
    if layer is not None:
        try:
            return model.get_submodule(layer)
        except AttributeError as exc:
            names = [n for n, _ in model.named_modules() if n]
            raise ConfigError(
                f"model has no layer {layer!r}; layers: {', '.join(names[:30])}"
            ) from exc
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    if not convs:
        raise ModelError(
            f"gradcam needs a convolutional layer (nn.Conv2d) but {type(model).__name__} has "
            "none; name a layer with layer='...', or use saliency or integrated_gradients"
        )
    return convs[-1]


def require_images(x: torch.Tensor, method: str) -> None:
    if x.ndim != 4:
        raise DataError(f"{method} needs image batches (N, C, H, W), got shape {tuple(x.shape)}")


@dataclass(frozen=True)
class PerturbationParams(BaselineParams):
    """Options of forward-only (perturbation) methods.

    Attributes:
        perturbations_per_eval: perturbed copies per forward pass; None: from the memory
            budget (capped at 256).
        feature_mask: "patches" (images: square patches shared across channels; the
            default), "features" (one feature per scalar), or an integer tensor of one
            input's shape giving each element's feature id.
        patch: side of the square patches (default: about 7 x 7 patches per image).
    """

    perturbations_per_eval: int | None = None
    feature_mask: object = None
    patch: int | None = None

    def ppe(self, rows: int, n: int, cap: int = 256) -> int:
        if self.perturbations_per_eval is not None:
            if self.perturbations_per_eval < 1:
                raise ConfigError(
                    f"perturbations_per_eval must be at least 1, got {self.perturbations_per_eval}"
                )
            return int(self.perturbations_per_eval)
        return max(1, min(cap, rows // max(1, n)))

    def mask_for(self, x: torch.Tensor) -> torch.Tensor:
        from xrobust.explain._masks import feature_mask

        return feature_mask(x, self.feature_mask, self.patch)  # type: ignore[arg-type]
