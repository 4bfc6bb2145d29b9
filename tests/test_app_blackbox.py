# ruff: noqa: F811  (demo_cache is a fixture imported from app_support)
"""Black-box model sources in the dashboard: an ONNX file (uploaded or a path) and an HTTP
endpoint (served on 127.0.0.1 within the test) picked in the sidebar; the pages show their
predictions and the queries they took; header values never show; mismatches are errors."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")
pytest.importorskip("onnxruntime")

from app_support import demo_cache, errors, metrics, new_app, no_exception  # noqa: F401

SECRET = "s3cr3t-dash-value-42"


@pytest.fixture(scope="module")
def tiny():
    """A tiny digits classifier (1x28x28 inputs) trained for a few steps: (module, bundle)."""
    import torch

    from xrobust.data import as_tensors, load_dataset

    ds = load_dataset("digits")
    x, y = as_tensors(ds.train, limit=512)
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(x[0].numel(), 10))
    opt = torch.optim.Adam(net.parameters(), lr=0.05)
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    net.eval()
    return net, ds


@pytest.fixture(scope="module")
def onnx_file(tiny, tmp_path_factory):
    from xrobust.models.export import export_onnx

    net, ds = tiny
    path = tmp_path_factory.mktemp("onnx") / "tiny.onnx"
    export_onnx(net, path, tuple(ds.spec.input_shape))
    return path


def _sidebar_text(at) -> str:
    return " ".join(c.value for c in at.sidebar.caption)


def _page_text(at) -> str:
    """Everything the page shows as text (to look for leaked values)."""
    parts = []
    for kind in ("markdown", "caption", "error", "warning", "info", "text", "code"):
        parts += [str(e.value) for e in getattr(at, kind)]
    parts += [str(m.value) + str(m.label) for m in at.metric]
    parts += [str(t.value) for t in at.text_input] + [str(t.value) for t in at.text_area]
    return "\n".join(parts)


def _library_overview(clf, ds):
    from xrobust.apps.dashboard.resources import quick_audit_config
    from xrobust.audit import audit

    cfg = quick_audit_config(
        "image", 16, [0.025, 0.05, 0.1, 0.2, 0.3], "linf", differentiable=False
    )
    return audit(clf, ds, cfg)


def test_uploaded_onnx_overview_shows_predictions_and_queries(demo_cache, onnx_file, tiny) -> None:
    from xrobust.models import as_classifier

    _, ds = tiny
    at = new_app().run()
    at.radio(key="m_source").set_value("ONNX file").run()
    at.file_uploader(key="m_onnx_upload").set_value(
        ("tiny.onnx", onnx_file.read_bytes(), "application/octet-stream")
    ).run()
    no_exception(at)
    assert errors(at) == []
    side = _sidebar_text(at)
    assert "source: onnx" in side and "differentiable: no" in side
    assert "input shape (1, 28, 28)" in side

    rep = _library_overview(as_classifier(str(onnx_file), spec=ds.spec), ds)
    m = metrics(at)
    assert m["Clean accuracy"] == f"{rep.sections['clean'].data['accuracy']:.4f}"
    assert int(m["Model queries"].replace(",", "")) == rep.queries["total"] > 0
    # a query-only figure is labelled an upper bound, as in the report
    nd = rep.sections["adversarial"].data["norms"]["linf"]
    assert nd["bound"] == "upper"
    assert m["Robust accuracy"].startswith("≤ ")
    assert "linf eps 0.1, upper bound" in [c.value for c in at.caption]
    table = at.dataframe[0].value  # the predictions of the first test examples
    assert len(table) == 8 and table["predicted (top 3)"].str.len().min() > 0

    at.switch_page("app_pages/blackbox.py").run()
    no_exception(at)
    assert int(metrics(at)["Model queries behind this page"].replace(",", "")) > 0
    at.switch_page("app_pages/explanations.py").run()
    no_exception(at)
    assert any("need input gradients are hidden" in c.value for c in at.caption)

    at.switch_page("app_pages/adversarial.py").run()  # Square, 16 examples, 200 queries
    no_exception(at)
    assert int(metrics(at)["Model queries"].replace(",", "")) > 0
    assert metrics(at)["Robust accuracy"].startswith("≤ ")
    at.switch_page("app_pages/compare.py").run()  # B: the demo model, both under Square
    no_exception(at)
    assert "A clean accuracy" in metrics(at)


def test_onnx_white_box_toggle_checks_against_onnxruntime(demo_cache, onnx_file) -> None:
    from xrobust.models.onnx import import_onnx2torch

    try:
        import_onnx2torch()
    except Exception:
        pytest.skip("onnx2torch is not installed")
    at = new_app().run()
    at.radio(key="m_source").set_value("ONNX file").run()
    at.radio(key="m_onnx_how").set_value("Path").run()
    at.text_input(key="m_onnx_path").input(str(onnx_file)).run()
    at.toggle(key="m_onnx_white").set_value(True).run()
    no_exception(at)
    side = _sidebar_text(at)
    assert "differentiable: yes" in side and "max |torch - onnxruntime|" in side


def test_onnx_of_another_shape_is_an_error(demo_cache, onnx_file) -> None:
    at = new_app().run()
    at.radio(key="m_source").set_value("ONNX file").run()
    at.radio(key="m_onnx_how").set_value("Path").run()
    at.text_input(key="m_onnx_path").input(str(onnx_file)).run()
    at.selectbox(key="d_builtin_onnx").set_value("breast_cancer").run()
    no_exception(at)
    (msg,) = errors(at)
    assert "(30,)" in msg and "28, 28" in msg  # both shapes named
    assert at.session_state["_xr_model"] is None


def _endpoint(at, url, headers="", budget=None):
    at.radio(key="m_source").set_value("HTTP endpoint").run()
    at.text_input(key="m_url").input(url).run()
    if headers:
        at.text_area(key="m_headers").input(headers).run()
    if budget is not None:
        at.number_input(key="m_budget").set_value(budget).run()
    no_exception(at)
    return at


def test_served_endpoint_blackbox_page(demo_cache, tiny, monkeypatch) -> None:
    from xrobust.models import serving

    net, _ = tiny
    monkeypatch.setenv("XR_DASH_TOKEN", SECRET)
    with serving.serve(net) as server:
        at = _endpoint(new_app().run(), server.url, "Authorization=Bearer $XR_DASH_TOKEN")
        assert errors(at) == []
        assert "source: endpoint" in _sidebar_text(at)
        at.switch_page("app_pages/blackbox.py").run()
        no_exception(at)
        assert errors(at) == []
        shown = int(metrics(at)["Model queries behind this page"].replace(",", ""))
        assert 0 < shown <= server.rows_received
        assert any("predicted" in s.value for s in at.markdown)
        assert server.last_headers.get("Authorization") == f"Bearer {SECRET}"
        assert SECRET not in _page_text(at)


def test_endpoint_query_budget_shows_a_partial_or_an_error(demo_cache, tiny) -> None:
    from xrobust.models import serving

    net, _ = tiny
    with serving.serve(net) as server:
        at = _endpoint(new_app().run(), server.url, budget=20)
        assert "query budget: 20 rows per computation" in _sidebar_text(at)
        rows = server.rows_received
        at.switch_page("app_pages/blackbox.py").run()
        no_exception(at)
        said = errors(at) + [w.value for w in at.warning]
        # the corruptions need more than 20 rows: said, not a traceback
        assert any("budget" in t for t in said), said
        # at most the budget per computation (predictions, occlusion, attack, directions,
        # corruptions, minimal perturbation)
        assert server.rows_received - rows <= 20 * 6


def test_missing_header_variable_is_named(demo_cache, tiny, monkeypatch) -> None:
    from xrobust.models import serving

    net, _ = tiny
    monkeypatch.delenv("XR_DASH_MISSING", raising=False)
    monkeypatch.setenv("XR_DASH_TOKEN", SECRET)
    with serving.serve(net) as server:
        at = _endpoint(new_app().run(), server.url)
        sent = server.requests
        at.text_area(key="m_headers").input("X-Key=XR_DASH_TOKEN\nAuthorization=XR_DASH_MISSING")
        at.run()
        no_exception(at)
        (msg,) = errors(at)
        assert "XR_DASH_MISSING" in msg and "not set" in msg
        assert SECRET not in _page_text(at)
        assert server.requests == sent  # nothing was sent without the header
        assert at.session_state["_xr_model"] is None
        # a literal value is refused, and not echoed
        at.text_area(key="m_headers").input("Authorization=Bearer abc def").run()
        no_exception(at)
        assert "abc def" not in " ".join(errors(at))
