# ruff: noqa: F811  (demo_cache is a fixture imported from app_support)
"""Every dashboard page through streamlit.testing.v1.AppTest: the numbers on screen equal
the library's for the same configuration, and no page shows a traceback."""

from __future__ import annotations

import json
import shutil

import pytest

pytest.importorskip("streamlit")

from app_support import demo_cache, demo_run, images, markdown, metrics, new_app, no_exception  # noqa: F401

from xrobust.attacks import get_attack
from xrobust.data import as_tensors, load_dataset


def _digits():
    ds = load_dataset("digits", size=28)
    return ds, *as_tensors(ds.test, limit=64)


def _pgd(model, x, y, eps, bounds):
    return get_attack("pgd", model, eps=eps, norm="linf", bounds=bounds, seed=0, steps=10).run(x, y)


def _gallery(at) -> list[str]:
    return [s for s in markdown(at) if s.startswith("**#")]


@pytest.fixture(scope="module")
def other_run(demo_cache, tmp_path_factory):
    """A second digits model (one epoch, another seed) in a run folder."""
    from xrobust.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("other_run")
    train("digits", "small_cnn", TrainConfig(epochs=1, seed=1, device="cpu"), out, progress=False)
    return out


def test_overview_shows_the_library_numbers(demo_cache) -> None:
    from xrobust.apps.dashboard.resources import quick_audit_config
    from xrobust.audit import audit

    at = new_app().run()
    no_exception(at)
    ds, _, _ = _digits()
    rep = audit(
        demo_run().model, ds, quick_audit_config("image", 64, [0.025, 0.05, 0.1, 0.2, 0.3], "linf")
    )
    clean = rep.sections["clean"].data
    worst = rep.sections["adversarial"].data["norms"]["linf"]["curves"]["worst"]["robust_accuracy"]
    m = metrics(at)
    assert m["Clean accuracy"] == f"{clean['accuracy']:.4f}"
    assert m["ECE"] == f"{clean['calibration']['ece']:.4f}"
    # the overview's quick audit runs FGSM and PGD only: weaker than AutoAttack, so its
    # worst case is labelled an upper bound, as in the report
    assert rep.sections["adversarial"].data["norms"]["linf"]["bound"] == "upper"
    # a short label (never cut), the eps and the kind of figure in the caption under it
    assert m["Robust accuracy"] == f"≤ {worst[2]:.4f}"
    assert "linf eps 0.1, upper bound" in [c.value for c in at.caption]
    assert images(at) == 2  # reliability diagram and robustness curve
    text = "\n".join(markdown(at))
    assert rep.sanity_checks
    for c in rep.sanity_checks:
        assert f"{c.name}: {c.status}" in text
    # the spec is in the sidebar
    caption = " ".join(c.value for c in at.sidebar.caption)
    assert "input shape (1, 28, 28)" in caption and "10 classes" in caption


def test_full_audit_runs_and_offers_the_reports(demo_cache, tmp_path, monkeypatch) -> None:
    from xrobust.audit import audit, load_config

    cfg = tmp_path / "small.toml"
    cfg.write_text(
        "[adversarial]\nn = 16\nattacks = ['fgsm', 'pgd']\nnorms = ['linf']\nsteps = 5\n"
        "minimal_perturbation = false\n[adversarial.eps]\nlinf = [0.1]\n"
        "[corruption]\nn = 16\nseverities = [1, 3]\n"
        "[explanations]\nn = 2\nn_metrics = 2\nmethods = ['saliency']\nrandomisation = false\n"
        "[sanity]\nn = 16\nconvergence_factor = 2\n"
        "[requirements]\nmin_clean_accuracy = 0.5\n"
    )
    monkeypatch.setenv("XROBUST_APP_AUDIT_CONFIG", str(cfg))
    at = new_app().run()
    at.button(key="ov_full").click().run()
    no_exception(at)
    files = at.session_state["ov_full_audit"][1]["files"]
    assert set(files) >= {"html", "json", "junit"}
    assert len(at.get("download_button")) == 3
    got = json.loads(files["json"][1])
    want = audit(demo_run().model, load_dataset("digits", size=28), load_config(cfg))
    assert got["sections"]["clean"]["data"]["accuracy"] == want.sections["clean"].data["accuracy"]
    assert got["passed"] is want.passed is True
    assert b"<testsuite" in files["junit"][1] and b"<html" in files["html"][1].lower()
    assert got["verdict"] == "passed"
    assert any("every requirement was evaluated and met" in s.value for s in at.success)


