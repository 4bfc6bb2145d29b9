"""Audit sections are registered parts: a new section is one class (here, in this file)
that runs through ``audit()``, lands in report.json, the HTML page and the Markdown
summary, is switched off by config or ``--skip``, is validated by its own schema fragment,
and is skipped with a reason on a black box when it needs gradients.

The test sections compute real things, checked against an independent computation: the
histogram of the prediction entropy, and the mean input-gradient norm of the loss."""

from __future__ import annotations

import json
import math
import sys
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from xrobust import plugins
from xrobust.audit import AuditConfig, audit, load_config, load_report
from xrobust.audit.html import render_html, section_titles, table
from xrobust.audit.markdown import render_markdown
from xrobust.audit.report import AuditReport, SectionResult, report_schema
from xrobust.audit.section import (
    SECTIONS,
    Section,
    get_section,
    list_sections,
    register_section,
)
from xrobust.audit.validate import validate_report
from xrobust.data import load_dataset
from xrobust.errors import ConfigError, DataError
from xrobust.models import as_classifier, build_model


# ---------------------------------------------------------------- the test sections
@dataclass
class EntropyConfig:
    enabled: bool = True
    bins: int = 5

    def validate(self) -> None:
        if isinstance(self.bins, bool) or not isinstance(self.bins, int) or self.bins < 1:
            raise ConfigError(f"entropy.bins must be a positive integer, got {self.bins!r}")


class EntropySection(Section):
    """The histogram of the clean predictions' entropy, in nats over [0, log K]."""

    name = "entropy"
    title = "Prediction entropy"
    config = EntropyConfig
    schema = {
        "allOf": [{"$ref": "#/$defs/section"}],
        "if": {"properties": {"status": {"const": "ok"}}},
        "then": {
            "properties": {
                "data": {
                    "type": "object",
                    "required": ["n", "bins", "counts", "mean"],
                    "properties": {
                        "counts": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                        "mean": {"type": "number", "minimum": 0},
                    },
                }
            }
        },
    }

    def run(self, rt, report):
        cfg = rt.config.section_config(self.name)
        p = rt.probabilities(rt.clean_logits()).double()
        h = -(p * p.clamp_min(1e-300).log()).sum(1)
        top = math.log(rt.num_classes)
        counts = torch.histc(h, bins=cfg.bins, min=0.0, max=top)
        return {
            "n": len(h),
            "bins": cfg.bins,
            "max": top,
            "counts": [int(c) for c in counts],
            "mean": float(h.mean()),
        }

    def html(self, s, report):
        d = s.data
        edges = [d["max"] * i / d["bins"] for i in range(d["bins"] + 1)]
        rows = [[f"{a:.3f}-{b:.3f}", str(c)] for a, b, c in zip(edges, edges[1:], d["counts"])]
        return table(["entropy (nats)", "examples"], rows)

    def summary(self, report):
        s = report.sections.get(self.name)
        if s is None or not s.ok:
            return []
        return [("Mean prediction entropy", f"{s.data['mean']:.4f} nats (n={s.data['n']})")]

    def markdown(self, s, report):
        if not s.ok:
            return []
        return ["", "### Prediction entropy", "", f"Examples per bin: {s.data['counts']}"]


class InputGradientSection(Section):
    """The mean L2 norm of the cross-entropy's input gradient on 16 test examples."""

    name = "input_gradient"
    title = "Input gradients"
    needs = ("queries", "gradients")

    def run(self, rt, report):
        x = rt.x[:16].clone().requires_grad_(True)
        loss = F.cross_entropy(rt.model(x), rt.y[:16], reduction="sum")
        (g,) = torch.autograd.grad(loss, x)
        return {"n": 16, "mean_l2": float(g.flatten(1).norm(dim=1).mean())}


@pytest.fixture(scope="module")
def registered():
    for cls in (EntropySection, InputGradientSection):
        register_section(cls)
    yield
    for cls in (EntropySection, InputGradientSection):
        SECTIONS.unregister(cls.name)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def model(digits):
    torch.manual_seed(0)
    return build_model("small_cnn", digits.spec).eval()


def _cfg(**over) -> AuditConfig:
    d = {
        "adversarial": {"enabled": False},
        "corruption": {"enabled": False},
        "explanations": {"enabled": False},
        "sanity": {"enabled": False},
        "requirements": {"min_clean_accuracy": 0.0, "sanity_checks_pass": False},
        **over,
    }
    return AuditConfig.from_dict(d)


