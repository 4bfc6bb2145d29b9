"""A Markdown summary of an audit for a pull-request comment, and the headline numbers
that the HTML report shows too.

Example:
    >>> from xrobust.audit.report import AuditReport
    >>> render_markdown(AuditReport()).startswith("## ")
    True
"""

from __future__ import annotations

import logging
import re
from typing import Any

from xrobust.audit.advice import explanation_checks, likely_cause, what_to_try
from xrobust.audit.report import AuditReport, CheckResult

__all__ = [
    "adversarial_rows",
    "check_rows",
    "clean_rows",
    "corruption_rows",
    "count",
    "headline",
    "minimal_summary",
    "render_markdown",
    "robust_value",
    "verdict_line",
]

log = logging.getLogger(__name__)

_ICON = {"pass": "✅", "warn": "⚠️", "fail": "❌", "skip": "⏭️", "not_evaluated": "❔"}


def headline(report: AuditReport) -> list[tuple[str, str]]:
    """(label, value) pairs of the key numbers: clean accuracy, worst-case robust accuracy
    at each norm's headline eps, ECE, mean corruption accuracy, checks and requirements;
    each section's :meth:`~xrobust.audit.section.Section.summary` rows, in summary order."""
    from xrobust.audit.section import report_order

    def where(c: Any) -> tuple[float, str]:
        return (c.place if c.summary_place is None else c.summary_place, c.name)

    rows: list[tuple[str, str]] = []
    for cls in sorted(report_order(), key=where):
        rows += _guarded(lambda c=cls: c().summary(report), cls.name, "summary rows")
    return rows


def _guarded(make: Any, name: str, what: str) -> list[Any]:
    """A section's rows or lines; one whose renderer breaks on a malformed report is left
    out (and logged), so that it cannot lose the rest of the report."""
    try:
        return list(make())
    except Exception:
        log.warning("the %s of section %s could not be rendered", what, name, exc_info=True)
        return []


def clean_rows(report: AuditReport) -> list[tuple[str, str]]:
    """Clean accuracy and calibration error."""
    clean = report.sections.get("clean")
    if clean is None or not clean.ok:
        return []
    return [
        ("Clean accuracy", f"{clean.data['accuracy']:.4f} (n={count(clean.data['n'])})"),
        ("Expected calibration error", f"{clean.data['calibration']['ece']:.4f}"),
    ]


def adversarial_rows(report: AuditReport) -> list[tuple[str, str]]:
    """Worst-case robust accuracy at each norm's headline eps, and the minimal perturbation."""
    rows: list[tuple[str, str]] = []
    adv = report.sections.get("adversarial")
    if adv is None or not adv.ok:
        return rows
    for norm, nd in adv.data["norms"].items():
        k = _index(nd["eps"], nd["headline_eps"])
        worst = nd["curves"]["worst"]["robust_accuracy"][k]
        attacks = ", ".join(a for a in nd["curves"] if a != "worst")
        rows.append(
            (
                f"Robust accuracy, {norm} eps={nd['headline_eps']:g}",
                robust_value(worst, nd) + f", worst case over {attacks} "
                f"(n={count(adv.data['n'])}{_broken_by(nd)})",
            )
        )
        mp = nd.get("minimal_perturbation")
        if mp:
            rows.append((f"Median minimal perturbation, {norm}", minimal_summary(mp)))
    return rows


def corruption_rows(report: AuditReport) -> list[tuple[str, str]]:
    """Mean accuracy over the corruptions."""
    corr = report.sections.get("corruption")
    if corr is None or not corr.ok or corr.data.get("mean_corruption_accuracy") is None:
        return []
    return [("Mean corruption accuracy", f"{corr.data['mean_corruption_accuracy']:.4f}")]


def check_rows(label: str, checks: list[CheckResult], note: str = "") -> list[tuple[str, str]]:
    """One row counting ``checks`` by status (none when there are none)."""
    return [(label, _counts(checks) + note)] if checks else []


def robust_value(acc: float, nd: dict[str, Any]) -> str:
    """A robust accuracy in words with what it is: a measurement by white-box attacks, or
    an upper bound from query-only attacks (``nd``: a norm's data, or one curve)."""
    bound = nd.get("bound")
    note = nd.get("bound_note") or ""
    if bound == "upper":
        return f"at most {acc:.4f} (upper bound: {note})"
    if bound == "measured":
        return f"{acc:.4f} (measured: {note})"
    return f"{acc:.4f}"


def minimal_summary(mp: dict[str, Any]) -> str:
    """The minimal-perturbation median in words: over the examples correct clean, those
    not broken within eps_max counted as above it, the broken fraction beside it, and the
    examples wrong before any attack apart."""
    if "median_text" not in mp:  # a report written before schema 2.2
        med = mp.get("median_eps")
        return "n/a" if med is None else f"{med:.4g} (over the examples broken only)"
    n_att = mp.get("n_attacked", mp.get("n", 0))
    broken = round(mp["found_fraction"] * n_att)
    text = (
        f"{mp['median_text']} over {count(n_att)} examples correct clean; {count(broken)} of "
        f"{count(n_att)} ({mp['found_fraction']:.0%}) broken within eps {mp['eps_max']:g}"
    )
    wrong = mp.get("n_misclassified_clean") or 0
    if wrong:
        text += f"; {count(wrong)} misclassified before any attack (not counted)"
    if mp.get("bound") == "upper":
        text += f" (upper bound: {mp.get('bound_note', 'query-only attack')})"
    if mp.get("partial"):
        text += f" (INCOMPLETE: {mp.get('stop_reason') or 'stopped early'})"
    return text