def test_adversarial_page_eps_filters_and_cells(demo_cache) -> None:
    ds, x, y = _digits()
    model, names = demo_run().model, ds.spec.class_names
    at = new_app().run()
    at.switch_page("app_pages/adversarial.py").run()
    no_exception(at)

    r = _pgd(model, x, y, 0.1, ds.spec.bounds)
    flipped = int((r.success & r.attacked).sum())
    m = metrics(at)
    assert m["Clean accuracy"] == f"{r.clean_accuracy:.4f}"
    assert m["Robust accuracy"] == f"{r.robust_accuracy:.4f}"
    assert "linf eps 0.1, measured" in [c.value for c in at.caption]
    assert m["Flipped"] == f"{flipped} / {int(r.attacked.sum())}"
    assert images(at) == len(_gallery(at)) == min(flipped, 16)
    assert len(at.get("download_button")) == 1

    # moving the eps slider re-runs the attack at the new eps
    at.slider(key="adv_eps_linf").set_value(0.05).run()
    no_exception(at)
    r = _pgd(model, x, y, 0.05, ds.spec.bounds)
    ok = r.success & r.attacked
    assert metrics(at)["Robust accuracy"] == f"{r.robust_accuracy:.4f}"
    assert metrics(at)["Flipped"] == f"{int(ok.sum())} / {int(r.attacked.sum())}"

    # filter the gallery by true class
    true = r.y[ok].tolist()
    k = max(set(true), key=true.count)
    at.multiselect(key="adv_f_true").set_value([k]).run()
    heads = _gallery(at)
    assert len(heads) == min(true.count(k), 16)
    assert all(f"true **{names[k]}**" in h for h in heads)
    at.multiselect(key="adv_f_true").set_value([]).run()

    # the flip matrix: every class a row and a column (also those without flips), the
    # off-diagonal counts of the attack inside their cells
    import numpy as np

    from xrobust.attacks.evaluation import adversarial_confusion

    shown = at.dataframe[0].value  # the Styler's data
    want = np.array(adversarial_confusion(r, 10).matrix)
    np.fill_diagonal(want, 0)
    assert list(shown.index) == list(shown.columns) == [str(c) for c in names]
    assert (shown.to_numpy() == want).all()
    assert (want.sum(0) == 0).any() or (want.sum(1) == 0).any()  # a class without flips stays
    # click the largest cell of the flip matrix (a cell selection of the table)
    pairs = list(zip(r.y[ok].tolist(), r.pred_adv[ok].tolist()))
    i, j = max(set(pairs), key=pairs.count)
    at.session_state["adv_matrix"] = {
        "selection": {"rows": [], "columns": [], "cells": [[i, str(names[j])]]}
    }
    at.run()
    no_exception(at)
    heads = _gallery(at)
    assert len(heads) == min(pairs.count((i, j)), 16)
    assert all(f"true **{names[i]}** → **{names[j]}**" in h for h in heads)
    at.button(key="adv_cell_clear").click().run()
    assert len(_gallery(at)) == min(int(ok.sum()), 16)


def test_blackbox_page_minimal_perturbation_matches(demo_cache) -> None:
    from xrobust.attacks.evaluation import minimal_perturbation

    ds = load_dataset("digits", size=28)
    x, y = as_tensors(ds.test, limit=16)
    at = new_app().run()
    at.switch_page("app_pages/blackbox.py").run()
    no_exception(at)
    mp = minimal_perturbation(
        demo_run().model, x, y, "pgd", eps_max=0.3, bounds=ds.spec.bounds, norm="linf", seed=0
    ).to_dict()
    m = metrics(at)
    assert m["Flipped within eps"] == f"{mp['found_fraction']:.4f}"
    med = mp["median_eps"]
    want = (
        f"{med:.4f}"
        if med is not None
        else (f"> {mp['eps_max']:g}" if mp["median_above_eps_max"] else "n/a")
    )
    assert m["Median minimal eps"] == want
    assert int(m["Model queries behind this page"].replace(",", "")) > 0
    assert images(at) >= 2  # occlusion map and the corrupted example
    table = at.dataframe[-1].value
    import math

    shown = [None if v is None or (isinstance(v, float) and math.isnan(v)) else round(v, 6)
             for v in table.iloc[:, 2]]  # fmt: skip
    assert shown == [None if v is None else round(v, 6) for v in mp["eps"]]
    assert list(table["outcome"]) == [o.replace("_", " ") for o in mp["outcome"]]


