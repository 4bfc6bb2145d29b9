"""The audit end to end on the digits CNN: sections, JSON schema and round trip, JUnit XML,
Markdown, HTML escaping, requirements, re-rendering from JSON."""

from __future__ import annotations

import json
import re
import xml.etree.ElementTree as ET

import pytest
import torch
from browser_support import browser_available, launch
from torch.utils.data import TensorDataset

from xrobust.audit import AuditConfig, AuditReport, audit, load_report
from xrobust.audit.render import render
from xrobust.audit.validate import validate_report
from xrobust.cli import main
from xrobust.data.spec import DatasetBundle, DatasetSpec
from xrobust.errors import ConfigError, DataError

SMALL = {
    "batch_size": 64,
    "clean": {"n": 200},
    "adversarial": {
        "n": 32,
        "attacks": ["fgsm", "pgd", "apgd", "ensemble"],
        "eps": {"linf": [0.05, 0.2], "l2": [1.0]},
        "steps": 10,
        "options": {"ensemble": {"n_target_classes": 3}},
        "bisection_steps": 3,
        "n_vulnerable": 3,
    },
    "corruption": {"n": 64, "severities": [1, 5]},
    "explanations": {"n": 2, "n_metrics": 4, "methods": ["saliency"]},
    "sanity": {"n": 24, "convergence_factor": 2},
    "requirements": {
        "min_clean_accuracy": 0.9,
        "max_ece": 0.5,
        "robust": [
            {"attack": "pgd", "norm": "linf", "eps": 0.05, "min_accuracy": 0.2},
            {"attack": "worst", "norm": "linf", "eps": 0.2, "min_accuracy": 0.9},
        ],
    },
}

EVIL = '<img src=x onerror="alert(1)">'


def digits_bundle(
    d: dict[str, torch.Tensor], class_names: tuple[str, ...] | None = None
) -> DatasetBundle:
    spec = DatasetSpec(
        name="digits-test",
        modality="image",
        input_shape=(1, 28, 28),
        num_classes=10,
        class_names=class_names or tuple(str(i) for i in range(10)),
        bounds=(0.0, 1.0),
    )
    return DatasetBundle(
        TensorDataset(d["x_train"], d["y_train"]), TensorDataset(d["x_test"], d["y_test"]), spec
    )


@pytest.fixture(scope="module")
def report(digits28, digits_cnn) -> AuditReport:
    names = (EVIL, *[str(i) for i in range(1, 10)])
    return audit(
        digits_cnn,
        digits_bundle(digits28, names),
        AuditConfig.from_dict(SMALL),
        title=f"audit {EVIL}",
    )


def test_every_section_runs(report: AuditReport) -> None:
    for name in ("clean", "adversarial", "corruption", "explanations", "sanity", "requirements"):
        assert report.sections[name].status == "ok", (name, report.sections[name].reason)
    clean = report.sections["clean"].data
    assert clean["n"] == 200 and 0.9 <= clean["accuracy"] <= 1.0
    # confusion matrix rows sum to the class support; its trace is the accuracy
    cm = torch.tensor(clean["confusion_matrix"])
    assert cm.sum().item() == 200
    assert cm.sum(1).tolist() == clean["per_class"]["support"]
    assert abs(cm.trace().item() / 200 - clean["accuracy"]) < 1e-6
    cal = clean["calibration"]
    assert sum(cal["bin_count"]) == 200 and 0 <= cal["ece"] <= cal["mce"] + 1e-9


