"""Report figures, drawn with matplotlib from a report's plain data (never from tensors),
so that ``xrobust report report.json`` redraws them exactly. Each function returns a
:class:`matplotlib.figure.Figure`; :func:`to_png_base64` embeds one in HTML.

Example:
    >>> from xrobust.audit.figures import robustness_curves, to_png_base64
    >>> nd = {"eps": [0.1, 0.2], "curves": {"pgd": {"robust_accuracy": [0.5, 0.1]}}}
    >>> fig = robustness_curves(nd, 0.9, "linf")
    >>> to_png_base64(fig).startswith("iVBOR")
    True
"""

from __future__ import annotations

import base64
import io
import re
import textwrap
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.figure import Figure

__all__ = [
    "confusion",
    "corruption_curves",
    "corruption_examples",
    "explanation_grid",
    "minimal_perturbation_hist",
    "per_class_bars",
    "query_curves",
    "reliability_diagram",
    "robustness_curves",
    "short_label",
    "tabular_explanations",
    "to_png_base64",
    "vulnerable_examples",
    "wrap_label",
]

_COLORS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf"]


def _fig(w: float, h: float) -> Figure:
    fig = Figure(figsize=(w, h), dpi=90)
    fig.set_layout_engine("constrained")
    return fig


def wrap_label(text: str, width: int = 14, max_lines: int = 3) -> str:
    """``text`` on lines of about ``width`` characters, broken after "_", "-" or spaces,
    so that a panel title is shown whole ("integrated_" / "gradients"); only a label
    longer than ``max_lines`` lines is shortened, and then it ends in "…"."""
    words = re.findall(r"[^\s_\-/]+[_\-/]?|\s+", str(text))
    lines: list[str] = []
    line = ""
    for w in words:
        if line and len(line) + len(w.rstrip()) > width:
            lines.append(line.rstrip())
            line = w.lstrip()
        else:
            line += w
    if line.strip():
        lines.append(line.rstrip())
    lines = [piece for ln in lines for piece in (textwrap.wrap(ln, width) or [""])]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(1, width - 1)] + "…"
    return "\n".join(lines)