def verdict_line(report: AuditReport) -> str:
    """ "passed", "FAILED: ..." or "INCOMPLETE: ..." in one line."""
    v = report.verdict
    if v == "failed":
        names = ", ".join(c.name for c in report.failed_requirements)
        return f"FAILED: {len(report.failed_requirements)} requirement(s) failed ({names})"
    if v == "incomplete":
        missing = report.missing_evidence()
        return f"INCOMPLETE: {len(missing)} thing(s) missing: " + "; ".join(missing)
    notes = []
    upper = _upper_bounds(report)
    if upper:
        notes.append(
            f"robust accuracy under {', '.join(upper)}: upper bounds from query-only attacks"
        )
    sanity = report.sections.get("sanity")
    if sanity is not None and sanity.status == "skipped":
        notes.append("no evaluation sanity check ran: switched off, and not required")
    return "PASSED" + (f" ({'; '.join(notes)})" if notes else "")


def _upper_bounds(report: AuditReport) -> list[str]:
    adv = report.sections.get("adversarial")
    if adv is None or not adv.ok:
        return []
    return [n for n, nd in (adv.data.get("norms") or {}).items() if nd.get("bound") == "upper"]


def _broken_by(nd: dict[str, Any]) -> str:
    counts = nd.get("broken_by") or {}
    if not counts:
        return ""
    parts = ", ".join(f"{a} {k}" for a, k in sorted(counts.items(), key=lambda t: -t[1]))
    return f"; broken by {parts}"


def _counts(checks: list[Any]) -> str:
    out = []
    for s in ("pass", "warn", "fail", "skip", "not_evaluated"):
        k = sum(c.status == s for c in checks)
        if k:
            out.append(f"{k} {s.replace('_', ' ')}")
    return ", ".join(out)


def count(n: Any) -> str:
    """A count with thousands separators ("352,557"); anything else as it is."""
    return f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else str(n)


def _index(grid: list[float], v: float) -> int:
    return min(range(len(grid)), key=lambda i: abs(grid[i] - v))


#: a "<" that could open an HTML tag, a comment or a declaration in a Markdown renderer
_TAG_OPEN = re.compile(r"<(?=[A-Za-z/!?])")


def _cell(s: str) -> str:
    """Text for a Markdown table cell: "|" and tag openings backslash-escaped (a user's
    class name cannot inject HTML into a PR comment), line breaks flattened, and nothing
    else changed, so that a terminal shows ">=" and "<=" as they are."""
    text = str(s).replace("|", "\\|").replace("\n", " ")
    return _TAG_OPEN.sub(r"\\<", text)


def render_markdown(report: AuditReport) -> str:
    """A short Markdown summary: verdict, key numbers, requirements and sanity checks."""
    icon = {"passed": "✅", "failed": "❌", "incomplete": "❔"}[report.verdict]
    verdict = f"{icon} {verdict_line(report)}"
    lines = [f"## {_cell(report.title)}: {_cell(verdict)}", ""]
    ds = report.dataset.get("spec", {}).get("name", "?")
    lines.append(
        f"Model `{_cell(report.model.get('name', report.model.get('class', '?')))}` on `{_cell(ds)}`, "
        f"xrobust {report.xrobust_version}, {report.created}, {report.timings.get('total', 0):.1f} s on "
        f"{report.environment.get('device', '?')}."
    )
    lines += ["", "| Measure | Value |", "|---|---|"]
    lines += [f"| {_cell(k)} | {_cell(v)} |" for k, v in headline(report)]
    if report.verdict == "incomplete":
        lines += ["", "### Missing evidence (why the verdict is incomplete)", ""]
        lines += [f"- {_cell(m)}" for m in report.missing_evidence()]
    lines += _check_table("Requirements", "Requirement", report.requirements)
    lines += _check_table("Evaluation sanity checks", "Check", report.sanity_checks)
    lines += _check_table("Explanation checks (not required)", "Check", explanation_checks(report))
    lines += _section_lines(report)
    off = [s for s in report.sections.values() if s.status != "ok"]
    if off:
        lines += [
            "",
            "Sections not run: "
            + "; ".join(f"{s.name} ({s.status}: {_cell(s.reason)})" for s in off),
        ]
    return "\n".join(lines) + "\n"


def _section_lines(report: AuditReport) -> list[str]:
    """The Markdown lines of the sections that add their own (none of the built-ins)."""
    from xrobust.audit.section import report_order

    lines: list[str] = []
    for cls in report_order(list(report.sections)):
        s = report.sections[cls.name]
        lines += _guarded(lambda c=cls, s=s: c().markdown(s, report), cls.name, "Markdown")
    return lines


def _check_table(title: str, what: str, checks: list[CheckResult]) -> list[str]:
    """A table of checks under ``### title``, and below it, for each one that warned or
    failed, what to try."""
    if not checks:
        return []
    lines = ["", f"### {title}", "", f"| | {what} | Result |", "|---|---|---|"]
    lines += [f"| {_ICON[c.status]} | `{_cell(c.name)}` | {_cell(c.message)} |" for c in checks]
    notes = [(c, likely_cause(c), what_to_try(c)) for c in checks]
    notes = [(c, cause, tip) for c, cause, tip in notes if cause or tip]
    if notes:
        lines.append("")
    for c, cause, tip in notes:
        text = " ".join(t for t in (cause, f"What to try: {tip}" if tip else "") if t)
        lines.append(f"- {_ICON[c.status]} `{_cell(c.name)}`: {_cell(text)}")
    return lines