@pytest.fixture(scope="module")
def report(registered, model, digits):
    return audit(model, digits, _cfg(entropy={"bins": 4}))


# ---------------------------------------------------------------- the tests
def test_a_registered_section_runs_in_its_declared_order(report, model, digits) -> None:
    assert list_sections().index("entropy") == list_sections().index("sanity") + 1
    assert list(report.sections)[-3:] == ["entropy", "input_gradient", "requirements"]
    s = report.sections["entropy"]
    assert s.status == "ok" and s.queries == 0  # it reuses the shared clean predictions
    # an independent computation of the same histogram
    x, _ = (torch.stack([a for a, _ in digits.test]), None)
    with torch.no_grad():
        p = torch.softmax(model(x).double(), 1).numpy()
    h = -(p * np.log(np.clip(p, 1e-300, None))).sum(1)
    counts, _ = np.histogram(h, bins=4, range=(0.0, math.log(10)))
    assert s.data["counts"] == counts.tolist() and sum(s.data["counts"]) == len(x)
    assert s.data["mean"] == pytest.approx(h.mean(), rel=1e-5)
    # the gradient section on a white box, against autograd on the module itself
    xg = x[:16].clone().requires_grad_(True)
    y = torch.tensor([int(b) for _, b in list(digits.test)[:16]])
    (g,) = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
    grad = report.sections["input_gradient"]
    assert grad.status == "ok"
    assert grad.data["mean_l2"] == pytest.approx(float(g.flatten(1).norm(dim=1).mean()), rel=1e-5)
    # its options are recorded with the built-in sections'
    assert report.config["entropy"] == {"enabled": True, "bins": 4}
    assert report.config["input_gradient"] == {"enabled": True}


def test_it_is_saved_validated_and_rendered(report, tmp_path) -> None:
    report.save(tmp_path)
    again = load_report(tmp_path)  # schema and consistency checks
    assert again.sections["entropy"] == report.sections["entropy"]
    page = render_html(again)
    titles = section_titles(again)
    assert titles["entropy"] == "7. Prediction entropy" and titles["requirements"].startswith("6.")
    assert '<section id="entropy" data-status="ok"><h2>7. Prediction entropy</h2>' in page
    assert "<th>entropy (nats)</th>" in page and "Mean prediction entropy" in page
    assert page.index('id="requirements"') < page.index('id="entropy"')
    md = render_markdown(again)
    assert "### Prediction entropy" in md and "| Mean prediction entropy |" in md
    assert (tmp_path / "summary.md").read_text(encoding="utf-8") == md


def test_its_schema_fragment_validates_its_data(report) -> None:
    schema = report_schema()
    assert schema["properties"]["sections"]["properties"]["entropy"] == {
        "$ref": "#/$defs/section:entropy"
    }
    good = report.to_dict()
    validate_report(good)
    bad = report.to_dict()
    bad["sections"]["entropy"]["data"]["counts"][0] = -1
    with pytest.raises(DataError, match=r"sections/entropy/data/counts/0"):
        validate_report(bad)
    missing = report.to_dict()
    del missing["sections"]["entropy"]["data"]["mean"]
    with pytest.raises(DataError, match="'mean' is a required property"):
        validate_report(missing)


