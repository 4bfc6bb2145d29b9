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
    mp_method = "grid (smallest eps of the grid at which the worst case fools the example)"
    # strongest: lowest accuracy at the headline eps, then over the whole curve; ties go to
    # the attack listed last (the configured order runs from weak to strong: FGSM, PGD, APGD)
    by_strength = sorted(
        a.attacks, key=lambda n: (curves[n][k_head], sum(curves[n]), -a.attacks.index(n))
    )
    strongest = by_strength[0]
    vulnerable: list[dict[str, Any]] | None = None
    lib = _library_minimal()
    if a.minimal_perturbation and bool(correct.any()) and lib is not None:
        min_eps, vulnerable = _bisect(
            rt, lib, strongest, norm, grid[-1], idx, y, clean_pred, correct
        )
        tol = grid[-1] / 2**a.bisection_steps
        mp_method = f"bisection with {strongest} ({a.bisection_steps} steps, tolerance {tol:.3g})"
    if vulnerable is None:
        vulnerable = _vulnerable(rt, norm, by_strength, idx, y, clean_pred, min_eps, correct)
    found = [v for v, c in zip(min_eps, correct.tolist()) if c and v is not None]
    censored = sum(1 for v, c in zip(min_eps, correct.tolist()) if c and v is None)
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
    lib: Any,
    attack: str,
    norm: str,
    eps_max: float,
    idx: torch.Tensor,
    y: torch.Tensor,
    clean_pred: torch.Tensor,
    correct: torch.Tensor,
) -> tuple[list[float | None], list[dict[str, Any]]]:
    """Per-example minimal perturbation by bisection (``xrobust.attacks``'
    ``minimal_perturbation``), chunk by chunk; each chunk also hands back its most
    vulnerable examples with their adversarials."""
    from xrobust.audit._attacks import attack_kwargs

    a = rt.config.adversarial
    kw = attack_kwargs(rt, attack, norm, **attack_options(rt, attack))
    positions = torch.arange(len(idx))
    store_x = math.prod(rt.spec.input_shape) <= _MAX_EXAMPLE_NUMEL

    def one(i: int, p: torch.Tensor) -> tuple[torch.Tensor, list[dict[str, Any]]]:
        xs, ys = rt.x[idx[p]], y[p]
        r = lib(
            rt.model,
            xs.to(rt.device),
            ys.to(rt.device),
            attack,
            eps_max=eps_max,
            bisection_steps=a.bisection_steps,
            **kw,
        )
        eps = r.eps.detach().double().cpu()
        x_adv = r.x_adv.detach().float().cpu()
        ok = correct[p] & torch.isfinite(eps)
        order = sorted((float(eps[j]), j) for j in range(len(p)) if bool(ok[j]))[: a.n_vulnerable]
        rows = []
        if order:
            with torch.no_grad():
                pred = rt.forward(x_adv[[j for _, j in order]]).argmax(1)
            for (v, j), pa in zip(order, pred.tolist()):
                rows.append(
                    _row(
                        rt,
                        norm,
                        int(idx[p[j]]),
                        int(ys[j]),
                        int(clean_pred[p[j]]),
                        pa,
                        v,
                        attack,
                        xs[j],
                        x_adv[j],
                        store_x,
                    )
                )
        return eps, rows

    parts = rt.map_chunks(f"minimal:{norm}:{attack}", positions, one)
    eps_all = torch.cat([e for e, _ in parts])
    rows = sorted((r for _, rs in parts for r in rs), key=lambda r: (r["eps"], r["index"]))
    values: list[float | None] = []
    for j in range(len(idx)):
        if not bool(correct[j]):
            values.append(0.0)
        elif not math.isfinite(float(eps_all[j])):
            values.append(None)
        else:
            values.append(float(eps_all[j]))
    return values, rows[: a.n_vulnerable]


def _row(
    rt: Runtime,
    norm: str,
    index: int,
    label: int,
    pred_clean: int,
    pred_adv: int,
    eps: float,
    attack: str,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    store_x: bool,
) -> dict[str, Any]:
    delta = (x_adv - x).flatten()
    row: dict[str, Any] = {
        "index": index,
        "attack": attack,
        "label": label,
        "pred_clean": pred_clean,
        "pred_adv": pred_adv,
        "eps": round(float(eps), 6),
        "perturbation_norm": round(float(delta.abs().max() if norm == "linf" else delta.norm()), 6),
    }
    if store_x:
        if rt.spec.modality == "image":
            row["x"] = to_list(x.mean(0) if x.dim() == 3 else x, 4)
            row["x_adv"] = to_list(x_adv.mean(0) if x.dim() == 3 else x_adv, 4)
        else:
            row["delta"] = to_list(delta, 5)
    return row


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
            rows.append(
                _row(
                    rt,
                    norm,
                    int(idx[i]),
                    int(y[i]),
                    int(clean_pred[i]),
                    int(r.pred_adv[0]),
                    float(v),
                    used[j],
                    xs[j],
                    r.x_adv[0],
                    store_x,
                )
            )
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
    """``xrobust.attacks.evaluation.minimal_perturbation`` when the attacks package has it."""
    try:
        from xrobust.attacks.evaluation import minimal_perturbation
    except ImportError:
        return None
    return minimal_perturbation
