"""Section 2: adversarial robustness, through the evaluation layer of :mod:`xrobust.attacks`.

Per threat model (Linf, L2) every configured attack runs at every eps of the grid, chunk
by chunk (sharded across ranks under torchrun), each chunk with its own recorded seed.
The chunks' ``AttackResult``s are joined with ``AttackResult.concat`` and the section
stores what the evaluation layer makes of them, as their ``to_dict()``:

* ``curves``: a :class:`~xrobust.attacks.evaluation.RobustnessCurve` per attack and one
  for the per-example worst case over the attacks (robust only if every attack failed);
* ``results``: each attack's ``AttackResult.to_dict()`` at each eps (raw accuracy at that
  eps, steps, passes, time, the config that really ran);
* ``per_class`` and ``confusion``: ``per_class_accuracy`` and ``adversarial_confusion``
  of the worst case at the headline eps, whose ``broken_by`` says which attack (and, for
  the ensemble, which member) broke each example;
* ``minimal_perturbation``: ``minimal_perturbation`` (bisection) with the strongest
  attack, and the most vulnerable examples with their adversarials.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import torch

from xrobust.audit._attacks import (
    attack_fields,
    attack_kwargs,
    attacks_for,
    attacks_unavailable,
    run_attack,
)
from xrobust.audit._runtime import Runtime, chunk_seed, default_eps, to_list
from xrobust.audit.config import AdversarialConfig
from xrobust.audit.report import AuditReport, SectionResult
from xrobust.audit.section import Section, register_section

__all__ = ["attack_seed", "eps_grid", "run_adversarial", "strongest_attack"]

_MAX_EXAMPLE_NUMEL = 4096


def eps_grid(rt: Runtime, norm: str) -> tuple[list[float], float]:
    """The sorted eps grid of ``norm`` (configured or derived, plus requirement eps) and
    the headline eps."""
    a = rt.config.adversarial
    grid = list(a.eps.get(norm) or default_eps(rt.spec, norm, rt.feature_std))
    for req in rt.config.requirements.robust:
        if _same_norm(req.norm, norm) and not any(
            math.isclose(req.eps, e, rel_tol=1e-6) for e in grid
        ):
            grid.append(float(req.eps))
    head = a.headline_eps.get(norm)
    grid = sorted(set(grid))
    if head is None:
        head = grid[(len(grid) - 1) // 2]
    elif not any(math.isclose(head, e, rel_tol=1e-6) for e in grid):
        grid = sorted({*grid, float(head)})
    return grid, float(head)


def _same_norm(a: str, b: str) -> bool:
    from xrobust.attacks.norms import get_norm

    return get_norm(a) == get_norm(b)


def attack_seed(rt: Runtime, norm: str, attack: str, chunk: int) -> int:
    """The seed of ``attack`` on chunk ``chunk`` under ``norm`` (the same at every eps)."""
    return chunk_seed(rt.config.seed, f"adversarial:{norm}:{attack}", chunk)


def run_adversarial(rt: Runtime) -> dict[str, Any]:
    """Robustness curves, per-class robust accuracy, flips, minimal perturbations and the
    most vulnerable examples, for every configured norm."""
    why = attacks_unavailable()
    if why:
        return {"_unavailable": why}
    a = rt.config.adversarial
    for name in a.attacks:
        attack_fields(name)  # unknown names raise ConfigError with a did-you-mean
    names = attacks_for(rt, list(a.attacks))
    if not names:
        return rt.nothing_runs("attack")
    idx = rt.sample(a.n)
    y = rt.y[idx]
    correct = rt.clean_logits()[idx].argmax(1) == y
    out: dict[str, Any] = {
        "n": len(idx),
        "indices": idx.tolist(),
        "clean_accuracy": round(float(correct.double().mean()), 6),
        "attacks": names,
        "norms": {},
    }
    for norm in a.norms:
        out["norms"][norm] = _one_norm(rt, norm, idx, names)
    stops = [
        r.get("stop_reason")
        for d in out["norms"].values()
        for rs in d["results"].values()
        for r in rs
        if r.get("partial")
    ] + [
        f"minimal perturbation: {mp.get('stop_reason')}"
        for d in out["norms"].values()
        if (mp := d.get("minimal_perturbation")) and mp.get("partial")
    ]
    if stops:
        out["_partial"] = f"an attack stopped early: {stops[0]}"
    return out


# ---------------------------------------------------------------------- one threat model
def _one_norm(rt: Runtime, norm: str, idx: torch.Tensor, attacks: list[str]) -> dict[str, Any]:
    from xrobust.attacks.evaluation import adversarial_confusion, per_class_accuracy
    from xrobust.attacks.norms import get_norm

    a = dataclasses.replace(rt.config.adversarial, attacks=attacks)
    grid, head = eps_grid(rt, norm)
    grids = {n: _attack_grid(rt, n, norm, grid, head) for n in a.attacks}
    full = grid
    # when every attack runs at the headline eps only (a black box: Square), so does the curve
    grid = sorted({e for n in a.attacks for e in grids[n]})
    k_head = min(range(len(grid)), key=lambda k: abs(grid[k] - head))
    results: dict[str, list[Any]] = {}
    seconds: dict[str, float] = {}
    for j, name in enumerate(a.attacks):
        t0 = time.perf_counter()
        results[name] = _run_grid(rt, name, norm, grids[name], idx)
        seconds[name] = round(time.perf_counter() - t0, 4)
        rt.report(f"adversarial {norm}", j + 1, len(a.attacks))
    worst = []
    for e in grid:
        ran = [results[n][grids[n].index(e)] for n in a.attacks if e in grids[n]]
        worst.append(_worst_case(ran))
    curves = {n: _curve(n, norm, grids[n], results[n]).to_dict() for n in a.attacks}
    curves["worst"] = _curve("worst", norm, grid, worst).to_dict()
    _label_bounds(curves, a.attacks, grids, grid)
    strongest = strongest_attack(curves, a.attacks, head)
    full_grid = [n for n in a.attacks if grids[n] == grid]
    minimal_attack = strongest_attack(curves, full_grid, head) if full_grid else strongest
    at_head = worst[k_head]
    c = rt.num_classes
    chunks = len(rt.chunks(idx))
    out: dict[str, Any] = {
        "norm": norm,
        "label": get_norm(norm).label,
        "eps": grid,
        "headline_eps": head,
        "curves": curves,
        "results": {n: [r.to_dict() for r in results[n]] for n in a.attacks},
        "attack_options": {n: _jsonable(attack_kwargs(rt, n, norm)) for n in a.attacks},
        "seeds": {n: [attack_seed(rt, norm, n, i) for i in range(chunks)] for n in a.attacks},
        "seconds": seconds,
        "strongest_attack": strongest,
        "bound": curves["worst"]["bound"],
        "bound_note": curves["worst"]["bound_note"],
        "per_class": per_class_accuracy(at_head, c).to_dict(),
        "confusion": adversarial_confusion(at_head, c).to_dict(),
        "broken_by": at_head.to_dict().get("broken_by", {}),
        "broken_by_example": list(at_head.broken_by or []),
        "minimal_perturbation": None,
        "vulnerable": [],
        "query_curves": _query_curves(rt, a.attacks, grids, results, head),
    }
    if a.minimal_perturbation:
        any_correct = bool((at_head.pred_clean == at_head.y).any())
        _add_minimal(rt, out, norm, idx, any_correct, minimal_attack, grid, full)
    return out


def _add_minimal(
    rt: Runtime,
    out: dict[str, Any],
    norm: str,
    idx: torch.Tensor,
    any_correct: bool,
    white_attack: str,
    grid: list[float],
    full: list[float],
) -> None:
    """The minimal perturbation and most vulnerable examples into ``out``: on a white box
    by the strongest attack over the curve's grid, on a black box by the
    decision-based minimum-norm attack over the full grid (one run, no bisection)."""
    if rt.white_box:
        if any_correct:
            minimal = _minimal(rt, white_attack, norm, grid, idx)
            out["minimal_perturbation"], out["vulnerable"] = minimal
        return
    from xrobust.attacks import ATTACKS

    mm = rt.config.adversarial.black_box_minimal
    if mm in ATTACKS and any_correct:
        out["minimal_perturbation"], out["vulnerable"] = _minimal(rt, mm, norm, full, idx)
    elif mm not in ATTACKS:
        rt.skip_part(f"minimal perturbation ({norm})", f"{mm!r} is not registered")


#: attacks at AutoAttack's strength: a worst case including one is a measurement
_AUTOATTACK_STRENGTH = frozenset({"apgd", "apgd_t", "ensemble", "autoattack", "fab", "fab_t"})


def _label_bounds(
    curves: dict[str, Any], attacks: list[str], grids: dict[str, list[float]], grid: list[float]
) -> None:
    """Say what each curve's robust accuracy is (in place): ``bound`` "measured" for a
    white-box (gradient) attack, "upper" for a query-only one (Square, HopSkipJump,
    transfer: what a limited number of queries did not break may still be breakable), with
    ``bound_note`` in words. The worst case is a measurement when a white-box attack ran
    at every eps of its grid, else an upper bound."""
    from xrobust.attacks import ATTACKS

    for n in attacks:
        c = curves[n]
        if ATTACKS.get(n).requires_gradients:
            c["bound"], c["bound_note"] = "measured", f"white-box attack {n}"
        else:
            c["bound"], c["bound_note"] = (
                "upper",
                f"query-only attack {n}, {_queries_per_example(c)}",
            )
    white = [n for n in attacks if curves[n]["bound"] == "measured"]
    query = [n for n in attacks if curves[n]["bound"] == "upper"]
    w = curves["worst"]
    strong = [n for n in white if n in _AUTOATTACK_STRENGTH]
    if strong and any(grids[n] == grid for n in white):
        w["bound"] = "measured"
        w["bound_note"] = (
            "white-box attacks "
            + ", ".join(white)
            + (f" (with query-only {', '.join(query)})" if query else "")
        )
    elif white:
        # single-step or few-step attacks only: what they did not break may still break
        w["bound"] = "upper"
        w["bound_note"] = (
            "white-box attacks " + ", ".join(white) + " only, weaker than AutoAttack "
            "(add apgd or ensemble for a measurement)"
        )
    else:
        w["bound"] = "upper"
        w["bound_note"] = (
            "query-only attacks: "
            + "; ".join(f"{n}, {_queries_per_example(curves[n])}" for n in query)
            if query
            else "no white-box attack ran at every eps"
        )


def _queries_per_example(curve: dict[str, Any]) -> str:
    """The query budget per example of a query-only attack's curve, in words."""
    cfg = curve.get("config") or {}
    budget = cfg.get("queries")
    restarts = int(cfg.get("restarts") or 1)
    if isinstance(budget, int | float) and budget > 0:
        total = int(budget) * max(restarts, 1)
        return f"at most {total} queries per example"
    used = [q["max"] for q in curve.get("queries") or [] if q]
    return f"at most {max(used)} queries per example (as used)" if used else "queries not counted"


