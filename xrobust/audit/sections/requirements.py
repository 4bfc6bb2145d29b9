"""Section 6: the configuration's thresholds become pass/fail results.

A requirement whose evidence was not fully gathered (its section switched off, not
available, stopped part way by a query budget, errored, or its eps not evaluated) is
"not_evaluated": it neither passes nor fails, and the audit's verdict becomes
"incomplete". A gate must not pass on numbers nobody measured, and must not call a
budget that ran out a failure of the model.

Every result's ``details["evidence"]`` names the sections (and, for
``sanity_checks_pass``, the checks) it was decided on, so that a saved report can be
checked for consistency (:mod:`xrobust.audit.consistency`). Robust accuracy from
query-only attacks is an upper bound, and its message says so.
"""

from __future__ import annotations

import math
from typing import Any

from xrobust.audit._runtime import Runtime
from xrobust.audit.config import AuditConfig, RequirementsConfig
from xrobust.audit.report import AuditReport, CheckResult, SectionResult
from xrobust.audit.section import Section, register_section

__all__ = ["evaluate_requirements", "find_eps"]


def find_eps(grid: list[float], eps: float) -> int | None:
    """Index of ``eps`` in ``grid`` (relative tolerance 1e-6), or None."""
    for i, e in enumerate(grid):
        if math.isclose(float(e), float(eps), rel_tol=1e-6, abs_tol=1e-12):
            return i
    return None


def _unmeasured(
    name: str, why: str, what: str, section: SectionResult | None, hint: str = ""
) -> CheckResult:
    state = (
        "not run"
        if section is None
        else f"{section.status}" + (f": {section.reason}" if section.reason else "")
    )
    return CheckResult(
        name,
        "not_evaluated",
        f"not evaluated: {what} not fully measured (section {state}){hint}",
        why,
        {"evidence": [section.name if section is not None else "?"]},
    )


def evaluate_requirements(
    cfg: AuditConfig, sections: dict[str, SectionResult], sanity: list[CheckResult]
) -> list[CheckResult]:
    """Pass/fail results for every requirement of ``cfg.requirements``."""
    r = cfg.requirements
    out: list[CheckResult] = []
    clean = sections.get("clean")
    if r.min_clean_accuracy is not None:
        out.append(_min_clean_accuracy(r.min_clean_accuracy, clean))
    if r.max_ece is not None:
        out.append(_max_ece(r.max_ece, clean))
    if r.min_corruption_accuracy is not None:
        out.append(
            _min_corruption_accuracy(
                r.min_corruption_accuracy, r.corruption_severity, sections.get("corruption")
            )
        )
    adv = sections.get("adversarial")
    out += [_robust(req, adv) for req in r.robust]
    if r.sanity_checks_pass:
        out.append(_sanity_requirement(cfg, sections.get("sanity"), sanity))
    return out


def _min_clean_accuracy(threshold: float, clean: SectionResult | None) -> CheckResult:
    name, why = "min_clean_accuracy", f"clean accuracy must be at least {threshold:g}"
    if clean is None or not clean.ok:
        return _unmeasured(name, why, "clean accuracy", clean)
    acc = float(clean.data["accuracy"])
    ok = acc >= threshold
    return CheckResult(
        name,
        "pass" if ok else "fail",
        f"clean accuracy {acc:.4f} {'>=' if ok else '<'} required {threshold:g} "
        f"(n={clean.data['n']})",
        why,
        {"value": acc, "threshold": threshold, "n": clean.data["n"], "evidence": ["clean"]},
    )


def _max_ece(threshold: float, clean: SectionResult | None) -> CheckResult:
    name, why = "max_ece", f"expected calibration error must be at most {threshold:g}"
    if clean is None or not clean.ok:
        return _unmeasured(name, why, "calibration error", clean)
    ece = float(clean.data["calibration"]["ece"])
    ok = ece <= threshold
    return CheckResult(
        name,
        "pass" if ok else "fail",
        f"expected calibration error {ece:.4f} {'<=' if ok else '>'} allowed {threshold:g}",
        why,
        {"value": ece, "threshold": threshold, "evidence": ["clean"]},
    )


def _min_corruption_accuracy(threshold: float, sev: int, corr: SectionResult | None) -> CheckResult:
    name = f"min_corruption_accuracy[severity={sev}]"
    why = f"accuracy under every corruption at severity {sev} must be at least {threshold:g}"
    if corr is None or not corr.ok or sev not in corr.data.get("severities", []):
        return _unmeasured(name, why, f"corruption accuracy at severity {sev}", corr)
    k = corr.data["severities"].index(sev)
    accs = {c: float(v["accuracy"][k]) for c, v in corr.data["corruptions"].items()}
    worst = min(accs, key=lambda c: accs[c])
    ok = accs[worst] >= threshold
    return CheckResult(
        name,
        "pass" if ok else "fail",
        f"worst corruption {worst} at severity {sev}: accuracy {accs[worst]:.4f} "
        f"{'>=' if ok else '<'} required {threshold:g}",
        why,
        {"accuracy": accs, "worst": worst, "threshold": threshold, "value": accs[worst],
         "evidence": ["corruption"]},
    )  # fmt: skip


