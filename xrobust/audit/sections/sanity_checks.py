"""Section 5: is the robustness evaluation itself trustworthy?

Checks against gradient masking and broken evaluations after Carlini et al., "On
Evaluating Adversarial Robustness" (arXiv:1902.06705) and AutoAttack's checks (Croce and
Hein, arXiv:2003.01690). Each gives pass, warn, fail or skip with a sentence saying why it
matters. They run on rank 0 on a small seeded sample and reuse the adversarial section's
curves when it ran.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from xrobust.audit._attacks import attack_fields, attack_kwargs, attacks_unavailable, run_attack
from xrobust.audit._runtime import Runtime, chunk_seed
from xrobust.audit.config import SanityConfig
from xrobust.audit.report import AuditReport, CheckResult, SectionResult
from xrobust.audit.section import Section, register_section
from xrobust.audit.sections.adversarial import eps_grid
from xrobust.validation import output_determinism, probability_kind

__all__ = ["WHY", "run_sanity"]

#: why each check matters (shown next to its result)
WHY = {
    "deterministic_outputs": (
        "A model whose outputs change between identical calls (randomised layers, dropout "
        "left on) hides its gradients from attacks: robust accuracy is overestimated and "
        "results are not reproducible."
    ),
    "logits_not_probabilities": (
        "Attacks expect logits; on softmax outputs the cross-entropy saturates, gradients "
        "vanish and the model looks more robust than it is."
    ),
    "finite_nonzero_gradients": (
        "Gradient attacks follow input gradients; zero (quantised, saturated) or non-finite "
        "gradients stall them, a classic sign of gradient masking."
    ),
    "iterative_beats_single_step": (
        "An iterative attack explores more of the eps-ball than a single step, so it must be "
        "at least as strong; otherwise the loss surface is masked or the attack broken."
    ),
    "accuracy_decreases_with_eps": (
        "A larger budget contains every smaller one, so robust accuracy must not rise with "
        "eps; if it does, the attack is not finding what exists."
    ),
    "large_eps_breaks_model": (
        "With an eps large enough to change the input's class outright, accuracy must fall "
        "to about zero; if it does not, the attack fails for reasons other than robustness."
    ),
    "attack_converged": (
        "More steps and restarts should change robust accuracy little; a large change means "
        "the reported attack had not converged and overstates robustness."
    ),
    "attack_beats_random_noise": (
        "Random noise of the same size must not fool the model more often than a gradient "
        "attack; if it does, the gradients point the wrong way (masking)."
    ),
    "black_box_not_stronger": (
        "A query-only attack (Square) that beats the white-box one on the same examples "
        "shows that the gradients are masked: the white-box figures overstate robustness."
    ),
}


def _res(name: str, status: str, message: str, **details: Any) -> dict[str, Any]:
    return CheckResult(name, status, message, WHY[name], details).to_dict()  # type: ignore[arg-type]


def _largest(rows: list[dict[str, Any]], a: str, b: str) -> tuple[dict[str, Any], float]:
    """The row with the largest ``row[a] - row[b]``, and that difference."""
    worst = max(rows, key=lambda r: r[a] - r[b])
    return worst, worst[a] - worst[b]


def _graded(name: str, excess: float, tol: float, message: str, **details: Any) -> dict[str, Any]:
    """Pass within ``tol``, warn within twice ``tol``, fail beyond."""
    status = "pass" if excess <= tol else ("warn" if excess <= 2 * tol else "fail")
    return _res(name, status, message, **details)


def run_sanity(rt: Runtime, adversarial: SectionResult | None) -> dict[str, Any]:
    """Every sanity check; returns ``{"checks": [...], "n": ...}`` (same on every rank)."""
    return rt.on_rank0(lambda: _run(rt, adversarial))


def _run(rt: Runtime, adversarial: SectionResult | None) -> dict[str, Any]:
    cfg = rt.config.sanity
    idx = rt.sample(cfg.n)
    x, y = rt.x[idx], rt.y[idx]
    tol = max(cfg.tolerance, 1.5 / max(1, len(idx)))
    checks: list[dict[str, Any]] = []
    checks.append(_deterministic(rt, x))
    checks.append(_logits(rt))
    if not rt.white_box:
        return _black_box_only(rt, x, y, tol, checks)
    checks.append(_gradients(rt, x, y))
    why = attacks_unavailable()
    adv_ok = adversarial is not None and adversarial.ok
    if why:
        for name in (
            "iterative_beats_single_step",
            "accuracy_decreases_with_eps",
            "large_eps_breaks_model",
            "attack_converged",
            "attack_beats_random_noise",
        ):
            checks.append(_res(name, "skip", f"not available: {why}"))
    else:
        checks.append(_iterative(rt, adversarial if adv_ok else None, x, y, tol))
        checks.append(_monotonic(rt, adversarial if adv_ok else None, tol))
        checks.append(_large_eps(rt, x, y))
        checks.append(_converged(rt, x, y, tol))
        checks.append(_noise(rt, x, y))
    checks.append(_black_box(rt, x, y, tol))
    return {"n": len(idx), "tolerance": round(tol, 6), "checks": checks}


_GRADIENT_CHECKS = (
    "finite_nonzero_gradients",
    "iterative_beats_single_step",
    "accuracy_decreases_with_eps",
    "large_eps_breaks_model",
    "attack_converged",
    "attack_beats_random_noise",
    "black_box_not_stronger",
)


def _black_box_only(
    rt: Runtime, x: torch.Tensor, y: torch.Tensor, tol: float, checks: list[dict[str, Any]]
) -> dict[str, Any]:
    """A black box: the checks that need gradients or a white-box attack are skipped."""
    why = f"not applicable: the model is a black box ({rt.classifier.source}), no gradients"
    for name in _GRADIENT_CHECKS:
        checks.append(_res(name, "skip", why))
        rt.skip_part(f"check {name}", why.removeprefix("not applicable: "))
    return {"n": len(x), "tolerance": round(tol, 6), "checks": checks}


# ---------------------------------------------------------------------- model checks
def _deterministic(rt: Runtime, x: torch.Tensor) -> dict[str, Any]:
    d = output_determinism(rt.forward, x)
    diff, flips, ok = d["max_abs_diff"], d["changed_predictions"], d["deterministic"]
    msg = f"two forward passes on the same {len(x)} inputs differ by at most {diff:.3g}" + (
        f"; {flips} predictions changed" if flips else ""
    )
    return _res(
        "deterministic_outputs",
        "pass" if ok else "fail",
        msg,
        max_abs_diff=diff,
        changed_predictions=flips,
    )


def _logits(rt: Runtime) -> dict[str, Any]:
    out = rt.clean_logits()[rt.sample(min(len(rt.order), 512))]
    kind = probability_kind(out)
    row_sums = out.double().sum(1)
    details = {
        "min": round(float(out.min()), 6),
        "max": round(float(out.max()), 6),
        "row_sum_mean": round(float(row_sums.mean()), 6),
        "row_sum_std": round(float(row_sums.std()) if len(row_sums) > 1 else 0.0, 6),
    }
    if kind == "softmax":
        return _res(
            "logits_not_probabilities",
            "fail",
            "outputs are non-negative and every row sums to 1: the model returns softmax "
            "probabilities; remove the final softmax",
            **details,
        )
    if kind == "sigmoid":
        return _res(
            "logits_not_probabilities",
            "warn",
            "every output lies in [0, 1]: the model may return sigmoid probabilities",
            **details,
        )
    return _res(
        "logits_not_probabilities",
        "pass",
        f"outputs range over [{details['min']:.3g}, {details['max']:.3g}] and rows do not "
        "sum to 1: they look like logits",
        **details,
    )


def _gradients(rt: Runtime, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    """``xrobust.attacks.checks.gradient_stats`` on the sanity sample (a few dozen rows)."""
    from xrobust.attacks.checks import gradient_stats

    stats = gradient_stats(rt.model, x.to(rt.device), y.to(rt.device))
    zero, nonfinite, mean_abs = stats.zero_fraction, stats.nonfinite_fraction, stats.mean_abs
    details = stats.to_dict()
    msg = (
        f"input gradients of the cross-entropy: {zero:.0%} of {stats.n} examples all zero, "
        f"{nonfinite:.0%} non-finite, mean |g| = {mean_abs:.3g}"
    )
    if nonfinite > 0 or zero > 0.5:
        return _res("finite_nonzero_gradients", "fail", msg, **details)
    if zero > 0.05:
        return _res("finite_nonzero_gradients", "warn", msg, **details)
    return _res("finite_nonzero_gradients", "pass", msg, **details)


# ---------------------------------------------------------------------- attack checks
def _acc(
    rt: Runtime,
    attack: str,
    norm: str,
    eps: float,
    x: torch.Tensor,
    y: torch.Tensor,
    stage: str,
    **opts: Any,
) -> float:
    """Robust accuracy of ``attack`` on (x, y), chunked and seeded like the audit (memoised)."""
    key = (attack, norm, float(eps), stage, tuple(sorted(opts.items())), len(x))
    if key in rt.cache:
        return rt.cache[key]
    hits = 0
    bs = rt.config.batch_size
    for i in range(0, len(x), bs):
        seed = chunk_seed(rt.config.seed, stage, i // bs)
        res = run_attack(
            rt, attack, norm, eps, x[i : i + bs], y[i : i + bs], seed=seed, keep_adv=False, **opts
        )
        hits += int((res.pred_adv == y[i : i + bs]).sum())
    rt.cache[key] = hits / max(1, len(x))
    return rt.cache[key]


def _iterative_attack(rt: Runtime) -> str:
    """The configured iterative attack; its config must have steps and restarts (the
    convergence check raises both)."""
    name = rt.config.sanity.iterative_attack
    missing = {"steps", "restarts"} - set(attack_fields(name))
    if missing:
        from xrobust.errors import ConfigError

        raise ConfigError(
            f"sanity.iterative_attack = {name!r} has no {', '.join(sorted(missing))} option; "
            "name an iterative attack with steps and restarts, such as pgd"
        )
    return name


def _norms(rt: Runtime) -> list[str]:
    return list(rt.config.adversarial.norms) or ["linf"]


def _iterative(
    rt: Runtime, adv: SectionResult | None, x: torch.Tensor, y: torch.Tensor, tol: float
) -> dict[str, Any]:
    name = "iterative_beats_single_step"
    rows = []
    single_step, iterative_attack = rt.config.sanity.single_step_attack, _iterative_attack(rt)
    if adv is not None and single_step in adv.data.get("attacks", []):
        iterative = [a for a in adv.data["attacks"] if a != single_step]
        for norm, nd in adv.data["norms"].items():
            for it in iterative:
                single_acc = {r["eps"]: r["robust_accuracy"] for r in nd["results"][single_step]}
                for r in nd["results"][it]:
                    if r["eps"] in single_acc:
                        rows.append(
                            {
                                "norm": norm,
                                "eps": r["eps"],
                                "iterative": it,
                                "single": single_acc[r["eps"]],
                                "multi": r["robust_accuracy"],
                            }
                        )
        source = f"the adversarial section's results at each eps (n={adv.data['n']})"
        tol = max(tol, 1.5 / max(1, adv.data["n"]))
    else:
        for norm in _norms(rt):
            _, head = eps_grid(rt, norm)
            single = _acc(rt, single_step, norm, head, x, y, f"sanity:{single_step}:{norm}")
            multi = _acc(
                rt, iterative_attack, norm, head, x, y, f"sanity:{iterative_attack}:{norm}"
            )
            rows.append(
                {
                    "norm": norm,
                    "eps": head,
                    "iterative": iterative_attack,
                    "single": single,
                    "multi": multi,
                }
            )
        source = f"{single_step} and {iterative_attack} at the headline eps (n={len(x)})"
    if not rows:
        return _res(name, "skip", "no single-step and iterative attack to compare")
    worst, gap = _largest(rows, "multi", "single")
    msg = (
        f"largest excess of iterative over single-step robust accuracy: {gap:+.3f} "
        f"({worst['iterative']} {worst['multi']:.3f} vs {single_step} {worst['single']:.3f} at "
        f"{worst['norm']} eps={worst['eps']:g}), from {source}"
    )
    return _graded(name, gap, tol, msg, rows=rows, tolerance=tol)


def _monotonic(rt: Runtime, adv: SectionResult | None, tol: float) -> dict[str, Any]:
    name = "accuracy_decreases_with_eps"
    if adv is None:
        return _res(name, "skip", "needs the adversarial section's robustness curves")
    tol = max(tol, 1.5 / max(1, adv.data["n"]))
    worst_rise, where = 0.0, ""
    for norm, nd in adv.data["norms"].items():
        for attack, per_eps in nd["results"].items():
            # the raw accuracy at each eps: the curves are cumulative (never rising) by design
            curve = [r["robust_accuracy"] for r in per_eps]
            eps = [r["eps"] for r in per_eps]
            for k in range(1, len(curve)):
                rise = curve[k] - curve[k - 1]
                if rise > worst_rise:
                    worst_rise = rise
                    where = f"{attack} {norm} eps {eps[k - 1]:g} -> {eps[k]:g}"
    if worst_rise <= 0:
        return _res(
            name, "pass", "every robustness curve is non-increasing in eps", largest_rise=0.0
        )
    return _graded(
        name,
        worst_rise,
        tol,
        f"largest rise of robust accuracy with eps: {worst_rise:+.3f} ({where})",
        largest_rise=worst_rise,
        tolerance=tol,
    )


def _large_eps(rt: Runtime, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    name = "large_eps_breaks_model"
    lo, hi = rt.bounds
    span = hi - lo
    if math.isfinite(span):
        eps = 0.5 * span
    else:
        s = float(rt.feature_std.median()) if rt.feature_std is not None else 1.0
        eps = 5.0 * s
    it = _iterative_attack(rt)
    acc = _acc(rt, it, "linf", eps, x, y, "sanity:large")
    limit = rt.config.sanity.large_eps_max_accuracy
    msg = f"{it} Linf at eps={eps:.3g} (half the input range) leaves robust accuracy {acc:.3f}"
    status = "pass" if acc <= limit else ("warn" if acc <= 4 * limit else "fail")
    return _res(name, status, msg, eps=eps, accuracy=acc, max_accuracy=limit)


def _converged(rt: Runtime, x: torch.Tensor, y: torch.Tensor, tol: float) -> dict[str, Any]:
    name = "attack_converged"
    f = rt.config.sanity.convergence_factor
    rows = []
    for norm in _norms(rt):
        _, head = eps_grid(rt, norm)
        it = _iterative_attack(rt)
        defaults = attack_fields(it)
        base = {k: attack_kwargs(rt, it, norm).get(k, defaults[k]) for k in ("steps", "restarts")}
        more = dict(base, steps=base["steps"] * f, restarts=max(2, base["restarts"]))
        a0 = _acc(rt, it, norm, head, x, y, f"sanity:conv0:{norm}")
        a1 = _acc(rt, it, norm, head, x, y, f"sanity:conv1:{norm}", **more)
        rows.append(
            {
                "norm": norm,
                "eps": head,
                "accuracy": a0,
                "accuracy_more": a1,
                "steps": base["steps"],
                "steps_more": more["steps"],
                "restarts_more": more["restarts"],
            }
        )
    worst, drop = _largest(rows, "accuracy", "accuracy_more")
    msg = (
        f"{it}-{worst['steps']} vs {it}-{worst['steps_more']} with {worst['restarts_more']} restarts "
        f"at {worst['norm']} eps={worst['eps']:g}: robust accuracy {worst['accuracy']:.3f} -> "
        f"{worst['accuracy_more']:.3f} ({-drop:+.3f})"
    )
    return _graded(name, drop, tol, msg, rows=rows, tolerance=tol)


def _noise(rt: Runtime, x: torch.Tensor, y: torch.Tensor) -> dict[str, Any]:
    name = "attack_beats_random_noise"
    from xrobust.attacks.norms import get_norm

    rows = []
    lo, hi = rt.bounds
    bounds = (lo, hi) if math.isfinite(hi - lo) else None
    for norm in _norms(rt):
        ball = get_norm(norm)
        _, head = eps_grid(rt, norm)
        g = torch.Generator().manual_seed(chunk_seed(rt.config.seed, f"sanity:noise:{norm}", 0))
        best_noise_acc = 1.0
        correct_any = torch.zeros(len(x), dtype=torch.bool)
        still = torch.ones(len(x), dtype=torch.bool)
        for _ in range(10):  # ten noise draws per example: fooled if any draw fools it
            xn = ball.random_start(x, head, bounds, g)
            still &= rt.forward(xn).argmax(1) == y
        correct_any = still
        best_noise_acc = float(correct_any.double().mean())
        atk = _acc(rt, _iterative_attack(rt), norm, head, x, y, f"sanity:conv0:{norm}")
        rows.append(
            {"norm": norm, "eps": head, "noise_accuracy": best_noise_acc, "attack_accuracy": atk}
        )
    worst = max(rows, key=lambda r: r["attack_accuracy"] - r["noise_accuracy"])
    gap = worst["attack_accuracy"] - worst["noise_accuracy"]
    msg = (
        f"at {worst['norm']} eps={worst['eps']:g}: accuracy under 10 random draws in the ball "
        f"{worst['noise_accuracy']:.3f}, under {_iterative_attack(rt)} {worst['attack_accuracy']:.3f}"
    )
    status = "pass" if gap <= 0 else ("warn" if gap <= 1.5 / max(1, len(x)) else "fail")
    return _res(name, status, msg, rows=rows)


def _black_box(rt: Runtime, x: torch.Tensor, y: torch.Tensor, tol: float) -> dict[str, Any]:
    """The query-only attack against the white-box iterative attack, on the same examples
    at each norm's headline eps; a black box that is stronger means masked gradients."""
    from xrobust.audit.sections.adversarial import eps_grid

    name = "black_box_not_stronger"
    if attacks_unavailable():
        return _res(name, "skip", "not applicable: xrobust.attacks is not available")
    from xrobust.attacks import ATTACKS

    bb = rt.config.sanity.black_box_attack
    if bb not in ATTACKS:
        return _res(name, "skip", f"not applicable: the query-only attack {bb!r} is not registered")
    wb = _iterative_attack(rt)
    rows = []
    for norm in _norms(rt):
        _, eps = eps_grid(rt, norm)
        a_wb = _acc(rt, wb, norm, eps, x, y, f"sanity:{norm}:{wb}")
        q = (
            {"queries": rt.config.sanity.black_box_queries}
            if "queries" in attack_fields(bb)
            else {}
        )
        a_bb = _acc(rt, bb, norm, eps, x, y, f"sanity:{norm}:{bb}", **q)
        rows.append({"norm": norm, "eps": eps, "white_box": a_wb, "black_box": a_bb})
    worst, gap = _largest(rows, "white_box", "black_box")
    msg = (
        f"{bb} (queries only) vs {wb} (gradients) on {len(x)} examples: robust accuracy "
        + "; ".join(
            f"{r['norm']} eps {r['eps']:g}: {r['black_box']:.3f} vs {r['white_box']:.3f}"
            for r in rows
        )
    )
    if gap > 0:
        msg += f"; the black box is stronger by {gap:.3f} at {worst['norm']}: gradients masked?"
    status = "pass" if gap <= tol else "warn"
    return _res(name, status, msg, rows=rows, white_box_attack=wb, black_box_attack=bb)


@register_section
class SanitySection(Section):
    """The evaluation sanity checks (they read the adversarial section's curves); the
    checks go to ``report.sanity_checks``, the warnings the attacks gave beside them."""

    name = "sanity"
    title = "Evaluation sanity checks"
    config = SanityConfig
    order, place = 60.0, 5.0
    checks = "sanity_checks"
    always_shown = True

    def run(self, rt: Runtime, report: AuditReport) -> dict[str, Any]:
        data = run_sanity(rt, report.sections.get("adversarial"))
        warned = rt.cache.get("attack_warnings", {})
        data["attack_warnings"] = [{"attack": a, "message": m} for m, a in warned.items()]
        return data

    def html(self, s: SectionResult, report: AuditReport) -> str:
        from xrobust.audit.html import sanity_html

        return sanity_html(s, report)

    def summary(self, report: AuditReport) -> list[tuple[str, str]]:
        from xrobust.audit.markdown import check_rows

        return check_rows("Sanity checks", report.sanity_checks)