def _query_curves(
    rt: Runtime,
    attacks: list[str],
    grids: dict[str, list[float]],
    results: dict[str, list[Any]],
    head: float,
) -> dict[str, Any]:
    """Robust accuracy against queries per example, at the headline eps, for every
    query-only attack (Square, HopSkipJump): what a query budget buys an attacker."""
    from xrobust.attacks import ATTACKS
    from xrobust.attacks.evaluation import success_vs_queries

    out: dict[str, Any] = {}
    for n in attacks:
        if ATTACKS.get(n).requires_gradients or head not in grids[n]:
            continue
        r = results[n][grids[n].index(head)]
        if r.queries is not None:
            out[n] = success_vs_queries(r).to_dict()
    return out


def strongest_attack(curves: dict[str, Any], attacks: list[str], head: float) -> str:
    """The attack with the lowest robust accuracy at the headline eps, then over its whole
    curve; ties go to the attack listed last (the configured order runs from weak to
    strong)."""

    def key(n: str) -> tuple[float, float, int]:
        c = curves[n]
        acc = c["robust_accuracy"]
        return (acc[c["eps"].index(head)], sum(acc) / len(acc), -attacks.index(n))

    return sorted(attacks, key=key)[0]


def _attack_grid(rt: Runtime, name: str, norm: str, grid: list[float], head: float) -> list[float]:
    """The eps at which ``name`` runs: the whole grid, or for ``headline_only`` attacks the
    headline eps and the requirements' eps of this norm."""
    if name not in rt.config.adversarial.headline_only:
        return list(grid)
    wanted = {head}
    for req in rt.config.requirements.robust:
        if _same_norm(req.norm, norm) and req.attack in (name, "worst"):
            wanted |= {e for e in grid if math.isclose(e, req.eps, rel_tol=1e-6)}
    return [e for e in grid if e in wanted]


