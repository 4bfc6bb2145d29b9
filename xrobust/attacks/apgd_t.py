"""Targeted APGD with the DLR loss (APGD-T), as in AutoAttack's standard version.

Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", arXiv:2003.01690. For each of the ``n_target_classes``
classes ranked 2nd, 3rd, ... by the clean logits, run APGD on the targeted DLR loss
``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` over the examples still robust. The
goal is untargeted (any wrong class counts); with an explicit ``target`` in ``run`` a
single targeted DLR run towards it is made and success means reaching it. Norms linf/l2;
inputs (N, ...) in ``bounds``; at least 4 classes. Reference defaults: 100 iterations,
9 target classes, rho 0.75, momentum 0.75. Registered as ``apgd_t`` (``"apgd-t"`` works).

Example:
    >>> import torch
    >>> from xrobust.attacks import APGDT
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5))
    >>> res = APGDT(model, eps=0.1, steps=5, n_target_classes=2, seed=0).run(
    ...     torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 3]))
    >>> bool(res.norms.max() <= 0.1 + 1e-6)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xrobust.attacks.apgd import apgd_iterate, run_restarts
from xrobust.attacks.base import (
    Attack,
    AttackConfig,
    _check_positive_int,
    _Context,
    _Perturbed,
)
from xrobust.errors import ConfigError

__all__ = ["APGDT", "APGDTConfig"]


@dataclass(frozen=True)
class APGDTConfig(AttackConfig):
    """APGD-T hyperparameters (see :class:`AttackConfig` for the shared ones).

    Attributes:
        steps: iterations per target class and restart (reference: 100).
        n_target_classes: how many top-ranked wrong classes to target (reference: 9;
            capped at C - 1).
        restarts: runs per target class from new random starts.
        rho / momentum: APGD's step-size rule threshold and momentum (0.75 each).
    """

    steps: int = 100
    n_target_classes: int = 9
    restarts: int = 1
    rho: float = 0.75
    momentum: float = 0.75

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive_int("steps", self.steps)
        _check_positive_int("n_target_classes", self.n_target_classes)
        _check_positive_int("restarts", self.restarts)
        if not 0.0 < float(self.rho) <= 1.0:
            raise ConfigError(f"rho must be in (0, 1], got {self.rho!r}")
        if not 0.0 < float(self.momentum) <= 1.0:
            raise ConfigError(f"momentum must be in (0, 1], got {self.momentum!r}")


class APGDT(Attack):
    """APGD on the targeted DLR loss over the top wrong classes (AutoAttack's APGD-T).

    Example:
        >>> import torch
        >>> from xrobust.attacks import get_attack
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 6))
        >>> get_attack("apgd-t", model, eps=0.1, steps=3).name
        'apgd_t'
    """

    name = "apgd_t"
    config_cls = APGDTConfig
    config: APGDTConfig
    min_classes = 4

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
        kw = dict(
            steps=c.steps,
            norm=c.norm,
            bounds=c.bounds,
            loss="dlr",
            rho=c.rho,
            momentum=c.momentum,
            early_stop=c.early_stop,
        )
        if target is not None:
            return run_restarts(
                ctx, x, y, eps, active, c.restarts, target, loss_target=target, **kw
            )
        n = x.shape[0]
        res = _Perturbed(
            x.clone(),
            torch.full((n,), -1, dtype=torch.long, device=x.device),
            torch.zeros(n, dtype=torch.long, device=x.device),
        )
        rows = active.clone()
        if not bool(rows.any()):
            return res
        with torch.no_grad():
            order = torch.full((n, 1), 0, dtype=torch.long, device=x.device)
            logits = ctx.forward(x[rows])
            ranked = logits.argsort(dim=1)
            order = torch.zeros((n, ranked.shape[1]), dtype=torch.long, device=x.device)
            order[rows] = ranked
        num_classes = order.shape[1]
        n_t = min(c.n_target_classes, num_classes - 1)
        # every target class side by side (one batch of n_t copies of each example): the
        # same per-example runs as the reference's loop over targets, far fewer small
        # batches; in evaluation mode an example stops once any of its targets breaks it
        rows_idx = rows.nonzero().squeeze(1)
        m = rows_idx.numel()
        rep_idx = rows_idx.repeat(n_t)
        tgt = torch.cat([order[rows_idx, -rank] for rank in range(2, n_t + 2)])
        group = torch.arange(m, device=x.device).repeat(n_t)
        for _ in range(c.restarts):
            if m == 0:
                break
            cur = apgd_iterate(
                ctx,
                x[rep_idx],
                y[rep_idx],
                eps[rep_idx],
                torch.ones(rep_idx.numel(), dtype=torch.bool, device=x.device),
                loss_target=tgt,
                group=group,
                **kw,  # type: ignore[arg-type]
            )
            won_rep = (cur.pred >= 0) & (cur.pred != y[rep_idx])
            # per example: steps summed over its copies; first winning copy (lowest rank)
            steps = torch.zeros(n, dtype=torch.long, device=x.device)
            steps.index_add_(0, rep_idx, cur.steps)
            res.steps += steps
            for k in range(n_t - 1, -1, -1):  # lowest rank written last wins
                sl = slice(k * m, (k + 1) * m)
                ex = rep_idx[sl]
                w = won_rep[sl]
                first = res.pred[ex] < 0
                take = w | (first & (k == 0))
                res.x_adv[ex[take]] = cur.x_adv[sl][take]
                res.pred[ex[take]] = cur.pred[sl][take]
            won_ex = torch.zeros(n, dtype=torch.bool, device=x.device)
            won_ex[rep_idx[won_rep]] = True
            keep_rows = ~won_ex[rows_idx]
            rows_idx = rows_idx[keep_rows]
            m = rows_idx.numel()
            keep_rep = keep_rows.repeat(n_t)
            rep_idx, tgt = rep_idx[keep_rep], tgt[keep_rep]
            group = torch.arange(m, device=x.device).repeat(n_t)
        return res
