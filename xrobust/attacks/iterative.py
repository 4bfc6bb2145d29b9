"""The driver of iterative attacks: :class:`IterativeAttack` owns the loop that every
iterative attack shares, so that an attack supplies only its algorithm.

The loop evaluates each iterate once (forward pass, loss and input gradient in one
pass), tests success, keeps each example's first adversarial and the prediction that
found it, retires fooled rows in evaluation mode (with their copies, for attacks that
run several copies of an example side by side), and hands the survivors to the
attack's :meth:`IterativeAttack.step`. The final iterate gets a forward pass without a
gradient. Restarts run on the examples still robust (all of them in the fixed budget)
and each example keeps its worst case: a success beats a failure, and between failures
the higher loss wins. Under reduced precision (``precision="bf16"``/``"fp16"``) the
success test is :meth:`AttackContext.confirm` (a candidate counts only if an fp32 pass
agrees) and each run's outcome is :meth:`AttackContext.verify`-ed (fp32 predictions,
fp32 margins for choosing between restarts). The first iterate of a run that starts at
the clean input reuses the clean forward's graph. See :mod:`xrobust.attacks.guide` for a
complete example.

Example:
    >>> import torch
    >>> from xrobust.attacks import PGD
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> res = PGD(model, eps=0.1, steps=5).run(torch.rand(4, 4), torch.tensor([0, 1, 2, 0]))
    >>> int(res.steps.max()) <= 5
    True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from xrobust.attacks import _functional as F
from xrobust.attacks.base import Attack
from xrobust.attacks.context import AttackContext, Batch, Outcome, select_rows

__all__ = ["Evaluation", "IterativeAttack", "keep_better", "run_succeeded"]


@dataclass
class Evaluation:
    """The model at the rows' current iterates.

    Attributes:
        logits: the model's outputs (detached).
        loss: the attack's loss per row (detached), higher is better for the attacker.
        grad: the loss's input gradient, or None at the final iterate.
        pred: ``logits.argmax(1)``.
    """

    logits: torch.Tensor
    loss: torch.Tensor
    grad: torch.Tensor | None
    pred: torch.Tensor

    def select(self, keep: torch.Tensor) -> Evaluation:
        """The rows ``keep`` (mask or indices)."""
        return select_rows(self, keep)


class IterativeAttack(Attack):
    """An attack that improves iterates step by step; the base runs the loop.

    A subclass writes :meth:`step` (one update of the active rows), and optionally
    :meth:`start` (default: the clean input), :meth:`loss` (default: the config's
    ``loss`` field, cross-entropy if none) and :meth:`output` (what a row that was
    never fooled returns; default: its final iterate). Its config provides ``steps``
    and optionally ``restarts``.
    """

    #: in the fixed budget, a fooled example returns its last fooling iterate (True) or
    #: its final iterate like the peer libraries (False)
    keeps_last_success: ClassVar[bool] = False

    # ------------------------------------------------------------------ hooks
    def start(self, ctx: AttackContext, batch: Batch, restart: int) -> torch.Tensor | None:
        """The first iterate of run number ``restart``; None for the clean input."""
        return None

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        """Per-row loss to maximise."""
        name = getattr(self.config, "loss", "ce")
        return F.per_example_loss(name, logits, batch.y, batch.loss_target)

    def step(
        self, state: Any, batch: Batch, x: torch.Tensor, ev: Evaluation, t: int
    ) -> tuple[torch.Tensor, Any]:
        """The next iterate from iterate ``t`` (``x``, evaluated as ``ev``) and the
        attack's state (None at ``t == 0``; rows retired by the driver are removed from
        every tensor field of a dataclass state). Returns ``(x_next, state)``."""
        raise NotImplementedError

    def output(
        self, state: Any, batch: Batch, x: torch.Tensor, ev: Evaluation
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_adv, pred, loss)`` of rows still unbroken after the last step, given the
        final iterate ``x`` and its evaluation."""
        return x, ev.pred, ev.loss

    def n_steps(self) -> int:
        """Steps per run."""
        return int(self.config.steps)  # type: ignore[attr-defined]

    def n_restarts(self) -> int:
        """Runs per example."""
        return int(getattr(self.config, "restarts", 1))

    # ------------------------------------------------------------------ driver
    def perturb(self, ctx: AttackContext, batch: Batch) -> Outcome:
        """Every run (restart) of the attack, each example keeping its worst case."""
        best: Outcome | None = None
        for r in range(self.n_restarts()):
            pos = torch.arange(len(batch), device=batch.x.device)
            if best is not None and self.config.early_stop:
                pos = pos[~run_succeeded(ctx, best, batch)]
            if pos.numel() == 0:
                break
            cur = self.iterate(ctx, batch if best is None else batch.select(pos), r)
            best = cur if best is None else keep_better(ctx, best, cur, pos, batch)
        assert best is not None
        return best

    def iterate(self, ctx: AttackContext, batch: Batch, restart: int = 0) -> Outcome:
        """One run over the rows of ``batch``."""
        x0 = self.start(ctx, batch, restart)
        reuse = x0 is None and ctx.clean_graph is not None
        x = batch.x if x0 is None else x0.detach()
        rec = _Recorder(Outcome.unchanged(batch.x), self.config.early_stop, self.keeps_last_success)
        live, pos, state, steps = batch, torch.arange(len(batch), device=x.device), None, self.n_steps()
        for t in range(steps + 1):
            ev = self._evaluate(ctx, live, x, grad=t < steps, reuse=reuse and t == 0)
            if rec.records:  # a success counts only if fp32 agrees, else the search goes on
                done = ctx.confirm(x, live.origin, ev.pred, live)
            else:
                done = ctx.is_success(ev.pred, live.y, live.target)
            if bool(done.any()):
                rec.hit(pos, done, x, ev, t)
                if self.config.early_stop:
                    keep = ~_with_siblings(done, live.group)
                    rec.retire(pos[~keep], t)
                    live, pos, x, ev = live.select(keep), pos[keep], x[keep], ev.select(keep)
                    state = _select_state(state, keep)
                    if len(live) == 0:
                        return ctx.verify(rec.out, batch)
            if t == steps:
                break
            with torch.no_grad():
                x, state = self.step(state, live, x, ev, t)
            x = x.detach()
        rec.finish(pos, *self.output(state, live, x, ev), steps)
        return ctx.verify(rec.out, batch)

    def _evaluate(
        self, ctx: AttackContext, batch: Batch, x: torch.Tensor, *, grad: bool, reuse: bool
    ) -> Evaluation:
        if reuse:
            assert ctx.clean_graph is not None
            src, full_logits = ctx.clean_graph
            ctx.clean_graph = None
            whole = len(batch) == full_logits.shape[0]
            with torch.enable_grad():
                logits = full_logits if whole else full_logits[batch.idx]
                loss = self.loss(logits, batch)
                g = ctx.grad(loss.sum(), src, rows=None if whole else batch.idx)
            g = g if whole else g[batch.idx]
        elif grad:
            src = x.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = ctx.forward(src, batch.origin)
                loss = self.loss(logits, batch)
                g = ctx.grad(loss.sum(), src)
        else:
            logits = ctx.forward(x, batch.origin)
            loss, g = self.loss(logits, batch), None
        logits = logits.detach()
        return Evaluation(logits, loss.detach(), g, logits.argmax(1))