def _run_grid(rt: Runtime, name: str, norm: str, grid: list[float], idx: torch.Tensor) -> list[Any]:
    """``name`` at every eps of ``grid`` on the examples ``idx``: one ``AttackResult``
    per eps, chunks joined in order (each chunk seeded by :func:`attack_seed`)."""
    from xrobust.attacks import AttackResult

    def one(i: int, c: torch.Tensor) -> list[Any]:
        seed = attack_seed(rt, norm, name, i)
        return [
            run_attack(rt, name, norm, e, rt.x[c], rt.y[c], seed=seed, keep_adv=False) for e in grid
        ]

    per_chunk = rt.map_chunks(f"adversarial:{norm}:{name}", idx, one)
    return [AttackResult.concat([p[k] for p in per_chunk]) for k in range(len(grid))]


def _curve(name: str, norm: str, grid: list[float], results: list[Any]) -> Any:
    """The :class:`RobustnessCurve` of per-eps results, by ``robustness_curve``'s rule: an
    example is robust at eps[k] only if the attack failed at every eps <= eps[k]."""
    from xrobust.attacks.evaluation import RobustnessCurve

    robust: torch.Tensor | None = None
    accs: list[float] = []
    for r in results:
        ok = r.pred_adv == r.y
        robust = ok if robust is None else robust & ok
        accs.append(round(float(robust.double().mean()), 6))
    from xrobust.attacks.evaluation import query_summary

    last = results[-1]
    qs = [query_summary(r.queries) for r in results]
    return RobustnessCurve(
        attack=name,
        norm=norm,
        eps=list(grid),
        robust_accuracy=accs,
        clean_accuracy=round(last.clean_accuracy, 6),
        n=last.n,
        config={k: v for k, v in last.config.items() if k != "eps"},
        time_s=round(sum(r.time_s for r in results), 4),
        queries=None if any(q is None for q in qs) else qs,  # type: ignore[arg-type]
    )


