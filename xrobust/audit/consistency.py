"""Does a saved report agree with itself? What :func:`~xrobust.audit.report.load_report`
checks before anything renders a ``report.json`` (``xrobust report``, the dashboard).

A report is a claim people ship on; a hand-edited or corrupted file must not render as
"passed" while its own numbers say otherwise. The checks:

* every requirement's status follows from its numbers (``value`` against ``threshold``)
  and those numbers are the ones in the section they came from;
* a requirement that passed or failed had its evidence: its section "ok" (a failed
  sanity check may fail ``sanity_checks_pass`` from a partial run);
* ``sanity_checks_pass`` agrees with the sanity checks (passed only if none failed and at
  least one ran);
* the stored ``passed`` and ``verdict`` agree with the verdict recomputed from the parts,
  and the requirements section's counts with the requirements.

Example:
    >>> from xrobust.audit.report import AuditReport, CheckResult
    >>> r = AuditReport(
    ...     sanity_checks=[CheckResult("deterministic_outputs", "fail", "changed")],
    ...     requirements=[CheckResult("sanity_checks_pass", "pass", "edited")],
    ... )
    >>> inconsistencies(r)[0][:60]
    'requirement sanity_checks_pass says "pass" but the sanity ch'
"""

from __future__ import annotations

import math
from typing import Any

from xrobust.audit.report import AuditReport, CheckResult

__all__ = ["inconsistencies"]

_TOL = 1e-6


def _evidence(c: CheckResult) -> list[str]:
    """The sections a requirement is decided on, from its name (never from the file)."""
    if c.name in ("min_clean_accuracy", "max_ece"):
        return ["clean"]
    if c.name.startswith("min_corruption_accuracy"):
        return ["corruption"]
    if c.name == "sanity_checks_pass":
        return ["sanity"]
    return ["adversarial"]


def inconsistencies(report: AuditReport, stored: dict[str, Any] | None = None) -> list[str]:
    """Every disagreement inside ``report`` (empty: consistent). ``stored``: the raw dict
    it was read from, whose ``passed`` / ``verdict`` are checked against the parts."""
    out: list[str] = []
    for c in report.requirements:
        if c.status not in ("pass", "fail", "not_evaluated", "skip"):
            out.append(f'requirement {c.name} has status "{c.status}"; a requirement passes, '
                       "fails or is not evaluated")  # fmt: skip
        out += _requirement(report, c)
    out += _configured(report)
    req = report.sections.get("requirements")
    if req is not None and req.ok and "failed" in req.data:
        n_fail = len(report.failed_requirements)
        if int(req.data["failed"]) != n_fail:
            out.append(
                f"the requirements section counts {req.data['failed']} failed requirement(s) "
                f'but {n_fail} requirement(s) have status "fail"'
            )
    if stored is not None:
        verdict = report.verdict
        if "verdict" in stored and stored["verdict"] != verdict:
            out.append(
                f"the stored verdict is {stored['verdict']!r} but its requirements and "
                f"sections give {verdict!r}"
            )
        if "passed" in stored and bool(stored["passed"]) != report.passed:
            out.append(
                f'the stored "passed" is {str(bool(stored["passed"])).lower()} but its '
                f"requirements and sections give the verdict {verdict!r}"
            )
    return out


def _configured(report: AuditReport) -> list[str]:
    """Every requirement of the stored config is present, with the config's threshold."""
    req = report.config.get("requirements")
    if not isinstance(req, dict) or not req.get("enabled", True):
        return []
    want: dict[str, float | None] = {}
    for key in ("min_clean_accuracy", "max_ece"):
        if req.get(key) is not None:
            want[key] = req[key]
    if req.get("min_corruption_accuracy") is not None:
        want[f"min_corruption_accuracy[severity={req.get('corruption_severity', 3)}]"] = req[
            "min_corruption_accuracy"
        ]
    for r in req.get("robust") or []:
        name = _robust_name(r) if isinstance(r, dict) else None
        if name is not None:
            want[name] = r.get("min_accuracy")
    if req.get("sanity_checks_pass"):
        want["sanity_checks_pass"] = None
    have = {c.name: c for c in report.requirements}
    out = [
        f"the config requires {n} but the report has no result for it"
        for n in want
        if n not in have
    ]
    for n, threshold in want.items():
        c = have.get(n)
        if c is None or threshold is None or c.status not in ("pass", "fail"):
            continue
        got = c.details.get("threshold")
        if not _number(got) or not math.isclose(float(got), float(threshold), abs_tol=_TOL):
            out.append(
                f"requirement {n} uses the threshold {got!r} but the config says {threshold:g}"
            )
    return out