def short_label(text: str, width: int = 12) -> str:
    """A tick label of at most ``width`` characters; a longer one ends in "…"."""
    text = str(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def to_png_base64(fig: Figure) -> str:
    """PNG bytes of ``fig``, base64-encoded (ASCII), for a ``data:image/png`` URL."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def reliability_diagram(cal: dict[str, Any]) -> Figure:
    """Accuracy against confidence per bin, with the diagonal of perfect calibration."""
    fig = _fig(4.2, 3.4)
    ax = fig.add_subplot()
    edges = np.asarray(cal["bin_edges"], dtype=float)
    centers = (edges[:-1] + edges[1:]) / 2
    width = edges[1:] - edges[:-1]
    acc = np.array([np.nan if a is None else a for a in cal["bin_accuracy"]], dtype=float)
    ax.bar(
        centers,
        np.nan_to_num(acc),
        width=width * 0.95,
        color="#1f77b4",
        alpha=0.8,
        label="accuracy",
    )
    ax.plot([0, 1], [0, 1], "--", color="#444", lw=1, label="perfect calibration")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability (ECE {cal['ece']:.3f})")
    ax.legend(loc="upper left", fontsize=8)
    return fig


def confusion(
    matrix: Sequence[Sequence[int]],
    names: Sequence[str],
    title: str,
    xlabel: str = "predicted",
    ylabel: str = "true",
) -> Figure:
    """A count matrix as a heatmap with counts written in the cells (small matrices)."""
    m = np.asarray(matrix, dtype=float)
    k = len(m)
    size = min(6.0, 2.0 + 0.35 * k)
    fig = _fig(size + 0.8, size)
    ax = fig.add_subplot()
    im = ax.imshow(m, cmap="Blues")
    ticks = list(range(k))
    labels = [short_label(n) for n in names]
    ax.set_xticks(ticks, labels, rotation=90 if k > 6 else 0, fontsize=8)
    ax.set_yticks(ticks, labels, fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if k <= 12:
        top = m.max() if m.size else 0
        for i in range(k):
            for j in range(k):
                if m[i, j]:
                    ax.text(
                        j,
                        i,
                        int(m[i, j]),
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if m[i, j] > top / 2 else "black",
                    )
    fig.colorbar(im, ax=ax, shrink=0.8)
    return fig


def robustness_curves(norm_data: dict[str, Any], clean_accuracy: float, norm: str) -> Figure:
    """Accuracy against eps for every attack and the per-example worst case (the curves'
    ``RobustnessCurve.to_dict()``)."""
    from xrobust.attacks.norms import get_norm

    label = get_norm(norm).label
    fig = _fig(4.6, 3.4)
    ax = fig.add_subplot()
    for i, (name, entry) in enumerate(norm_data["curves"].items()):
        eps = [0.0, *entry.get("eps", norm_data["eps"])]
        curve = entry["robust_accuracy"]
        ys = [clean_accuracy, *[np.nan if v is None else v for v in curve]]
        style = (
            {"color": "black", "lw": 2.2, "ls": "--"}
            if name == "worst"
            else {"color": _COLORS[i % 8], "lw": 1.5}
        )
        ax.plot(eps, ys, marker="o", ms=3, label="worst case" if name == "worst" else name, **style)
    head = norm_data.get("headline_eps")
    if head is not None:
        ax.axvline(head, color="#999", lw=0.8, ls=":")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"eps ({label})")
    ax.set_ylabel(
        "robust accuracy" + (" (upper bound)" if norm_data.get("bound") == "upper" else "")
    )
    ax.set_title(f"Robustness curve, {label}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def query_curves(curves: dict[str, Any], clean_accuracy: float, norm: str) -> Figure:
    """Robust accuracy against queries per example (log scale) for each query-only attack
    (``QueryCurve.to_dict()`` entries)."""
    from xrobust.attacks.norms import get_norm

    label = get_norm(norm).label
    fig = _fig(4.6, 3.4)
    ax = fig.add_subplot()
    for i, (name, c) in enumerate(curves.items()):
        ax.step([1, *c["queries"]], [clean_accuracy, *c["robust_accuracy"]], where="post",
                color=_COLORS[i % 8], lw=1.6, label=f"{name} (eps {c['eps']:g})")  # fmt: skip
    ax.set_xscale("log")
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("queries per example")
    ax.set_ylabel("robust accuracy (upper bound)")  # query-only attacks
    ax.set_title(f"Robust accuracy against queries, {label}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def per_class_bars(
    per_class: dict[str, Any], names: Sequence[str], eps: float, norm: str
) -> Figure:
    """Clean and robust accuracy per class at the headline eps
    (``PerClassAccuracy.to_dict()``)."""
    k = len(names)
    fig = _fig(max(4.0, 0.45 * k + 1.5), 3.2)
    ax = fig.add_subplot()
    xs = np.arange(k)
    clean = [np.nan if v is None else v for v in per_class["clean_accuracy"]]
    robust = [np.nan if v is None else v for v in per_class["robust_accuracy"]]
    ax.bar(xs - 0.2, clean, width=0.4, label="clean", color="#1f77b4")
    ax.bar(xs + 0.2, robust, width=0.4, label=f"robust ({norm} eps={eps:g})", color="#d62728")
    ax.set_xticks(xs, [short_label(n) for n in names], rotation=90 if k > 8 else 0, fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("accuracy")
    ax.set_title("Per-class accuracy")
    # below the axes, never over the bars (clean accuracy is near 1 in every class)
    fig.legend(loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return fig


def minimal_perturbation_hist(mp: dict[str, Any], norm: str) -> Figure:
    """Distribution of each example's smallest fooling eps (``MinimalPerturbation.to_dict()``;
    examples not fooled up to ``eps_max`` counted apart)."""
    fig = _fig(4.4, 3.2)
    ax = fig.add_subplot()
    vals = [v for v in mp["eps"] if v is not None and v > 0]
    outcome = mp.get("outcome")
    censored = outcome.count("not_broken") if outcome else sum(v is None for v in mp["eps"])
    wrong = outcome.count("misclassified_clean") if outcome else 0
    if vals:
        ax.hist(vals, bins=min(20, max(5, len(set(vals)))), color="#9467bd", alpha=0.85)
    med = mp.get("median_eps")
    if med is not None:
        ax.axvline(med, color="black", ls="--", lw=1, label=f"median {med:.3g}")
        ax.legend(fontsize=8)
    elif mp.get("median_above_eps_max"):
        ax.text(0.5, 0.5, f"median > {mp['eps_max']:g}", transform=ax.transAxes, ha="center")
    ax.set_xlabel(f"minimal {norm} perturbation")
    ax.set_ylabel("examples")
    ax.yaxis.get_major_locator().set_params(integer=True)  # whole examples
    subtitle = textwrap.fill(_unshown(mp, len(vals), censored, wrong), 50)
    ax.set_title(f"Smallest eps that fools each example\n{subtitle}", fontsize=9)
    return fig


def _unshown(mp: dict[str, Any], shown: int, censored: int, wrong: int) -> str:
    """The histogram's subtitle in words: how many examples it shows, and which not."""
    eps_max = f"{mp['eps_max']:g}"
    if censored:
        text = f"{censored:,} of {shown + censored:,} not fooled up to eps {eps_max} (not shown)"
    else:
        text = f"all {shown:,} fooled by eps {eps_max}"
    if wrong:
        text += f"; {wrong:,} wrong before any attack (not shown)"
    return text


