"""FAB, the fast adaptive boundary attack, untargeted (``fab``) and targeted (``fab_t``).

Croce and Hein, "Minimally distorted adversarial examples with a fast adaptive boundary
attack", arXiv:1907.02044. A minimum-norm attack: at the current iterate it linearises
the decision boundary between the true class and one other class (a hyperplane), then
moves to the convex combination of two projections onto that hyperplane intersected with
the input box, one from the iterate and one from the clean input, biased towards the
clean input (``alpha <= alpha_max``) and extrapolated by ``eta``. Once an iterate is
adversarial it is pulled back towards the clean input by ``beta``, so the attack keeps
shrinking the smallest adversarial it has found. Norms linf and l2; inputs (N, ...) in
``bounds`` (or unbounded); any number of classes >= 2.

* ``fab``: the hyperplane of the closest linearised boundary among all other classes,
  from the whole Jacobian (the C class gradients come from one batched backward pass
  over C copies of the rows, so ``gradient_passes`` counts C per row and iteration).
* ``fab_t`` (FAB-T, as in AutoAttack's standard version; :mod:`xrobust.attacks.fab_t`): the boundary towards one target
  class at a time, the classes ranked 2nd, 3rd, ... by the clean logits
  (``n_target_classes`` of them, 9 in the reference), each run on the examples still
  robust; one gradient pass per row and iteration. Any wrong class counts as success.
  With an explicit ``target`` in ``run`` both variants pull towards it and success means
  reaching it.

Reference settings (AutoAttack's standard FAB-T): 100 iterations, one run per target
class from the clean input (``restarts=1``; later restarts start at a random point at
radius ``eps / 2``), ``alpha_max=0.1``, ``eta=1.05``, ``beta=0.9``.

With an ``eps`` an example counts as broken when an adversarial within ``eps`` was found;
``x_adv`` is then the smallest adversarial found (inside the ball), and the clean input
otherwise. Budget modes: in evaluation mode (``early_stop=True``) an example stops as
soon as its smallest adversarial is within ``eps``; with ``early_stop=False`` every
example gets every iteration, so its adversarial is as small as the attack can make it.

Minimal perturbations: run with ``early_stop=False`` and ``eps`` as large as the threat
model allows (the largest radius of interest); then ``result.norms[result.success]`` are
the per-example minimal norms found, and 0 for examples misclassified clean.
:func:`xrobust.attacks.evaluation.minimal_perturbation` does exactly this for attacks
with ``minimizes_norm = True`` (one run instead of a bisection over eps).

Precision: FAB always searches in fp32 (``reduced_precision_search = False``; its result
says ``precision="fp32"`` whatever was asked). Its iterates end on the decision boundary,
where a bf16 forward decides the side with 8 mantissa bits: with bf16 steps and every
crossing confirmed in fp32, 9 more of 48 digits stayed robust at Linf 0.1 than in fp32.

Example:
    >>> import torch
    >>> from xrobust.attacks import get_attack
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5))
    >>> x, y = torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 3])
    >>> res = get_attack("fab_t", model, eps=0.3, steps=10, n_target_classes=2).run(x, y)
    >>> bool(res.norms.max() <= 0.3 + 1e-6)
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from xrobust.attacks.base import Attack
from xrobust.attacks.config import (
    AttackConfig,
    check_fraction,
    check_positive_int,
    check_positive_number,
)
from xrobust.attacks.context import AttackContext, Batch, Outcome

__all__ = ["FAB", "FABConfig"]

_TINY = 1e-12


@dataclass(frozen=True)
class FABConfig(AttackConfig):
    """FAB hyperparameters (see :class:`AttackConfig` for the shared ones).

    Attributes:
        steps: iterations per run (reference: 100).
        restarts: runs per example (per target class for FAB-T); the first starts at the
            clean input, later ones at a random point at radius ``eps / 2``.
        alpha_max: largest weight of the projection from the clean input (0.1).
        eta: overshoot of each projection (1.05), so that iterates cross the boundary.
        beta: backward step towards the clean input after an adversarial iterate (0.9).
    """

    steps: int = 100
    restarts: int = 1
    alpha_max: float = 0.1
    eta: float = 1.05
    beta: float = 0.9

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("steps", self.steps)
        check_positive_int("restarts", self.restarts)
        object.__setattr__(self, "alpha_max", check_fraction("alpha_max", self.alpha_max))
        object.__setattr__(self, "eta", check_positive_number("eta", self.eta))
        object.__setattr__(self, "beta", check_fraction("beta", self.beta))


@dataclass
class _Best:
    """The smallest adversarial found per row."""

    x: torch.Tensor
    norm: torch.Tensor
    pred: torch.Tensor
    steps: torch.Tensor


class FAB(Attack):
    """Untargeted FAB: the closest linearised boundary among all classes.

    Example:
        >>> import torch
        >>> from xrobust.attacks import FAB
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> res = FAB(model, eps=1.0, norm="l2", steps=20).run(torch.rand(3, 4), torch.tensor([0, 1, 2]))
        >>> bool((res.norms <= 1.0 + 1e-6).all())
        True
    """

    name = "fab"
    config_cls: ClassVar[type[AttackConfig]] = FABConfig
    config: FABConfig
    #: a minimum-norm attack: with early_stop=False, ``norms`` of the successful rows are
    #: the smallest perturbations it found (see :func:`minimal_perturbation`)
    minimizes_norm: ClassVar[bool] = True
    #: boundary projections need fp32 decisions (see the module docstring)
    reduced_precision_search: ClassVar[bool] = False

    def perturb(self, ctx: AttackContext, batch: Batch) -> Outcome:
        logits = ctx.forward(batch.x, batch.origin)
        pred0 = logits.argmax(1)
        best = _Best(
            batch.x.clone(),
            torch.full((len(batch),), float("inf"), dtype=batch.x.dtype, device=batch.x.device),
            pred0.clone(),
            torch.zeros(len(batch), dtype=torch.long, device=batch.x.device),
        )
        already = ctx.is_success(pred0, batch.y, batch.target)
        best.norm[already] = 0.0
        for pull in self._pulls(ctx, batch, logits):
            for r in range(self.config.restarts):
                alive = ~(best.norm <= batch.eps)
                if not bool(alive.any()):
                    break
                pos = alive.nonzero().squeeze(1)
                sub = batch.select(pos)
                cur = self._descend(ctx, sub, None if pull is None else pull[pos], r)
                better = cur.norm < best.norm[pos]
                p = pos[better]
                best.x[p], best.norm[p], best.pred[p] = (
                    cur.x[better],
                    cur.norm[better],
                    cur.pred[better],
                )
                best.steps[pos] += cur.steps
        won = best.norm <= batch.eps
        out = Outcome.unchanged(batch.x)
        out.x_adv[won] = best.x[won]
        out.pred = torch.where(won, best.pred, pred0)
        out.steps = best.steps
        out.loss = torch.where(won, -best.norm, torch.full_like(best.norm, float("-inf")))
        return out

    # ------------------------------------------------------------------ pieces
    def _pulls(
        self, ctx: AttackContext, batch: Batch, logits: torch.Tensor
    ) -> list[torch.Tensor | None]:
        """The runs' hyperplane classes: None for the closest boundary (untargeted)."""
        return [None] if batch.target is None else [batch.target]

    def _hyperplane(
        self, ctx: AttackContext, batch: Batch, x: torch.Tensor, pull: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(f, g)``: the boundary linearised at ``x`` as ``f + g . (z - x) = 0``, with
        ``f > 0`` on the adversarial side."""
        if pull is not None:
            src = x.detach().requires_grad_(True)
            with torch.enable_grad():
                z = ctx.forward(src, batch.origin)
                rows = torch.arange(x.shape[0], device=x.device)
                f = z[rows, pull] - z[rows, batch.y]
                g = ctx.grad(f.sum(), src)
            return f.detach(), g
        return self._closest_boundary(ctx, batch, x)

    def _closest_boundary(
        self, ctx: AttackContext, batch: Batch, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The nearest linearised boundary over all classes: the Jacobian from one
        backward pass over C copies of the rows (copy c gives the gradient of logit c)."""
        m, c = x.shape[0], ctx.num_classes
        src = x.detach().repeat(c, *([1] * (x.dim() - 1))).requires_grad_(True)
        with torch.enable_grad():
            z = ctx.forward(src, batch.origin.repeat(c)).reshape(c, m, c)
            k = torch.arange(c, device=x.device)
            jac = ctx.grad(z[k, :, k].sum(), src).reshape(c, m, *x.shape[1:])
        z0 = z[0].detach()  # (m, c): every copy has the same logits
        rows = torch.arange(m, device=x.device)
        f_all = z0 - z0[rows, batch.y].unsqueeze(1)  # (m, c)
        g_all = jac - jac[batch.y, rows].unsqueeze(0)  # (c, m, ...)
        dual = self.norm.dual(g_all.reshape(c * m, -1)).reshape(c, m).T  # (m, c)
        dist = f_all.abs() / (dual + _TINY)
        dist[rows, batch.y] = float("inf")
        j = dist.argmin(1)
        return f_all[rows, j], g_all[j, rows]

    def _descend(
        self, ctx: AttackContext, sub: Batch, pull: torch.Tensor | None, restart: int
    ) -> _Best:
        """One FAB run on the rows of ``sub``: the smallest adversarial per row."""
        cfg, norm = self.config, self.norm
        x0 = sub.x
        m, shape = x0.shape[0], x0.shape[1:]
        if restart == 0:
            x1 = x0.clone()
        else:
            full = norm.surface_start(sub.full_x, sub.full_eps / 2, sub.bounds, ctx.generator)
            x1 = full[sub.idx].to(x0.dtype)
        best = _Best(
            x0.clone(),
            torch.full((m,), float("inf"), dtype=x0.dtype, device=x0.device),
            torch.full((m,), -1, dtype=torch.long, device=x0.device),
            torch.zeros(m, dtype=torch.long, device=x0.device),
        )
        live = torch.arange(m, device=x0.device)
        view = (-1, *([1] * len(shape)))
        for _ in range(cfg.steps):
            lb = sub.select(live)
            xl, x0l = x1[live], x0[live]
            pl = None if pull is None else pull[live]
            f, g = self._hyperplane(ctx, lb, xl, pl)
            k = xl.shape[0]
            w = g.reshape(k, -1)
            b = (w * xl.reshape(k, -1)).sum(1) - f
            d = norm.project_hyperplane(
                torch.cat((xl.reshape(k, -1), x0l.reshape(k, -1))),
                torch.cat((w, w)),
                torch.cat((b, b)),
                sub.bounds,
            )
            a = norm.measure(d).clamp_min(1e-8)
            alpha = (a[:k] / (a[:k] + a[k:])).clamp(0.0, cfg.alpha_max).reshape(view)
            d1, d2 = d[:k].reshape(xl.shape), d[k:].reshape(xl.shape)
            xn = (xl + cfg.eta * d1) * (1 - alpha) + (x0l + cfg.eta * d2) * alpha
            if sub.bounds is not None:
                xn = xn.clamp(sub.bounds[0], sub.bounds[1])
            pred = ctx.forward(xn, lb.origin).argmax(1)
            best.steps[live] += 1
            adv = ctx.confirm(xn, lb.origin, pred, lb)  # fp32 agrees (reduced precision)
            if bool(adv.any()):
                nrm = norm.measure(xn - x0l)
                better = adv & (nrm < best.norm[live])
                p = live[better]
                best.x[p], best.norm[p], best.pred[p] = xn[better], nrm[better], pred[better]
                xn[adv] = x0l[adv] + cfg.beta * (xn[adv] - x0l[adv])
            x1[live] = xn
            if cfg.early_stop:
                live = live[~(best.norm[live] <= lb.eps)]
                if live.numel() == 0:
                    break
        return best