def test_explanations_page_metrics_match(demo_cache) -> None:
    import torch

    from xrobust.explain import explain
    from xrobust.explain.metrics import deletion_curve, insertion_curve
    from xrobust.models.inference import predict_proba

    _, x, _ = _digits()
    model = demo_run().model
    at = new_app().run()
    at.switch_page("app_pages/explanations.py").run()
    no_exception(at)
    table = at.dataframe[0].value
    assert "saliency" in list(table["method"])
    x1 = x[0:1]
    t = predict_proba(model, x).argmax(1)[0:1]
    a = explain(model, x1, target=t, method="saliency", seed=0).attributions
    row = table[table["method"] == "saliency"].iloc[0]
    assert row["deletion AUC (lower better)"] == round(deletion_curve(model, x1, a, t).mean_auc, 4)
    assert row["insertion AUC (higher better)"] == round(
        insertion_curve(model, x1, a, t, baseline="blur").mean_auc, 4
    )
    assert set(table["sanity check"]) <= {"pass", "FAIL"}
    assert images(at) == 1 and torch.is_tensor(a)


def test_compare_page_with_a_run_folder(demo_cache, other_run) -> None:
    from xrobust.attacks.evaluation import robustness_curve
    from xrobust.models import load_model

    _, x, y = _digits()
    ds = load_dataset("digits", size=28)
    a, b = demo_run().model, load_model(other_run)
    at = new_app().run()
    at.switch_page("app_pages/compare.py").run()
    at.radio(key="cmp_source").set_value("Run folder").run()
    at.text_input(key="cmp_run").input(str(other_run)).run()
    no_exception(at)
    m = metrics(at)
    for tag, model in (("A", a), ("B", b)):
        r = _pgd(model, x, y, 0.1, ds.spec.bounds)
        assert m[f"{tag} robust accuracy"] == f"{r.robust_accuracy:.4f}"
        c = robustness_curve(
            model,
            (x, y),
            "pgd",
            [0.0, 0.025, 0.05, 0.1, 0.2, 0.3],
            bounds=ds.spec.bounds,
            norm="linf",
            seed=0,
            steps=10,
        )
        assert m[f"{tag} clean accuracy"] == f"{c.clean_accuracy:.4f}"
    assert m["A robust accuracy"] != m["B robust accuracy"]


def test_sidebar_run_folder_and_uploaded_checkpoint(demo_cache, tmp_path) -> None:
    run_dir = demo_cache / "demo" / "digits-small_cnn"
    copy = tmp_path / "myrun"
    shutil.copytree(run_dir, copy)
    want = metrics(new_app().run())["Clean accuracy"]

    at = new_app().run()
    at.radio(key="m_source").set_value("Run folder").run()
    at.text_input(key="m_run").input(str(copy)).run()
    no_exception(at)
    assert "source: run" in " ".join(c.value for c in at.sidebar.caption)
    assert metrics(at)["Clean accuracy"] == want

    at = new_app().run()
    at.radio(key="m_source").set_value("Upload checkpoint").run()
    at.file_uploader(key="m_upload").set_value(
        [
            (
                "model.safetensors",
                (run_dir / "model.safetensors").read_bytes(),
                "application/octet-stream",
            ),
            ("model.json", (run_dir / "model.json").read_bytes(), "application/json"),
        ]
    ).run()
    no_exception(at)
    assert not [e.value for e in at.error]
    assert "source: upload" in " ".join(c.value for c in at.sidebar.caption)
    assert metrics(at)["Clean accuracy"] == want


def test_tabular_demo_pages(demo_cache) -> None:
    ds = load_dataset("breast_cancer")
    x, y = as_tensors(ds.test, limit=64)
    model = demo_run("breast_cancer").model
    at = new_app().run()
    at.selectbox(key="m_demo").set_value("breast_cancer").run()
    no_exception(at)
    at.switch_page("app_pages/adversarial.py").run()
    no_exception(at)
    r = get_attack("pgd", model, eps=0.1, norm="linf", bounds=ds.spec.bounds, seed=0, steps=10).run(
        x, y
    )
    assert metrics(at)["Robust accuracy"] == f"{r.robust_accuracy:.4f}"
    at.switch_page("app_pages/explanations.py").run()
    no_exception(at)
    subheads = [s.value for s in at.subheader]
    assert "Global feature importance" in subheads
    assert images(at) >= 2  # one row's bars and the global importance
    at.switch_page("app_pages/blackbox.py").run()
    no_exception(at)