def _worst_case(results: list[Any]) -> Any:
    """Per example, the first of ``results`` (same examples, attacks in configured order)
    that broke it: its prediction and perturbation norm, and in ``broken_by`` its name
    (``ensemble/<member>`` for an ensemble's member; None for examples no attack broke and
    for those misclassified clean, which evaluation mode does not attack)."""
    first = results[0]
    n = first.n
    won = torch.zeros(n, dtype=torch.bool)
    pred = first.pred_adv.clone()
    norms = first.norms.clone()
    broken: list[str | None] = [None] * n
    for r in results:
        take = r.success & r.attacked & ~won
        pred[take] = r.pred_adv[take]
        norms[take] = r.norms[take]
        for i in take.nonzero().flatten().tolist():
            member = r.broken_by[i] if r.broken_by is not None else None
            broken[i] = f"{r.attack}/{member}" if member else r.attack
        won |= take
    return dataclasses.replace(
        first,
        x_adv=None,
        pred_adv=pred,
        success=won | (first.success & ~first.attacked),
        norms=norms,
        attacked=torch.stack([r.attacked for r in results]).any(0),
        steps=torch.stack([r.steps for r in results]).sum(0),
        attack="worst",
        config={"attacks": [r.attack for r in results]},
        broken_by=broken,
        forward_passes=sum(r.forward_passes for r in results),
        gradient_passes=sum(r.gradient_passes for r in results),
        time_s=sum(r.time_s for r in results),
    )