def test_it_is_switched_off_by_config_toml_and_skip(registered, model, digits, tmp_path) -> None:
    rep = audit(model, digits, _cfg(entropy={"enabled": False}))
    assert rep.sections["entropy"].status == "skipped"
    assert rep.sections["entropy"].reason == "switched off in the config"
    toml = tmp_path / "audit.toml"
    toml.write_text("[entropy]\nbins = 3\n", encoding="utf-8")
    cfg = load_config(toml)
    assert cfg.section_config("entropy").bins == 3 and cfg.enabled("entropy")
    assert AuditConfig.from_dict(cfg.to_dict()) == cfg
    toml.write_text("[entropy]\nbins = 0\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"entropy.bins must be a positive integer"):
        load_config(toml)
    toml.write_text("[entropy]\nbin = 3\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"unknown config key 'entropy.bin'.*'bins'"):
        load_config(toml)
    from xrobust.cli import build_parser
    from xrobust.cli.audit import build_config

    args = build_parser().parse_args(["audit", "--demo", "--skip", "entropy,corruption"])
    cfg = build_config(args)
    assert not cfg.enabled("entropy") and not cfg.enabled("corruption") and cfg.enabled("clean")
    args = build_parser().parse_args(["audit", "--demo", "--skip", "entropyy"])
    with pytest.raises(ConfigError, match=r"unknown section 'entropyy'.*entropy"):
        build_config(args)


def test_a_black_box_skips_a_section_that_needs_gradients(registered, model, digits) -> None:
    def predict(x):
        with torch.no_grad():
            return model(torch.as_tensor(x, dtype=torch.float32)).numpy()

    rep = audit(as_classifier(predict, spec=digits.spec), digits, _cfg())
    grad = rep.sections["input_gradient"]
    assert grad.status == "not_available" and "black box" in grad.reason
    assert rep.sections["entropy"].status == "ok"
    validate_report(rep.to_dict())
    assert "Not available" in render_html(rep)


def test_a_section_must_declare_itself() -> None:
    class Nameless(Section):
        pass

    with pytest.raises(ConfigError, match="declares no name"):
        register_section(Nameless)

    class NoEnabled(Section):
        name = "no_enabled"

        @dataclass
        class config:
            bins: int = 3

    with pytest.raises(ConfigError, match="'enabled' field"):
        register_section(NoEnabled)
    with pytest.raises(ConfigError, match=r"unknown section 'cleen'.*'clean'"):
        get_section("cleen")


def test_an_installed_package_adds_a_section(tmp_path, monkeypatch) -> None:
    """The ``xrobust.audit_sections`` entry-point group (xrobust.plugins.GROUPS)."""
    (tmp_path / "xrobust_support_plugin.py").write_text(
        "from xrobust.audit.section import Section\n"
        "class Support(Section):\n"
        "    name = 'support'\n"
        "    title = 'Test examples per class'\n"
        "    def run(self, rt, report):\n"
        "        return {'counts': rt.y.bincount(minlength=rt.num_classes).tolist()}\n",
        encoding="utf-8",
    )
    info = tmp_path / "xrobust_support_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: xrobust-support-plugin\n"
                                   "Version: 0.1\n")  # fmt: skip
    (info / "entry_points.txt").write_text(
        "[xrobust.audit_sections]\nsupport = xrobust_support_plugin:Support\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv(plugins.ENV_VAR, raising=False)
    plugins.reload()
    try:
        assert "support" in list_sections()
        assert SECTIONS.source("support") == "xrobust-support-plugin 0.1"
        assert get_section("support").title == "Test examples per class"
    finally:
        monkeypatch.undo()
        sys.modules.pop("xrobust_support_plugin", None)
        plugins.reload()
    assert "support" not in list_sections()


def test_a_section_this_installation_does_not_know_still_renders(report, tmp_path) -> None:
    """A report written with a section registered elsewhere (a script, a plugin not
    installed here) loads, and its data is shown as a table under its name."""
    d = report.to_dict()
    d["sections"]["support"] = {"name": "support", "status": "ok", "reason": "", "seconds": 0.1,
                                "data": {"counts": [3, 4]}, "queries": 0}  # fmt: skip
    (tmp_path / "report.json").write_text(json.dumps(d), encoding="utf-8")
    again = load_report(tmp_path)
    page = render_html(again)
    assert "<h2>9. support</h2><table><thead><tr><th>measure</th><th>value</th></tr>" in page
    assert "<td>counts</td><td>3, 4</td>" in page


class _Broken(Section):
    name = "broken"

    def html(self, s, report):
        raise KeyError("no such number")

    def summary(self, report):
        raise KeyError("no such number")


def test_a_section_that_cannot_render_loses_nothing_else(report) -> None:
    register_section(_Broken)
    try:
        rep = AuditReport.from_dict(report.to_dict())
        rep.sections["broken"] = SectionResult("broken", "ok", data={"x": 1})
        page = render_html(rep)
        assert "This section could not be rendered: KeyError" in page
        assert "Mean prediction entropy" in page and "Clean accuracy" in page
        assert "| Mean prediction entropy |" in render_markdown(rep)
    finally:
        SECTIONS.unregister("broken")
