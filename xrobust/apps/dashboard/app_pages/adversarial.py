"""Adversarial misclassifications: the examples an attack flips, each with its perturbation,
its top-3 probabilities before and after, and the attributions of both inputs."""

from __future__ import annotations

import io

import numpy as np
import streamlit as st

from xrobust.apps.dashboard import render, resources
from xrobust.errors import XRobustError

model, data = render.current()
spec = model.spec
names = list(spec.class_names)
st.title("Adversarial misclassifications")

attacks = resources.supported_attacks(model.differentiable, spec.num_classes)
render.gradient_note(model, "Attacks and attribution methods")
if not attacks:
    st.error(
        "No registered attack can run on this model"
        + ("" if model.differentiable else ": none of them is query-only")
        + "."
    )
    st.stop()
lo, hi = spec.bounds
span = resources.eps_scale(spec)

c = st.columns([2, 1, 3, 1, 1])
name = resources.attack_select(c[0], attacks, model.differentiable, "adv_attack")
opts = resources.attack_options(name)
norm = c[1].selectbox("Norm", resources.norms(), key="adv_norm")
slider = resources.eps_slider(norm, span)
eps_max = slider.max
eps = c[2].slider(
    "eps",
    min_value=0.0,
    max_value=float(round(eps_max, 4)),
    value=float(round(slider.default, 4)),
    step=float(round(eps_max / 100, 5)),
    format="%.3f",
    key=f"adv_eps_{norm}",
)
steps = c[3].number_input("Steps", 1, 500, 10, key="adv_steps") if "steps" in opts else None
query_opt = next((o for o in ("max_queries", "queries", "n_queries") if o in opts), None)
queries = (
    c[4].number_input(
        "Queries", 1, 100_000, 1000 if model.differentiable else 100, key="adv_queries"
    )
    if query_opt
    else None
)

d = st.columns([1, 2, 1])
n = d[0].select_slider(
    "Examples", [16, 32, 64, 128, 256], value=64 if model.differentiable else 16, key="adv_n"
)
from xrobust.explain import list_explainers  # noqa: E402

methods = list_explainers(requires_gradients=None if model.differentiable else False)
method = d[1].selectbox(
    "Attribution method",
    methods,
    index=next((methods.index(m) for m in ("saliency", "occlusion") if m in methods), 0),
    key="adv_method",
)
# a black box pays queries for each map of the page: fewer examples per page
page_size = d[2].selectbox(
    "Per page", [8, 16, 32], index=int(model.differentiable), key="adv_page_size"
)

x, y, bkey = resources.test_batch(data.bundle, data.key, n)
options: dict[str, object] = {"eps": float(eps), "norm": norm, "bounds": spec.bounds, "seed": 0}
if steps is not None:
    options["steps"] = int(steps)
if query_opt:
    options[query_opt] = int(queries)
try:
    with st.spinner(f"Running {name}..."):
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
except XRobustError as exc:
    st.error(f"The attack could not run: {exc}")
    st.stop()

render.partial_note(res["partial"], res["stop_reason"])
flipped = np.flatnonzero(res["success"] & res["attacked"])
m = st.columns(6)
m[0].metric("Clean accuracy", f"{res['clean_accuracy']:.4f}")
render.robust_metric(
    m[1],
    "Robust accuracy",
    res["robust_accuracy"],
    res["bound"],
    res["bound_note"],
    where=f"{norm} eps {eps:g}",
)
m[2].metric("Flipped", f"{len(flipped)} / {res['summary']['n_attacked']}")
m[3].metric(
    "Gradient passes",
    f"{res['gradient_passes']:,}",
    help=f"{res['forward_passes']:,} forward passes (examples)",
)
m[4].metric("Attack time", f"{res['time_s']:.2f} s")
m[5].metric("Model queries", f"{res['queries']:,}", help="rows the attack asked the model about")

