"""Figures of explanations (matplotlib, Agg canvas): every function returns a
:class:`matplotlib.figure.Figure` and never calls ``plt.show()``; save it with
``fig.savefig(path)`` or embed it. The arrays behind the pictures are available too
(:func:`heatmap_array`, :meth:`Explanation.numpy`) for users who plot themselves.

Attribution maps use a diverging colormap centred at zero (red: evidence for the target,
blue: against), normalised per map or shared across maps (so that magnitudes compare).

Example:
    >>> import torch
    >>> fig = heatmap_figure(torch.rand(2, 1, 8, 8), torch.randn(2, 1, 8, 8))
    >>> len(fig.axes) >= 2
    True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import TwoSlopeNorm
from matplotlib.figure import Figure

from xrobust.errors import ConfigError, DataError
from xrobust.explain.base import Explanation

__all__ = [
    "adversarial_figure",
    "compare_methods_figure",
    "curves_figure",
    "heatmap_array",
    "heatmap_figure",
    "tabular_bar_figure",
]

Normalise = Literal["per_map", "shared"]
_CMAP = "RdBu_r"


def _np(a: torch.Tensor | np.ndarray | Explanation) -> np.ndarray:
    if isinstance(a, Explanation):
        a = a.attributions
    if isinstance(a, torch.Tensor):
        return a.detach().cpu().float().numpy()
    return np.asarray(a, dtype=np.float32)


def heatmap_array(attributions: torch.Tensor | np.ndarray | Explanation) -> np.ndarray:
    """2-D maps (N, H, W) from image attributions (N, C, H, W): summed over channels, so
    that positive and negative evidence of the channels add up."""
    a = _np(attributions)
    if a.ndim == 4:
        return a.sum(1)
    if a.ndim == 3:
        return a
    raise DataError(
        f"heatmaps need image attributions (N, C, H, W) or (N, H, W), got {a.shape}; "
        "use tabular_bar_figure for tabular data"
    )


def _image_array(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """Images (N, H, W) grey or (N, H, W, 3) colour, rescaled to [0, 1] for display."""
    a = _np(x)
    if a.ndim != 4:
        raise DataError(f"images must be (N, C, H, W), got shape {a.shape}")
    lo, hi = float(a.min()), float(a.max())
    a = (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)
    if a.shape[1] == 1:
        return a[:, 0]
    if a.shape[1] == 3:
        return a.transpose(0, 2, 3, 1)
    return a.mean(1)


def _limits(maps: Sequence[np.ndarray], normalise: Normalise) -> list[float]:
    if normalise not in ("per_map", "shared"):
        raise ConfigError(f"normalise must be 'per_map' or 'shared', got {normalise!r}")
    per = [float(np.abs(m).max()) or 1.0 for m in maps]
    if normalise == "shared":
        shared = max(per) if per else 1.0
        return [shared] * len(per)
    return per


def _new_figure(rows: int, cols: int, cell: float = 2.0) -> Figure:
    fig = Figure(figsize=(cell * cols + 0.6, cell * rows), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _draw_map(
    ax: Any, image: np.ndarray | None, amap: np.ndarray, vmax: float, alpha: float
) -> Any:
    norm = TwoSlopeNorm(vmin=-vmax, vcenter=0.0, vmax=vmax)
    if image is not None:
        ax.imshow(image, cmap="gray" if image.ndim == 2 else None, interpolation="nearest")
        im = ax.imshow(amap, cmap=_CMAP, norm=norm, alpha=alpha, interpolation="nearest")
    else:
        im = ax.imshow(amap, cmap=_CMAP, norm=norm, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    return im


def heatmap_figure(
    x: torch.Tensor | np.ndarray,
    attributions: torch.Tensor | np.ndarray | Explanation,
    *,
    normalise: Normalise = "per_map",
    overlay: bool = True,
    alpha: float = 0.6,
    titles: Sequence[str] | None = None,
    max_images: int = 16,
) -> Figure:
    """Each image with its attribution map overlaid (diverging colormap centred at zero).

    Args:
        x: images (N, C, H, W).
        attributions: maps of x's shape (or an Explanation).
        normalise: "per_map" (each map uses its own range) or "shared" (one range for all,
            so that magnitudes compare across images).
        overlay: draw the map over the image (else the map alone).
        alpha: opacity of the overlay.
        titles: one title per image (default: the explanation's targets).
        max_images: draw at most this many.
    """
    maps = heatmap_array(attributions)
    imgs = _image_array(x)
    if len(maps) != len(imgs):
        raise DataError(f"{len(imgs)} images but {len(maps)} maps")
    n = min(len(imgs), max_images)
    if titles is None and isinstance(attributions, Explanation) and not attributions.multi_target:
        titles = [f"target {t}" for t in attributions.target.tolist()]
    lims = _limits(list(maps[:n]), normalise)
    cols = min(n, 8)
    rows = (n + cols - 1) // cols
    fig = _new_figure(rows, cols)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    im = None
    for i, ax in enumerate(axes):
        if i >= n:
            ax.axis("off")
            continue
        im = _draw_map(ax, imgs[i] if overlay else None, maps[i], lims[i], alpha)
        if titles is not None:
            ax.set_title(str(titles[i]), fontsize=8)
    if im is not None and normalise == "shared":
        fig.colorbar(im, ax=list(axes), shrink=0.8, label="attribution")
    method = attributions.method if isinstance(attributions, Explanation) else None
    if method:
        fig.suptitle(f"{method} ({normalise.replace('_', ' ')} normalisation)", fontsize=10)
    return fig


def compare_methods_figure(
    x: torch.Tensor | np.ndarray,
    explanations: Mapping[str, torch.Tensor | np.ndarray | Explanation],
    *,
    normalise: Normalise = "per_map",
    max_images: int = 8,
    alpha: float = 0.6,
) -> Figure:
    """A grid: one row per image, the input first, then one column per method.

    Example:
        >>> import torch
        >>> fig = compare_methods_figure(torch.rand(2, 1, 8, 8),
        ...                              {"a": torch.randn(2, 1, 8, 8), "b": torch.randn(2, 1, 8, 8)})
        >>> len(fig.axes)
        6
    """
    if not explanations:
        raise ConfigError("compare_methods_figure needs at least one method")
    imgs = _image_array(x)
    n = min(len(imgs), max_images)
    names = list(explanations)
    maps = {k: heatmap_array(v) for k, v in explanations.items()}
    for k, m in maps.items():
        if len(m) != len(imgs):
            raise DataError(f"{k}: {len(m)} maps for {len(imgs)} images")
    fig = _new_figure(n, len(names) + 1, cell=1.6)
    axes = fig.subplots(n, len(names) + 1, squeeze=False)
    for i in range(n):
        row_maps = [maps[k][i] for k in names]
        lims = _limits(row_maps, normalise)
        axes[i, 0].imshow(imgs[i], cmap="gray" if imgs[i].ndim == 2 else None)
        axes[i, 0].set_xticks([])
        axes[i, 0].set_yticks([])
        for j, k in enumerate(names):
            _draw_map(axes[i, j + 1], imgs[i], row_maps[j], lims[j], alpha)
            if i == 0:
                axes[i, j + 1].set_title(k, fontsize=8)
    axes[0, 0].set_title("input", fontsize=8)
    return fig


def adversarial_figure(
    x: torch.Tensor | np.ndarray,
    x_adv: torch.Tensor | np.ndarray,
    attr_clean: torch.Tensor | np.ndarray | Explanation,
    attr_adv: torch.Tensor | np.ndarray | Explanation,
    *,
    pred_clean: Sequence[int] | None = None,
    pred_adv: Sequence[int] | None = None,
    normalise: Normalise = "shared",
    max_images: int = 8,
) -> Figure:
    """Per image: clean | perturbation (x_adv - x) | adversarial | attribution of clean |
    attribution of adversarial. ``normalise="shared"`` puts both attributions of a row on
    one scale, so a change of magnitude shows."""
    imgs, advs = _image_array(x), _image_array(x_adv)
    pert = _np(x_adv) - _np(x)
    pert = pert.sum(1) if pert.ndim == 4 else pert
    mc, ma = heatmap_array(attr_clean), heatmap_array(attr_adv)
    n = min(len(imgs), max_images)
    fig = _new_figure(n, 5, cell=1.6)
    axes = fig.subplots(n, 5, squeeze=False)
    heads = ["clean", "perturbation", "adversarial", "attribution (clean)", "attribution (adv)"]
    for i in range(n):
        lims = _limits([mc[i], ma[i]], normalise)
        axes[i, 0].imshow(imgs[i], cmap="gray" if imgs[i].ndim == 2 else None)
        pv = float(np.abs(pert[i]).max()) or 1.0
        axes[i, 1].imshow(pert[i], cmap=_CMAP, norm=TwoSlopeNorm(vmin=-pv, vcenter=0, vmax=pv))
        axes[i, 2].imshow(advs[i], cmap="gray" if advs[i].ndim == 2 else None)
        _draw_map(axes[i, 3], imgs[i], mc[i], lims[0], 0.6)
        _draw_map(axes[i, 4], advs[i], ma[i], lims[1], 0.6)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
        if pred_clean is not None:
            axes[i, 0].set_ylabel(f"pred {pred_clean[i]}", fontsize=8)
        if pred_adv is not None:
            axes[i, 2].set_xlabel(f"pred {pred_adv[i]}", fontsize=8)
    for j, h in enumerate(heads):
        axes[0, j].set_title(h, fontsize=8)
    return fig


def tabular_bar_figure(
    values: Sequence[float] | np.ndarray | torch.Tensor | Any,
    feature_names: Sequence[str] | None = None,
    *,
    errors: Sequence[float] | None = None,
    top_k: int = 15,
    title: str | None = None,
) -> Figure:
    """Horizontal bars of per-feature attributions (one example) or global importance.

    Args:
        values: F values, or a :class:`~xrobust.explain.tabular.GlobalImportance` (its
            mean |attribution| with the spread as error bars).
        feature_names: F names (default x0..).
        errors: optional error bars (e.g. the spread).
        top_k: show the k features of largest |value|.
        title: figure title.

    Example:
        >>> fig = tabular_bar_figure([0.5, -1.0, 0.1], ["a", "b", "c"], top_k=2)
        >>> [t.get_text() for t in fig.axes[0].get_yticklabels()]  # largest |value| on top
        ['b', 'a']
    """
    from xrobust.explain.tabular import GlobalImportance

    if isinstance(values, GlobalImportance):
        feature_names = values.feature_names
        errors = values.std_abs
        title = title or f"global importance ({values.method or 'attributions'}, n={values.n})"
        values = values.mean_abs
    v = _np(values if not isinstance(values, list | tuple) else np.asarray(values)).ravel()
    names = list(feature_names) if feature_names is not None else [f"x{i}" for i in range(len(v))]
    if len(names) != len(v):
        raise DataError(f"{len(names)} feature names for {len(v)} values")
    order = np.argsort(-np.abs(v), kind="stable")[:top_k]
    fig = _new_figure(1, 1, cell=max(2.5, 0.3 * len(order)))
    fig.set_size_inches(6, max(2.0, 0.3 * len(order) + 1))
    ax = fig.subplots()
    ypos = np.arange(len(order))[::-1]
    colors = ["#c0392b" if v[i] >= 0 else "#2c7fb8" for i in order]
    err = None if errors is None else np.asarray(errors, dtype=float)[order]
    ax.barh(ypos, v[order], xerr=err, color=colors)
    ax.set_yticks(ypos)
    ax.set_yticklabels([names[i] for i in order])
    ax.axvline(0, color="black", lw=0.8)
    ax.set_xlabel("attribution")
    if title:
        ax.set_title(title, fontsize=10)
    return fig


def curves_figure(curves: Sequence[Any] | Any, *, title: str | None = None) -> Figure:
    """Deletion and/or insertion curves (mean over examples) with their AUC in the legend.

    Args:
        curves: one or more :class:`~xrobust.explain.metrics.CurveResult`.
    """
    from xrobust.explain.metrics import CurveResult

    items = [curves] if isinstance(curves, CurveResult) else list(curves)
    if not items:
        raise ConfigError("curves_figure needs at least one curve")
    kinds = sorted({c.kind for c in items})
    fig = _new_figure(1, len(kinds), cell=3.2)
    axes = np.atleast_1d(fig.subplots(1, len(kinds), squeeze=False)).ravel()
    for ax, kind in zip(axes, kinds):
        for c in items:
            if c.kind != kind:
                continue
            label = f"{c.method or 'attribution'} (AUC {c.mean_auc:.3f})"
            ax.plot(c.fractions, c.mean_curve, label=label)
        ax.set_xlabel(f"fraction of pixels {'removed' if kind == 'deletion' else 'inserted'}")
        ax.set_ylabel("probability of target")
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(kind, fontsize=10)
        ax.legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    return fig
