"""Explanations of model decisions on top of Captum, their quality metrics, and figures.

This package is the only place in xrobust that imports ``captum.attr`` and
``captum.metrics``. Every method is registered in :data:`EXPLAINERS` and declares
``requires_gradients`` (white-box) or not (forward calls only: usable on black boxes).

Example:
    >>> import torch
    >>> from torch import nn
    >>> from xrobust.explain import explain, list_explainers
    >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    >>> e = explain(model, torch.rand(2, 4), method="integrated_gradients")
    >>> tuple(e.attributions.shape), tuple(e.target.shape)
    ((2, 4), (2,))
    >>> "occlusion" in list_explainers(requires_gradients=False)
    True
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch import nn

from xrobust.errors import ConfigError
from xrobust.explain import (  # noqa: F401  (imported to register the methods)
    deeplift,
    feature_ablation,
    gradcam,
    gradient_shap,
    guided_backprop,
    guided_gradcam,
    input_x_gradient,
    integrated_gradients,
    kernel_shap,
    lime,
    occlusion,
    saliency,
    shapley_value_sampling,
    smoothgrad,
    vargrad,
)
from xrobust.explain._baselines import blur, resolve_baseline
from xrobust.explain.base import EXPLAINERS, Explainer, Explanation, TargetSpec
from xrobust.explain.tabular import GlobalImportance, global_importance, named_attributions

__all__ = [
    "EXPLAINERS",
    "Explainer",
    "Explanation",
    "GlobalImportance",
    "blur",
    "explain",
    "explain_loader",
    "get_explainer",
    "global_importance",
    "list_explainers",
    "named_attributions",
    "resolve_baseline",
]

Model = nn.Module | Callable[[torch.Tensor], torch.Tensor]


def get_explainer(name: str, model: Model, **params: Any) -> Explainer:
    """The explainer registered as ``name``, bound to ``model`` with ``params``.

    Raises:
        ConfigError: unknown name (with close matches) or unknown option.

    Example:
        >>> from torch import nn
        >>> get_explainer("saliency", nn.Linear(2, 2)).requires_gradients
        True
    """
    return EXPLAINERS.get(name)(model, **params)


def list_explainers(
    pattern: str | None = None, requires_gradients: bool | None = None
) -> list[str]:
    """Registered explainer names, optionally filtered by a shell pattern and by whether
    they need gradients (False lists the forward-only methods usable on black boxes).

    Example:
        >>> "gradcam" in list_explainers(requires_gradients=True)
        True
    """
    names = EXPLAINERS.list(pattern)
    if requires_gradients is not None:
        names = [n for n in names if EXPLAINERS.get(n).requires_gradients == requires_gradients]
    return names


def explain(
    model: Model,
    x: torch.Tensor,
    target: TargetSpec = None,
    method: str = "integrated_gradients",
    *,
    seed: int | None = None,
    feature_names: Any = None,
    **params: Any,
) -> Explanation:
    """Explain ``model`` on the batch ``x`` with ``method``.

    Args:
        model: the model (logits (N, classes)); a plain function for forward-only methods.
        x: inputs (N, ...) in input space.
        target: None (predicted class), an int, one per example, or (N, K) several.
        method: a name from :func:`list_explainers`.
        seed: seeds stochastic methods (smoothgrad, gradient_shap, lime, ...).
        feature_names: names of tabular features, kept in the explanation.
        **params: the method's options (e.g. ``n_steps``, ``baselines``,
            ``internal_batch_size``, ``memory_budget_mb``).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> e = explain(nn.Linear(3, 2), torch.ones(1, 3), target=1, method="saliency")
        >>> e.numpy().shape
        (1, 3)
    """
    return get_explainer(method, model, **params).explain(
        x, target, seed=seed, feature_names=feature_names
    )


def explain_loader(
    model: Model,
    batches: Iterable[Any],
    method: str = "integrated_gradients",
    target: TargetSpec | str = None,
    *,
    seed: int | None = None,
    **params: Any,
) -> Iterator[Explanation]:
    """Explain a DataLoader (or any iterable of ``x`` or ``(x, y, ...)``) batch by batch.

    Only one batch's attributions are held at a time. ``target="label"`` explains each
    example's label (the batch's second item); None explains the predicted class.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> batches = [(torch.rand(4, 3), torch.tensor([0, 1, 0, 1]))] * 2
        >>> [tuple(e.target.tolist()) for e in explain_loader(nn.Linear(3, 2), batches,
        ...                                                 "saliency", target="label")]
        [(0, 1, 0, 1), (0, 1, 0, 1)]
    """
    explainer = get_explainer(method, model, **params)
    for i, batch in enumerate(batches):
        if isinstance(batch, torch.Tensor):
            x, y = batch, None
        elif isinstance(batch, tuple | list) and batch and isinstance(batch[0], torch.Tensor):
            x, y = batch[0], (batch[1] if len(batch) > 1 else None)
        else:
            raise ConfigError(
                f"batch {i} is a {type(batch).__name__}; expected a tensor or (x, y, ...) tuples"
            )
        if isinstance(target, str):
            if target != "label":
                raise ConfigError(f"target must be a class, None or 'label', got {target!r}")
            if y is None:
                raise ConfigError("target='label' needs batches of (x, y)")
            t: TargetSpec = y
        else:
            t = target
        yield explainer.explain(x, t, seed=None if seed is None else seed + i)
