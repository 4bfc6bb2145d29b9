"""The xrobust dashboard's entry: the sidebar (model and data) and the page navigation.

Start it with ``xrobust app`` (or ``streamlit run`` on this file). ``XROBUST_APP_MODEL``
and ``XROBUST_APP_DATA`` preselect the sidebar (``xrobust app --model/--data`` set them).
"""

from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from xrobust.apps.dashboard import render, sources

HERE = Path(__file__).resolve().parent
PAGES = HERE / "app_pages"

# an emoji favicon becomes a data: URL; a ":material/...:" one is fetched from a font host on
# the internet (the page icons below are drawn with the icon font that ships with Streamlit)
st.set_page_config(page_title="xrobust", page_icon="\N{SHIELD}", layout="wide")

with st.sidebar:
    st.header("xrobust")
    st.subheader("Model")
    model = sources.pick_model("m_", os.environ.get(sources.ENV_MODEL) or None)
    data = None
    if model is not None:
        if model.spec is not None:
            render.show_spec(model)
        else:  # a black box takes the data's spec
            st.caption(f"**{model.label}**: the data chosen below gives its input spec.")
        st.subheader("Data")
        data = sources.pick_data(model, "d_", os.environ.get(sources.ENV_DATA) or None)
        if data is not None:
            st.caption(f"{data.label}: {len(data.bundle.test)} test examples")
        if model.spec is None:
            model = sources.bind(model, data)
            if model is not None:
                render.show_spec(model)
    st.session_state["_xr_model"] = model
    st.session_state["_xr_data"] = data

pages = [
    st.Page(PAGES / "overview.py", title="Overview", icon=":material/dashboard:", default=True),
    st.Page(
        PAGES / "adversarial.py", title="Adversarial misclassifications", icon=":material/bolt:"
    ),
    st.Page(PAGES / "blackbox.py", title="Black-box behaviour", icon=":material/visibility:"),
    st.Page(PAGES / "explanations.py", title="Explanations", icon=":material/lightbulb:"),
    st.Page(PAGES / "compare.py", title="Compare models", icon=":material/compare:"),
]
st.navigation(pages).run()
