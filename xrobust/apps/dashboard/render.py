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
    "clear_selection",
    "current",
    "curves_chart",
    "flip_matrix",
    "gradient_note",
    "heat_tile",
    "image_tile",
    "matrix_columns",
    "partial_note",
    "perturbation_tile",
    "randomisation_failed",
    "robust_metric",
    "sanity_badges",
    "selected_cell",
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


def robust_metric(
    col: Any, title: str, acc: float | None, bound: str | None, note: str = "", where: str = ""
) -> None:
    """A robust-accuracy metric that says what it is: a measurement (white-box attack) or
    an upper bound (query-only attack: what these queries did not break may be breakable).

    The label stays short (``title``, e.g. "Robust accuracy") so that it is never cut in a
    narrow column; ``where`` (e.g. "linf eps 0.1") and the kind of figure go in a caption
    under the number, the details (``note``) in the help text."""
    value = "n/a" if acc is None else f"{acc:.4f}"
    if bound == "upper":
        col.metric(
            title,
            "n/a" if acc is None else f"≤ {value}",
            help="An upper bound from a query-only attack"
            + (f" ({note})" if note else "")
            + ": a white-box attack may find adversarial examples these queries did not.",
        )
        kind = "upper bound"
    else:
        col.metric(
            title,
            value,
            help=("Measured by a white-box (gradient) attack" + (f": {note}" if note else ""))
            if bound == "measured"
            else (note or None),
        )
        kind = "measured" if bound == "measured" else ""
    caption = ", ".join(t for t in (where, kind) if t)
    if caption:
        col.caption(caption)


def curves_chart(x: Any, lines: dict[str, Any], x_title: str, y_title: str) -> Any:
    """A line chart of ``lines`` (legend label -> values over ``x``) whose legend sits
    under the plot with room for whole labels (Vega-Lite cuts legend labels at 160 px)."""
    import altair as alt
    import pandas as pd

    rows = [
        {"x": float(xv), "value": float(v), "series": label}
        for label, values in lines.items()
        for xv, v in zip(x, values, strict=True)
    ]
    whole = all(float(v).is_integer() for v in x)  # severities: no 1.2, 1.4, ... ticks
    axis = alt.Axis(tickMinStep=1, format="d") if whole else alt.Axis()
    return (
        alt.Chart(pd.DataFrame(rows))
        .mark_line(point=True)
        .encode(
            x=alt.X("x:Q", title=x_title, axis=axis),
            y=alt.Y("value:Q", title=y_title, scale=alt.Scale(domain=[0, 1])),
            color=alt.Color(
                "series:N",
                title=None,
                sort=list(lines),
                legend=alt.Legend(orient="bottom", columns=3, labelLimit=0),
            ),
            tooltip=[alt.Tooltip("series:N"), alt.Tooltip("x:Q", title=x_title), "value:Q"],
        )
    )


def flip_matrix(confusion: np.ndarray, names: Any) -> Any:
    """The clean-vs-adversarial confusion as a heatmap table: every class a row and a
    column (also those without flips), the count inside its cell on a white-to-red scale,
    the diagonal (not flipped) greyed."""
    import pandas as pd

    labels = [str(n) for n in names]
    off = np.asarray(confusion, dtype=int).copy()
    np.fill_diagonal(off, 0)
    df = pd.DataFrame(off, index=labels, columns=labels)
    top = max(1, int(off.max()))
    diag = np.full(off.shape, "", dtype=object)
    np.fill_diagonal(diag, "background-color: #eeeeee; color: #999999")
    return (
        df.style.background_gradient(cmap="Reds", vmin=0, vmax=top * 1.25)
        .apply(lambda _: pd.DataFrame(diag, index=labels, columns=labels), axis=None)
        .format(lambda v: f"{v}" if v else "·")
    )


def matrix_columns(names: Any) -> dict[str, Any]:
    """Narrow, equal columns for :func:`flip_matrix` (every class fits the page's column);
    long class names stay whole in the header's tooltip."""
    labels = [str(n) for n in names]
    width = max(30, min(90, 9 * max(len(n) for n in labels) + 12))
    return {
        "_index": st.column_config.Column("↓ →", width=width + 10, help="true ↓, adversarial →"),
        **{n: st.column_config.Column(n, width=width, help=f"flipped to {n}") for n in labels},
    }


def selected_cell(event: Any, names: Any) -> tuple[int, int] | None:
    """The (row class, column class) of a :func:`flip_matrix` cell selection, or None."""
    labels = [str(n) for n in names]
    try:
        cells = event.selection.cells
    except AttributeError:
        return None
    for row, col in cells or []:
        if col in labels and 0 <= int(row) < len(labels):
            return int(row), labels.index(col)
    return None


def clear_selection(key: str) -> None:
    """A button callback: empty the selection of the dataframe ``key``."""
    st.session_state[key] = {"selection": {"rows": [], "columns": [], "cells": []}}


#: what to try when a sanity check warns or fails (its ``why`` says what it means)
def sanity_badges(checks: list[dict[str, Any]], per_row: int = 3) -> None:
    """The sanity checks as badges with their message; a warning or failure also says why
    the check matters and what to try."""
    cols = st.columns(per_row)
    for i, c in enumerate(checks):
        icon, colour = BADGE.get(c["status"], BADGE["skip"])
        with cols[i % per_row]:
            st.badge(f"{c['name']}: {c['status']}", icon=icon, color=colour)
            st.caption(c["message"])
            if c["status"] in ("warn", "fail"):
                hint = _what_to_try(c) or "see the sanity section of the full audit's report."
                st.caption(f"**Why it matters:** {c.get('why') or 'see the report.'}  \n"
                           f"**What to try:** {hint}")  # fmt: skip


def _what_to_try(check: dict[str, Any]) -> str:
    """The report's next step for a sanity check that warns or fails (one text for both)."""
    from xrobust.audit.advice import what_to_try
    from xrobust.audit.report import CheckResult

    return what_to_try(CheckResult(check["name"], check["status"], check.get("message", "")))


def randomisation_failed(
    method: str, spearman: float, threshold: float, passing: list[str] | tuple[str, ...] = ()
) -> None:
    """Explain a failed model-randomisation check (Adebayo et al.) of ``method``, with the
    report's words (``xrobust.audit.advice``); ``passing``: the methods that passed it."""
    from xrobust.audit.advice import RANDOMISATION_WHY, randomisation_advice

    cause, attempt = randomisation_advice(method, passing)
    st.warning(
        f"**{method} failed the randomisation check** (rank correlation {spearman:.2f} with "
        f"its maps on the trained model after every layer was re-initialised; it passes "
        f"below {threshold:g}).  \n"
        f"**What it means:** {RANDOMISATION_WHY}  \n"
        f"**Likely cause:** {cause}  \n"
        f"**What to try:** {attempt}",
        icon=":material/warning:",
    )