def test_adversarial_curves_are_consistent(report: AuditReport) -> None:
    adv = report.sections["adversarial"].data
    assert adv["n"] == 32
    attacks = ("fgsm", "pgd", "apgd", "ensemble")
    for nd in adv["norms"].values():
        curves = {a: dict(zip(c["eps"], c["robust_accuracy"])) for a, c in nd["curves"].items()}
        assert set(curves) == {*attacks, "worst"}
        for a in attacks:
            assert nd["curves"][a]["attack"] == a and nd["curves"][a]["n"] == 32
            raw = {r["eps"]: r["robust_accuracy"] for r in nd["results"][a]}
            assert all(curves[a][e] <= raw[e] + 1e-9 for e in raw)  # cumulative <= raw
            assert list(raw) == (nd["eps"] if a != "ensemble" else nd["curves"][a]["eps"])
        # the ensemble runs at the headline eps (and a "worst" requirement's), not the grid
        assert nd["headline_eps"] in curves["ensemble"]
        # the options that really ran: the shared steps, the ensemble's own table
        assert nd["results"]["pgd"][0]["config"]["steps"] == 10
        assert nd["results"]["ensemble"][0]["config"]["n_target_classes"] == 3
        for e in nd["eps"]:
            # the worst case is at most every single attack's accuracy
            ran = [curves[a][e] for a in attacks if e in curves[a]]
            assert curves["worst"][e] <= min(ran) + 1e-9
            assert curves["worst"][e] <= adv["clean_accuracy"] + 1e-9
        head = nd["headline_eps"]
        broken = nd["broken_by_example"]
        assert len(broken) == 32
        fooled = sum(b is not None for b in broken)
        assert sum(nd["broken_by"].values()) == fooled
        assert fooled == round((adv["clean_accuracy"] - curves["worst"][head]) * 32)
        assert all(b is None or b.split("/")[0] in attacks for b in broken)
        flips = torch.tensor(nd["confusion"]["matrix"])
        assert flips.sum().item() == 32
        pc = nd["per_class"]
        assert sum(pc["count"]) == 32
        mp = nd["minimal_perturbation"]
        assert mp["n"] == 32 and 0 < mp["found_fraction"] <= 1
        for r in nd["vulnerable"]:
            assert r["pred_adv"] != r["label"]  # each shown example is really fooled
            assert r["perturbation_norm"] <= r["eps"] * (1 + 1e-4) + 1e-6
    # linf curve at the largest eps: a standard CNN is broken at eps 0.2
    assert adv["norms"]["linf"]["curves"]["worst"]["robust_accuracy"][-1] <= 0.1


def test_requirements_pass_and_fail(report: AuditReport) -> None:
    by = {r.name: r for r in report.requirements}
    assert by["min_clean_accuracy"].status == "pass"
    assert by["max_ece"].status == "pass"
    assert by["robust_accuracy[pgd,linf,eps=0.05]"].status == "pass"
    assert by["robust_accuracy[worst,linf,eps=0.2]"].status == "fail"
    assert by["sanity_checks_pass"].status == "pass"
    assert not report.passed and len(report.failed_requirements) == 1


def test_json_validates_and_round_trips(report: AuditReport, tmp_path) -> None:
    paths = report.save(tmp_path)
    assert {p.name for p in paths.values()} == {
        "report.html",
        "report.json",
        "junit.xml",
        "summary.md",
    }
    d = json.loads((tmp_path / "report.json").read_text())
    validate_report(d)
    back = load_report(tmp_path / "report.json")
    assert back == report
    assert back.to_dict() == d
    assert d["versions"]["torch"] == torch.__version__ and d["seeds"] == {"audit": 0}
    # a broken report is refused with the path of the violation
    d["sections"]["clean"]["data"]["accuracy"] = 1.5
    with pytest.raises(DataError, match="accuracy"):
        validate_report(d)


def test_junit_parses(report: AuditReport) -> None:
    root = ET.fromstring(render(report, "junit"))
    cases = root.findall(".//testcase")
    names = {c.get("name") for c in cases}
    assert {r.name for r in report.requirements} <= names
    assert {c.name for c in report.sanity_checks} <= names
    failures = [c.get("name") for c in cases if c.find("failure") is not None]
    # the verdict test case fails with the failed requirement, so a CI reading only the XML fails
    assert failures == ["verdict", "robust_accuracy[worst,linf,eps=0.2]"]
    assert int(root.get("failures")) == 2 and root.get("verdict") == "failed"


def test_markdown_summary(report: AuditReport) -> None:
    md = render(report, "md")
    assert md.startswith("## ") and "failed" in md
    assert "robust_accuracy[worst,linf,eps=0.2]" in md
    # user strings cannot inject HTML into a PR comment: a tag opening is backslash-escaped,
    # while comparisons stay as they are for the terminal (no "&gt;=" entities)
    assert re.search(r"(?<!\\)<img", md) is None and "\\<img" in md
    assert "&gt;" not in md and "&lt;" not in md and ">= required 0.9" in md


def test_html_escapes_user_strings(report: AuditReport) -> None:
    page = render(report, "html")
    assert EVIL not in page
    assert html_escaped(EVIL) in page
    assert "<script" not in page.lower()
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    for sid in ("clean", "adversarial", "corruption", "explanations", "sanity", "requirements"):
        assert f'<section id="{sid}" data-status="ok">' in page


def html_escaped(s: str) -> str:
    import html

    return html.escape(s, quote=True)