x_np = x.numpy()
left, right = st.columns([3, 2], gap="medium")
with right:
    # ---------------------------------------------------------------- confusion of flips
    st.subheader("Which class flips to which")
    st.caption(
        "Rows: true class, columns: class after the attack; each cell counts the examples "
        "the attack flipped from its row's class to its column's (the diagonal: not "
        "flipped). Click a cell to show only those."
    )
    conf = np.asarray(res["confusion"])
    event = st.dataframe(
        render.flip_matrix(conf, names),
        key="adv_matrix",
        on_select="rerun",
        selection_mode="single-cell",
        width="content",
        column_config=render.matrix_columns(names),
    )
    cell = render.selected_cell(event, names)
    if not (conf.sum() - np.trace(conf)):
        st.info("The attack flipped no example at this eps: raise eps or the steps.")

    # ---------------------------------------------------------------- filters and gallery
    f = st.columns(2)
    classes = list(range(spec.num_classes))
    sel_true = f[0].multiselect(
        "True class", classes, format_func=lambda k: names[k], key="adv_f_true"
    )
    sel_adv = f[1].multiselect(
        "Adversarial class", classes, format_func=lambda k: names[k], key="adv_f_adv"
    )
    shown = [
        i
        for i in flipped
        if (not sel_true or int(res["y"][i]) in sel_true)
        and (not sel_adv or int(res["pred_adv"][i]) in sel_adv)
        and (cell is None or (int(res["y"][i]), int(res["pred_adv"][i])) == tuple(cell))
    ]
    if cell is not None:
        cf = st.columns([3, 1])
        cf[0].caption(f"Cell filter: {names[cell[0]]} → {names[cell[1]]}")
        cf[1].button(
            "Clear the cell filter",
            key="adv_cell_clear",
            on_click=render.clear_selection,
            args=("adv_matrix",),
        )
    pages = max(1, -(-len(shown) // page_size))
    page = st.number_input("Page", 1, pages, 1, key="adv_page") if pages > 1 else 1
    idx = np.asarray(shown[(page - 1) * page_size : page * page_size], dtype=int)
    # ---------------------------------------------------------------- download
    if len(flipped):
        buf = io.BytesIO()
        np.savez_compressed(
            buf,
            x=x_np[flipped],
            x_adv=res["x_adv"][flipped],
            y=res["y"][flipped],
            pred_clean=res["pred_clean"][flipped],
            pred_adv=res["pred_adv"][flipped],
            norms=res["norms"][flipped],
            index=flipped,
            class_names=np.asarray(names),
            attack=np.asarray([name]),
            norm=np.asarray([norm]),
            eps=np.asarray([eps], dtype=np.float64),
        )
        st.download_button(
            f"Download the {len(flipped)} adversarial examples (.npz)",
            buf.getvalue(),
            file_name=f"adversarial_{name}_{norm}_{eps:g}.npz",
            mime="application/octet-stream",
            key="adv_download",
        )

with left:
    st.subheader(f"Gallery: {len(shown)} flipped example(s) at eps {eps:.3f}")
    try:
        probs_clean = resources.clean_probabilities(model.classifier, model.key, x, bkey)
        probs_adv = (
            resources.probabilities(model.classifier, model.key, res["x_adv"][idx])
            if len(idx)
            else None
        )
    except XRobustError as exc:
        st.error(f"The model could not answer: {exc}")
        st.stop()
    if len(idx):
        x_adv = res["x_adv"][idx]
        try:
            # only the examples shown: on a black box every map costs queries
            attr_clean = resources.explain_batch(
                model.classifier, model.key, x_np[idx], res["pred_clean"][idx], method
            )
            attr_adv = resources.explain_batch(
                model.classifier, model.key, x_adv, res["pred_adv"][idx], method
            )
        except XRobustError as exc:
            st.error(f"{method} could not explain these inputs: {exc}. Choose another method.")
            attr_clean = attr_adv = None
        image = spec.modality == "image"
        for k, i in enumerate(idx):
            yi, pa = int(res["y"][i]), int(res["pred_adv"][i])
            st.markdown(
                f"**#{i}** true **{names[yi]}** → **{names[pa]}** · "
                f"{norm} norm of the perturbation {res['norms'][i]:.4f}  \n"
                f"before: {render.top_k(probs_clean[i], names)} · after: "
                f"{render.top_k(probs_adv[k], names)}"
            )
            if image:
                tiles = [
                    render.image_tile(x_np[i], spec.bounds),
                    render.perturbation_tile(x_adv[k] - x_np[i]),
                    render.image_tile(x_adv[k], spec.bounds),
                ]
                caps = ["clean", "perturbation (amplified)", "adversarial"]
                if attr_adv is not None:
                    from xrobust.explain.figures import heatmap_array

                    mc = heatmap_array(attr_clean[k : k + 1])[0]
                    ma = heatmap_array(attr_adv[k : k + 1])[0]
                    vmax = float(max(np.abs(mc).max(), np.abs(ma).max()))
                    tiles += [
                        render.heat_tile(mc, vmax, tiles[0]),
                        render.heat_tile(ma, vmax, tiles[2]),
                    ]
                    caps += [f"{method} (clean, {names[yi]})", f"{method} (adv, {names[pa]})"]
                st.image(tiles, caption=caps, width=render.TILE)
            else:
                feats = list(spec.feature_names or [f"x{j}" for j in range(x_np.shape[1])])
                table = {
                    "feature": feats,
                    "clean": x_np[i],
                    "adversarial": x_adv[k],
                    "change": x_adv[k] - x_np[i],
                }
                if attr_adv is not None:
                    table[f"{method} (clean)"] = attr_clean[k]
                    table[f"{method} (adv)"] = attr_adv[k]
                st.dataframe(table, hide_index=True, height=200)
