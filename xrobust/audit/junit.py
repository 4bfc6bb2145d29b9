"""JUnit XML from an :class:`~xrobust.audit.report.AuditReport`: one test case per
requirement and per sanity check, so any CI shows the audit as tests.

``fail`` becomes a ``<failure>``, ``skip`` a ``<skipped>``, ``warn`` a passing test case whose
``<system-out>`` starts with ``WARNING`` (JUnit has no warning state) and a property.

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
            "skipped": str(sum(c.status == "skip" for c in checks)),
            "timestamp": timestamp,
        },
    )
    for c in checks:
        case = ET.SubElement(suite, "testcase", {"classname": name, "name": c.name, "time": "0"})
        text = c.message + (f"\nWhy it matters: {c.why}" if c.why else "")
        if c.status == "fail":
            f = ET.SubElement(case, "failure", {"message": c.message, "type": "AuditFailure"})
            f.text = text
        elif c.status == "skip":
            ET.SubElement(case, "skipped", {"message": c.message})
        elif c.status == "warn":
            props = ET.SubElement(case, "properties")
            ET.SubElement(props, "property", {"name": "status", "value": "warn"})
            out = ET.SubElement(case, "system-out")
            out.text = "WARNING: " + text
        else:
            out = ET.SubElement(case, "system-out")
            out.text = text
    return suite


def render_junit(report: AuditReport) -> str:
    """The report's requirements and sanity checks as a JUnit XML document."""
    root = ET.Element("testsuites", {"name": report.title})
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
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
