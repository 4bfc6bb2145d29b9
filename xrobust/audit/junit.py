"""JUnit XML from an :class:`~xrobust.audit.report.AuditReport`: one test case per
requirement and per sanity check, so any CI shows the audit as tests.

``fail`` becomes a ``<failure>``, ``skip`` and ``not_evaluated`` a ``<skipped>`` with the
reason, ``warn`` a passing test case whose ``<system-out>`` starts with ``WARNING`` (JUnit
has no warning state) and a property. A first suite holds one test case, ``verdict``: a
``<failure>`` when the audit failed, an ``<error>`` (the test could not be completed) when
it is incomplete, listing what is missing, so a CI that reads only the XML cannot take an
incomplete audit for a passed one. The root carries the verdict as an attribute.

Example:
    >>> from xrobust.audit.report import AuditReport, CheckResult
    >>> xml = render_junit(AuditReport(requirements=[CheckResult("min_clean_accuracy", "fail", "0.5 < 0.9")]))
    >>> "<failure" in xml
    True
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from xrobust.audit.report import AuditReport, CheckResult

__all__ = ["render_junit"]


def _suite(name: str, checks: list[CheckResult], timestamp: str) -> ET.Element:
    suite = ET.Element(
        "testsuite",
        {
            "name": name,
            "tests": str(len(checks)),
            "failures": str(sum(c.status == "fail" for c in checks)),
            "errors": "0",
            "skipped": str(sum(c.status in ("skip", "not_evaluated") for c in checks)),
            "timestamp": timestamp,
        },
    )
    for c in checks:
        case = ET.SubElement(suite, "testcase", {"classname": name, "name": c.name, "time": "0"})
        text = c.message + (f"\nWhy it matters: {c.why}" if c.why else "")
        if c.status == "fail":
            f = ET.SubElement(case, "failure", {"message": c.message, "type": "AuditFailure"})
            f.text = text
        elif c.status in ("skip", "not_evaluated"):
            sk = ET.SubElement(case, "skipped", {"message": c.message})
            if c.status == "not_evaluated":
                sk.set("type", "NotEvaluated")
        elif c.status == "warn":
            props = ET.SubElement(case, "properties")
            ET.SubElement(props, "property", {"name": "status", "value": "warn"})
            out = ET.SubElement(case, "system-out")
            out.text = "WARNING: " + text
        else:
            out = ET.SubElement(case, "system-out")
            out.text = text
    return suite


def _verdict_suite(report: AuditReport) -> ET.Element:
    from xrobust.audit.markdown import verdict_line

    v = report.verdict
    suite = ET.Element(
        "testsuite",
        {
            "name": "xrobust.audit",
            "tests": "1",
            "failures": str(int(v == "failed")),
            "errors": str(int(v == "incomplete")),
            "skipped": "0",
            "timestamp": report.created,
        },
    )
    case = ET.SubElement(suite, "testcase", {"classname": "xrobust.audit", "name": "verdict", "time": "0"})
    line = verdict_line(report)
    if v == "failed":
        f = ET.SubElement(case, "failure", {"message": line, "type": "AuditFailed"})
        f.text = "\n".join(f"{c.name}: {c.message}" for c in report.failed_requirements)
    elif v == "incomplete":
        e = ET.SubElement(
            case, "error", {"message": "audit incomplete: evidence is missing", "type": "AuditIncomplete"}
        )
        e.text = "\n".join(report.missing_evidence())
    else:
        out = ET.SubElement(case, "system-out")
        out.text = line
    return suite


def render_junit(report: AuditReport) -> str:
    """The report's requirements and sanity checks as a JUnit XML document."""
    root = ET.Element("testsuites", {"name": report.title, "verdict": report.verdict})
    root.append(_verdict_suite(report))
    root.append(_suite("xrobust.audit.requirements", report.requirements, report.created))
    root.append(_suite("xrobust.audit.sanity_checks", report.sanity_checks, report.created))
    sections = [
        CheckResult(
            f"section:{s.name}",
            "fail" if s.status == "error" else ("skip" if s.status != "ok" else "pass"),
            s.reason or f"section {s.name} ran in {s.seconds:.1f} s",
        )
        for s in report.sections.values()
    ]
    root.append(_suite("xrobust.audit.sections", sections, report.created))
    root.set("tests", str(sum(int(s.get("tests", "0")) for s in root)))
    root.set("failures", str(sum(int(s.get("failures", "0")) for s in root)))
    root.set("errors", str(sum(int(s.get("errors", "0")) for s in root)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
