"""Verdicts that cannot lie: passed / failed / incomplete.

A requirement whose evidence was not fully gathered is "not_evaluated", never "pass"; the
verdict is then "incomplete" (exit 3) unless something failed. Checked by a property test
over synthetic section outcomes, by real audits whose sections are made to error or stop
part way, and by the query-budget case of a black box answering probabilities."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from xrobust.audit import AuditConfig, audit
from xrobust.audit.consistency import inconsistencies
from xrobust.audit.render import render
from xrobust.audit.report import AuditReport, CheckResult, SectionResult, load_report
from xrobust.audit.sections.requirements import evaluate_requirements
from xrobust.data import load_dataset
from xrobust.models import as_classifier, build_model

SECTION_STATES = ["ok", "partial", "skipped", "not_available", "error"]


def _section(name: str, status: str, value: float, bound: str = "measured") -> SectionResult:
    data: dict = {}
    if status in ("ok", "partial"):
        if name == "clean":
            data = {"accuracy": value, "n": 10, "calibration": {"ece": 1 - value}}
        elif name == "corruption":
            data = {"severities": [3], "corruptions": {"gaussian_noise": {"accuracy": [value]}}}
        elif name == "adversarial":
            curve = {"eps": [0.1], "robust_accuracy": [value], "bound": bound}
            data = {"n": 10, "norms": {"linf": {"curves": {"worst": curve}}}}
    reason = "" if status == "ok" else f"{status} on purpose"
    return SectionResult(name, status, reason, data=data)  # type: ignore[arg-type]


@st.composite
def audit_outcomes(draw):
    reqs = {
        "min_clean_accuracy": draw(st.sampled_from([None, 0.5, 0.9])),
        "max_ece": draw(st.sampled_from([None, 0.3])),
        "min_corruption_accuracy": draw(st.sampled_from([None, 0.4])),
        "sanity_checks_pass": draw(st.booleans()),
        "robust": draw(
            st.sampled_from(
                [[], [{"attack": "worst", "norm": "linf", "eps": 0.1, "min_accuracy": 0.3}]]
            )
        ),
    }
    sanity_on = draw(st.booleans())
    cfg = AuditConfig.from_dict({"sanity": {"enabled": sanity_on}, "requirements": reqs})
    bound = draw(st.sampled_from(["measured", "upper"]))
    sections = {
        n: _section(
            n, draw(st.sampled_from(SECTION_STATES)), draw(st.sampled_from([0.2, 0.95])), bound
        )
        for n in ("clean", "adversarial", "corruption", "explanations")
    }
    sanity_state = draw(st.sampled_from(SECTION_STATES)) if sanity_on else "skipped"
    sections["sanity"] = SectionResult("sanity", sanity_state, "" if sanity_state == "ok" else "x")  # type: ignore[arg-type]
    checks = []
    if sanity_state in ("ok", "partial"):
        for i, s in enumerate(
            draw(st.lists(st.sampled_from(["pass", "warn", "fail", "skip"]), max_size=3))
        ):
            checks.append(CheckResult(f"check_{i}", s, s))  # type: ignore[arg-type]
    return cfg, sections, checks


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(audit_outcomes())
def test_passed_only_on_complete_evidence(outcome) -> None:
    cfg, sections, checks = outcome
    reqs = evaluate_requirements(cfg, sections, checks)
    sections = dict(sections)
    sections["requirements"] = SectionResult(
        "requirements", "ok", data={"n": len(reqs), "failed": sum(r.status == "fail" for r in reqs)}
    )
    report = AuditReport(sections=sections, sanity_checks=checks, requirements=reqs)
    evidence_sections = {"clean", "corruption", "adversarial", "sanity"}
    if report.verdict == "passed":
        assert reqs, "passed with nothing required"
        assert all(r.status in ("pass", "warn") for r in reqs)
        assert all(s.status not in ("partial", "error") for s in sections.values())
        for r in reqs:
            (name,) = r.details["evidence"]
            assert name in evidence_sections and sections[name].ok, (r, sections[name])
        if cfg.requirements.sanity_checks_pass:
            assert cfg.sanity.enabled and any(c.status in ("pass", "warn") for c in checks)
        # a robust requirement passes only on a measurement, never on an upper bound
        for r in reqs:
            if r.name.startswith("robust_accuracy"):
                assert r.details["bound"] == "measured"
    # every status follows from its numbers: the report agrees with itself
    assert inconsistencies(report, report.to_dict()) == []
    # and the verdict survives the JSON round trip with its parts
    again = AuditReport.from_dict(json.loads(report.to_json()))
    assert again.verdict == report.verdict and again.missing_evidence() == report.missing_evidence()
    # a requirement not evaluated is never a failure of the model
    if report.verdict == "incomplete":
        assert not report.failed_requirements and report.exit_code == 3


# --------------------------------------------------------------------- real audits
@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def model(digits):
    torch.manual_seed(0)
    return build_model("small_cnn", digits.spec).eval()


def _small(**over) -> AuditConfig:
    d = {
        "adversarial": {"n": 8, "norms": ["linf"], "attacks": ["fgsm", "pgd", "apgd"],
                        "minimal_perturbation": False, "steps": 5},
        "corruption": {"n": 16, "severities": [1], "corruptions": ["gaussian_noise"]},
        "explanations": {"enabled": False},
        "sanity": {"n": 8},
        "requirements": {"min_clean_accuracy": 0.0,
                         "robust": [{"attack": "worst", "norm": "linf", "eps": 0.1, "min_accuracy": 0.0}]},
    }  # fmt: skip
    for k, v in over.items():
        d.setdefault(k, {}).update(v)
    return AuditConfig.from_dict(d)


@pytest.mark.parametrize("how", ["error", "partial"])
@pytest.mark.parametrize("where", ["clean", "adversarial", "corruption", "sanity_checks"])
def test_a_broken_section_never_passes(monkeypatch, digits, model, how, where) -> None:
    """Every requirement is met by a wide margin (thresholds 0), yet a section that
    errors or stops part way makes the verdict incomplete, never passed."""
    import xrobust.audit.sections as secs

    mod = (
        getattr(secs, where)
        if hasattr(secs, where)
        else __import__(f"xrobust.audit.sections.{where}", fromlist=["x"])
    )
    fname = {"clean": "run_clean", "adversarial": "run_adversarial",
             "corruption": "run_corruption", "sanity_checks": "run_sanity"}[where]  # fmt: skip
    real = getattr(mod, fname)

    def broken(*a, **k):
        if how == "error":
            raise RuntimeError("injected failure")
        out = real(*a, **k)
        out["_partial"] = "stopped on purpose"
        return out

    monkeypatch.setattr(mod, fname, broken)
    rep = audit(model, digits, _small())
    assert rep.verdict == "incomplete" and rep.exit_code == 3, rep.missing_evidence()
    assert not rep.passed and not rep.failed_requirements
    missing = " ".join(rep.missing_evidence())
    assert "on purpose" in missing or "injected failure" in missing
    assert inconsistencies(rep, rep.to_dict()) == []


def test_the_same_audit_untouched_passes(digits, model) -> None:
    rep = audit(model, digits, _small())
    assert rep.verdict == "passed" and rep.exit_code == 0, rep.missing_evidence()
    nd = rep.sections["adversarial"].data["norms"]["linf"]
    assert nd["bound"] == "measured" and "white-box" in nd["bound_note"]


class _Softmax:
    """A black box answering probabilities (what a serving endpoint often does)."""

    def __init__(self, model):
        self.model = model

    def __call__(self, x):
        with torch.no_grad():
            return torch.softmax(self.model(torch.as_tensor(x, dtype=torch.float32)), 1).numpy()


def _bb_cfg() -> AuditConfig:
    return AuditConfig.from_dict(
        {
            "adversarial": {"n": 8, "norms": ["linf"], "minimal_perturbation": False,
                            "options": {"square": {"queries": 40}}},
            "corruption": {"n": 16, "severities": [1], "corruptions": ["gaussian_noise"]},
            "explanations": {"enabled": False},
            "sanity": {"n": 8},
        }
    )  # fmt: skip


def test_budget_out_on_a_probability_black_box_is_incomplete_not_passed(
    digits, model, tmp_path
) -> None:
    """The issue's case: with the full budget the sanity checks run and fail (the answers
    are probabilities); with a budget that runs out before them the audit used to say
    "passed" (exit 0). Now it is incomplete (exit 3) and says what is missing."""
    full = audit(as_classifier(_Softmax(model), digits.spec), digits, _bb_cfg())
    assert full.verdict == "failed", [c.message for c in full.sanity_checks]
    assert full.check("logits_not_probabilities").status == "fail"

    budget = len(digits.test) + 2 + 16  # clean predictions and one corruption pass
    clf = as_classifier(_Softmax(model), digits.spec, query_budget=budget)
    rep = audit(clf, digits, _bb_cfg())
    assert rep.queries["exhausted"]
    sanity = rep.check("sanity_checks_pass")
    assert sanity.status == "not_evaluated" and "not evaluated" in sanity.message
    assert rep.verdict == "incomplete" and rep.exit_code == 3
    paths = rep.save(tmp_path / "out")
    md = paths["md"].read_text()
    assert md.splitlines()[0].count("INCOMPLETE") == 1 and "Missing evidence" in md
    root = ET.parse(paths["junit"]).getroot()
    assert root.get("verdict") == "incomplete" and int(root.get("errors")) == 1
    case = next(c for c in root.iter("testcase") if c.get("name") == "sanity_checks_pass")
    assert case.find("skipped") is not None and case.find("failure") is None
    again = load_report(paths["json"])
    assert again.verdict == "incomplete"
    assert json.loads(paths["json"].read_text())["verdict"] == "incomplete"


def test_assert_audit_passes_and_audit_gate_fail_an_incomplete_audit() -> None:
    from xrobust.testing import assert_audit_passes

    rep = AuditReport(
        sections={"sanity": SectionResult("sanity", "partial", "the query budget ran out")},
        requirements=[CheckResult("sanity_checks_pass", "not_evaluated", "not evaluated: ...")],
    )
    with pytest.raises(AssertionError, match="audit incomplete"):
        assert_audit_passes(rep)


# ------------------------------------------------------------------- report checks
def _saved(digits, model, tmp_path):
    rep = audit(model, digits, _small(sanity={"enabled": True}))
    return rep, rep.save(tmp_path / "r")


def test_report_refuses_a_hand_edited_pass(digits, model, tmp_path) -> None:
    from xrobust.cli import main

    rep, paths = _saved(digits, model, tmp_path)
    d = json.loads(paths["json"].read_text())
    # a sanity check says fail, the requirement was edited to say pass
    d["sanity_checks"][0]["status"] = "fail"
    for r in d["requirements"]:
        if r["name"] == "sanity_checks_pass":
            r["status"] = "pass"
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(d))
    from xrobust.errors import DataError

    with pytest.raises(DataError, match='sanity_checks_pass says "pass" but the sanity check'):
        load_report(edited)
    assert main(["report", str(edited), "--format", "md"]) == 2

    # a threshold edited so that the value no longer meets it
    d = json.loads(paths["json"].read_text())
    for r in d["requirements"]:
        if r["name"] == "min_clean_accuracy":
            r["details"]["threshold"] = 1.01
    edited.write_text(json.dumps(d))
    with pytest.raises(DataError, match='min_clean_accuracy says "pass" but its value'):
        load_report(edited)

    # the stored verdict flipped by hand
    d = json.loads(paths["json"].read_text())
    d["verdict"] = "failed"
    edited.write_text(json.dumps(d))
    with pytest.raises(DataError, match="stored verdict is 'failed'"):
        load_report(edited)

    # the untouched file renders, with the audit's exit status
    assert (
        main(["report", str(paths["json"]), "--format", "junit", "--out", str(tmp_path / "j.xml")])
        == rep.exit_code
    )


def test_report_exit_status_follows_the_verdict(tmp_path) -> None:
    from xrobust.cli import main

    rep = AuditReport(
        sections={"sanity": SectionResult("sanity", "error", "RuntimeError: x")},
        requirements=[
            CheckResult(
                "sanity_checks_pass",
                "not_evaluated",
                "not evaluated",
                details={"evidence": ["sanity"]},
            )
        ],
        config=AuditConfig().to_dict(),
        timings={"total": 1.0},
    )
    rep.dataset = {"spec": {"name": "d", "modality": "tabular", "input_shape": [2], "num_classes": 2,
                            "class_names": ["a", "b"], "bounds": [None, None]}, "n_test": 1}  # fmt: skip
    rep.environment = {"device": "cpu", "world_size": 1}
    rep.model = {"class": "M"}
    rep.versions = {"xrobust": "x", "python": "3", "torch": "2"}
    paths = rep.save(tmp_path / "r")
    assert (
        main(["report", str(paths["json"]), "--format", "md", "--out", str(tmp_path / "s.md")]) == 3
    )
    assert "INCOMPLETE" in (tmp_path / "s.md").read_text()


# ------------------------------------------------------------ refusals, labels, headline
@pytest.mark.parametrize(
    "argv, needle",
    [
        (["--norms", ","], "--norms ',' names nothing"),
        (["--attacks", ","], "--attacks ',' names nothing"),
        (["--eps-linf", ","], "--eps-linf ',' holds no number"),
        (["--methods", " , "], "names nothing"),
    ],
)
def test_empty_lists_are_refused_on_the_cli(tmp_path, capsys, argv, needle) -> None:
    from xrobust.cli import main

    rc = main(["audit", "--model", str(tmp_path / "none"), "--out", str(tmp_path / "o"), *argv])
    err = capsys.readouterr().err
    assert rc == 2 and needle in err and "Traceback" not in err


@pytest.mark.parametrize(
    "toml, needle",
    [
        ("[adversarial]\nnorms = []\n", "adversarial.norms is empty"),
        ("[adversarial]\nattacks = []\n", "adversarial.attacks is empty"),
        ("[adversarial.eps]\nlinf = []\n", "non-empty list"),
        ("[corruption]\nseverities = []\n", "corruption.severities is empty"),
        ("[corruption]\ncorruptions = []\n", "corruption.corruptions is empty"),
        ("[explanations]\nmethods = []\n", "explanations.methods is empty"),
    ],
)
def test_empty_lists_are_refused_in_toml(tmp_path, capsys, toml, needle) -> None:
    from xrobust.cli import main

    cfg = tmp_path / "a.toml"
    cfg.write_text(toml)
    rc = main(
        [
            "audit",
            "--model",
            str(tmp_path / "none"),
            "--config",
            str(cfg),
            "--out",
            str(tmp_path / "o"),
        ]
    )
    err = capsys.readouterr().err
    assert rc == 2 and needle in err, err
    # the same list in a section switched off asks nothing, and is accepted
    from xrobust.audit import load_config

    section = toml.split("]")[0].strip("[").split(".")[0]
    if f"[{section}]\n" in toml:
        cfg.write_text(toml.replace(f"[{section}]\n", f"[{section}]\nenabled = false\n", 1))
        load_config(cfg).validate()


def test_minimal_perturbation_headline_counts_the_unbroken(digits, model) -> None:
    """The issue's case: a tiny eps breaks almost nothing. The median is over every
    example correct clean, those not broken count as above eps_max ("> 0.01"), the broken
    fraction is stated, and examples wrong clean are reported apart, never as 0."""
    from xrobust.audit.markdown import headline

    cfg = _small(adversarial={"eps": {"linf": [0.01]}, "minimal_perturbation": True, "n": 16})
    rep = audit(model, digits, cfg)
    mp = rep.sections["adversarial"].data["norms"]["linf"]["minimal_perturbation"]
    att = [o for o in mp["outcome"] if o != "misclassified_clean"]
    assert mp["n_attacked"] == len(att) and mp["n_misclassified_clean"] == 16 - len(att)
    broken = sorted(e for e, o in zip(mp["eps"], mp["outcome"]) if o == "broken")
    assert all(e > 0 for e in broken)  # nobody at distance 0
    radii = broken + [float("inf")] * att.count("not_broken")
    med = radii[(len(radii) - 1) // 2]
    (row,) = [v for k, v in headline(rep) if k.startswith("Median minimal perturbation")]
    if med == float("inf"):
        assert mp["median_eps"] is None and mp["median_above_eps_max"]
        assert row.startswith("> 0.01 over")
    else:
        assert mp["median_eps"] == pytest.approx(med)
    assert f"{len(broken)} of {len(att)}" in row
    if mp["n_misclassified_clean"]:
        assert "misclassified before any attack (not counted)" in row


def test_attack_cli_warns_on_a_non_deterministic_model(capsys) -> None:
    from xrobust.cli.attack import _determinism

    class Noisy(torch.nn.Module):
        def forward(self, x):
            return x.flatten(1)[:, :3] + torch.randn(len(x), 3)

    d = _determinism(Noisy(), torch.rand(8, 1, 4, 4), "cpu")
    err = capsys.readouterr().err
    assert d["deterministic"] is False and "WARNING: the model is not deterministic" in err
    d = _determinism(torch.nn.Flatten().eval(), torch.rand(8, 1, 4, 4), "cpu")
    assert d["deterministic"] is True and capsys.readouterr().err == ""


def test_budget_out_before_the_first_corruption_renders_cleanly(digits, model, caplog) -> None:
    budget = len(digits.test) + 2 + 4  # not even one corruption pass
    clf = as_classifier(_Softmax(model), digits.spec, query_budget=budget)
    cfg = AuditConfig.from_dict({"adversarial": {"enabled": False}, "explanations": {"enabled": False},
                                 "corruption": {"n": 16, "severities": [1]}, "sanity": {"n": 8}})  # fmt: skip
    rep = audit(clf, digits, cfg)
    cor = rep.sections["corruption"]
    assert cor.status == "partial" and cor.data.get("corruptions", {}) == {}
    with caplog.at_level("WARNING"):
        page = render(rep, "html")
    assert "could not be rendered" not in page and "No corruption finished" in page
    assert not [r for r in caplog.records if "rendering section" in r.getMessage()]
    assert rep.verdict == "incomplete"