def _gray(ax: Any, img: Any, title: str) -> None:
    ax.imshow(np.asarray(img, dtype=float), cmap="gray", vmin=0, vmax=None)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def vulnerable_examples(rows: list[dict[str, Any]], names: Sequence[str]) -> Figure:
    """Clean image, adversarial image and their difference for the most vulnerable examples."""
    n = len(rows)
    fig = _fig(1.6 * n + 0.5, 5.0)
    axes = fig.subplots(3, n, squeeze=False)
    for j, r in enumerate(rows):
        x = np.asarray(r["x"], dtype=float)
        xa = np.asarray(r["x_adv"], dtype=float)
        _gray(axes[0][j], x, wrap_label(f"clean: {names[r['label']]}", 16))
        label = f"{short_label(names[r['label']], 8)}→{short_label(names[r['pred_adv']], 8)}"
        _gray(axes[1][j], xa, f"{label}\neps {r['eps']:.3g}")
        d = xa - x
        lim = float(np.abs(d).max()) or 1.0
        axes[2][j].imshow(d, cmap="RdBu_r", vmin=-lim, vmax=lim)
        axes[2][j].set_title("perturbation", fontsize=8)
        axes[2][j].axis("off")
    return fig


def corruption_curves(data: dict[str, Any]) -> Figure:
    """Accuracy against severity for every corruption."""
    fig = _fig(4.8, 3.4)
    ax = fig.add_subplot()
    sev = [0, *data["severities"]]
    for i, (name, r) in enumerate(data["corruptions"].items()):
        ax.plot(
            sev,
            [data["clean_accuracy"], *r["accuracy"]],
            marker="o",
            ms=3,
            color=_COLORS[i % 8],
            label=name,
        )
    ax.set_ylim(-0.02, 1.02)
    ax.set_xticks(sev)
    ax.set_xlabel("severity (0 = clean)")
    ax.set_ylabel("accuracy")
    ax.set_title("Corruption robustness")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def corruption_examples(example: dict[str, Any], severities: Sequence[int]) -> Figure:
    """One image under every corruption and severity."""
    names = list(example["corrupted"])
    if not names or not severities:
        raise ValueError("no corrupted example to show (no corruption finished)")
    cols = len(severities) + 1
    fig = _fig(1.2 * cols + 0.6, 1.2 * len(names) + 0.3)
    axes = fig.subplots(len(names), cols, squeeze=False)
    for i, name in enumerate(names):
        _gray(axes[i][0], example["clean"], "clean" if i == 0 else "")
        axes[i][0].text(
            -0.1,
            0.5,
            name,
            transform=axes[i][0].transAxes,
            rotation=90,
            ha="right",
            va="center",
            fontsize=7,
        )
        for j, img in enumerate(example["corrupted"][name]):
            _gray(axes[i][j + 1], img, f"severity {severities[j]}" if i == 0 else "")
    return fig