def _robust(req: Any, adv: SectionResult | None) -> CheckResult:
    """A robust-accuracy requirement; an upper bound over the threshold proves nothing."""
    why = (
        f"robust accuracy under {req.attack} ({req.norm}, eps={req.eps:g}) must be at "
        f"least {req.min_accuracy:g}"
    )
    if adv is None or not adv.ok:
        return _unmeasured(req.name, why, "robust accuracy", adv)
    norm_data: dict[str, Any] | None = adv.data.get("norms", {}).get(req.norm)
    entry = None if norm_data is None else norm_data["curves"].get(req.attack)
    k = None if entry is None else find_eps(entry["eps"], req.eps)
    curve = None if entry is None else entry["robust_accuracy"]
    if entry is None or k is None or curve is None or curve[k] is None:
        what = f"{req.attack} at {req.norm} eps={req.eps:g} was not run"
        return CheckResult(
            req.name, "not_evaluated", f"not evaluated: {what}", why, {"evidence": ["adversarial"]}
        )
    acc = float(curve[k])
    ok = acc >= req.min_accuracy
    bound = entry.get("bound", "measured")
    details = {"value": acc, "threshold": req.min_accuracy, "n": adv.data["n"],
               "bound": bound, "evidence": ["adversarial"]}  # fmt: skip
    note = entry.get("bound_note", "query-only attacks")
    if bound == "upper" and ok:
        # "at most 0.94" is compatible with 0: an upper bound over the threshold proves nothing
        return CheckResult(
            req.name, "not_evaluated",
            f"not evaluated: {req.attack} {req.norm} eps={req.eps:g} gives robust accuracy "
            f"at most {acc:.4f} (an upper bound: {note}), "
            f"which cannot show that it is at least {req.min_accuracy:g}; evaluate the model "
            "white-box (a run directory, or --white-box for ONNX) to decide",
            why, details,
        )  # fmt: skip
    label = (
        f"robust accuracy at most {acc:.4f} (an upper bound: {note})"
        if bound == "upper"
        else f"robust accuracy {acc:.4f}"
    )
    return CheckResult(
        req.name,
        "pass" if ok else "fail",
        f"{req.attack} {req.norm} eps={req.eps:g}: {label} "
        f"{'>=' if ok else '<'} required {req.min_accuracy:g} (n={adv.data['n']})",
        why,
        details,
    )


def _sanity_requirement(
    cfg: AuditConfig, section: SectionResult | None, sanity: list[CheckResult]
) -> CheckResult:
    """``sanity_checks_pass``: passes only when the sanity section ran to the end, at least
    one check applied, and none failed; a failed check fails it even in a partial run. A
    sanity section switched off leaves it not evaluated: drop the requirement as well
    (``requirements.sanity_checks_pass = false``) to audit without the checks."""
    name = "sanity_checks_pass"
    why = "robust accuracy measured under gradient masking overstates robustness"
    failed = [c.name for c in sanity if c.status == "fail"]
    ran = [c.name for c in sanity if c.status in ("pass", "warn", "fail")]
    details: dict[str, Any] = {"failed": failed, "ran": ran, "evidence": ["sanity"]}
    if failed:
        return CheckResult(
            name, "fail",
            f"sanity checks failed: {', '.join(failed)}; the robustness numbers cannot be trusted",
            why, details,
        )  # fmt: skip
    if not cfg.sanity.enabled:
        return _unmeasured(
            name, why, "the evaluation sanity checks", section,
            "; switch the sanity section on, or drop the requirement "
            "(requirements.sanity_checks_pass = false, --no-sanity-requirement)",
        )  # fmt: skip
    if section is None or not section.ok:
        return _unmeasured(name, why, "the evaluation sanity checks", section)
    if not ran:
        return CheckResult(
            name, "not_evaluated",
            f"not evaluated: none of the {len(sanity)} sanity check(s) applied to this model",
            why, details,
        )  # fmt: skip
    return CheckResult(name, "pass", f"no sanity check failed ({len(ran)} ran)", why, details)


@register_section
class RequirementsSection(Section):
    """The thresholds as pass / fail / not evaluated, decided on the sections before it
    (no query: it runs even when the budget ran out); the results go to
    ``report.requirements``."""

    name = "requirements"
    title = "Requirements"
    config = RequirementsConfig
    needs = ()
    order, place = 70.0, 6.0
    checks = "requirements"
    always_shown = True

    def run(self, rt: Runtime, report: AuditReport) -> dict[str, Any]:
        results = evaluate_requirements(rt.config, report.sections, report.sanity_checks)
        return {
            "checks": results,
            "n": len(results),
            "failed": sum(r.status == "fail" for r in results),
            "not_evaluated": sum(r.status == "not_evaluated" for r in results),
        }

    def html(self, s: SectionResult, report: AuditReport) -> str:
        from xrobust.audit.html import requirements_html

        return requirements_html(s, report)

    def summary(self, report: AuditReport) -> list[tuple[str, str]]:
        from xrobust.audit.markdown import check_rows

        return check_rows("Requirements", report.requirements)