# ---------------------------------------------------------------------- minimal eps
def _minimal(
    rt: Runtime, attack: str, norm: str, grid: list[float], idx: torch.Tensor
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``minimal_perturbation`` with ``attack`` (bisection up to the largest grid eps),
    chunk by chunk; each chunk also hands back its most vulnerable examples."""
    from xrobust.attacks.evaluation import MinimalPerturbation

    a = rt.config.adversarial

    def one(i: int, c: torch.Tensor) -> tuple[Any, list[dict[str, Any]]]:
        return _minimal_chunk(rt, attack, norm, grid[-1], i, c)

    parts = rt.map_chunks(f"minimal:{norm}:{attack}", idx, one)
    first = parts[0][0]
    joined = MinimalPerturbation(
        attack=first.attack,
        norm=first.norm,
        eps=torch.cat([p.eps for p, _ in parts]),
        x_adv=torch.cat([p.x_adv for p, _ in parts]),
        found=torch.cat([p.found for p, _ in parts]),
        eps_max=first.eps_max,
        tolerance=first.tolerance,
        clean_wrong=torch.cat([p.misclassified_clean() for p, _ in parts]),
        partial=any(p.partial for p, _ in parts),
        stop_reason=next((p.stop_reason for p, _ in parts if p.stop_reason), None),
    )
    rows = sorted((r for _, rs in parts for r in rs), key=lambda r: (r["eps"], r["index"]))
    return _minimal_labels(joined, attack, a.bisection_steps), rows[: a.n_vulnerable]


def _minimal_chunk(
    rt: Runtime, attack: str, norm: str, eps_max: float, i: int, c: torch.Tensor
) -> tuple[Any, list[dict[str, Any]]]:
    """One chunk's minimal perturbations, and its most vulnerable examples correct clean."""
    from xrobust.attacks.evaluation import minimal_perturbation

    a = rt.config.adversarial
    kw = attack_kwargs(rt, attack, norm)
    kw["seed"] = chunk_seed(rt.config.seed, f"minimal:{norm}:{attack}", i)
    xs, ys = rt.x[c], rt.y[c]
    r = minimal_perturbation(
        rt.classifier,
        xs.to(rt.device),
        ys.to(rt.device),
        attack,
        eps_max=eps_max,
        bisection_steps=a.bisection_steps,
        **kw,
    )
    r = dataclasses.replace(
        r,
        eps=r.eps.detach().cpu(),
        x_adv=r.x_adv.detach().float().cpu(),
        found=r.found.cpu(),
        clean_wrong=r.misclassified_clean(),
    )
    clean = rt.clean_logits()[c].argmax(1)
    pick = [
        j
        for j in sorted(range(len(c)), key=lambda j: float(r.eps[j]))
        if bool(r.found[j]) and float(r.eps[j]) > 0 and bool(clean[j] == ys[j])
    ][: a.n_vulnerable]
    return r, _vulnerable_rows(rt, attack, norm, r, c, clean, pick)


def _vulnerable_rows(
    rt: Runtime,
    attack: str,
    norm: str,
    r: Any,
    c: torch.Tensor,
    clean: torch.Tensor,
    pick: list[int],
) -> list[dict[str, Any]]:
    """The rows of the examples ``pick`` of chunk ``c`` (their images when small)."""
    from xrobust.attacks.norms import get_norm

    if not pick:
        return []
    xs, ys = rt.x[c], rt.y[c]
    store_x = math.prod(rt.spec.input_shape) <= _MAX_EXAMPLE_NUMEL
    measure = get_norm(norm).measure
    rows: list[dict[str, Any]] = []
    pred_adv = rt.forward(r.x_adv[pick]).argmax(1).tolist()
    for j, pa in zip(pick, pred_adv):
        delta = r.x_adv[j] - xs[j]
        row = {
            "index": int(c[j]),
            "attack": attack,
            "label": int(ys[j]),
            "pred_clean": int(clean[j]),
            "pred_adv": int(pa),
            "eps": round(float(r.eps[j]), 6),
            "perturbation_norm": round(float(measure(delta.unsqueeze(0))[0]), 6),
        }
        rows.append(_with_images(rt, row, xs[j], r.x_adv[j], store_x))
    return rows


def _minimal_labels(joined: Any, attack: str, bisection_steps: int) -> dict[str, Any]:
    """The joined result as JSON, with what it is (bound) and how it was found (method)."""
    from xrobust.attacks import ATTACKS

    d = joined.to_dict()
    if not ATTACKS.get(attack).requires_gradients:
        d["bound"] = "upper"
        d["bound_note"] = (
            f"query-only attack {attack}: the radii found bound the smallest from above"
        )
    else:
        d["bound"] = "measured"
    if getattr(ATTACKS.get(attack), "minimizes_norm", False):
        d["method"] = f"{attack}, a minimum-norm attack: the smallest adversarial of one run"
    else:
        d["method"] = (
            f"bisection with {attack} ({bisection_steps} steps, tolerance {joined.tolerance:.3g})"
        )
    return d


def _with_images(
    rt: Runtime, row: dict[str, Any], x: torch.Tensor, x_adv: torch.Tensor, store_x: bool
) -> dict[str, Any]:
    if not store_x:
        return row
    if rt.spec.modality == "image":
        row["x"] = to_list(x.mean(0) if x.dim() == 3 else x, 4)
        row["x_adv"] = to_list(x_adv.mean(0) if x.dim() == 3 else x_adv, 4)
    else:
        row["delta"] = to_list((x_adv - x).flatten(), 5)
    return row


def _jsonable(d: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@register_section
class AdversarialSection(Section):
    """Robust accuracy per attack, norm and eps, with its bound, per class and per query."""

    name = "adversarial"
    title = "Adversarial robustness"
    config = AdversarialConfig
    order, place = 20.0, 2.0
    schema = "#/$defs/adversarial_section"
    always_shown = True

    def run(self, rt: Runtime, report: AuditReport) -> dict[str, Any]:
        return run_adversarial(rt)

    def html(self, s: SectionResult, report: AuditReport) -> str:
        from xrobust.audit.html import adversarial_html

        return adversarial_html(s, report)

    def summary(self, report: AuditReport) -> list[tuple[str, str]]:
        from xrobust.audit.markdown import adversarial_rows

        return adversarial_rows(report)