def _requirement(report: AuditReport, c: CheckResult) -> list[str]:
    if c.status not in ("pass", "fail"):
        return []
    if c.name == "sanity_checks_pass":
        return _sanity(report, c)
    out: list[str] = []
    if not _number(c.details.get("value")) or not _number(c.details.get("threshold")):
        out.append(
            f'requirement {c.name} says "{c.status}" without the value and threshold it was decided on'
        )
    for name in _evidence(c):
        s = report.sections.get(name)
        if s is None or not s.ok:
            state = "absent" if s is None else f'"{s.status}"'
            out.append(
                f'requirement {c.name} says "{c.status}" but its evidence, section {name}, '
                f"is {state}"
            )
    value, threshold = c.details.get("value"), c.details.get("threshold")
    if _number(value) and _number(threshold):
        ok = value <= threshold + _TOL if c.name.startswith("max_") else value >= threshold - _TOL
        if ok != (c.status == "pass"):
            rel = "<=" if c.name.startswith("max_") else ">="
            out.append(
                f'requirement {c.name} says "{c.status}" but its value {value:g} {rel} '
                f"threshold {threshold:g} is {str(ok).lower()}"
            )
        source = _section_value(report, c)
        if source is not None and not math.isclose(value, source, abs_tol=_TOL):
            out.append(
                f"requirement {c.name} uses the value {value:g} but its section reports {source:g}"
            )
    return out


def _sanity(report: AuditReport, c: CheckResult) -> list[str]:
    failed = [s.name for s in report.sanity_checks if s.status == "fail"]
    ran = [s.name for s in report.sanity_checks if s.status in ("pass", "warn", "fail")]
    sec = report.sections.get("sanity")
    if c.status == "pass":
        if failed:
            return [
                f'requirement sanity_checks_pass says "pass" but the sanity check(s) '
                f"{', '.join(failed)} failed"
            ]
        if sec is None or not sec.ok:
            state = "absent" if sec is None else f'"{sec.status}"'
            return [f'requirement sanity_checks_pass says "pass" but the sanity section is {state}']
        if not ran:
            return ['requirement sanity_checks_pass says "pass" but no sanity check ran']
    elif not failed:
        return ['requirement sanity_checks_pass says "fail" but no sanity check failed']
    return []


def _section_value(report: AuditReport, c: CheckResult) -> float | None:
    """The number the requirement's section holds for it (None: not looked up)."""
    try:
        if c.name == "min_clean_accuracy":
            return float(report.sections["clean"].data["accuracy"])
        if c.name == "max_ece":
            return float(report.sections["clean"].data["calibration"]["ece"])
        robust = (report.config.get("requirements") or {}).get("robust") or []
        for r in robust:
            if _robust_name(r) == c.name:
                nd = report.sections["adversarial"].data["norms"][r["norm"]]
                curve = nd["curves"][r["attack"]]
                k = min(range(len(curve["eps"])), key=lambda i: abs(curve["eps"][i] - r["eps"]))
                if math.isclose(curve["eps"][k], r["eps"], rel_tol=1e-6):
                    return float(curve["robust_accuracy"][k])
    except (KeyError, TypeError, ValueError, IndexError):
        return None
    return None


def _robust_name(r: dict[str, Any]) -> str | None:
    try:
        from xrobust.audit.config import RobustRequirement

        return RobustRequirement(
            attack=r["attack"], norm=r["norm"], eps=float(r["eps"]),
            min_accuracy=float(r["min_accuracy"]),
        ).name  # fmt: skip
    except Exception:  # a hand-edited entry: nothing to compare with
        return None


def _number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
