"""Black-box behaviour: what the model does to inputs, seen only through its outputs.

Occlusion sensitivity, confidence along the adversarial and random directions, decisions
under corruptions by severity, the minimal perturbation that flips each example, and the
number of model queries all of it took.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from xrobust.apps.dashboard import render, resources
from xrobust.errors import XRobustError

model, data = render.current()
spec = model.spec
names = list(spec.class_names)
lo, hi = spec.bounds
span = resources.eps_scale(spec)
st.title("Black-box behaviour")
st.caption(
    "Forward-only probes (occlusion, random directions, corruptions) work on any model; the "
    "adversarial direction and the minimal perturbation use the selected attack."
)

c = st.columns([1, 1, 2, 1])
n = c[0].select_slider("Examples", [8, 16, 32, 64], value=16, key="bb_n")
norm = c[1].selectbox("Norm", resources.norms(), key="bb_norm")
slider = resources.eps_slider(norm, span)
reach = c[2].slider(
    "Largest eps probed",
    0.0,
    float(round(slider.max, 4)),
    float(round(slider.probe, 4)),
    key=f"bb_reach_{norm}",
)
attacks = resources.supported_attacks(model.differentiable, spec.num_classes)
name = (
    resources.attack_select(c[3], attacks, model.differentiable, "bb_attack") if attacks else None
)

# a query-only attack's per-example query cap (its option, when it has one)
capped: tuple[tuple[str, int], ...] = ()
if name is not None:
    q_opt = next(
        (o for o in ("max_queries", "queries", "n_queries") if o in resources.attack_options(name)),
        None,
    )
    if q_opt is not None:
        capped = ((q_opt, 100),)

x, y, bkey = resources.test_batch(data.bundle, data.key, n)
x_np, y_np = x.numpy(), y.numpy()
queries: dict[str, int] = {}
example = st.number_input("Example", 0, len(x) - 1, 0, key="bb_example")
try:
    probs = resources.clean_probabilities(model.classifier, model.key, x, bkey)
except XRobustError as exc:
    st.error(f"The model could not answer: {exc}")
    st.stop()
queries["predictions"] = len(x)
pred = probs.argmax(1)
st.markdown(
    f"Example #{example}: true **{names[int(y_np[example])]}**, predicted "
    f"{render.top_k(probs[example], names)}"
)

# ---------------------------------------------------------------- occlusion
st.subheader("Occlusion sensitivity")
try:
    occ, q = resources.explain_counted(
        model.classifier,
        model.key,
        x_np[example : example + 1],
        pred[example : example + 1],
        "occlusion",
    )
    queries["occlusion"] = q
    if spec.modality == "image":
        from xrobust.explain.figures import heatmap_array

        amap = heatmap_array(occ)[0]
        tile = render.image_tile(x_np[example], spec.bounds)
        st.image(
            [tile, render.heat_tile(amap, float(np.abs(amap).max()), tile)],
            caption=["input", f"occlusion: drop in p({names[int(pred[example])]}) (red)"],
            width=render.TILE * 2,
        )
    else:
        feats = list(spec.feature_names or [f"x{j}" for j in range(x_np.shape[1])])
        st.bar_chart({"feature": feats, "occlusion": occ[0]}, x="feature", y="occlusion")
except XRobustError as exc:
    st.error(f"Occlusion could not run on this model: {exc}")

# ---------------------------------------------------------------- directions
st.subheader("Confidence along directions")
mags = tuple(round(reach * k / 10, 6) for k in range(11))
x_adv = None
if name is not None and reach > 0:
    options = {"eps": float(reach), "norm": norm, "bounds": spec.bounds, "seed": 0, **dict(capped)}
    try:
        res = resources.attack(
            model.classifier,
            model.key,
            x,
            y,
            bkey,
            name,
            tuple(sorted(options.items())),
            spec.num_classes,
        )
        x_adv = res["x_adv"]
        queries[f"{name} (direction)"] = res["queries"]
        render.partial_note(res["partial"], res["stop_reason"])
    except XRobustError as exc:
        st.error(f"The attack could not run: {exc}")
elif name is None:
    render.gradient_note(model, "Attacks")
    st.info("No registered attack can run on this model: the adversarial direction is not shown.")
if x_adv is not None:
    try:
        conf = resources.direction_confidence(
            model.classifier, model.key, x_np, y_np, x_adv, norm, mags, spec.bounds, 4
        )
        queries["directions"] = conf["queries"]
        rnd = conf["random"]  # (k, N, M)
        lines = {
            "adversarial direction (mean)": conf["adversarial"].mean(0),
            "random directions (mean)": rnd.mean((0, 1)),
            "random directions (lowest)": rnd.min(0).mean(0),
        }
        st.altair_chart(
            render.curves_chart(mags, lines, f"eps ({norm})", "probability of the true class")
        )
        st.caption(
            f"Mean over {n} examples of p(true class) at x + eps·d, d a unit {norm} direction "
            "towards the attack's adversarial, or one of 4 random directions."
        )
    except XRobustError as exc:
        st.error(f"The directions could not be probed: {exc}")

# ---------------------------------------------------------------- corruptions
st.subheader("Decisions under corruptions")
from xrobust.audit.corruptions import list_corruptions  # noqa: E402

cnames = tuple(list_corruptions(spec.modality))
if cnames:
    try:
        cor = resources.corruption_decisions(
            model.classifier,
            model.key,
            x,
            y,
            bkey,
            cnames,
            tuple(spec.bounds),
            resources.train_statistics(data.bundle, data.key),
        )
        queries["corruptions"] = cor["queries"]
        acc = {name_: (cor["pred"][name_] == y_np).mean(1) for name_ in cnames}
        st.altair_chart(render.curves_chart(cor["severities"], acc, "severity", "accuracy"))
        decisions = {
            "corruption": list(cnames),
            **{
                f"severity {s}": [names[int(cor["pred"][c_][k, example])] for c_ in cnames]
                for k, s in enumerate(cor["severities"])
            },
        }
        st.caption(f"Example #{example}'s predicted class under each corruption:")
        st.dataframe(decisions, hide_index=True)
        if spec.modality == "image":
            sel = st.selectbox("Show corruption", cnames, key="bb_corruption")
            st.image(
                [render.image_tile(e, spec.bounds) for e in cor["examples"][sel]],
                caption=[f"severity {s}" for s in cor["severities"]],
                width=render.TILE,
            )
    except XRobustError as exc:
        st.error(f"The corruptions could not be evaluated: {exc}")
else:
    st.info(f"No corruption is registered for {spec.modality} data.")

# ---------------------------------------------------------------- minimal perturbation
st.subheader("Minimal perturbation that flips each example")
# a search over eps, one attack per step: cheap with gradients, hundreds of requests over
# HTTP, so a black box computes it on request
minimal = name is not None and reach > 0
if minimal and not model.differentiable:
    minimal = st.toggle(
        "Search the minimal perturbation",
        value=False,
        key="bb_minimal_black",
        help=f"a search over eps with {name}: up to about {len(x) * 100 * 8:,} model queries "
        "on this black box",
    )
    if not minimal:
        st.caption("Off by default on a black box: it sends many queries. Switch it on above.")
if minimal:
    try:
        mp = resources.minimal_eps(
            model.classifier,
            model.key,
            x,
            y,
            bkey,
            name,
            float(reach),
            tuple(sorted((("bounds", tuple(spec.bounds)), ("norm", norm), ("seed", 0), *capped))),
        )
        queries["minimal perturbation"] = mp["queries"]
        vals = mp["eps"]
        m = st.columns(3)
        m[0].metric(
            "Flipped within eps",
            f"{mp['found_fraction']:.4f}",
            help=f"of the {mp['n_attacked']} examples correct before any attack",
        )
        m[1].metric(
            "Median minimal eps",
            "n/a" if mp["median_eps"] is None and not mp["median_above_eps_max"]
            else (f"> {mp['eps_max']:g}" if mp["median_eps"] is None else f"{mp['median_eps']:.4f}"),
            help="over the examples correct clean; those not flipped within eps count as above it",
        )  # fmt: skip
        m[2].metric("Resolution", f"{mp['tolerance']:.4f}")
        if mp["n_misclassified_clean"]:
            st.caption(
                f"{mp['n_misclassified_clean']} example(s) were misclassified before any attack: "
                "listed apart, not counted as distance 0."
            )
        st.dataframe(
            {
                "example": list(range(len(x))),
                "true": [names[int(v)] for v in y_np],
                f"minimal eps ({norm})": [None if v is None else round(v, 6) for v in vals],
                "outcome": [o.replace("_", " ") for o in mp["outcome"]],
            },
            hide_index=True,
            height=220,
        )
    except XRobustError as exc:
        st.error(f"The minimal perturbation could not be computed: {exc}")

st.divider()
st.metric("Model queries behind this page", f"{sum(queries.values()):,}")
st.caption(" · ".join(f"{k}: {v:,}" for k, v in queries.items()))
