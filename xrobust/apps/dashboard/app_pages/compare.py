"""Compare: the sidebar's model (A) and a second one (B), say standard vs adversarially
trained, on the same examples: robustness curves and the same gallery."""

from __future__ import annotations

import numpy as np
import streamlit as st

from xrobust.apps.dashboard import render, resources, sources
from xrobust.errors import XRobustError

model_a, data = render.current()
spec = model_a.spec
names = list(spec.class_names)
lo, hi = spec.bounds
span = resources.eps_scale(spec)
st.title("Compare two models")
st.caption(f"A: {model_a.label} (from the sidebar) on {data.label}.")

with st.expander("Model B", expanded=True):
    # B starts as another demo on A's data: the standard and the adversarially trained
    # digits CNN face each other on first open
    model_b = sources.pick_model("cmp_", sources.partner_demo(model_a))
    model_b = sources.bind(model_b, data)  # a black box takes the sidebar's data
if model_b is None:
    st.stop()
sb = model_b.spec
if tuple(sb.input_shape) != tuple(spec.input_shape) or sb.num_classes != spec.num_classes:
    st.error(
        f"Model B takes inputs {tuple(sb.input_shape)} with {sb.num_classes} classes; model A "
        f"takes {tuple(spec.input_shape)} with {spec.num_classes}. Choose a model trained on "
        "the same kind of data."
    )
    st.stop()

both = [
    a
    for a in resources.supported_attacks(model_a.differentiable, spec.num_classes)
    if a in resources.supported_attacks(model_b.differentiable, sb.num_classes)
]
if not both:
    st.error("No registered attack runs on both models.")
    st.stop()
if not (model_a.differentiable and model_b.differentiable):
    render.gradient_note(model_a if not model_a.differentiable else model_b, "Attacks")
c = st.columns([2, 1, 1, 3])
name = resources.attack_select(
    c[0], both, model_a.differentiable and model_b.differentiable, "cmp_attack"
)
norm = c[1].selectbox("Norm", resources.norms(), key="cmp_norm")
black = not (model_a.differentiable and model_b.differentiable)
n = c[2].select_slider("Examples", [16, 32, 64, 128], value=16 if black else 64, key="cmp_n")
eps_grid = tuple(resources.eps_grid(norm, span))
eps = c[3].select_slider("eps of the gallery", eps_grid, value=eps_grid[2], key=f"cmp_eps_{norm}")
x, y, bkey = resources.test_batch(data.bundle, data.key, n)
x_np = x.numpy()
base = (("bounds", tuple(spec.bounds)), ("norm", norm), ("seed", 0))
opts = resources.attack_options(name)
if "steps" in opts:
    base = (*base, ("steps", 10))
query_opt = next((o for o in ("max_queries", "queries", "n_queries") if o in opts), None)
if query_opt:  # a query-only attack: its queries per example (each eps of the curve)
    q = st.number_input("Queries per example", 1, 100_000, 100, key="cmp_queries")
    base = (*base, (query_opt, int(q)))
base = tuple(sorted(base))

# the curves attack at every eps of the grid: on a black box (hundreds of requests each)
# they are computed on request, the gallery's single eps always
with_curves = not black or st.toggle(
    "Robustness curves over the eps grid",
    value=False,
    key="cmp_curves_black",
    help=f"{len(eps_grid) + 1} attacks per model, up to about "
    f"{len(x) * (len(eps_grid) + 1) * (int(q) if query_opt else 1):,} model queries each on a "
    "black box",
)
curves = {}
results = {}
try:
    with st.spinner("Attacking both models..."):
        for tag, m in (("A", model_a), ("B", model_b)):
            if with_curves:
                curves[tag] = resources.robustness(
                    m.classifier, m.key, x, y, bkey, name, (0.0, *eps_grid), base
                )
            results[tag] = resources.attack(
                m.classifier,
                m.key,
                x,
                y,
                bkey,
                name,
                tuple(sorted((*base, ("eps", float(eps))))),
                spec.num_classes,
            )
except XRobustError as exc:
    st.error(f"The attack could not run: {exc}")
    st.stop()

for tag in ("A", "B"):
    render.partial_note(results[tag]["partial"], results[tag]["stop_reason"])
m = st.columns(4)
m[0].metric("A clean accuracy", f"{results['A']['clean_accuracy']:.4f}")
m[1].metric("B clean accuracy", f"{results['B']['clean_accuracy']:.4f}")
for col, tag in ((m[2], "A"), (m[3], "B")):
    r = results[tag]
    render.robust_metric(
        col,
        f"{tag} robust accuracy",
        r["robust_accuracy"],
        r["bound"],
        r["bound_note"],
        where=f"{norm} eps {eps:g}",
    )
if not with_curves:
    st.caption(
        "Robustness curves: off by default with a black box (many queries); switch them on above."
    )
else:
    lines = {
        f"A: {model_a.short}": curves["A"]["robust_accuracy"],
        f"B: {model_b.short}": curves["B"]["robust_accuracy"],
    }
    chart = render.curves_chart(curves["A"]["eps"], lines, f"eps ({norm})", "robust accuracy")
    st.altair_chart(chart)
st.caption(
    f"Model queries of the gallery's attack: A {results['A']['queries']:,}, "
    f"B {results['B']['queries']:,}."
)

st.subheader("The same examples under attack")
fa = results["A"]["success"] & results["A"]["attacked"]
fb = results["B"]["success"] & results["B"]["attacked"]
which = st.radio(
    "Show examples flipped by",
    ["A or B", "A only", "B only", "both"],
    horizontal=True,
    key="cmp_which",
)
mask = {"A or B": fa | fb, "A only": fa & ~fb, "B only": fb & ~fa, "both": fa & fb}[which]
idx = np.flatnonzero(mask)[:16]
st.caption(f"{int(mask.sum())} example(s); the first {len(idx)} shown.")
for i in idx:
    ya = int(results["A"]["y"][i])
    pa, pb = int(results["A"]["pred_adv"][i]), int(results["B"]["pred_adv"][i])
    st.markdown(
        f"**#{i}** true **{names[ya]}** · A → **{names[pa]}** "
        f"(norm {results['A']['norms'][i]:.4f}) · B → **{names[pb]}** "
        f"(norm {results['B']['norms'][i]:.4f})"
    )
    if spec.modality == "image":
        xa, xb = results["A"]["x_adv"][i], results["B"]["x_adv"][i]
        st.image(
            [
                render.image_tile(x_np[i], spec.bounds),
                render.image_tile(xa, spec.bounds),
                render.perturbation_tile(xa - x_np[i]),
                render.image_tile(xb, spec.bounds),
                render.perturbation_tile(xb - x_np[i]),
            ],
            caption=["clean", "A adversarial", "A perturbation", "B adversarial", "B perturbation"],
            width=render.TILE,
        )
