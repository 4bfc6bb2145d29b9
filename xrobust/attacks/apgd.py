"""Auto-PGD (APGD) with the cross-entropy (or DLR) loss.

Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", arXiv:2003.01690. Norms linf and l2; inputs (N, ...)
within ``bounds``; the model returns logits (N, C).

The algorithm follows the reference implementation (fra31/auto-attack, APGD for linf/l2):
random start on the surface of the ball, initial step size 2*eps, momentum 0.75,
checkpoints after 22% of the iterations then every 3% fewer (at least 6%), halving the
step size of an example at a checkpoint when its loss increased in at most rho=75% of
the steps since the last checkpoint, or when the best loss did not improve and the step
was not reduced at the previous checkpoint; after a reduction the iterate restarts from
the best point. Default budget: 100 iterations (the reference's, where torchattacks
silently uses 10). Each example keeps the worst case found; evaluation mode drops an
example from the batch once it is fooled, which changes nothing for the others (every
quantity of the algorithm is per example).

Example:
    >>> import torch
    >>> from xrobust.attacks import APGD
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
    >>> res = APGD(model, eps=0.1, steps=10, seed=0).run(torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 3]))
    >>> bool(res.norms.max() <= 0.1 + 1e-6)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xrobust.attacks import _functional as F
from xrobust.attacks.base import (
    Attack,
    AttackConfig,
    _check_positive_int,
    _Context,
    _Perturbed,
)
from xrobust.errors import ConfigError

__all__ = ["APGD", "APGDConfig", "apgd_iterate"]


@dataclass(frozen=True)
class APGDConfig(AttackConfig):
    """APGD hyperparameters (see :class:`AttackConfig` for the shared ones).

    Attributes:
        steps: iterations per restart (reference: 100).
        restarts: runs from new random starts, each on the examples still unbroken.
        loss: "ce" (APGD-CE) or "dlr" (untargeted DLR, needs >= 3 classes).
        rho: oscillation threshold of the step-size rule (reference: 0.75).
        momentum: weight of the new step against the previous move (reference: 0.75).
    """

    steps: int = 100
    restarts: int = 1
    loss: str = "ce"
    rho: float = 0.75
    momentum: float = 0.75

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive_int("steps", self.steps)
        _check_positive_int("restarts", self.restarts)
        if self.loss not in ("ce", "dlr"):
            raise ConfigError(f"unknown APGD loss {self.loss!r}; expected 'ce' or 'dlr'")
        if not 0.0 < float(self.rho) <= 1.0:
            raise ConfigError(f"rho must be in (0, 1], got {self.rho!r}")
        if not 0.0 < float(self.momentum) <= 1.0:
            raise ConfigError(f"momentum must be in (0, 1], got {self.momentum!r}")


def _surface_start(
    x: torch.Tensor,
    eps: torch.Tensor,
    norm: str,
    bounds: tuple[float, float] | None,
    gen: torch.Generator,
) -> torch.Tensor:
    """The reference's random start: a random direction scaled to the ball's surface."""
    e = eps.reshape(-1, *([1] * (x.dim() - 1)))
    if norm == "linf":
        t = 2 * torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) - 1
        t = t / t.reshape(t.shape[0], -1).abs().amax(1).clamp_min(1e-12).reshape(e.shape)
    else:
        t = F.normalize(torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype), "l2")
    out = x + e * t
    return out.clamp(bounds[0], bounds[1]) if bounds is not None else out


def apgd_iterate(
    ctx: _Context,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    active: torch.Tensor,
    *,
    steps: int,
    norm: str,
    bounds: tuple[float, float] | None,
    loss: str,
    rho: float,
    momentum: float,
    early_stop: bool,
    loss_target: torch.Tensor | None = None,
    goal_target: torch.Tensor | None = None,
    group: torch.Tensor | None = None,
) -> _Perturbed:
    """One APGD run over the active rows of a full batch.

    ``loss_target`` is the class pulled towards by a targeted loss (APGD-T), and
    ``goal_target`` the class that counts as success (None: any wrong class). Rows sharing
    a ``group`` id are copies of one example (APGD-T runs its targets side by side): in
    evaluation mode, once one copy succeeds the others stop too. Returns the
    first (evaluation mode) or last (fixed budget) fooling iterate of broken examples and
    the highest-loss iterate of the others.
    """
    n = x.shape[0]
    dev = x.device
    out_x = x.clone()
    out_pred = torch.full((n,), -1, dtype=torch.long, device=dev)
    out_steps = torch.zeros(n, dtype=torch.long, device=dev)
    start = _surface_start(x, eps, norm, bounds, ctx.generator)
    idx = active.nonzero().squeeze(1)
    if idx.numel() == 0:
        return _Perturbed(out_x, out_pred, out_steps)

    # per-example state of the active rows
    xc, ya, ea = x[idx], y[idx], eps[idx]
    lt = None if loss_target is None else loss_target[idx]
    gt = None if goal_target is None else goal_target[idx]
    gr = None if group is None else group[idx]
    n_groups = int(group.max()) + 1 if group is not None and group.numel() else 0
    xa = start[idx].detach()
    if norm == "linf":
        lo, hi = F.ball_bounds(xc, ea, bounds)

    def loss_grad(xin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xin = xin.detach().requires_grad_(True)
        with torch.enable_grad():
            logits = ctx.forward(xin)
            lv = F.per_example_loss(loss, logits, ya, lt)
            g = ctx.grad(lv.sum(), xin)
        return logits.detach(), lv.detach(), g

    def proj(z: torch.Tensor) -> torch.Tensor:
        if norm == "linf":
            return torch.clamp(z, lo, hi)
        return F.clip_to_ball_and_bounds(z, xc, ea, norm, bounds)

    state: dict[str, torch.Tensor] = {}

    def select(keep: torch.Tensor) -> None:
        nonlocal idx, xc, ya, ea, lt, gt, gr, lo, hi
        idx, xc, ya, ea = idx[keep], xc[keep], ya[keep], ea[keep]
        gr = None if gr is None else gr[keep]
        lt = None if lt is None else lt[keep]
        gt = None if gt is None else gt[keep]
        if norm == "linf":
            lo, hi = lo[keep], hi[keep]
        for k in state:
            state[k] = state[k][keep]

    if norm != "linf":
        lo = hi = xc  # unused placeholders for the closure

    # fixed-budget bookkeeping: the latest fooling iterate per example
    found = torch.zeros(n, dtype=torch.bool, device=dev)

    def record(done: torch.Tensor, xin: torch.Tensor, pred: torch.Tensor, t: int) -> None:
        gi = idx[done]
        if early_stop:
            out_x[gi] = xin[done]
            out_pred[gi] = pred[done]
            out_steps[gi] = t
        else:
            out_x[gi] = xin[done]
            out_pred[gi] = pred[done]
            found[gi] = True

    def siblings(done: torch.Tensor) -> torch.Tensor:
        """``done`` widened to every active copy of an example that one copy broke."""
        if gr is None:
            return done
        hit = torch.zeros(n_groups, dtype=torch.bool, device=dev)
        hit[gr[done]] = True
        return hit[gr]

    logits, lv, g = loss_grad(xa)
    pred = logits.argmax(1)
    done = ctx.is_success(pred, ya, gt)
    state.update(
        xa=xa,
        g=g,
        x_best=xa.clone(),
        g_best=g.clone(),
        loss_best=lv.clone(),
        loss_prev=torch.zeros_like(lv),
        inc=torch.zeros_like(lv),
        reduced=torch.ones_like(lv, dtype=torch.bool),
        loss_best_last=lv.clone(),
        step=2.0 * ea,
        x_old=xa.clone(),
    )
    if bool(done.any()):
        record(done, xa, pred, 0)
        if early_stop:
            select(~siblings(done))
    k = max(int(0.22 * steps), 1)
    k_min = max(int(0.06 * steps), 1)
    k_decr = max(int(0.03 * steps), 1)
    counter = 0
    for i in range(steps):
        if idx.numel() == 0:
            break
        s = state
        with torch.no_grad():
            a = momentum if i > 0 else 1.0
            xa = s["xa"]
            move = xa - s["x_old"]
            s["x_old"] = xa
            stp = s["step"].reshape(-1, *([1] * (xa.dim() - 1)))
            z = proj(F.gradient_step(xa, s["g"], stp, norm))
            xa = proj(xa + (z - xa) * a + move * (1 - a))
        logits, lv, g = loss_grad(xa)
        pred = logits.argmax(1)
        done = ctx.is_success(pred, ya, gt)
        s["xa"], s["g"] = xa, g
        if bool(done.any()):
            record(done, xa, pred, i + 1)
            if early_stop:
                keep = ~siblings(done)
                select(keep)
                lv = lv[keep]
                if idx.numel() == 0:
                    break
        s = state
        with torch.no_grad():
            better = lv > s["loss_best"]
            bm = better.reshape(-1, *([1] * (xa.dim() - 1)))
            s["x_best"] = torch.where(bm, s["xa"], s["x_best"])
            s["g_best"] = torch.where(bm, s["g"], s["g_best"])
            s["loss_best"] = torch.where(better, lv, s["loss_best"])
            s["inc"] = s["inc"] + (lv > s["loss_prev"]).to(lv.dtype)
            s["loss_prev"] = lv
            counter += 1
            if counter == k:
                osc = s["inc"] <= k * rho
                no_impr = (~s["reduced"]) & (s["loss_best_last"] >= s["loss_best"])
                fl = osc | no_impr
                s["reduced"] = fl
                s["loss_best_last"] = s["loss_best"].clone()
                if bool(fl.any()):
                    s["step"] = torch.where(fl, s["step"] / 2.0, s["step"])
                    fm = fl.reshape(-1, *([1] * (xa.dim() - 1)))
                    s["xa"] = torch.where(fm, s["x_best"], s["xa"])
                    s["g"] = torch.where(fm, s["g_best"], s["g"])
                k = max(k - k_decr, k_min)
                counter = 0
                s["inc"] = torch.zeros_like(s["inc"])
    # examples never fooled (evaluation mode: still active; fixed: not found)
    if early_stop:
        rest = idx
        out_x[rest] = state["x_best"]
        out_steps[rest] = steps
        if goal_target is None:
            out_pred[rest] = y[rest]  # every evaluated iterate was classified as y
    else:
        out_steps[idx] = steps
        rest_mask = torch.zeros(n, dtype=torch.bool, device=dev)
        rest_mask[idx] = True
        rest_mask &= ~found
        pos = rest_mask[idx]
        out_x[idx[pos]] = state["x_best"][pos]
        if goal_target is None:
            out_pred[idx[pos]] = y[idx[pos]]
    return _Perturbed(out_x, out_pred, out_steps)


def run_restarts(
    ctx: _Context,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: torch.Tensor,
    active: torch.Tensor,
    restarts: int,
    goal_target: torch.Tensor | None,
    **kw: object,
) -> _Perturbed:
    """Run ``apgd_iterate`` ``restarts`` times, each on the rows still unbroken, merging
    the broken ones (the reference's ``perturb``)."""
    n = x.shape[0]
    res = _Perturbed(
        x.clone(),
        torch.full((n,), -1, dtype=torch.long, device=x.device),
        torch.zeros(n, dtype=torch.long, device=x.device),
    )
    rows = active.clone()
    for _ in range(restarts):
        if not bool(rows.any()):
            break
        cur = apgd_iterate(ctx, x, y, eps, rows, goal_target=goal_target, **kw)  # type: ignore[arg-type]
        res.steps[rows] += cur.steps[rows]
        known = rows & (cur.pred >= 0)
        won = known & ctx.is_success(cur.pred, y, goal_target)
        first = rows & (res.pred < 0)
        # broken rows take their adversarial; unbroken rows keep the latest best-loss point
        take = won | first
        res.x_adv[take] = cur.x_adv[take]
        res.pred[take] = cur.pred[take]
        rows = rows & ~won
    return res


class APGD(Attack):
    """APGD-CE (or APGD-DLR), untargeted; with ``target`` it pulls towards that class.

    Croce and Hein, arXiv:2003.01690; reference defaults (100 iterations, rho 0.75,
    momentum 0.75, initial step 2*eps).

    Example:
        >>> import torch
        >>> from xrobust.attacks import APGD
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> APGD(model, eps=0.1, steps=5, seed=0).run(torch.rand(3, 4), torch.tensor([0, 1, 2])).n
        3
    """

    name = "apgd"
    config_cls = APGDConfig
    config: APGDConfig

    def _perturb(
        self,
        ctx: _Context,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        eps: torch.Tensor,
        active: torch.Tensor,
    ) -> _Perturbed:
        c = self.config
        loss = c.loss
        if loss == "dlr" and target is not None:
            loss = "ce"  # the targeted DLR needs the reference's top-k targets: see APGDT
        return run_restarts(
            ctx,
            x,
            y,
            eps,
            active,
            c.restarts,
            target,
            steps=c.steps,
            norm=c.norm,
            bounds=c.bounds,
            loss=loss,
            rho=c.rho,
            momentum=c.momentum,
            early_stop=c.early_stop,
            loss_target=target,
        )

    @property
    def min_classes(self) -> int:  # type: ignore[override]
        return 3 if self.config.loss == "dlr" else 2