def test_report_cli_renders_from_json(report: AuditReport, tmp_path, capsys) -> None:
    report.save(tmp_path, formats=("json",))
    out = tmp_path / "again.html"
    rc = main(
        [
            "report",
            str(tmp_path / "report.json"),
            "--format",
            "html",
            "--out",
            str(out),
            "--validate",
        ]
    )
    assert rc == 1  # the report's verdict: a requirement failed
    assert out.read_text() == render(report, "html")
    assert main(["report", str(tmp_path), "--format", "md"]) == 1
    assert capsys.readouterr().out == render(report, "md")
    (tmp_path / "bad.json").write_text("{}")
    assert main(["report", str(tmp_path / "bad.json")]) == 2


def test_bad_configuration_is_refused(digits28, digits_cnn) -> None:
    with pytest.raises(ConfigError, match="Did you mean 'pgd'"):
        audit(
            digits_cnn,
            digits_bundle(digits28),
            AuditConfig.from_dict({"adversarial": {"attacks": ["pgdd"]}}),
        )
    with pytest.raises(ConfigError, match="Did you mean 'saliency'"):
        audit(
            digits_cnn,
            digits_bundle(digits28),
            AuditConfig.from_dict(
                {
                    "explanations": {"methods": ["salency"]},
                    "adversarial": {"enabled": False},
                    "corruption": {"enabled": False},
                    "sanity": {"enabled": False},
                }
            ),
        )


def test_unmeasured_requirement_is_not_evaluated(digits28, digits_cnn) -> None:
    cfg = AuditConfig.from_dict(
        {
            "adversarial": {"enabled": False},
            "corruption": {"enabled": False},
            "explanations": {"enabled": False},
            "sanity": {"enabled": False},
            "requirements": {
                "robust": [{"attack": "pgd", "norm": "linf", "eps": 0.1, "min_accuracy": 0.0}]
            },
        }
    )
    r = audit(digits_cnn, digits_bundle(digits28), cfg)
    req, sanity = r.requirements
    assert req.status == "not_evaluated" and "not evaluated" in req.message
    # sanity_checks_pass (on by default) cannot pass on checks that never ran
    assert sanity.name == "sanity_checks_pass" and sanity.status == "not_evaluated"
    assert "sanity_checks_pass = false" in sanity.message
    assert r.sections["adversarial"].status == "skipped"
    assert r.verdict == "incomplete" and not r.passed and r.exit_code == 3
    assert len(r.missing_evidence()) == 2
    junit = ET.fromstring(render(r, "junit"))
    skipped = {c.get("name") for c in junit.iter("testcase") if c.find("skipped") is not None}
    assert {req.name, "sanity_checks_pass"} <= skipped
    (verdict,) = [c for c in junit.iter("testcase") if c.get("name") == "verdict"]
    assert verdict.find("error").get("type") == "AuditIncomplete"
    assert "INCOMPLETE" in render(r, "md").splitlines()[0]
    assert 'class="verdict incomplete"' in render(r, "html")


@pytest.mark.browser
@pytest.mark.skipif(not browser_available(), reason="needs /usr/bin/chromium and playwright")
def test_html_report_in_a_real_browser(report: AuditReport, tmp_path) -> None:
    from playwright.sync_api import sync_playwright

    report.save(tmp_path, formats=("html",))
    url = (tmp_path / "report.html").resolve().as_uri()
    requests: list[str] = []
    problems: list[str] = []
    with sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("request", lambda r: requests.append(r.url))
            page.on(
                "console",
                lambda m: (
                    problems.append(f"{m.type}: {m.text}")
                    if m.type in ("error", "warning")
                    else None
                ),
            )
            page.on("pageerror", lambda e: problems.append(f"pageerror: {e}"))
            page.on("dialog", lambda d: (problems.append(f"dialog: {d.message}"), d.dismiss()))
            page.goto(url, wait_until="load")
            assert page.title() == f"audit {EVIL}"  # the title is shown as text, not markup
            for sid in (
                "summary",
                "clean",
                "adversarial",
                "corruption",
                "explanations",
                "sanity",
                "requirements",
            ):
                sec = page.locator(f"section#{sid}")
                assert sec.count() == 1 and sec.is_visible(), sid
                assert sec.locator("h2").inner_text().strip(), sid
            # every embedded figure decoded (natural size > 0) and there is one per chart
            sizes = page.eval_on_selector_all(
                "img", "els => els.map(e => [e.naturalWidth, e.complete])"
            )
            assert len(sizes) >= 10 and all(w > 0 and done for w, done in sizes), sizes
            assert page.locator("#verdict").inner_text().startswith("FAILED")
            # the malicious class name is displayed literally in the per-class table
            assert EVIL in page.locator("section#clean table").inner_text()
            assert page.locator("section#clean img[src='x']").count() == 0
        finally:
            browser.close()
    assert problems == []
    assert all(u == url or u.startswith("data:") for u in requests), requests
