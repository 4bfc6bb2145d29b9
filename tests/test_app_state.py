# ruff: noqa: F811  (demo_cache is a fixture imported from app_support)
"""What the dashboard keeps and what it starts with: results tied to the model and data
they came from, Compare's default pair (standard vs adversarially trained demo), the attack
choice following the white-box toggle, upload limits that agree with the app's own, the
explanations page's costs and failed checks explained."""

from __future__ import annotations

import pytest

pytest.importorskip("streamlit")

from app_support import (  # noqa: F401
    demo_cache,
    demo_onnx,
    demo_run,
    errors,
    metrics,
    new_app,
    no_exception,
)

SMALL_AUDIT = (
    "[adversarial]\nn = 16\nattacks = ['fgsm']\nnorms = ['linf']\nminimal_perturbation = false\n"
    "[adversarial.eps]\nlinf = [0.1]\n[corruption]\nenabled = false\n"
    "[explanations]\nenabled = false\n[sanity]\nenabled = false\n"
    "[requirements]\nmin_clean_accuracy = 0.5\nsanity_checks_pass = false\n"
)


def _onnx(at, path, white: bool | None = None):
    at.radio(key="m_source").set_value("ONNX file").run()
    at.radio(key="m_onnx_how").set_value("Path").run()
    at.text_input(key="m_onnx_path").input(str(path)).run()
    if white is not None:
        at.toggle(key="m_onnx_white").set_value(white).run()
    no_exception(at)
    return at


def test_full_audit_report_does_not_follow_another_model(
    demo_cache, demo_onnx, tmp_path, monkeypatch
) -> None:
    """After the demo's full audit, an ONNX model in the sidebar shows neither the demo's
    verdict nor its report for download (it used to show both)."""
    cfg = tmp_path / "small.toml"
    cfg.write_text(SMALL_AUDIT)
    monkeypatch.setenv("XROBUST_APP_AUDIT_CONFIG", str(cfg))
    at = new_app().run()
    at.button(key="ov_full").click().run()
    no_exception(at)
    assert any("every requirement was evaluated and met" in s.value for s in at.success)
    assert len(at.get("download_button")) == 3
    assert any("Report of demo digits" in c.value for c in at.caption)

    _onnx(at, demo_onnx)
    assert errors(at) == []
    assert not at.success  # no verdict of the demo's report
    assert len(at.get("download_button")) == 0  # and no report of it to download
    # back to the demo: the dropped report is not resurrected; running again is one click
    at.radio(key="m_source").set_value("Built-in demo").run()
    assert len(at.get("download_button")) == 0


def test_compare_starts_with_the_standard_and_the_robust_demo(demo_cache) -> None:
    from xrobust.attacks import get_attack
    from xrobust.data import as_tensors, load_dataset

    at = new_app().run()
    at.switch_page("app_pages/compare.py").run()
    no_exception(at)
    assert at.selectbox(key="cmp_demo").value == "digits_robust"  # not A again
    ds = load_dataset("digits", size=28)
    x, y = as_tensors(ds.test, limit=64)
    m = metrics(at)
    for tag, name in (("A", "digits"), ("B", "digits_robust")):
        r = get_attack(
            "pgd", demo_run(name).model, eps=0.1, norm="linf", bounds=ds.spec.bounds, seed=0,
            steps=10,
        ).run(x, y)  # fmt: skip
        assert m[f"{tag} robust accuracy"] == f"{r.robust_accuracy:.4f}"
    assert float(m["B robust accuracy"]) > float(m["A robust accuracy"]) + 0.15


def test_robust_demo_is_more_robust(demo_cache) -> None:
    """digits_robust (PGD adversarial training at linf eps 0.1) keeps clearly more accuracy
    under a stronger PGD than it was trained with, at the demo eps, than the standard demo;
    its clean accuracy stays high."""
    from xrobust.attacks import get_attack
    from xrobust.data import as_tensors, load_dataset

    ds = load_dataset("digits", size=28)
    x, y = as_tensors(ds.test, limit=256)
    acc = {}
    for name in ("digits", "digits_robust"):
        r = get_attack(
            "pgd", demo_run(name).model, eps=0.1, norm="linf", bounds=ds.spec.bounds, seed=0,
            steps=20, random_start=True,
        ).run(x, y)  # fmt: skip
        acc[name] = (r.clean_accuracy, r.robust_accuracy)
    assert acc["digits_robust"][0] > 0.85
    assert acc["digits_robust"][1] > acc["digits"][1] + 0.15, acc


