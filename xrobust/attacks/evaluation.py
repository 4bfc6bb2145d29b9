"""Robustness evaluation helpers: accuracy against eps, minimal perturbations per
example, per-class robust accuracy and the clean-vs-adversarial confusion.

Every result is a dataclass with ``to_dict()`` (JSON-ready, no tensors) for the audit.

Example:
    >>> import torch
    >>> from xrobust.attacks.evaluation import robustness_curve
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> x, y = torch.rand(16, 4), torch.randint(0, 3, (16,))
    >>> curve = robustness_curve(model, (x, y), "pgd", eps=[0.0, 0.1, 0.3], steps=5, seed=0)
    >>> curve.robust_accuracy[0] >= curve.robust_accuracy[-1]
    True
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xrobust.attacks import ATTACKS, Attack, AttackResult
from xrobust.errors import ConfigError, DataError

__all__ = [
    "ConfusionMatrix",
    "MinimalPerturbation",
    "PerClassAccuracy",
    "QueryCurve",
    "RobustnessCurve",
    "adversarial_confusion",
    "minimal_perturbation",
    "per_class_accuracy",
    "query_summary",
    "robustness_curve",
    "success_vs_queries",
]


def _attack_cls(attack: str | type[Attack]) -> type[Attack]:
    if isinstance(attack, str):
        return ATTACKS.get(attack)
    if isinstance(attack, type) and issubclass(attack, Attack):
        return attack
    raise ConfigError(f"attack must be a registry name or an Attack class, got {attack!r}")


def _tensors(data: Any, limit: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
    else:
        from torch.utils.data import DataLoader, Dataset

        if isinstance(data, DataLoader):
            xs, ys = zip(*[(b[0], b[1]) for b in data], strict=False)
            x, y = torch.cat(xs), torch.cat(ys)
        elif isinstance(data, Dataset):
            items = [data[i] for i in range(len(data) if limit is None else min(limit, len(data)))]  # type: ignore[arg-type]
            x = torch.stack([torch.as_tensor(i[0]) for i in items])
            y = torch.as_tensor([int(i[1]) for i in items])
        else:
            raise DataError(
                f"expected an (x, y) pair, a Dataset or a DataLoader, got {type(data).__name__}"
            )
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return x, y


@dataclass
class RobustnessCurve:
    """Robust accuracy against eps for one attack.

    ``robust_accuracy[k]`` counts an example as robust at ``eps[k]`` only if the attack
    failed at every eps <= eps[k] (an adversarial found in a smaller ball is also in the
    larger one), so the curve never increases. ``queries[k]`` summarises the model queries
    per example at ``eps[k]`` (median, max, total), when the attack counted them.
    """

    attack: str
    norm: str
    eps: list[float]
    robust_accuracy: list[float]
    clean_accuracy: float
    n: int
    config: dict[str, Any] = field(default_factory=dict)
    time_s: float = 0.0
    queries: list[dict[str, float]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "attack": self.attack,
            "norm": self.norm,
            "eps": list(self.eps),
            "robust_accuracy": list(self.robust_accuracy),
            "clean_accuracy": self.clean_accuracy,
            "n": self.n,
            "config": self.config,
            "time_s": self.time_s,
            "queries": self.queries,
        }


def query_summary(queries: torch.Tensor | None) -> dict[str, float] | None:
    """Median, max and total of per-example query counts (None when not counted)."""
    if queries is None or queries.numel() == 0:
        return None
    q = queries.detach().cpu().double()
    return {"median": float(q.median()), "max": int(q.max()), "total": int(q.sum())}


@dataclass
class QueryCurve:
    """Robust accuracy against the query budget per example, for a query-based attack.

    ``robust_accuracy[k]`` counts an example as broken at ``queries[k]`` when the attack
    fooled it after at most that many model queries on it (the clean query included), so
    the curve never increases and its last point is the attack's robust accuracy.
    """

    attack: str
    norm: str
    eps: float | None
    queries: list[int]
    robust_accuracy: list[float]
    success_rate: list[float]
    n: int
    median_queries_successful: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "attack": self.attack,
            "norm": self.norm,
            "eps": self.eps,
            "queries": list(self.queries),
            "robust_accuracy": list(self.robust_accuracy),
            "success_rate": list(self.success_rate),
            "n": self.n,
            "median_queries_successful": self.median_queries_successful,
        }


def success_vs_queries(result: AttackResult, points: int = 24) -> QueryCurve:
    """How robust accuracy falls as an attack spends queries: its :class:`QueryCurve` on
    a geometric grid of ``points`` budgets up to the largest count spent.

    Raises:
        DataError: the result has no per-example query counts.

    Example:
        >>> import torch
        >>> from xrobust.attacks import FGSM
        >>> from xrobust.attacks.evaluation import success_vs_queries
        >>> m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> res = FGSM(m, eps=0.3).run(torch.rand(8, 4), torch.randint(0, 3, (8,)))
        >>> c = success_vs_queries(res)
        >>> c.robust_accuracy[-1] == res.robust_accuracy
        True
    """
    if result.queries is None:
        raise DataError("this attack result has no per-example query counts")
    if points < 2:
        raise ConfigError(f"points must be at least 2, got {points}")
    q = result.queries.detach().cpu().long()
    broke = (result.success & result.attacked).cpu()
    y = result.y.cpu()
    final_ok = result.pred_adv.cpu() == y
    clean_ok = result.pred_clean.cpu() == y
    top = max(1, int(q.max()) if q.numel() else 1)
    grid = sorted({max(1, round(top ** (k / (points - 1)))) for k in range(points)})
    n = max(1, result.n)
    attacked = max(1, int(result.attacked.sum()))
    accs, rates = [], []
    for b in grid:
        within = broke & (q <= b)
        # robust at b: still right at the end, or broken only after more than b queries
        robust = final_ok | (broke & ~within & clean_ok)
        accs.append(round(float(robust.double().sum()) / n, 6))
        rates.append(round(float(within.double().sum()) / attacked, 6))
    qs = q[broke].double()
    return QueryCurve(
        attack=result.attack,
        norm=result.norm,
        eps=float(result.eps) if result.eps is not None else None,  # type: ignore[arg-type]
        queries=grid,
        robust_accuracy=accs,
        success_rate=rates,
        n=result.n,
        median_queries_successful=float(qs.median()) if qs.numel() else None,
    )


def robustness_curve(
    model: nn.Module,
    data: Any,
    attack: str | type[Attack] = "pgd",
    eps: Sequence[float] = (0.0, 0.05, 0.1, 0.2, 0.3),
    *,
    batch_size: int = 256,
    limit: int | None = None,
    **attack_kwargs: Any,
) -> RobustnessCurve:
    """Accuracy under ``attack`` for each eps.

    Args:
        model: the model (logits).
        data: an ``(x, y)`` pair, a Dataset or a DataLoader.
        attack: registry name or Attack class.
        eps: radii to evaluate (sorted here).
        batch_size: batch size of the attack runs.
        limit: use at most this many examples.
        **attack_kwargs: hyperparameters of the attack (not ``eps``).

    Example:
        >>> import torch
        >>> from xrobust.attacks.evaluation import robustness_curve
        >>> m = torch.nn.Linear(3, 2)
        >>> robustness_curve(m, (torch.rand(4, 3), torch.tensor([0, 1, 0, 1])), "fgsm", eps=[0.1]).n
        4
    """
    eps_list = _check_eps_grid(eps, attack_kwargs)
    cls = _attack_cls(attack)
    t0 = time.perf_counter()
    x, y = _tensors(data, limit)
    robust: torch.Tensor | None = None
    accs: list[float] = []
    queries: list[dict[str, float]] = []
    res: AttackResult | None = None
    for e in eps_list:
        res = cls(model, eps=e, **attack_kwargs).run_loader((x, y), batch_size=batch_size)
        ok = (res.pred_adv == res.y).cpu()
        robust = ok if robust is None else robust & ok
        accs.append(float(robust.float().mean()))
        qs = query_summary(res.queries)
        if qs is not None:
            queries.append(qs)
    assert res is not None
    cfg = {k: v for k, v in res.config.items() if k != "eps"}
    return RobustnessCurve(
        attack=cls.name,
        norm=res.norm,
        eps=eps_list,
        robust_accuracy=accs,
        clean_accuracy=res.clean_accuracy,
        n=int(y.shape[0]),
        config=cfg,
        time_s=time.perf_counter() - t0,
        queries=queries if len(queries) == len(eps_list) else None,
    )


def _check_eps_grid(eps: Sequence[float], attack_kwargs: dict[str, Any]) -> list[float]:
    if "eps" in attack_kwargs:
        raise ConfigError("pass the radii as eps=[...], not as an attack option")
    eps_list = sorted(float(e) for e in eps)
    if not eps_list:
        raise ConfigError("robustness_curve needs at least one eps")
    if eps_list[0] < 0:
        raise ConfigError(f"eps values must be >= 0, got {eps_list[0]}")
    return eps_list


@dataclass
class MinimalPerturbation:
    """Smallest eps (per example) at which the attack fooled the model, by bisection.

    Attributes:
        eps: per example, the smallest radius found (0 for examples misclassified clean,
            ``inf`` where even ``eps_max`` failed); exact within ``tolerance``.
        x_adv: an adversarial at that radius (the clean input where none was found).
        found: per example, whether an adversarial was found within ``eps_max``.
        clean_wrong: per example, whether it was misclassified before any attack (None:
            not recorded; then an ``eps`` of exactly 0 is taken to mean it).
        partial: a run stopped early (the classifier's query budget ran out): examples
            not broken may not have been searched; ``stop_reason`` says where.

    The summary (:meth:`to_dict`) is over the examples that were correct to begin with:
    an example never broken within ``eps_max`` counts as "above eps_max", so the median
    reads ``> eps_max`` when fewer than half were broken; examples misclassified clean
    are counted apart, never as distance 0.
    """

    attack: str
    norm: str
    eps: torch.Tensor
    x_adv: torch.Tensor
    found: torch.Tensor
    eps_max: float
    tolerance: float
    clean_wrong: torch.Tensor | None = None
    partial: bool = False
    stop_reason: str | None = None

    def misclassified_clean(self) -> torch.Tensor:
        """Per example, whether it was wrong before any attack."""
        if self.clean_wrong is not None:
            return self.clean_wrong.cpu().bool()
        return self.found.cpu().bool() & (self.eps.cpu() == 0)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary over the initially correct examples: the median radius (None
        with ``median_above_eps_max`` True when it lies beyond ``eps_max``), the fraction
        broken within ``eps_max``, the mean over those broken; per example ``eps`` (None
        where not broken or wrong clean) and ``outcome`` ("broken", "not_broken" or
        "misclassified_clean")."""
        eps = self.eps.detach().cpu().double()
        found = self.found.cpu().bool()
        wrong = self.misclassified_clean()
        attacked = ~wrong
        radii = torch.where(found & attacked, eps, torch.full_like(eps, math.inf))[attacked]
        n_att = int(attacked.sum())
        broken = found & attacked
        if n_att:
            med = float(radii.sort().values[(n_att - 1) // 2])
        else:
            med = math.nan
        above = n_att > 0 and not math.isfinite(med)
        outcome = [
            "misclassified_clean" if w else ("broken" if f else "not_broken")
            for w, f in zip(wrong.tolist(), found.tolist())
        ]
        return {
            "attack": self.attack,
            "norm": self.norm,
            "eps_max": self.eps_max,
            "tolerance": self.tolerance,
            "partial": self.partial,
            **({"stop_reason": self.stop_reason} if self.stop_reason else {}),
            "n": int(eps.shape[0]),
            "n_attacked": n_att,
            "n_misclassified_clean": int(wrong.sum()),
            "found_fraction": float(broken.sum()) / n_att if n_att else 0.0,
            "median_eps": med if n_att and math.isfinite(med) else None,
            "median_above_eps_max": above,
            "median_text": (
                "n/a (no example was correct clean)"
                if not n_att
                else (f"> {self.eps_max:g}" if above else f"{med:.4g}")
            ),
            "mean_eps": float(eps[broken].mean()) if bool(broken.any()) else None,
            "eps": [
                float(e) if (o == "broken" and math.isfinite(float(e))) else None
                for e, o in zip(eps.tolist(), outcome)
            ],
            "outcome": outcome,
        }


def minimal_perturbation(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    attack: str | type[Attack] = "pgd",
    *,
    eps_max: float = 0.3,
    bisection_steps: int = 8,
    **attack_kwargs: Any,
) -> MinimalPerturbation:
    """Per-example minimal adversarial radius by bisection over eps.

    Every bisection round runs the attack once on the unsettled examples with a
    per-example eps; the answer is within ``eps_max / 2**bisection_steps``. A
    minimum-norm attack (``minimizes_norm = True``: ``fab``, ``fab_t``) runs once instead,
    with ``early_stop=False``, and each example's answer is the norm of the smallest
    adversarial it found (``tolerance`` 0, ``bisection_steps`` unused).

    Example:
        >>> import torch
        >>> from xrobust.attacks.evaluation import minimal_perturbation
        >>> m = torch.nn.Linear(2, 2)
        >>> r = minimal_perturbation(m, torch.rand(3, 2), torch.tensor([0, 1, 0]), "fgsm", eps_max=1.0)
        >>> r.eps.shape
        torch.Size([3])
    """
    if "eps" in attack_kwargs:
        raise ConfigError("minimal_perturbation searches eps itself; pass eps_max instead")
    if not eps_max > 0:
        raise ConfigError(f"eps_max must be > 0, got {eps_max}")
    if bisection_steps < 1:
        raise ConfigError(f"bisection_steps must be >= 1, got {bisection_steps}")
    cls = _attack_cls(attack)
    if getattr(cls, "minimizes_norm", False):
        return _minimal_from_one_run(cls, model, x, y, eps_max, attack_kwargs)
    atk = cls(model, eps=eps_max, **attack_kwargs)
    stops: list[str] = []
    fooled, already, eps_found, x_best = _first_run(atk, x, y, lambda res: eps_max, stops)
    if not stops:
        _bisect(atk, x, y, fooled & ~already, eps_found, x_best, eps_max, bisection_steps, stops)
    tol = float(eps_max) / 2**bisection_steps
    return _answer(atk, eps_found, x_best, eps_max, tol, already, stops)


def _first_run(
    atk: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    radius: Callable[[Any], Any],
    stops: list[str],
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One run at ``eps_max``: (fooled, already wrong, each example's radius so far, its
    best input). A fooled example's radius is ``radius(result)`` (per example or one
    number), an already wrong one's 0, the others' inf."""
    res = atk.run(x, y)
    _note_stop(stops, res)
    fooled, already = res.success.cpu(), (res.pred_clean != res.y).cpu()
    eps_found = torch.full((x.shape[0],), float("inf"))
    r = radius(res)
    eps_found[fooled] = r[fooled] if isinstance(r, torch.Tensor) else r
    eps_found[already] = 0.0
    x_best = x.detach().clone()
    x_best[fooled.to(x.device)] = res.x_adv[fooled.to(x.device)].to(x.dtype)
    return fooled, already, eps_found, x_best


def _note_stop(stops: list[str], res: Any) -> None:
    """Record in ``stops`` (for :func:`_answer`) that a run stopped early."""
    if getattr(res, "partial", False):
        stops.append(res.stop_reason or "stopped early")


def _answer(
    atk: Attack,
    eps_found: torch.Tensor,
    x_best: torch.Tensor,
    eps_max: float,
    tolerance: float,
    clean_wrong: torch.Tensor,
    stops: list[str],
) -> MinimalPerturbation:
    return MinimalPerturbation(
        attack=atk.name,
        norm=atk.norm.name,
        eps=eps_found,
        x_adv=x_best,
        found=torch.isfinite(eps_found),
        eps_max=float(eps_max),
        tolerance=tolerance,
        clean_wrong=clean_wrong.cpu().bool(),
        partial=bool(stops),
        stop_reason=stops[0] if stops else None,
    )


def _minimal_from_one_run(
    cls: type[Attack],
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps_max: float,
    attack_kwargs: dict[str, Any],
) -> MinimalPerturbation:
    """A minimum-norm attack (``minimizes_norm``, e.g. FAB) needs no bisection: one run
    with the full budget (``early_stop=False`` unless given) at ``eps_max`` returns each
    example's smallest adversarial, whose norm is the answer (``tolerance`` 0: the norm
    of an adversarial actually found, an upper bound on the true minimum)."""
    atk = cls(model, eps=eps_max, **{"early_stop": False, **attack_kwargs})
    stops: list[str] = []
    radius = lambda res: res.norms.cpu().float()  # noqa: E731
    _, already, eps_found, x_best = _first_run(atk, x, y, radius, stops)
    return _answer(atk, eps_found, x_best, eps_max, 0.0, already, stops)


def _bisect(
    atk: Attack,
    x: torch.Tensor,
    y: torch.Tensor,
    todo: torch.Tensor,
    eps_found: torch.Tensor,
    x_best: torch.Tensor,
    eps_max: float,
    rounds: int,
    stops: list[str],
) -> None:
    """Halve each unsettled example's interval ``rounds`` times (in place): one attack
    run per round on those examples, each at the middle of its own interval."""
    lo = torch.zeros(x.shape[0])
    hi = torch.full((x.shape[0],), float(eps_max))
    for _ in range(rounds):
        idx = todo.nonzero().squeeze(1)
        if idx.numel() == 0:
            return
        mid = (lo[idx] + hi[idx]) / 2
        sub = atk.run(x[idx.to(x.device)], y[idx.to(y.device)], eps=mid)
        _note_stop(stops, sub)
        if getattr(sub, "partial", False):
            return  # the budget ran out: what is settled stays, the rest is not searched
        ok = sub.success.cpu()
        gi = idx[ok]
        hi[gi] = mid[ok]
        eps_found[gi] = mid[ok]
        x_best[gi.to(x.device)] = sub.x_adv[ok.to(sub.x_adv.device)]
        lo[idx[~ok]] = mid[~ok]


@dataclass
class PerClassAccuracy:
    """Clean and robust accuracy per true class (None for classes with no example)."""

    classes: list[int]
    count: list[int]
    clean_accuracy: list[float | None]
    robust_accuracy: list[float | None]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {
            "classes": self.classes,
            "count": self.count,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
        }


def _num_classes(result: AttackResult, num_classes: int | None) -> int:
    if num_classes is not None:
        return int(num_classes)
    return int(max(result.y.max(), result.pred_clean.max(), result.pred_adv.max())) + 1


def per_class_accuracy(result: AttackResult, num_classes: int | None = None) -> PerClassAccuracy:
    """Clean and robust accuracy for each true class of an attack result.

    Example:
        >>> import torch
        >>> from xrobust.attacks import FGSM
        >>> from xrobust.attacks.evaluation import per_class_accuracy
        >>> r = FGSM(torch.nn.Linear(2, 2), eps=0.1).run(torch.rand(4, 2), torch.tensor([0, 1, 0, 1]))
        >>> per_class_accuracy(r).count
        [2, 2]
    """
    c = _num_classes(result, num_classes)
    y, pc, pa = result.y.cpu(), result.pred_clean.cpu(), result.pred_adv.cpu()
    count, clean, robust = [], [], []
    for k in range(c):
        m = y == k
        nk = int(m.sum())
        count.append(nk)
        clean.append(float((pc[m] == k).float().mean()) if nk else None)
        robust.append(float((pa[m] == k).float().mean()) if nk else None)
    return PerClassAccuracy(list(range(c)), count, clean, robust)


@dataclass
class ConfusionMatrix:
    """``matrix[i][j]``: examples predicted ``i`` on the clean input and ``j`` under attack."""

    matrix: list[list[int]]
    labels: list[int]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        return {"matrix": self.matrix, "labels": self.labels}


def adversarial_confusion(result: AttackResult, num_classes: int | None = None) -> ConfusionMatrix:
    """Confusion of clean against adversarial predictions.

    Example:
        >>> import torch
        >>> from xrobust.attacks import FGSM
        >>> from xrobust.attacks.evaluation import adversarial_confusion
        >>> r = FGSM(torch.nn.Linear(2, 2), eps=0.1).run(torch.rand(4, 2), torch.tensor([0, 1, 0, 1]))
        >>> sum(map(sum, adversarial_confusion(r, 2).matrix))
        4
    """
    c = _num_classes(result, num_classes)
    idx = result.pred_clean.cpu() * c + result.pred_adv.cpu()
    m = torch.bincount(idx, minlength=c * c).reshape(c, c)
    return ConfusionMatrix(m.tolist(), list(range(c)))
