"""What a WARN or FAIL means for the reader and what to try next, shown beside the check
in the HTML and Markdown reports. A check's ``why`` (written by its section) says why it
matters; this module adds the next step. The explanation section's randomisation checks
become :class:`~xrobust.audit.report.CheckResult` rows here, so every surface counts them
the way it counts the sanity checks.

Example:
    >>> from xrobust.audit.report import CheckResult
    >>> what_to_try(CheckResult("attack_converged", "warn", "0.28 -> 0.25")).startswith("Raise")
    True
    >>> what_to_try(CheckResult("attack_converged", "pass", "0.28 -> 0.28"))
    ''
"""

from __future__ import annotations

import dataclasses
from typing import Any

from xrobust.audit.report import AuditReport, CheckResult

__all__ = [
    "RANDOMISATION_WHY", "explanation_checks", "likely_cause", "randomisation_advice",
    "what_to_try",
]  # fmt: skip

#: the next step for each sanity check that warns or fails (section 5)
_SANITY = {
    "deterministic_outputs": (
        "Put the model in eval mode (dropout, batch norm statistics) or remove test-time "
        "randomness before auditing; a randomised defence needs an attack that averages "
        "over its randomness (EOT)."
    ),
    "logits_not_probabilities": (
        "Give the audit the scores before the softmax: drop the model's final softmax, or "
        "choose the logits output of an ONNX file or endpoint with --output-name."
    ),
    "finite_nonzero_gradients": (
        "Look for steps without useful gradients (quantisation, argmax, thresholds, "
        "saturated outputs); attack a differentiable stand-in for them, and judge the model "
        'by the query-only attacks (add "square" to adversarial.attacks).'
    ),
    "iterative_beats_single_step": (
        "Raise adversarial.steps and adversarial.restarts; if the single step stays stronger "
        'the gradients are masked: add the query-only "square" to adversarial.attacks.'
    ),
    "accuracy_decreases_with_eps": (
        "Raise adversarial.steps and adversarial.restarts so every eps is attacked to "
        'convergence, and keep the "ensemble" attack in adversarial.attacks.'
    ),
    "large_eps_breaks_model": (
        "Check that the model takes inputs in the data's bounds (normalisation inside the "
        "model), then raise the steps; a model that survives this eps masks its gradients."
    ),
    "attack_converged": (
        "Raise the attack's steps (adversarial.steps, or [adversarial.options.pgd] steps) "
        "and adversarial.restarts until the rerun moves robust accuracy by less than "
        "sanity.tolerance; the worst case over all attacks is the safer figure meanwhile."
    ),
    "attack_beats_random_noise": (
        "The gradients point the wrong way: check that the model returns logits for the "
        'labels given, and judge robustness by the query-only attacks ("square").'
    ),
    "black_box_not_stronger": (
        'Trust the query-only attack\'s figure: add "square" to adversarial.attacks, and '
        "look for non-differentiable or saturating layers that hide the gradients."
    ),
}

#: the next step for a failed requirement, by the requirement's name before any "["
_REQUIREMENT = {
    "min_clean_accuracy": (
        "Check that the data reaches the model as in training (scaling, size, channel "
        "order), then train longer or on more data."
    ),
    "max_ece": (
        "Calibrate the model (temperature scaling on held-out data, or label smoothing in "
        "training), or relax requirements.max_ece."
    ),
    "min_corruption_accuracy": (
        "Train with augmentations like the worst corruption named (noise, blur, occlusion, "
        "contrast)."
    ),
    "robust_accuracy": (
        "Train adversarially at this norm and eps (xrobust train --adversarial pgd), or "
        "lower the requirement if this threat model is not the one the model faces."
    ),
    "sanity_checks_pass": (
        "Fix the failed sanity checks of section 5 (each says what to try): until then the "
        "robustness figures cannot be trusted."
    ),
}

#: what the randomisation check tests (Adebayo et al.'s model-parameter randomisation)
RANDOMISATION_WHY = (
    "Adebayo et al. (arXiv:1810.03292): the maps are drawn again after the model's layers "
    "are re-initialised from the output down. Maps that stay alike (rank correlation of "
    "their magnitudes at or above the threshold) do not show what the model learnt. Not a "
    "requirement: it does not change the verdict."
)


def what_to_try(check: CheckResult) -> str:
    """The next step for a check that warns or fails ("" when it passed, was skipped, or
    nothing specific is known). Randomisation checks from :func:`explanation_checks`
    carry theirs in ``details["try"]``."""
    if check.status not in ("warn", "fail"):
        return ""
    if "try" in check.details:
        return str(check.details["try"])
    base = check.name.split("[", 1)[0]
    return _SANITY.get(check.name) or _REQUIREMENT.get(base, "")


def likely_cause(check: CheckResult) -> str:
    """Why a check can warn or fail for this kind of model or method, when known ("" if
    not): the explanation checks of :func:`explanation_checks` carry it."""
    return str(check.details.get("cause", "")) if check.status in ("warn", "fail") else ""


def explanation_checks(report: AuditReport) -> list[CheckResult]:
    """The explanation section's randomisation check of each method, as check results
    (name ``randomisation[METHOD]``), for the headline counts and the tables; one that
    failed carries its likely cause and what to try in ``details``."""
    sec = report.sections.get("explanations")
    methods = (sec.data.get("methods") if sec is not None else None) or {}
    ran = {m: (md.get("randomisation") or {}) for m, md in methods.items()}
    ran = {m: rz for m, rz in ran.items() if rz.get("status")}
    passing = [m for m, rz in ran.items() if rz["status"] == "pass"]
    out = []
    for method, rz in ran.items():
        details: dict[str, Any] = {"method": method}
        if rz["status"] != "pass":
            details["cause"], details["try"] = randomisation_advice(method, passing)
        out.append(
            CheckResult(
                f"randomisation[{method}]", rz["status"], rz.get("message", ""),
                RANDOMISATION_WHY, details,
            )
        )  # fmt: skip
    return out


def randomisation_advice(method: str, passing: list[str] | tuple[str, ...] = ()) -> tuple[str, str]:
    """(likely cause, what to try) for explainer ``method`` failing the randomisation
    check, given the methods that passed it on the same model (the report and the
    dashboard's explanations page say the same)."""
    return _randomisation_cause(method), _randomisation_try(method, list(passing))


def _randomisation_cause(method: str) -> str:
    if not _multiplies_by_inputs(method):
        return "Its maps depend more on the input than on the weights on this model."
    return (
        f"{method} multiplies the gradients by the input minus its baseline (all zeros by "
        "default), so pixels equal to the baseline get no attribution whatever the weights: "
        "the maps keep the input's outline after the weights are randomised (Adebayo et al. "
        "saw the same for gradient x input and integrated gradients)."
    )


def _randomisation_try(method: str, passing: list[str]) -> str:
    instead = (
        f"use {', '.join(passing)} (which passed) for what the model relies on"
        if passing
        else "use a method that passes this check for what the model relies on"
    )
    return (
        f"Read the {method} maps as the input weighted by the gradients and {instead}; or "
        f"try another baseline: xrobust explain --method {method} --param baselines='\"blur\"'."
    )


def _multiplies_by_inputs(method: str) -> bool:
    """Whether registered explainer ``method`` multiplies attributions by the input (its
    options have ``multiply_by_inputs`` on by default); False when it is unknown here."""
    try:
        from xrobust.explain.base import EXPLAINERS

        params = EXPLAINERS.get(method).Params
    except Exception:  # not registered in this installation: say nothing specific
        return False
    return any(
        f.name == "multiply_by_inputs" and f.default is True for f in dataclasses.fields(params)
    )
