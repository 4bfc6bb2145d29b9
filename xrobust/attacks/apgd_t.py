"""Targeted APGD with the DLR loss (APGD-T), as in AutoAttack's standard version.

Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", arXiv:2003.01690. For each of the ``n_target_classes``
classes ranked 2nd, 3rd, ... by the clean logits, run APGD on the targeted DLR loss
``-(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2)`` over the examples still robust. The
goal is untargeted (any wrong class counts); with an explicit ``target`` in ``run`` a
single targeted DLR run towards it is made and success means reaching it. Norms linf/l2;
inputs (N, ...) in ``bounds``; at least 4 classes. Reference defaults: 100 iterations,
9 target classes, rho 0.75, momentum 0.75. Registered as ``apgd_t`` (``"apgd-t"`` works).

Layout: the reference runs one target class after another on the examples still robust.
Here several target classes run side by side as copies of each example (one batch), and
all copies of an example retire once any of them breaks it. How many side by side is
chosen by cost: ``max_rows`` caps the rows of a batch (on a CPU a forward+backward costs
more per example in very large batches; on a GPU larger batches are cheaper), so the
first targets usually run together and later ones, on the few survivors, together too.

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

from xrobust.attacks import _functional as F
from xrobust.attacks.apgd import APGD
from xrobust.attacks.config import AttackConfig, check_fraction, check_positive_int
from xrobust.attacks.context import AttackContext, Batch, Outcome

__all__ = ["APGDT", "APGDTConfig"]

#: rows per batch on a CPU when ``max_rows`` is None (see BENCHMARKS.md, APGD-T layout)
CPU_MAX_ROWS = 512


@dataclass(frozen=True)
class APGDTConfig(AttackConfig):
    """APGD-T hyperparameters (see :class:`AttackConfig` for the shared ones).

    Attributes:
        steps: iterations per target class and restart (reference: 100).
        n_target_classes: how many top-ranked wrong classes to target (reference: 9;
            capped at C - 1).
        restarts: runs per target class from new random starts.
        rho / momentum: APGD's step-size rule threshold and momentum (0.75 each).
        max_rows: most rows per batch when target classes run side by side (None: 512
            on a CPU, every target at once on a GPU); 1 gives the reference's one target
            at a time.
    """

    steps: int = 100
    n_target_classes: int = 9
    restarts: int = 1
    rho: float = 0.75
    momentum: float = 0.75
    max_rows: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("steps", self.steps)
        check_positive_int("n_target_classes", self.n_target_classes)
        check_positive_int("restarts", self.restarts)
        if self.max_rows is not None:
            check_positive_int("max_rows", self.max_rows)
        object.__setattr__(self, "rho", check_fraction("rho", self.rho))
        object.__setattr__(self, "momentum", check_fraction("momentum", self.momentum))


class APGDT(APGD):
    """APGD on the targeted DLR loss over the top wrong classes (AutoAttack's APGD-T).

    Example:
        >>> import torch
        >>> from xrobust.attacks import get_attack
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 6))
        >>> get_attack("apgd-t", model, eps=0.1, steps=3).name
        'apgd_t'
    """

    name = "apgd_t"
    config_cls = APGDTConfig  # type: ignore[assignment]
    config: APGDTConfig  # type: ignore[assignment]

    min_classes = 4

    def loss_name(self, targeted: bool) -> str:
        return "dlr"

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        return F.dlr_targeted_loss(logits, batch.y, batch.loss_target)  # type: ignore[arg-type]

    def perturb(self, ctx: AttackContext, batch: Batch) -> Outcome:
        ctx.note("loss", "dlr")
        if batch.target is not None:  # an explicit target: one targeted run towards it
            return super(APGD, self).perturb(ctx, batch)
        ranked = ctx.forward(batch.x, batch.origin, full_precision=True).argsort(dim=1)
        n_t = min(self.config.n_target_classes, ranked.shape[1] - 1)
        out = Outcome.unchanged(batch.x)
        alive = torch.ones(len(batch), dtype=torch.bool, device=batch.x.device)
        assigned = torch.zeros_like(alive)
        layout: list[int] = []
        for r in range(self.config.restarts):
            rank = 0
            while rank < n_t and bool(alive.any()):
                pos = alive.nonzero().squeeze(1)
                c = self._side_by_side(pos.numel(), n_t - rank, batch.x.device)
                layout.append(c)
                sub = _copies(batch, pos, ranked[pos], rank, c)
                cur = self.iterate(ctx, sub, r)
                won = _take_copies(out, cur, pos, batch.y[pos], c, assigned)
                alive[pos[won]] = False
                rank += c
        ctx.note("target_classes", n_t)
        ctx.note("layout", layout)
        return out

    def _side_by_side(self, m: int, remaining: int, device: torch.device) -> int:
        """How many target classes to run at once for ``m`` robust examples."""
        rows = self.config.max_rows
        if rows is None:
            rows = CPU_MAX_ROWS if device.type == "cpu" else m * remaining
        return max(1, min(remaining, rows // max(m, 1)))


def _copies(batch: Batch, pos: torch.Tensor, ranked: torch.Tensor, rank: int, c: int) -> Batch:
    """``c`` copies of the rows ``pos`` of ``batch``, copy k pulled towards the class
    ranked ``rank + k + 2`` by the clean logits (rank-major order)."""
    m, n = pos.numel(), batch.full_x.shape[0]
    rep = pos.repeat(c)
    tgt = torch.cat([ranked[:, -(rank + k + 2)] for k in range(c)])
    x, eps = batch.x[rep], batch.eps[rep]
    offset = torch.arange(c, device=pos.device).repeat_interleave(m) * n
    return Batch(
        idx=offset + batch.idx[rep],
        x=x, y=batch.y[rep], eps=eps, target=None, loss_target=tgt,
        group=torch.arange(m, device=pos.device).repeat(c),
        ball=batch.norm.ball(x, eps, batch.bounds), norm=batch.norm, bounds=batch.bounds,
        full_x=batch.full_x.repeat(c, *([1] * (batch.full_x.dim() - 1))),
        full_eps=batch.full_eps.repeat(c), origin=batch.origin[rep],
    )  # fmt: skip


def _take_copies(
    out: Outcome,
    cur: Outcome,
    pos: torch.Tensor,
    y: torch.Tensor,
    c: int,
    assigned: torch.Tensor,
) -> torch.Tensor:
    """Merge the copies' outcome into the examples' (the lowest-ranked winning copy, or
    the first copy for an example never broken); returns which of ``pos`` were broken."""
    m = pos.numel()
    won = torch.zeros(m, dtype=torch.bool, device=pos.device)
    assert out.loss is not None and cur.loss is not None
    for k in range(c - 1, -1, -1):  # the lowest rank is written last and wins
        sl = slice(k * m, (k + 1) * m)
        w = (cur.pred[sl] >= 0) & (cur.pred[sl] != y)
        take = w | (~assigned[pos] & ~won & (k == 0))
        p = pos[take]
        out.x_adv[p] = cur.x_adv[sl][take]
        out.pred[p] = cur.pred[sl][take]
        out.loss[p] = cur.loss[sl][take]
        won |= w
    assigned[pos] = True
    steps = cur.steps.reshape(c, m).sum(0)
    out.steps[pos] += steps
    return won
