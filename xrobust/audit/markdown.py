"""A Markdown summary of an audit for a pull-request comment, and the headline numbers
that the HTML report shows too.

Example:
    >>> from xrobust.audit.report import AuditReport
    >>> render_markdown(AuditReport()).startswith("## ")
    True
"""

from __future__ import annotations

from typing import Any

from xrobust.audit.report import AuditReport

__all__ = ["headline", "render_markdown"]

_ICON = {"pass": "✅", "warn": "⚠️", "fail": "❌", "skip": "⏭️"}


def headline(report: AuditReport) -> list[tuple[str, str]]:
    """(label, value) pairs of the key numbers: clean accuracy, worst-case robust accuracy
    at each norm's headline eps, ECE, mean corruption accuracy, checks and requirements."""
    rows: list[tuple[str, str]] = []
    clean = report.sections.get("clean")
    if clean is not None and clean.ok:
        rows.append(("Clean accuracy", f"{clean.data['accuracy']:.4f} (n={clean.data['n']})"))
        rows.append(("Expected calibration error", f"{clean.data['calibration']['ece']:.4f}"))
    adv = report.sections.get("adversarial")
    if adv is not None and adv.ok:
        for norm, nd in adv.data["norms"].items():
            k = _index(nd["eps"], nd["headline_eps"])
            worst = nd["curves"]["worst"]["robust_accuracy"][k]
            rows.append(
                (
                    f"Robust accuracy, {norm} eps={nd['headline_eps']:g}",
                    f"{worst:.4f} worst case over {', '.join(a for a in nd['curves'] if a != 'worst')} "
                    f"(n={adv.data['n']}{_broken_by(nd)})",
                )
            )
            mp = nd.get("minimal_perturbation") or {}
            med = mp.get("median_eps")
            if med is not None:
                rows.append((f"Median minimal perturbation, {norm}", f"{med:.4g}"))
    corr = report.sections.get("corruption")
    if corr is not None and corr.ok and corr.data.get("mean_corruption_accuracy") is not None:
        rows.append(("Mean corruption accuracy", f"{corr.data['mean_corruption_accuracy']:.4f}"))
    if report.sanity_checks:
        counts = _counts(report.sanity_checks)
        rows.append(("Sanity checks", counts))
    if report.requirements:
        rows.append(("Requirements", _counts(report.requirements)))
    return rows


def _broken_by(nd: dict[str, Any]) -> str:
    counts = nd.get("broken_by") or {}
    if not counts:
        return ""
    parts = ", ".join(f"{a} {k}" for a, k in sorted(counts.items(), key=lambda t: -t[1]))
    return f"; broken by {parts}"


def _counts(checks: list[Any]) -> str:
    out = []
    for s in ("pass", "warn", "fail", "skip"):
        k = sum(c.status == s for c in checks)
        if k:
            out.append(f"{k} {s}")
    return ", ".join(out)


def _index(grid: list[float], v: float) -> int:
    return min(range(len(grid)), key=lambda i: abs(grid[i] - v))


def _cell(s: str) -> str:
    return str(s).replace("|", "\\|").replace("\n", " ").replace("<", "&lt;").replace(">", "&gt;")


def render_markdown(report: AuditReport) -> str:
    """A short Markdown summary: verdict, key numbers, requirements and sanity checks."""
    verdict = (
        "✅ passed"
        if report.passed
        else f"❌ failed ({len(report.failed_requirements)} requirement(s))"
    )
    lines = [f"## {_cell(report.title)}: {verdict}", ""]
    ds = report.dataset.get("spec", {}).get("name", "?")
    lines.append(
        f"Model `{_cell(report.model.get('name', report.model.get('class', '?')))}` on `{_cell(ds)}`, "
        f"xrobust {report.xrobust_version}, {report.created}, {report.timings.get('total', 0):.1f} s on "
        f"{report.environment.get('device', '?')}."
    )
    lines += ["", "| Measure | Value |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in headline(report)]
    if report.requirements:
        lines += ["", "### Requirements", "", "| | Requirement | Result |", "|---|---|---|"]
        lines += [
            f"| {_ICON[c.status]} | `{_cell(c.name)}` | {_cell(c.message)} |"
            for c in report.requirements
        ]
    if report.sanity_checks:
        lines += ["", "### Evaluation sanity checks", "", "| | Check | Result |", "|---|---|---|"]
        lines += [
            f"| {_ICON[c.status]} | `{_cell(c.name)}` | {_cell(c.message)} |"
            for c in report.sanity_checks
        ]
    off = [s for s in report.sections.values() if s.status != "ok"]
    if off:
        lines += [
            "",
            "Sections not run: "
            + "; ".join(f"{s.name} ({s.status}: {_cell(s.reason)})" for s in off),
        ]
    return "\n".join(lines) + "\n"
