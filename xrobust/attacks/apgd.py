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
quantity of the algorithm is per example, kept in :class:`APGDState`).

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

from xrobust.attacks.config import AttackConfig, check_fraction, check_positive_int
from xrobust.attacks.context import AttackContext, Batch
from xrobust.attacks.iterative import Evaluation, IterativeAttack
from xrobust.errors import ConfigError

__all__ = ["APGD", "APGDConfig", "APGDState", "checkpoints"]


@dataclass(frozen=True)
class APGDConfig(AttackConfig):
    """APGD hyperparameters (see :class:`AttackConfig` for the shared ones).

    Attributes:
        steps: iterations per restart (reference: 100).
        restarts: runs from new random starts, each on the examples still unbroken.
        loss: "ce" (APGD-CE) or "dlr" (untargeted DLR, needs >= 3 classes; a targeted
            run uses the cross-entropy towards the target instead, and the result's
            config says so).
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
        check_positive_int("steps", self.steps)
        check_positive_int("restarts", self.restarts)
        if self.loss not in ("ce", "dlr"):
            raise ConfigError(f"unknown APGD loss {self.loss!r}; expected 'ce' or 'dlr'")
        object.__setattr__(self, "rho", check_fraction("rho", self.rho))
        object.__setattr__(self, "momentum", check_fraction("momentum", self.momentum))


def checkpoints(steps: int) -> list[int]:
    """The iterations after which APGD may halve its step: 22% of the budget, then
    intervals 3% shorter each time, at least 6% (the reference's schedule)."""
    k, k_min, k_decr = max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
    marks, i = [], 0
    while i + k <= steps:
        i += k
        marks.append(i)
        k = max(k - k_decr, k_min)
    return marks


@dataclass
class APGDState:
    """Per-example state of APGD (rows of the active batch) and the schedule position."""

    x: torch.Tensor  # current iterate (the best point after a step-size reduction)
    g: torch.Tensor  # its gradient
    x_prev: torch.Tensor  # previous iterate, for the momentum term
    step: torch.Tensor  # step size per example, 2 * eps at the start
    x_best: torch.Tensor
    g_best: torch.Tensor
    loss_best: torch.Tensor
    pred_best: torch.Tensor
    loss_prev: torch.Tensor
    increases: torch.Tensor  # steps since the last checkpoint where the loss went up
    reduced: torch.Tensor  # whether the step was halved at the last checkpoint
    loss_best_last: torch.Tensor  # best loss at the last checkpoint
    since: int = 0  # iterations since the last checkpoint
    interval: int = 1  # length of the current checkpoint interval

    @classmethod
    def initial(cls, x: torch.Tensor, ev: Evaluation, eps: torch.Tensor, steps: int) -> APGDState:
        assert ev.grad is not None
        lv = ev.loss
        return cls(
            x=x, g=ev.grad, x_prev=x, step=2.0 * eps, x_best=x.clone(), g_best=ev.grad.clone(),
            loss_best=lv.clone(), pred_best=ev.pred.clone(), loss_prev=torch.zeros_like(lv),
            increases=torch.zeros_like(lv), reduced=torch.ones_like(lv, dtype=torch.bool),
            loss_best_last=lv.clone(), interval=max(int(0.22 * steps), 1),
        )  # fmt: skip

    def track(self, x: torch.Tensor, ev: Evaluation) -> None:
        """Record iterate ``x``: the best point so far and whether the loss went up."""
        better = ev.loss > self.loss_best
        bm = better.reshape(-1, *([1] * (x.dim() - 1)))
        self.x_best = torch.where(bm, x, self.x_best)
        if ev.grad is not None:
            self.g_best = torch.where(bm, ev.grad, self.g_best)
        self.loss_best = torch.where(better, ev.loss, self.loss_best)
        self.pred_best = torch.where(better, ev.pred, self.pred_best)
        self.increases = self.increases + (ev.loss > self.loss_prev).to(ev.loss.dtype)
        self.loss_prev = ev.loss

    def checkpoint(self, rho: float, steps: int) -> None:
        """Halve the step of the examples that oscillate or stopped improving, and
        move them back to their best point."""
        osc = self.increases <= self.interval * rho
        stalled = (~self.reduced) & (self.loss_best_last >= self.loss_best)
        halve = osc | stalled
        self.reduced = halve
        self.loss_best_last = self.loss_best.clone()
        if bool(halve.any()):
            self.step = torch.where(halve, self.step / 2.0, self.step)
            hm = halve.reshape(-1, *([1] * (self.x.dim() - 1)))
            self.x = torch.where(hm, self.x_best, self.x)
            self.g = torch.where(hm, self.g_best, self.g)
        k_min, k_decr = max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)
        self.interval = max(self.interval - k_decr, k_min)
        self.since = 0
        self.increases = torch.zeros_like(self.increases)


class APGD(IterativeAttack):
    """APGD-CE (or APGD-DLR), untargeted; with ``target`` it pulls towards that class.

    Croce and Hein, arXiv:2003.01690; reference defaults (100 iterations, rho 0.75,
    momentum 0.75, initial step 2*eps). Each step:
    ``z = P(x + step * direction(g))``, ``x_new = P(x + a (z - x) + (1 - a)(x - x_prev))``
    with momentum ``a`` (1 at the first step); at each checkpoint the step size halves
    where the loss oscillated or stalled, and those examples go back to their best point.

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
    keeps_last_success = True

    min_classes = 2

    def __init__(self, model: torch.nn.Module, **kwargs: object) -> None:
        super().__init__(model, **kwargs)
        if getattr(self.config, "loss", None) == "dlr":
            self.min_classes = 3  # the untargeted DLR loss reads the third-largest logit

    def start(self, ctx: AttackContext, batch: Batch, restart: int) -> torch.Tensor:
        return batch.surface_start(ctx.generator)

    def loss_name(self, targeted: bool) -> str:
        """The loss that actually runs: the targeted DLR needs APGD-T's top-k targets,
        so a targeted APGD-DLR run uses the cross-entropy towards the target."""
        return "ce" if targeted and self.config.loss == "dlr" else self.config.loss

    def perturb(self, ctx: AttackContext, batch: Batch):  # type: ignore[no-untyped-def]
        ctx.note("loss", self.loss_name(batch.loss_target is not None))
        return super().perturb(ctx, batch)

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        from xrobust.attacks import _functional as F

        name = self.loss_name(batch.loss_target is not None)
        return F.per_example_loss(name, logits, batch.y, batch.loss_target)

    def step(
        self, state: APGDState | None, batch: Batch, x: torch.Tensor, ev: Evaluation, t: int
    ) -> tuple[torch.Tensor, APGDState]:
        c = self.config
        if state is None:
            state = APGDState.initial(x, ev, batch.eps, c.steps)
        else:
            state.x, state.g = x, ev.grad  # type: ignore[assignment]
            state.track(x, ev)
            state.since += 1
            if state.since == state.interval:
                state.checkpoint(c.rho, c.steps)
        a = c.momentum if t > 0 else 1.0
        move = state.x - state.x_prev
        state.x_prev = state.x
        size = state.step.reshape(-1, *([1] * (x.dim() - 1)))
        z = batch.ball.project(state.x + size * batch.norm.direction(state.g))
        return batch.ball.project(state.x + (z - state.x) * a + move * (1 - a)), state

    def output(
        self, state: APGDState | None, batch: Batch, x: torch.Tensor, ev: Evaluation
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if state is None:  # no step was taken
            return x, ev.pred, ev.loss
        state.track(x, ev)
        return state.x_best, state.pred_best, state.loss_best
