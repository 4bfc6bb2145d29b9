"""The audit of a black box: the same model audited as a torch module and as a predict
function gives the same clean, corruption and occlusion results; the gradient parts are
skipped with their reasons; query counts equal the rows the function received; a query
budget stops the audit cleanly and the report still saves and loads."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from xrobust.audit import AuditConfig, audit
from xrobust.audit.report import load_report
from xrobust.data import load_dataset
from xrobust.models import as_classifier, build_model


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def model(digits):
    torch.manual_seed(0)
    m = build_model("small_cnn", digits.spec).eval()
    return m


def _cfg(**over) -> AuditConfig:
    d = {
        "adversarial": {"n": 16, "norms": ["linf"], "options": {"hop_skip_jump": {"queries": 300}}},
        "corruption": {
            "n": 48,
            "severities": [1, 3],
            "corruptions": ["gaussian_noise", "gaussian_blur"],
        },
        "explanations": {
            "n": 2,
            "n_metrics": 2,
            "methods": ["saliency", "occlusion"],
            "black_box_methods": ["occlusion"],
            "randomisation": False,
            "deletion_insertion": False,
            "stability": False,
        },
        "sanity": {"n": 8},
    }
    for k, v in over.items():
        d.setdefault(k, {}).update(v)
    return AuditConfig.from_dict(d)


class _Counting:
    """A predict function over the torch model that counts the rows it was asked about."""

    def __init__(self, model):
        self.model, self.rows = model, 0

    def __call__(self, a: np.ndarray) -> np.ndarray:
        self.rows += len(a)
        with torch.no_grad():
            return self.model(torch.from_numpy(a)).numpy()


def test_black_box_audit_matches_the_white_box_one(digits, model, tmp_path) -> None:
    white = audit(model, digits, _cfg())
    fn = _Counting(model)
    clf = as_classifier(fn, digits.spec)
    black = audit(clf, digits, _cfg())

    wc, bc = white.sections["clean"].data, black.sections["clean"].data
    assert wc["accuracy"] == bc["accuracy"]
    assert wc["calibration"]["ece"] == pytest.approx(bc["calibration"]["ece"], abs=1e-6)
    wr = white.sections["corruption"].data["corruptions"]
    br = black.sections["corruption"].data["corruptions"]
    assert {k: v["accuracy"] for k, v in wr.items()} == {k: v["accuracy"] for k, v in br.items()}
    wo = np.array(white.sections["explanations"].data["methods"]["occlusion"]["clean"])
    bo = np.array(black.sections["explanations"].data["methods"]["occlusion"]["clean"])
    assert np.allclose(wo, bo, atol=1e-5)

    # the gradient parts did not run, and the report says why
    assert "saliency" not in black.sections["explanations"].data["methods"]
    # the query-only attack ran in place of the gradient ones
    adv = black.sections["adversarial"]
    assert adv.status == "ok" and adv.data["attacks"] == ["square"], adv.reason
    curves = adv.data["norms"]["linf"]["query_curves"]["square"]
    assert curves["queries"][-1] <= 1000 and curves["robust_accuracy"][-1] <= wc["accuracy"]
    mp = adv.data["norms"]["linf"]["minimal_perturbation"]
    assert mp["attack"] == "hop_skip_jump" and "minimum-norm" in mp["method"]
    # the summary is over the examples correct clean; those wrong clean are counted apart
    assert mp["n_attacked"] + mp["n_misclassified_clean"] == mp["n"]
    broken = mp["outcome"].count("broken")
    assert broken > 0 and mp["found_fraction"] == broken / mp["n_attacked"]
    assert all((e is not None) == (o == "broken") for e, o in zip(mp["eps"], mp["outcome"]))
    # a query-only attack's robust accuracy is labelled an upper bound, on every surface
    nd = adv.data["norms"]["linf"]
    assert nd["bound"] == "upper" and "square" in nd["bound_note"] and "queries per example" in nd["bound_note"]
    assert white.sections["adversarial"].data["norms"]["linf"]["bound"] == "measured"
    from xrobust.audit.markdown import headline

    (row,) = [v for k, v in headline(black) if k.startswith("Robust accuracy, linf")]
    assert row.startswith("at most ") and "upper bound" in row
    parts = {p["part"]: p["reason"] for s in black.sections.values() for p in s.skipped_parts}
    assert "black box" in parts["method saliency"] and "black box" in parts["attack pgd"]
    checks = {c.name: c for c in black.sanity_checks}
    assert checks["finite_nonzero_gradients"].status == "skip"
    assert checks["deterministic_outputs"].status == "pass"

    # every row the function saw is counted, per section and in total
    q = black.queries
    assert q["total"] == fn.rows == clf.queries
    assert sum(q["per_section"].values()) == fn.rows
    assert black.model["classifier"]["source"] == "callable"

    paths = black.save(tmp_path / "rep")
    again = load_report(paths["json"])
    assert again.queries == q and again.sections["explanations"].skipped_parts
    html = paths["html"].read_text()
    assert "Not run" in html and "black box" in html


def test_query_budget_stops_the_audit_cleanly(digits, model, tmp_path) -> None:
    fn = _Counting(model)
    n_test = len(digits.test)
    budget = n_test + 2 + 48 * 2  # clean predictions, then one corruption of two severities
    clf = as_classifier(fn, digits.spec, query_budget=budget)
    rep = audit(clf, digits, _cfg(adversarial={"enabled": False}))
    assert fn.rows <= budget and rep.queries["exhausted"]
    cor = rep.sections["corruption"]
    assert cor.status == "partial" and "query budget" in cor.reason
    assert list(cor.data["corruptions"]) == ["gaussian_noise"]  # the finished one is kept
    assert rep.sections["explanations"].status == "skipped"
    assert "budget" in rep.sections["explanations"].reason
    assert rep.sections["clean"].status == "ok"
    rep.save(tmp_path / "rep")  # a partial report is still a valid report


def test_budget_below_the_clean_pass_is_a_clear_error(digits, model) -> None:
    from xrobust.errors import ConfigError

    clf = as_classifier(_Counting(model), digits.spec, query_budget=10)
    with pytest.raises(ConfigError, match="does not cover the clean predictions"):
        audit(clf, digits, _cfg())


def test_data_model_mismatch_before_any_query(digits) -> None:
    from xrobust.errors import DataError

    fn = _Counting(lambda t: torch.zeros(len(t), 10))
    shape = tuple(digits.spec.input_shape)
    clf = as_classifier(fn, input_shape=(3, 8, 8), num_classes=10)
    with pytest.raises(DataError, match=rf"{re.escape(str(shape))}.*\(3, 8, 8\)"):
        audit(clf, digits, _cfg())
    clf = as_classifier(fn, input_shape=shape, num_classes=4)
    with pytest.raises(DataError, match="10 classes"):
        audit(clf, digits, _cfg())
    assert fn.rows == 0


def test_the_users_module_is_never_moved_or_changed(digits, model) -> None:
    model.train()
    try:
        before = {k: v.clone() for k, v in model.state_dict().items()}
        audit(model, digits, _cfg(adversarial={"enabled": False}, sanity={"enabled": False}))
        assert model.training
        assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
        assert all(p.grad is None for p in model.parameters())
    finally:
        model.eval()
