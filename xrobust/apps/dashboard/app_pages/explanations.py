"""Explanations: one example under a grid of methods, with their quality metrics
(deletion and insertion curves, the model-randomisation sanity check); for tabular data,
global feature importance and one row's per-feature attributions."""

from __future__ import annotations

import numpy as np
import streamlit as st

from xrobust.apps.dashboard import render, resources
from xrobust.errors import XRobustError
from xrobust.explain import list_explainers

model, data = render.current()
spec = model.spec
names = list(spec.class_names)
image = spec.modality == "image"
st.title("Explanations")

methods = list_explainers(requires_gradients=None if model.differentiable else False)
render.gradient_note(model, "Attribution methods (and the randomisation check)")
preferred = [
    m for m in ("saliency", "integrated_gradients", "gradcam", "occlusion") if m in methods
]
if not image:
    preferred = [m for m in preferred if m != "gradcam"]
c = st.columns([1, 3])
n = 64 if image else 128
x, y, bkey = resources.test_batch(data.bundle, data.key, n)
x_np, y_np = x.numpy(), y.numpy()
example = c[0].number_input("Example", 0, len(x_np) - 1, 0, key="ex_example")
chosen = c[1].multiselect("Methods", methods, default=preferred, key="ex_methods")
try:
    probs = resources.clean_probabilities(model.classifier, model.key, x, bkey)
except XRobustError as exc:
    st.error(f"The model could not answer: {exc}")
    st.stop()
pred = probs.argmax(1)
target = int(pred[example])
st.markdown(
    f"Example #{example}: true **{names[int(y_np[example])]}**, predicted "
    f"{render.top_k(probs[example], names)}. Every method explains the predicted class "
    f"**{names[target]}**."
)
xi, ti = x_np[example : example + 1], pred[example : example + 1]

maps: dict[str, np.ndarray] = {}
queries: dict[str, int] = {}
for m in chosen:
    try:
        maps[m], queries[m] = resources.explain_counted(model.classifier, model.key, xi, ti, m)
    except XRobustError as exc:
        st.warning(f"{m}: {exc}")
if queries:
    gradient_methods = set(list_explainers(requires_gradients=True))
    st.caption(
        "Cost of the maps: "
        + ", ".join(
            f"{k}: white-box (gradients)"
            if k in gradient_methods and not v
            else f"{k}: {v:,} model queries"
            for k, v in queries.items()
        )
    )

if maps and image:
    from xrobust.explain.figures import heatmap_array

    tile = render.image_tile(x_np[example], spec.bounds)
    tiles, caps = [tile], ["input"]
    for m, a in maps.items():
        amap = heatmap_array(a)[0]
        tiles.append(render.heat_tile(amap, float(np.abs(amap).max()), tile))
        caps.append(m)
    st.image(tiles, caption=caps, width=render.TILE * 2)
elif maps:
    feats = list(spec.feature_names or [f"x{j}" for j in range(x_np.shape[1])])
    st.subheader(f"Per-feature attributions of row #{example}")
    st.dataframe(
        {"feature": feats, "value": x_np[example], **{m: a[0] for m, a in maps.items()}},
        hide_index=True,
        height=300,
    )
    from xrobust.explain.figures import tabular_bar_figure

    first = next(iter(maps))
    st.pyplot(
        tabular_bar_figure(maps[first][0], feats, title=f"{first}, row #{example}"),
        clear_figure=True,
    )

# ---------------------------------------------------------------- quality metrics
st.subheader("How far can these explanations be trusted?")
st.caption(
    "Deletion: p(class) as the most important features are removed (lower area = more "
    "faithful). Insertion: as they are put back into a blurred / zeroed input (higher is "
    "better). Randomisation (Adebayo et al.): maps must change when the model's weights are "
    "randomised."
)
rand = st.checkbox(
    "Run the randomisation sanity check",
    value=True,
    key="ex_rand",
    disabled=not model.differentiable,
    help=None if model.differentiable else "it randomises the weights: a black box has none here",
)
rows = []
deletion: dict[str, list[float]] = {}
for m, a in maps.items():
    try:
        met = resources.explanation_metrics(
            model.classifier,
            model.key,
            xi,
            ti,
            m,
            a,
            "blur" if image else "zeros",
            bool(rand and model.differentiable),
        )
    except XRobustError as exc:
        st.warning(f"{m}: metrics unavailable ({exc})")
        continue
    row = {
        "method": m,
        "deletion AUC (lower better)": round(met["deletion"]["mean_auc"], 4),
        "insertion AUC (higher better)": round(met["insertion"]["mean_auc"], 4),
    }
    if "randomisation" in met:
        r = met["randomisation"]
        row["randomised Spearman"] = round(r["final_spearman"], 4)
        row["sanity check"] = "pass" if r["passed"] else "FAIL"
        threshold = r["threshold"]
    rows.append(row)
    deletion[m] = met["deletion"]["scores"][0]
    fractions = met["deletion"]["fractions"]
if rows:
    st.dataframe(rows, hide_index=True)
    passed = [row["method"] for row in rows if row.get("sanity check") == "pass"]
    for row in rows:
        if row.get("sanity check") == "FAIL":
            render.randomisation_failed(
                row["method"], row["randomised Spearman"], threshold, passed
            )
    st.altair_chart(
        render.curves_chart(fractions, deletion, "fraction removed", f"p({names[target]})")
    )

# ---------------------------------------------------------------- tabular: global importance
if not image and maps:
    from xrobust.explain import GlobalImportance
    from xrobust.explain.figures import tabular_bar_figure

    st.subheader("Global feature importance")
    gm = st.selectbox("Method", list(maps), key="ex_global_method")
    try:
        gi = GlobalImportance.from_dict(
            resources.global_importance(model.classifier, model.key, x_np, pred, gm, tuple(feats))
        )
        st.pyplot(tabular_bar_figure(gi), clear_figure=True)
        st.dataframe(
            {
                "feature": gi.feature_names,
                "mean |attribution|": gi.mean_abs,
                "mean signed": gi.mean_signed,
            },
            hide_index=True,
        )
    except XRobustError as exc:
        st.warning(f"{gm}: {exc}")
