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

from xrobust.attacks.apgd import run_restarts
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
        for rank in range(2, min(c.n_target_classes, num_classes - 1) + 2):
            if not bool(rows.any()):
                break
            tgt = order[:, -rank]
            cur = run_restarts(ctx, x, y, eps, rows, c.restarts, None, loss_target=tgt, **kw)
            res.steps[rows] += cur.steps[rows]
            won = rows & (cur.pred >= 0) & (cur.pred != y)
            first = rows & (res.pred < 0)
            take = won | first
            res.x_adv[take] = cur.x_adv[take]
            res.pred[take] = cur.pred[take]
            rows = rows & ~won
        return res