class _Recorder:
    """Writes what the loop finds into an :class:`Outcome` of the run's rows."""

    def __init__(self, out: Outcome, early_stop: bool, keeps_last: bool) -> None:
        self.out, self.early_stop, self.keeps_last = out, early_stop, keeps_last
        self.found = torch.zeros_like(out.pred, dtype=torch.bool)

    @property
    def records(self) -> bool:
        """Whether successes during the run are recorded (else only the final iterate)."""
        return self.early_stop or self.keeps_last

    def hit(self, pos: torch.Tensor, done: torch.Tensor, x: torch.Tensor, ev: Evaluation, t: int) -> None:
        if not self.records:
            return
        p = pos[done]
        self.out.x_adv[p] = x[done]
        self.out.pred[p] = ev.pred[done]
        assert self.out.loss is not None
        self.out.loss[p] = ev.loss[done].to(self.out.loss.dtype)
        self.found[p] = True
        if self.early_stop:
            self.out.steps[p] = t

    def retire(self, pos: torch.Tensor, t: int) -> None:
        """Rows leaving the batch (fooled, or a copy of a fooled example)."""
        self.out.steps[pos] = t

    def finish(
        self, pos: torch.Tensor, x: torch.Tensor, pred: torch.Tensor, loss: torch.Tensor, steps: int
    ) -> None:
        """The rows still in the batch after the last step."""
        take = ~self.found[pos] if self.keeps_last or self.early_stop else torch.ones_like(pos, dtype=torch.bool)
        p = pos[take]
        self.out.x_adv[p] = x[take]
        self.out.pred[p] = pred[take]
        assert self.out.loss is not None
        self.out.loss[p] = loss[take].to(self.out.loss.dtype)
        if self.early_stop:
            self.out.steps[pos] = steps
        else:
            self.out.steps[:] = steps


def _with_siblings(done: torch.Tensor, group: torch.Tensor | None) -> torch.Tensor:
    """``done`` widened to every row that is a copy of an example one row broke."""
    if group is None:
        return done
    hit = torch.zeros(int(group.max()) + 1, dtype=torch.bool, device=done.device)
    hit[group[done]] = True
    return hit[group]


def _select_state(state: Any, keep: torch.Tensor) -> Any:
    if state is None:
        return None
    if dataclasses.is_dataclass(state):
        return select_rows(state, keep)
    if isinstance(state, torch.Tensor):
        return state[keep]
    raise TypeError("an attack's state must be None, a tensor or a dataclass")


def run_succeeded(ctx: AttackContext, out: Outcome, batch: Batch) -> torch.Tensor:
    """Per row of ``batch``: the run's outcome is known (``pred >= 0``) and meets the goal."""
    return (out.pred >= 0) & ctx.is_success(out.pred, batch.y, batch.target)


def keep_better(
    ctx: AttackContext, best: Outcome, cur: Outcome, pos: torch.Tensor, batch: Batch
) -> Outcome:
    """``best`` with the rows ``pos`` replaced where run (restart) ``cur`` did better: a
    success beats a failure; otherwise the higher loss wins. Shared by every attack with
    restarts (iterative attacks, Square)."""
    sub = batch.select(pos)
    won, cur_won = run_succeeded(ctx, best, batch)[pos], run_succeeded(ctx, cur, sub)
    assert best.loss is not None and cur.loss is not None
    better = (cur_won & ~won) | ((cur_won == won) & (cur.loss > best.loss[pos]))
    p = pos[better]
    best.x_adv[p] = cur.x_adv[better]
    best.pred[p] = cur.pred[better]
    best.loss[p] = cur.loss[better]
    best.steps[pos] += cur.steps
    return best