def _heat(ax: Any, a: Any, title: str) -> None:
    a = np.asarray(a, dtype=float)
    lim = float(np.abs(a).max()) or 1.0
    ax.imshow(a, cmap="RdBu_r", vmin=-lim, vmax=lim)
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def explanation_grid(data: dict[str, Any], names: Sequence[str]) -> Figure:
    """Per example: clean image and attributions, adversarial image and attributions."""
    ex = data["examples"]
    methods = [m for m, v in data["methods"].items() if "clean" in v]
    has_adv = any("x_adv" in r for r in ex)
    cols = (1 + len(methods)) * (2 if has_adv else 1)
    fig = _fig(1.35 * cols + 0.4, 1.45 * len(ex) + 0.4)
    axes = fig.subplots(len(ex), cols, squeeze=False)
    for i, r in enumerate(ex):
        c = 0
        _gray(axes[i][c], r["x"], wrap_label(f"clean: {names[r['label']]}"))
        c += 1
        for m in methods:
            _heat(axes[i][c], data["methods"][m]["clean"][i], wrap_label(m))
            c += 1
        if has_adv and "x_adv" in r:
            _gray(axes[i][c], r["x_adv"], wrap_label(f"adv: {names[r['pred_adv']]}"))
            c += 1
            for m in methods:
                adv = data["methods"][m].get("adversarial")
                if adv is not None:
                    _heat(axes[i][c], adv[i], wrap_label(m))
                c += 1
    return fig


def tabular_explanations(
    data: dict[str, Any], feature_names: Sequence[str] | None, top: int = 12
) -> Figure:
    """Mean |attribution| per feature on clean and adversarial examples (top features)."""
    methods = [m for m, v in data["methods"].items() if "clean" in v]
    fig = _fig(4.2 * max(1, len(methods)), 3.8)
    axes = fig.subplots(1, max(1, len(methods)), squeeze=False)[0]
    for ax, m in zip(axes, methods):
        clean = np.abs(np.asarray(data["methods"][m]["clean"], dtype=float)).mean(0)
        adv_l = data["methods"][m].get("adversarial")
        adv = np.abs(np.asarray(adv_l, dtype=float)).mean(0) if adv_l is not None else None
        order = np.argsort(-clean)[:top][::-1]
        labels = [short_label(feature_names[k] if feature_names else f"f{k}", 32) for k in order]
        ys = np.arange(len(order))
        ax.barh(ys + 0.2, clean[order], height=0.4, label="clean", color="#1f77b4")
        if adv is not None:
            ax.barh(ys - 0.2, adv[order], height=0.4, label="adversarial", color="#d62728")
        ax.set_yticks(ys, labels, fontsize=7)
        ax.set_title(wrap_label(f"{m}: mean |attribution|", 40), fontsize=9)
    if methods:  # one legend below the panels, clear of the bars
        handles, names = axes[0].get_legend_handles_labels()
        fig.legend(handles, names, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    return fig