def test_white_box_toggle_moves_the_attack_to_a_white_box_one(demo_cache, demo_onnx) -> None:
    from xrobust.attacks import ATTACKS
    from xrobust.models.onnx import import_onnx2torch

    try:
        import_onnx2torch()
    except Exception:
        pytest.skip("onnx2torch is not installed")
    at = _onnx(new_app().run(), demo_onnx)
    at.switch_page("app_pages/adversarial.py").run()
    no_exception(at)
    (box,) = [s for s in at.selectbox if s.label == "Attack"]
    assert not ATTACKS.get(box.value).requires_gradients  # a black box: query-only (square)
    at.toggle(key="m_onnx_white").set_value(True).run()
    no_exception(at)
    (box,) = [s for s in at.selectbox if s.label == "Attack"]
    assert ATTACKS.get(box.value).requires_gradients, box.value  # used to stay on square
    assert metrics(at)["Gradient passes"] != "0"
    at.toggle(key="m_onnx_white").set_value(False).run()
    (box,) = [s for s in at.selectbox if s.label == "Attack"]
    assert not ATTACKS.get(box.value).requires_gradients


@pytest.mark.parametrize(("env", "want"), [(None, 50), ("5", 5)])
def test_upload_widgets_state_the_apps_limit(demo_cache, monkeypatch, env, want) -> None:
    """The widgets' "Limit N MB per file" is the app's own limit (it said 51 MB for 50), and
    `xrobust app` gives Streamlit's server the same number."""
    import argparse

    from xrobust.apps.dashboard.sources import max_upload_mb
    from xrobust.cli.app import build_command

    if env is None:
        monkeypatch.delenv("XROBUST_APP_MAX_UPLOAD_MB", raising=False)
    else:
        monkeypatch.setenv("XROBUST_APP_MAX_UPLOAD_MB", env)
    at = new_app().run()
    at.radio(key="d_source").set_value("Upload").run()
    at.radio(key="m_source").set_value("Upload checkpoint").run()
    no_exception(at)
    limits = {u.proto.max_upload_size_mb for u in at.get("file_uploader")}
    assert limits == {want}
    assert max_upload_mb() == want
    ns = argparse.Namespace(
        host="127.0.0.1", port=8501, headless=True, model=None, data=None, audit_config=None,
        max_upload_mb=want,
    )  # fmt: skip
    cmd, extra = build_command(ns)
    assert cmd[cmd.index("--server.maxUploadSize") + 1] == str(want)
    assert extra["XROBUST_APP_MAX_UPLOAD_MB"] == str(want)


def test_endpoint_placeholder_is_not_the_apps_port(demo_cache) -> None:
    at = new_app().run()
    at.radio(key="m_source").set_value("HTTP endpoint").run()
    no_exception(at)
    placeholder = at.text_input(key="m_url").placeholder
    assert placeholder.startswith("http://127.0.0.1:") and ":8501/" not in placeholder


def test_short_endpoint_labels() -> None:
    from xrobust.apps.dashboard.sources import short_url

    assert short_url("http://127.0.0.1:8500/v1/models/digits:predict") == (
        "127.0.0.1:8500/v1/…/digits:predict"
    )
    assert short_url("https://u:secret@h:1/p?key=SECRET") == "h:1/p"
    long = short_url("https://a-very-long-host-name.example.com/v1/projects/x/models/" + "m" * 40)
    assert len(long) <= 60 and long.endswith("…") and "SECRET" not in long


def test_explanations_page_says_what_gradient_methods_cost_and_explains_a_fail(demo_cache) -> None:
    at = new_app().run()
    at.switch_page("app_pages/explanations.py").run()
    no_exception(at)
    cost = next(c.value for c in at.caption if c.value.startswith("Cost of the maps"))
    assert "saliency: white-box (gradients)" in cost and "0 model queries" not in cost
    table = at.dataframe[0].value
    failed = list(table.loc[table["sanity check"] == "FAIL", "method"])
    warned = [w.value for w in at.warning]
    for method in failed:  # each failure says what it means and what to try
        (text,) = [w for w in warned if f"{method} failed the randomisation check" in w]
        assert "What it means" in text and "What to try" in text
    assert len([w for w in warned if "failed the randomisation check" in w]) == len(failed)
