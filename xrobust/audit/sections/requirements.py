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

from xrobust.audit.config import AuditConfig
from xrobust.audit.report import CheckResult, SectionResult

__all__ = ["evaluate_requirements", "find_eps"]


def find_eps(grid: list[float], eps: float) -> int | None:
    """Index of ``eps`` in ``grid`` (relative tolerance 1e-6), or None."""
    for i, e in enumerate(grid):
        if math.isclose(float(e), float(eps), rel_tol=1e-6, abs_tol=1e-12):
            return i
    return None


def _unmeasured(name: str, why: str, what: str, section: SectionResult | None, hint: str = "") -> CheckResult:
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
        name, why = (
            "min_clean_accuracy",
            f"clean accuracy must be at least {r.min_clean_accuracy:g}",
        )
        if clean is None or not clean.ok:
            out.append(_unmeasured(name, why, "clean accuracy", clean))
        else:
            acc = float(clean.data["accuracy"])
            ok = acc >= r.min_clean_accuracy
            out.append(
                CheckResult(
                    name,
                    "pass" if ok else "fail",
                    f"clean accuracy {acc:.4f} {'>=' if ok else '<'} required {r.min_clean_accuracy:g} "
                    f"(n={clean.data['n']})",
                    why,
                    {"value": acc, "threshold": r.min_clean_accuracy, "n": clean.data["n"],
                     "evidence": ["clean"]},
                )
            )
    if r.max_ece is not None:
        name, why = "max_ece", f"expected calibration error must be at most {r.max_ece:g}"
        if clean is None or not clean.ok:
            out.append(_unmeasured(name, why, "calibration error", clean))
        else:
            ece = float(clean.data["calibration"]["ece"])
            ok = ece <= r.max_ece
            out.append(
                CheckResult(
                    name,
                    "pass" if ok else "fail",
                    f"expected calibration error {ece:.4f} {'<=' if ok else '>'} allowed {r.max_ece:g}",
                    why,
                    {"value": ece, "threshold": r.max_ece, "evidence": ["clean"]},
                )
            )
    if r.min_corruption_accuracy is not None:
        sev = r.corruption_severity
        name = f"min_corruption_accuracy[severity={sev}]"
        why = f"accuracy under every corruption at severity {sev} must be at least {r.min_corruption_accuracy:g}"
        corr = sections.get("corruption")
        if corr is None or not corr.ok or sev not in corr.data.get("severities", []):
            out.append(_unmeasured(name, why, f"corruption accuracy at severity {sev}", corr))
        else:
            k = corr.data["severities"].index(sev)
            accs = {c: float(v["accuracy"][k]) for c, v in corr.data["corruptions"].items()}
            worst = min(accs, key=lambda c: accs[c])
            ok = accs[worst] >= r.min_corruption_accuracy
            out.append(
                CheckResult(
                    name,
                    "pass" if ok else "fail",
                    f"worst corruption {worst} at severity {sev}: accuracy {accs[worst]:.4f} "
                    f"{'>=' if ok else '<'} required {r.min_corruption_accuracy:g}",
                    why,
                    {"accuracy": accs, "worst": worst, "threshold": r.min_corruption_accuracy,
                     "value": accs[worst], "evidence": ["corruption"]},
                )
            )
    adv = sections.get("adversarial")
    for req in r.robust:
        why = (
            f"robust accuracy under {req.attack} ({req.norm}, eps={req.eps:g}) must be at "
            f"least {req.min_accuracy:g}"
        )
        if adv is None or not adv.ok:
            out.append(_unmeasured(req.name, why, "robust accuracy", adv))
            continue
        norm_data: dict[str, Any] | None = adv.data.get("norms", {}).get(req.norm)
        entry = None if norm_data is None else norm_data["curves"].get(req.attack)
        k = None if entry is None else find_eps(entry["eps"], req.eps)
        curve = None if entry is None else entry["robust_accuracy"]
        if k is None or curve is None or curve[k] is None:
            what = f"{req.attack} at {req.norm} eps={req.eps:g} was not run"
            out.append(
                CheckResult(
                    req.name, "not_evaluated", f"not evaluated: {what}", why,
                    {"evidence": ["adversarial"]},
                )
            )  # fmt: skip
            continue
        acc = float(curve[k])
        ok = acc >= req.min_accuracy
        bound = entry.get("bound", "measured")
        if bound == "upper" and ok:
            # "at most 0.94" is compatible with 0: an upper bound over the threshold proves nothing
            out.append(
                CheckResult(
                    req.name, "not_evaluated",
                    f"not evaluated: {req.attack} {req.norm} eps={req.eps:g} gives robust accuracy "
                    f"at most {acc:.4f} (an upper bound: {entry.get('bound_note', 'query-only attacks')}), "
                    f"which cannot show that it is at least {req.min_accuracy:g}; evaluate the model "
                    "white-box (a run directory, or --white-box for ONNX) to decide",
                    why,
                    {"value": acc, "threshold": req.min_accuracy, "n": adv.data["n"],
                     "bound": bound, "evidence": ["adversarial"]},
                )
            )  # fmt: skip
            continue
        label = (
            f"robust accuracy at most {acc:.4f} (an upper bound: {entry.get('bound_note', 'query-only attacks')})"
            if bound == "upper"
            else f"robust accuracy {acc:.4f}"
        )
        out.append(
            CheckResult(
                req.name,
                "pass" if ok else "fail",
                f"{req.attack} {req.norm} eps={req.eps:g}: {label} "
                f"{'>=' if ok else '<'} required {req.min_accuracy:g} (n={adv.data['n']})",
                why,
                {"value": acc, "threshold": req.min_accuracy, "n": adv.data["n"],
                 "bound": bound, "evidence": ["adversarial"]},
            )
        )  # fmt: skip
    if r.sanity_checks_pass:
        out.append(_sanity_requirement(cfg, sections.get("sanity"), sanity))
    return out


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
