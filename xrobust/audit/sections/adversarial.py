"""Section 2: adversarial robustness.

Per threat model (Linf, L2): robustness curves (accuracy against eps) for each configured
attack and their per-example worst case; at the headline eps per-class robust accuracy
and which class flips to which; the distribution of each example's minimal fooling
perturbation; the most vulnerable examples with their adversarial versions.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from xrobust.audit._attacks import attacks_unavailable, run_attack
from xrobust.audit._runtime import Runtime, default_eps, to_list
from xrobust.audit.sections.clean import confusion_matrix
from xrobust.errors import ConfigError

__all__ = ["attack_options", "eps_grid", "run_adversarial"]

_MAX_EXAMPLE_NUMEL = 4096


def attack_options(
    rt: Runtime, name: str, *, steps: int | None = None, restarts: int | None = None
) -> dict[str, Any]:
    """The options the audit passes to attack ``name`` (only those it accepts: FGSM takes
    no steps)."""
    from xrobust.audit._attacks import accepted_options

    a = rt.config.adversarial
    is_apgd = name.startswith("apgd")
    opts = {
        "steps": steps if steps is not None else (a.apgd_steps if is_apgd else a.steps),
        "restarts": restarts if restarts is not None else a.restarts,
        "early_stop": a.early_stop,
    }
    ok = accepted_options(name)
    return opts if ok is None else {k: v for k, v in opts.items() if k in ok}


def eps_grid(rt: Runtime, norm: str) -> tuple[list[float], float]:
    """The sorted eps grid of ``norm`` (configured or derived, plus requirement eps) and
    the headline eps."""
    a = rt.config.adversarial
    grid = list(a.eps.get(norm) or default_eps(rt.spec, norm, rt.feature_std))
    for req in rt.config.requirements.robust:
        if req.norm == norm and not any(math.isclose(req.eps, e, rel_tol=1e-6) for e in grid):
            grid.append(float(req.eps))
    head = a.headline_eps.get(norm)
    grid = sorted(set(grid))
    if head is None:
        head = grid[(len(grid) - 1) // 2]
    elif not any(math.isclose(head, e, rel_tol=1e-6) for e in grid):
        grid = sorted({*grid, float(head)})
    return grid, float(head)


def run_adversarial(rt: Runtime) -> dict[str, Any]:
    """Robustness curves, per-class robust accuracy, flips, minimal perturbations and the
    most vulnerable examples, for every configured norm."""
    why = attacks_unavailable()
    if why:
        return {"_unavailable": why}
    from xrobust.attacks import ATTACKS

    a = rt.config.adversarial
    for name in a.attacks:
        ATTACKS.get(name)  # unknown names raise ConfigError with a did-you-mean
    idx = rt.sample(a.n)
    y = rt.y[idx]
    clean_pred = rt.clean_logits()[idx].argmax(1)
    correct = clean_pred == y
    out: dict[str, Any] = {
        "n": len(idx),
        "indices": idx.tolist(),
        "clean_accuracy": round(float(correct.double().mean()), 6),
        "attacks": list(a.attacks),
        "norms": {},
    }
    for norm in a.norms:
        out["norms"][norm] = _one_norm(rt, norm, idx, y, clean_pred)
    return out


def _one_norm(
    rt: Runtime, norm: str, idx: torch.Tensor, y: torch.Tensor, clean_pred: torch.Tensor
) -> dict[str, Any]:
    a = rt.config.adversarial
    grid, head = eps_grid(rt, norm)
    k_head = min(range(len(grid)), key=lambda k: abs(grid[k] - head))
    correct = clean_pred == y
    curves: dict[str, list[float]] = {}
    seconds: dict[str, float] = {}
    preds: dict[str, list[torch.Tensor]] = {}
    total = len(a.attacks) * len(grid)
    done = 0
    for name in a.attacks:
        opts = attack_options(rt, name)
        t0 = time.perf_counter()
        curves[name], preds[name] = [], []
        for e in grid:
            stage = f"adversarial:{norm}:{name}:{e:g}"

            def one(
                i: int, c: torch.Tensor, _name: str = name, _e: float = e, _opts: dict = opts
            ) -> torch.Tensor:
                res = run_attack(rt, _name, norm, _e, rt.x[c], rt.y[c], **_opts)
                # an example misclassified on clean data counts as not robust whatever the attack did
                p = res.pred_adv.clone()
                wrong = clean_pred_of(c) != rt.y[c]
                p[wrong] = clean_pred_of(c)[wrong]
                return p

            def clean_pred_of(c: torch.Tensor) -> torch.Tensor:
                return rt.clean_logits()[c].argmax(1)

            p = torch.cat(rt.map_chunks(stage, idx, one))
            preds[name].append(p)
            curves[name].append(round(float((p == y).double().mean()), 6))
            done += 1
            rt.report(f"adversarial {norm}", done, total)
        seconds[name] = round(time.perf_counter() - t0, 4)
    # per-example worst case over attacks: robust only if every attack failed
    robust_all = torch.stack(
        [torch.stack([preds[n][k] == y for n in a.attacks]).all(0) for k in range(len(grid))]
    )
    curves["worst"] = [round(float(r.double().mean()), 6) for r in robust_all]
    # adversarial prediction at the headline eps: the first attack (in order) that broke it
    adv_pred = clean_pred.clone()
    broken_by = ["" for _ in range(len(idx))]
    for name in reversed(a.attacks):
        p = preds[name][k_head]
        fooled = (p != y) & correct
        adv_pred[fooled] = p[fooled]
        for i in torch.nonzero(fooled).flatten().tolist():
            broken_by[i] = name
    robust_head = robust_all[k_head]
    per_class_clean, per_class_robust, support = [], [], []
    for c in range(rt.num_classes):
        m = y == c
        support.append(int(m.sum()))
        per_class_clean.append(round(float(correct[m].double().mean()), 6) if m.any() else None)
        per_class_robust.append(
            round(float(robust_head[m].double().mean()), 6) if m.any() else None
        )
    flips = confusion_matrix(y[correct], adv_pred[correct], rt.num_classes)
    # minimal perturbation: smallest grid eps at which the worst case fools the example,
    # refined by bisection with the strongest iterative attack when enabled
    min_eps = _grid_min_eps(grid, robust_all, correct)
    mp_method = "grid"
    strongest = min((n for n in a.attacks), key=lambda n: (curves[n][k_head], a.attacks.index(n)))
    if a.minimal_perturbation and correct.any() and _library_minimal() is not None:
        refined = _bisect(rt, strongest, norm, grid, idx, y, min_eps, correct)
        if refined is not None:
            min_eps, mp_method = refined, f"bisection ({strongest}, {a.bisection_steps} steps)"
    found = [v for v, c in zip(min_eps, correct.tolist()) if c and v is not None]
    censored = sum(1 for v, c in zip(min_eps, correct.tolist()) if c and v is None)
    by_strength = sorted(a.attacks, key=lambda n: (curves[n][k_head], a.attacks.index(n)))
    vulnerable = _vulnerable(rt, norm, by_strength, idx, y, clean_pred, min_eps, correct)
    return {
        "eps": grid,
        "headline_eps": head,
        "curves": curves,
        "attack_options": {n: attack_options(rt, n) for n in a.attacks},
        "seconds": seconds,
        "strongest_attack": strongest,
        "per_class": {"clean": per_class_clean, "robust": per_class_robust, "support": support},
        "flip_matrix": flips.tolist(),
        "broken_by": {n: broken_by.count(n) for n in a.attacks},
        "minimal_perturbation": {
            "method": mp_method,
            "values": [None if v is None else round(float(v), 6) for v in min_eps],
            "median": _median(found),
            "mean": round(sum(found) / len(found), 6) if found else None,
            "n_found": len(found),
            "n_censored": censored,
            "max_eps": grid[-1],
        },
        "vulnerable": vulnerable,
    }


def _grid_min_eps(
    grid: list[float], robust_all: torch.Tensor, correct: torch.Tensor
) -> list[float | None]:
    out: list[float | None] = []
    for i in range(robust_all.shape[1]):
        if not bool(correct[i]):
            out.append(0.0)
            continue
        v = None
        for k, e in enumerate(grid):
            if not bool(robust_all[k, i]):
                v = e
                break
        out.append(v)
    return out


def _bisect(
    rt: Runtime,
    attack: str,
    norm: str,
    grid: list[float],
    idx: torch.Tensor,
    y: torch.Tensor,
    upper: list[float | None],
    correct: torch.Tensor,
) -> list[float | None] | None:
    """Per-example bisection between the grid point below the first fooling eps and that eps,
    using the library's ``minimal_perturbation`` when it offers one, else our own loop over
    per-eps attack runs."""
    a = rt.config.adversarial
    steps = a.bisection_steps
    lo = torch.zeros(len(idx), dtype=torch.float64)
    hi = torch.tensor([float("nan") if u is None else u for u in upper], dtype=torch.float64)
    for i, u in enumerate(upper):
        if u is None or not bool(correct[i]):
            continue
        k = grid.index(u)
        lo[i] = grid[k - 1] if k > 0 else 0.0
    todo = torch.tensor([u is not None and bool(c) for u, c in zip(upper, correct.tolist())])
    if not bool(todo.any()):
        return None
    opts = attack_options(rt, attack)
    positions = torch.arange(len(idx))
    for s in range(steps):
        mid = (lo + hi) / 2

        def one(i: int, p: torch.Tensor, _mid: torch.Tensor = mid) -> torch.Tensor:
            fooled = torch.zeros(len(p), dtype=torch.bool)
            sel = todo[p]
            if not bool(sel.any()):
                return fooled
            ps = p[sel]
            fooled[sel] = _fooled_at(rt, attack, norm, _mid[ps], rt.x[idx[ps]], y[ps], opts)
            return fooled

        fooled = torch.cat(rt.map_chunks(f"minimal:{norm}:{attack}:{s}", positions, one))
        hi = torch.where(todo & fooled, mid, hi)
        lo = torch.where(todo & ~fooled, mid, lo)
        rt.report(f"minimal perturbation {norm}", s + 1, steps)
    out: list[float | None] = []
    for i in range(len(idx)):
        if not bool(correct[i]):
            out.append(0.0)
        elif upper[i] is None:
            out.append(None)
        else:
            out.append(float(hi[i]))
    return out


def _fooled_at(
    rt: Runtime,
    attack: str,
    norm: str,
    eps: torch.Tensor,
    x: torch.Tensor,
    y: torch.Tensor,
    opts: dict,
) -> torch.Tensor:
    """Whether ``attack`` fools each example at its own eps (one call with a per-example
    eps tensor when the attack takes one, else one call per distinct eps)."""
    try:
        return run_attack(rt, attack, norm, eps.float(), x, y, **opts).success
    except (TypeError, ValueError, RuntimeError):
        pass
    fooled = torch.zeros(len(x), dtype=torch.bool)
    for e in torch.unique(eps).tolist():
        m = eps == e
        fooled[m] = run_attack(rt, attack, norm, float(e), x[m], y[m], **opts).success
    return fooled


def _vulnerable(
    rt: Runtime,
    norm: str,
    attacks: list[str],
    idx: torch.Tensor,
    y: torch.Tensor,
    clean_pred: torch.Tensor,
    min_eps: list[float | None],
    correct: torch.Tensor,
) -> list[dict[str, Any]]:
    """The correctly classified examples with the smallest minimal perturbation, attacked
    at that eps by the attacks from strongest to weakest until one fools it (rank 0 only:
    a handful of examples)."""
    a = rt.config.adversarial
    cand = [
        (v, i) for i, (v, c) in enumerate(zip(min_eps, correct.tolist())) if c and v is not None
    ]
    cand.sort()
    pick = cand[: a.n_vulnerable]
    if not pick:
        return []
    store_x = math.prod(rt.spec.input_shape) <= _MAX_EXAMPLE_NUMEL

    def compute() -> list[dict[str, Any]]:
        torch.manual_seed(rt.config.seed)
        rows = []
        pos = torch.tensor([i for _, i in pick])
        xs, ys = rt.x[idx[pos]], y[pos]
        eps_vec = torch.tensor([float(v) for v, _ in pick])
        results, used = [], []
        for j in range(len(pos)):
            for attack in attacks:
                r = run_attack(
                    rt,
                    attack,
                    norm,
                    float(eps_vec[j]),
                    xs[j : j + 1],
                    ys[j : j + 1],
                    **attack_options(rt, attack),
                )
                if bool(r.success[0]):
                    break
            results.append(r)
            used.append(attack)
        for j, (v, i) in enumerate(pick):
            r = results[j]
            row: dict[str, Any] = {
                "index": int(idx[i]),
                "attack": used[j],
                "label": int(y[i]),
                "pred_clean": int(clean_pred[i]),
                "pred_adv": int(r.pred_adv[0]),
                "eps": round(float(v), 6),
            }
            delta = (r.x_adv[0] - xs[j]).flatten()
            row["perturbation_norm"] = round(
                float(delta.abs().max() if norm == "linf" else delta.norm()), 6
            )
            if store_x:
                if rt.spec.modality == "image":
                    row["x"] = to_list(xs[j].mean(0) if xs[j].dim() == 3 else xs[j], 4)
                    row["x_adv"] = to_list(
                        r.x_adv[0].mean(0) if xs[j].dim() == 3 else r.x_adv[0], 4
                    )
                else:
                    row["delta"] = to_list(delta, 5)
            rows.append(row)
        return rows

    return rt.on_rank0(compute)


def _median(v: list[float]) -> float | None:
    if not v:
        return None
    s = sorted(v)
    m = len(s) // 2
    return round(s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2, 6)


def _check_attack_names(names: list[str]) -> None:
    from xrobust.attacks import ATTACKS

    for n in names:
        if n not in ATTACKS:
            raise ConfigError(f"unknown attack {n!r}; available: {', '.join(ATTACKS.list())}")


def _library_minimal() -> Any:
    """``xrobust.attacks.minimal_perturbation`` when the attacks package offers it."""
    try:
        import xrobust.attacks as A
    except ImportError:
        return None
    return getattr(A, "minimal_perturbation", None)
