"""Display helpers: turn arrays the library computed into images, tables and badges.

Only display scaling happens here (map values to colours and pixels); every number shown
comes from a library call in :mod:`xrobust.apps.dashboard.resources`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st

__all__ = [
    "BADGE",
    "TILE",
    "current",
    "gradient_note",
    "heat_tile",
    "image_tile",
    "partial_note",
    "perturbation_tile",
    "robust_metric",
    "show_spec",
    "top_k",
]

#: sanity-check status -> (icon, colour)
BADGE = {
    "pass": (":material/check_circle:", "green"),
    "warn": (":material/warning:", "orange"),
    "fail": (":material/cancel:", "red"),
    "skip": (":material/remove_circle:", "gray"),
    "not_evaluated": (":material/help:", "blue"),
}

TILE = 96  # pixels per tile side


def current() -> tuple[Any, Any]:
    """The sidebar's model and data handles; stops the page with a hint when missing."""
    model = st.session_state.get("_xr_model")
    data = st.session_state.get("_xr_data")
    if model is None or data is None:
        st.info("Choose a model and data in the sidebar.")
        st.stop()
    return model, data


def _upscale(img: np.ndarray, side: int = TILE) -> np.ndarray:
    h = img.shape[0]
    k = max(1, side // max(1, h))
    return np.repeat(np.repeat(img, k, axis=0), k, axis=1)


def image_tile(x: np.ndarray, bounds: tuple[float, float]) -> np.ndarray:
    """An input (C, H, W) as a uint8 grey or RGB tile, scaled from ``bounds``."""
    lo, hi = bounds
    a = np.clip((x - lo) / (hi - lo), 0.0, 1.0)
    a = a[0] if a.shape[0] == 1 else np.moveaxis(a[:3], 0, -1)
    return _upscale((a * 255).astype(np.uint8))


def _diverging(m: np.ndarray, vmax: float) -> np.ndarray:
    from matplotlib import colormaps

    vmax = vmax if vmax > 0 else 1.0
    rgba = colormaps["RdBu_r"](np.clip(m / vmax, -1.0, 1.0) * 0.5 + 0.5)
    return (rgba[..., :3] * 255).astype(np.uint8)


def perturbation_tile(delta: np.ndarray) -> np.ndarray:
    """A perturbation (C, H, W) amplified to the full colour range (red +, blue -)."""
    m = delta.sum(0) if delta.ndim == 3 else delta
    return _upscale(_diverging(m, float(np.abs(m).max())))


def heat_tile(amap: np.ndarray, vmax: float, image: np.ndarray | None = None) -> np.ndarray:
    """A 2-D attribution map as a diverging colour tile on a common scale ``vmax``,
    blended over the grey input tile when given."""
    tile = _upscale(_diverging(amap, vmax))
    if image is not None:
        base = image if image.ndim == 3 else np.repeat(image[..., None], 3, axis=2)
        tile = (0.6 * tile + 0.4 * base).astype(np.uint8)
    return tile


def top_k(probs: np.ndarray, names: Any, k: int = 3) -> str:
    """'name p, name p, ...' for the k most probable classes."""
    order = np.argsort(-probs, kind="stable")[:k]
    return ", ".join(f"{names[i]} {probs[i]:.2f}" for i in order)


def show_spec(model: Any) -> None:
    """The model's spec in the sidebar."""
    spec = model.spec
    lo, hi = spec.bounds
    st.caption(
        f"**{model.label}**  \n"
        f"input shape {tuple(spec.input_shape)} ({spec.modality}), {spec.num_classes} classes, "
        f"bounds [{lo:g}, {hi:g}]  \n"
        f"source: {model.source}, differentiable: {'yes' if model.differentiable else 'no'}"
        + (
            f"  \nquery budget: {model.query_budget:,} rows per computation"
            if getattr(model, "query_budget", None)
            else ""
        )
        + "".join(f"  \n{n}" for n in getattr(model, "notes", []))
    )


def partial_note(partial: bool, reason: str | None = None) -> None:
    """A warning when the query budget cut a computation short."""
    if partial:
        st.warning(
            f"Partial result: the query budget ran out ({reason or 'stopped early'}). "
            "What was finished is shown; raise the budget in the sidebar for the rest."
        )


def gradient_note(model: Any, what: str) -> None:
    """Say why gradient-only options are hidden on a black box."""
    if not model.differentiable:
        st.caption(
            f":material/info: {what} that need input gradients are hidden: the model is a "
            f"black box ({model.source}), answering queries only"
            + (
                "; the ONNX source's white-box toggle (onnx2torch) brings them back."
                if model.source == "onnx"
                else "."
            )
        )


def robust_metric(col: Any, title: str, acc: float | None, bound: str | None, note: str = "") -> None:
    """A robust-accuracy metric that says what it is: a measurement (white-box attack) or
    an upper bound (query-only attack: what these queries did not break may be breakable)."""
    value = "n/a" if acc is None else f"{acc:.4f}"
    if bound == "upper":
        col.metric(
            f"{title} (upper bound)",
            "n/a" if acc is None else f"≤ {value}",
            help="An upper bound from a query-only attack" + (f" ({note})" if note else "")
            + ": a white-box attack may find adversarial examples these queries did not.",
        )
    else:
        col.metric(
            f"{title} (measured)" if bound == "measured" else title,
            value,
            help=("Measured by a white-box (gradient) attack" + (f": {note}" if note else ""))
            if bound == "measured"
            else (note or None),
        )
