"""Overview: clean accuracy, calibration, a robustness curve, sanity-check badges, and a
one-click full audit with its reports for download."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import streamlit as st

from xrobust.apps.dashboard import render, resources, session
from xrobust.errors import XRobustError

model, data = render.current()
spec = model.spec
st.title("Overview")

norms = resources.norms()
c1, c2 = st.columns(2)
norm = c1.selectbox("Norm of the robustness curve", norms, key="ov_norm")
n = c2.select_slider(
    "Examples attacked",
    [16, 32, 64, 128, 256],
    value=resources.overview_n(model.differentiable),  # a black box pays per query
    key="ov_n" if model.differentiable else "ov_n_black",
)


def _report(clean_only: bool) -> dict:
    try:
        return resources.overview_report(model, data, norm, n, clean_only=clean_only)
    except XRobustError as exc:
        st.error(f"The overview could not be computed: {exc}")
        st.stop()


# a white box shows its clean figures first (a fraction of a second) and fills in the
# robustness and the sanity checks when they are measured; a black box pays per query, so
# it asks once
with st.spinner("Measuring clean accuracy and calibration..."):
    rep = _report(clean_only=model.differentiable)
notes = st.container()
m1, m2, m3, m4, m5 = st.columns(5)
clean = rep["sections"]["clean"]["data"]
m1.metric("Clean accuracy", f"{clean['accuracy']:.4f}", help=f"on {clean['n']} test examples")
m2.metric("ECE", f"{clean['calibration']['ece']:.4f}", help="expected calibration error")
m3.metric("NLL", f"{clean['nll']:.4f}")

st.subheader("Predictions")
x, y, bkey = resources.test_batch(data.bundle, data.key, 8)
try:
    probs = resources.clean_probabilities(model.classifier, model.key, x, bkey)
    names = list(spec.class_names)
    st.dataframe(
        {
            "example": list(range(len(x))),
            "true": [names[int(v)] for v in y.numpy()],
            "predicted (top 3)": [render.top_k(p, names) for p in probs],
        },
        hide_index=True,
    )
except XRobustError as exc:
    st.error(f"The model could not answer: {exc}")

from xrobust.audit import figures  # noqa: E402

g1, g2 = st.columns(2)
with g1:
    st.pyplot(figures.reliability_diagram(clean["calibration"]), clear_figure=True)
st.subheader("Sanity checks")
st.caption("Is the robustness evaluation itself trustworthy (no gradient masking, converged)?")
badges = st.container()

if model.differentiable:
    with g2, st.spinner("Measuring robustness and the sanity checks..."):
        rep = _report(clean_only=False)
adv = rep["sections"]["adversarial"]
queries = rep.get("queries") or {}
with notes:
    if queries.get("exhausted"):
        render.partial_note(True, f"{queries.get('total', 0):,} rows asked, the budget reached")
    for name_, sec in rep["sections"].items():
        for part in sec.get("skipped_parts") or []:
            st.caption(f":material/info: {name_}: {part['part']} skipped ({part['reason']})")
if adv["status"] == "ok":
    nd = adv["data"]["norms"][norm]
    worst = nd["curves"]["worst"]["robust_accuracy"]
    mid = len(nd["eps"]) // 2  # a black box's curve may hold only the headline eps
    render.robust_metric(
        m4,
        "Robust accuracy",
        worst[mid],
        nd.get("bound"),
        f"worst case of {', '.join(adv['data']['attacks'])} on {adv['data']['n']} examples"
        + (f"; {nd['bound_note']}" if nd.get("bound_note") else ""),
        where=f"{norm} eps {nd['eps'][mid]:g}",
    )
m5.metric(
    "Model queries",
    f"{int(queries.get('total', 0)):,}",
    help="rows the model was asked about for this overview",
)
with g2:
    if adv["status"] == "ok":
        st.pyplot(
            figures.robustness_curves(nd, adv["data"]["clean_accuracy"], norm), clear_figure=True
        )
    else:
        st.warning(f"No robustness curve: {adv['reason']}")
with badges:
    render.sanity_badges(rep["sanity_checks"])

st.divider()
st.subheader("Full audit")
cfg_file = os.environ.get("XROBUST_APP_AUDIT_CONFIG")
if cfg_file:
    from xrobust.audit import load_config

    try:
        full_cfg = load_config(cfg_file)
    except XRobustError as exc:
        st.error(f"{exc}. Fix the file given to `xrobust app --audit-config`.")
        st.stop()
    st.caption(f"Configuration from {cfg_file}.")
elif model.source == "demo":
    from xrobust.audit.demo import demo_config

    full_cfg = demo_config(spec.name)
    st.caption("The demo's audit configuration (about a minute on 2 CPU cores).")
else:
    from xrobust.audit import AuditConfig

    full_cfg = AuditConfig()
    st.caption("The default audit configuration (all sections).")

# the report belongs to this model, data and configuration: another choice in the sidebar
# (or another --audit-config) drops it instead of showing its verdict under the new model
full_fp = session.fingerprint(model.key, data.key, full_cfg.to_dict())
if st.button("Run the full audit", type="primary", key="ov_full"):
    session.forget("ov_full_audit")
    bar = st.progress(0.0, text="starting")

    def progress(stage: str, done: int, total: int) -> None:
        bar.progress(min(1.0, done / total) if total else 0.0, text=f"{stage} {done}/{total}")

    with st.status("Running the full audit (press Stop, top right, to cancel)...") as status:
        try:
            report = resources.full_audit(model.classifier, data.bundle, full_cfg, progress)
        except XRobustError as exc:
            status.update(label="The audit failed", state="error")
            st.error(f"The audit failed: {exc}")
            st.stop()
        out = Path(tempfile.mkdtemp(prefix="xrobust-audit-"))
        paths = report.save(out)
        from xrobust.audit.markdown import verdict_line

        session.remember(
            "ov_full_audit",
            full_fp,
            {
                "files": {k: (p.name, p.read_bytes()) for k, p in paths.items()},
                "verdict": (report.verdict, verdict_line(report), report.missing_evidence()),
                "model": model.label,
                "data": data.label,
            },
        )
        status.update(label="Audit finished", state="complete")
    bar.progress(1.0, text="done")

kept = session.recall("ov_full_audit", full_fp)
if kept:
    verdict, line, missing = kept["verdict"]
    st.caption(f"Report of {kept['model']} on {kept['data']}.")
    if verdict == "passed":
        st.success(f"Audit {line}: every requirement was evaluated and met.")
    elif verdict == "failed":
        st.error(f"Audit {line}; see the report.")
    else:
        st.warning(
            "Audit INCOMPLETE: no verdict, evidence is missing:\n"
            + "\n".join(f"- {m}" for m in missing)
        )
    files = kept["files"]
    mime = {"html": "text/html", "json": "application/json", "junit": "application/xml"}
    dl = st.columns(3)
    for i, kind in enumerate(("html", "json", "junit")):
        if kind in files:
            name, blob = files[kind]
            dl[i].download_button(
                f"Download {name}", blob, file_name=name, mime=mime[kind], key=f"ov_dl_{kind}"
            )
