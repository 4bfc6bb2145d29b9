"""The types an attack works with: :class:`AttackContext` (the model, counted and under
AMP), :class:`Batch` (the rows being attacked) and :class:`Outcome` (what an attack
hands back). See :mod:`xrobust.attacks.guide` for how they fit together.

Example:
    >>> import torch
    >>> from xrobust.attacks.context import Outcome
    >>> out = Outcome.unchanged(torch.zeros(3, 2))
    >>> out.pred.tolist(), out.steps.tolist()
    ([-1, -1, -1], [0, 0, 0])
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from xrobust.attacks import _functional as F
from xrobust.attacks.checks import AttackWarning, gradient_stats_from_grad
from xrobust.attacks.norms import Ball, Norm
from xrobust.device import autocast, precision_name
from xrobust.errors import ModelError, QueryBudgetExhausted
from xrobust.models.classifier import Classifier

__all__ = ["AttackContext", "Batch", "Outcome", "select_rows"]


def select_rows(obj: Any, keep: torch.Tensor) -> Any:
    """A copy of dataclass ``obj`` keeping the rows ``keep`` (mask or indices) of every
    tensor field with a batch dimension; other fields are shared. Attack states use it
    so that the driver can retire rows without knowing their fields. A field declared
    with ``field(metadata={"shared": True})`` is never selected."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        v = getattr(obj, f.name)
        if f.metadata.get("shared"):
            continue
        if isinstance(v, torch.Tensor) and v.dim() > 0:
            changes[f.name] = v[keep]
        elif isinstance(v, Ball):
            changes[f.name] = v.select(keep)
    return dataclasses.replace(obj, **changes)


@dataclass
class Outcome:
    """What an attack's ``perturb`` hands back, for the full batch.

    Attributes:
        x_adv: adversarial inputs (rows not attacked equal to ``x``).
        pred: the model's prediction at ``x_adv`` where the attack evaluated it, -1 where
            not (the driver then runs one forward pass on those rows).
        steps: gradient steps (or iterations) spent per example.
        loss: the attack's loss at ``x_adv`` where known (restarts keep the highest), or None.
        broken_by: per example, the name of the attack that broke it (ensembles), or None.
    """

    x_adv: torch.Tensor
    pred: torch.Tensor
    steps: torch.Tensor
    loss: torch.Tensor | None = None
    broken_by: list[str | None] | None = None

    @classmethod
    def unchanged(cls, x: torch.Tensor) -> Outcome:
        """``x`` itself, no prediction known, no step spent."""
        n = x.shape[0]
        return cls(
            x.clone(),
            torch.full((n,), -1, dtype=torch.long, device=x.device),
            torch.zeros(n, dtype=torch.long, device=x.device),
            torch.full((n,), float("-inf"), device=x.device),
        )


@dataclass
class Batch:
    """The rows of a batch an attack works on, with their threat model.

    Attributes:
        idx: positions of these rows in the full batch (N,) -> (m,).
        x / y / eps: clean inputs, labels and per-example radii of these rows.
        target: class that counts as success (targeted goal), or None (any wrong class).
        loss_target: class the loss pulls towards (APGD-T pulls towards a target while
            any wrong class counts); defaults to ``target``.
        group: example id per row when several rows are copies of one example (run side
            by side): in evaluation mode all copies retire once one succeeds.
        ball: the eps-balls of these rows intersected with the bounds (projection).
        norm / bounds: the threat model.
        full_x / full_eps: the whole batch, for draws that must not depend on which rows
            are active (random starts), so that both budget modes follow the same paths.
        origin: per row, the example of the run's batch it attacks (query counts); equal
            to ``idx`` unless the rows are copies of examples.
    """

    idx: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    eps: torch.Tensor
    target: torch.Tensor | None
    loss_target: torch.Tensor | None
    group: torch.Tensor | None
    ball: Ball
    norm: Norm
    bounds: tuple[float, float] | None
    full_x: torch.Tensor = field(metadata={"shared": True})
    full_eps: torch.Tensor = field(metadata={"shared": True})
    origin: torch.Tensor

    @classmethod
    def of(
        cls,
        x: torch.Tensor,
        y: torch.Tensor,
        eps: torch.Tensor,
        rows: torch.Tensor,
        norm: Norm,
        bounds: tuple[float, float] | None,
        target: torch.Tensor | None = None,
        loss_target: torch.Tensor | None = None,
        group: torch.Tensor | None = None,
    ) -> Batch:
        """The rows where mask ``rows`` is True of a full batch."""
        idx = rows.nonzero().squeeze(1)
        full = idx.numel() == x.shape[0]

        def pick(t: torch.Tensor | None) -> torch.Tensor | None:
            return t if t is None or full else t[idx]

        lt = loss_target if loss_target is not None else target
        xs, es = pick(x), pick(eps)
        assert xs is not None and es is not None
        return cls(
            idx, xs, pick(y), es, pick(target), pick(lt), pick(group),  # type: ignore[arg-type]
            norm.ball(xs, es, bounds), norm, bounds, x, eps, idx,
        )  # fmt: skip

    def __len__(self) -> int:
        return int(self.idx.shape[0])

    def select(self, keep: torch.Tensor) -> Batch:
        """The rows ``keep`` (mask or indices) of this batch."""
        return select_rows(self, keep)

    def random_start(self, generator: torch.Generator) -> torch.Tensor:
        """Uniform points of the balls (drawn for the full batch, then these rows)."""
        return self.norm.random_start(self.full_x, self.full_eps, self.bounds, generator)[self.idx]

    def surface_start(self, generator: torch.Generator) -> torch.Tensor:
        """Points on the balls' surfaces (drawn for the full batch, then these rows)."""
        return self.norm.surface_start(self.full_x, self.full_eps, self.bounds, generator)[
            self.idx
        ]


class AttackContext:
    """Per-run services for an attack: the model's forward and input gradient (in the
    run's precision, counted per example), the fp32 verification of verdicts, the random
    generator, the goal test, the query budget, and notes for the result's config.

    Reduced precision (``amp`` is bf16 or fp16 on a torch model): the search's passes run
    under autocast, while the clean pass, the final predictions and every verdict run in
    fp32. :meth:`confirm` is the shared loop's success test (a candidate counts only if an
    fp32 pass agrees, else the search goes on) and :meth:`verify` re-evaluates an outcome
    in fp32 (predictions, and the fp32 margin as the loss by which restarts and ensembles
    keep each example's best). With fp32 both are no-ops, so results are unchanged.

    Attributes:
        model: the torch module (in eval mode, parameters frozen, for the whole run), or
            None for a black box (answered through ``classifier``).
        classifier: the classifier every forward pass is counted on (and, for a black
            box, asked).
        output_kind: what the scores are: "logits", "probabilities" or "labels" (one-hot).
        device: where the batch lives.
        generator: the run's random generator (seeded from the attack's ``seed``).
        targeted: whether the run has a target.
        n: size of the full batch.
        forward_passes / gradient_passes: model evaluations, in examples.
        queries: per example of the full batch, model evaluations spent on it.
        notes: what actually ran, merged into ``AttackResult.config``.
        num_classes: the model's number of outputs (known after the clean pass).
        batch_index: the batch number within ``run_loader`` (0 for ``run``).
        stopped: why the attack stopped early (the query budget), or None.
        amp: the autocast dtype of the search passes, or None (fp32).
        verified / rejected: rows re-evaluated in fp32 under reduced precision, and
            candidate successes of the reduced-precision search that fp32 rejected.
    """

    def __init__(
        self,
        model: nn.Module | None,
        device: torch.device,
        amp: torch.dtype | None,
        generator: torch.Generator,
        param_dtype: torch.dtype | None,
        targeted: bool,
        n: int,
        classifier: Classifier | None = None,
    ) -> None:
        if classifier is None:
            if model is None:
                raise ModelError("an attack context needs a model or a classifier")
            from xrobust.models.classifier import TorchClassifier

            classifier = TorchClassifier(model)
        self.classifier = classifier
        self.output_kind: str = classifier.output
        self.stopped: str | None = None
        self.model, self.device, self.amp = model, device, amp
        self.generator, self.param_dtype, self.targeted, self.n = (
            generator, param_dtype, targeted, n,
        )  # fmt: skip
        self.forward_passes = 0
        self.gradient_passes = 0
        self.queries = torch.zeros(n, dtype=torch.long, device=device)
        self.notes: dict[str, Any] = {}
        self.num_classes = 0
        self.batch_index = 0
        self._grad_checked = False
        self.verified = 0
        self.rejected = 0
        #: (input, logits with graph) of the clean forward when the attack reuses it
        self.clean_graph: tuple[torch.Tensor, torch.Tensor] | None = None

    @property
    def precision(self) -> str:
        """What the search's passes run in: "fp32", "bf16" or "fp16" (a black box: fp32)."""
        return precision_name(self.amp) if self.reduced else "fp32"

    @property
    def reduced(self) -> bool:
        """Whether the search runs in reduced precision (verdicts are then verified)."""
        return self.amp is not None and self.model is not None

    def forward(
        self, x: torch.Tensor, idx: torch.Tensor | None = None, *, full_precision: bool = False
    ) -> torch.Tensor:
        """Logits (float32 or float64) of ``x``; ``idx`` says which examples of the full
        batch its rows are (needed for per-example query counts unless ``x`` is the full
        batch). ``full_precision`` runs the pass in fp32 whatever the run's precision."""
        n = int(x.shape[0])
        self.classifier.spend(n)  # the budget refuses before anything is asked
        self.forward_passes += n
        self._count(x, idx)
        if self.model is None:  # a black box: asked through its classifier (not re-counted)
            return self.classifier.ask(x).to(x.device)
        amp = None if full_precision else self.amp
        xin = x if self.param_dtype is None or amp is not None else x.to(self.param_dtype)
        with autocast(self.device, amp):
            out = self.model(xin)
        if not isinstance(out, torch.Tensor):
            raise ModelError(
                f"the model returned {type(out).__name__}; attacks need a tensor of logits (N, C)"
            )
        return out.float() if out.dtype in (torch.float16, torch.bfloat16) else out

    def _count(self, x: torch.Tensor, idx: torch.Tensor | None) -> None:
        if idx is not None:
            self.queries.index_add_(0, idx, torch.ones_like(idx))
        elif x.shape[0] == self.n:
            self.queries += 1

    def grad(
        self, loss: torch.Tensor, x: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Gradient of scalar ``loss`` with respect to input ``x``.

        ``rows`` (mask or indices) names the rows the loss depends on; the first call's
        gradient health check looks only at them.
        """
        self.gradient_passes += int(x.shape[0])
        (g,) = torch.autograd.grad(loss, x)
        if not self._grad_checked:
            self._grad_checked = True
            _warn_unhealthy(g if rows is None else g[rows])
        return g.to(x.dtype)

    def is_success(
        self, pred: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        """Per-example goal test: wrong prediction, or the target class when targeted."""
        return pred == target if target is not None else pred != y

    def confirm(
        self, x: torch.Tensor, origin: torch.Tensor, pred: torch.Tensor, batch: Batch
    ) -> torch.Tensor:
        """The success test of a search step: per row of ``batch`` at iterates ``x`` with
        predictions ``pred``, whether the goal is met. Under reduced precision each
        candidate is re-evaluated in fp32 and counts only if fp32 agrees; ``pred`` is
        updated in place with the fp32 predictions of the candidates."""
        done = self.is_success(pred, batch.y, batch.target)
        if not self.reduced or not bool(done.any()):
            return done
        i = done.nonzero().squeeze(1)
        p32 = self.forward(x[i], origin[i], full_precision=True).argmax(1)
        self.verified += int(i.numel())
        pred[i] = p32
        ok = self.is_success(p32, batch.y[i], None if batch.target is None else batch.target[i])
        self.rejected += int((~ok).sum())
        done[i[~ok]] = False
        return done

    def verify(self, out: Outcome, batch: Batch) -> Outcome:
        """``out`` (the outcome of ``batch``'s rows) re-evaluated in fp32 under reduced
        precision: every prediction from an fp32 pass, and as the loss each row's fp32
        margin (higher is better for the attacker), by which restarts and ensembles keep
        the best. A no-op in fp32 (and for a black box)."""
        if not self.reduced or len(batch) == 0:
            return out
        logits = self.forward(out.x_adv, batch.origin, full_precision=True)
        self.verified += len(batch)
        known = out.pred >= 0
        claimed = known & self.is_success(out.pred, batch.y, batch.target)
        out.pred = logits.argmax(1)
        kept = self.is_success(out.pred, batch.y, batch.target)
        self.rejected += int((claimed & ~kept).sum())
        if batch.target is None:
            out.loss = F.margin_loss(logits, batch.y)
        else:
            out.loss = -F.margin_loss(logits, batch.target)
        return out

    def remaining_queries(self) -> int | None:
        """Rows the classifier may still be asked about (None: no budget). An attack
        about to ask for more stops instead (:meth:`stop`) and returns its best so far."""
        return self.classifier.remaining

    def can_query(self, n: int) -> bool:
        """Whether ``n`` more rows fit the query budget."""
        left = self.classifier.remaining
        return left is None or left >= n

    def stop(self, reason: str) -> None:
        """Mark the run as stopped early (the result is partial), keeping the first reason."""
        if self.stopped is None:
            self.stopped = reason

    def budget_stop(self, n: int) -> None:
        """:meth:`stop` with the budget's standard reason (``n`` rows did not fit)."""
        c = self.classifier
        b = c._budget_base
        self.stop(str(QueryBudgetExhausted((c.query_budget or 0) - b, c.queries - b, n)))

    def note(self, key: str, value: Any) -> None:
        """Record what actually ran (a loss swapped, a seed drawn) in the result's config."""
        self.notes[key] = value

    def fork(self, seed: int, *, reduced: bool = True) -> AttackContext:
        """A context sharing this one's model and counters, with its own generator seeded
        with ``seed`` and its own notes (ensemble members keep their own random streams
        and report what they ran); ``reduced=False`` makes its search passes fp32."""
        return _Forked(self, seed, reduced)


class _Forked(AttackContext):
    """An :class:`AttackContext` view with its own generator; every counter is the parent's."""

    def __init__(self, parent: AttackContext, seed: int, reduced: bool = True) -> None:
        object.__setattr__(self, "_parent", parent)
        if not reduced:
            object.__setattr__(self, "amp", None)
        gen = torch.Generator(device=parent.device)
        gen.manual_seed(seed)
        object.__setattr__(self, "_gen", gen)
        object.__setattr__(self, "notes", {})

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parent, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._parent, name, value)

    @property  # type: ignore[override]
    def generator(self) -> torch.Generator:
        return self._gen


def _warn_unhealthy(g: torch.Tensor) -> None:
    stats = gradient_stats_from_grad(g)
    if stats.nonfinite_fraction > 0:
        warnings.warn(
            f"non-finite input gradients for {stats.nonfinite_fraction:.0%} of the batch: "
            "the attack cannot follow them and robustness will be overestimated",
            AttackWarning,
            stacklevel=5,
        )
    elif stats.zero_fraction > 0.5:
        warnings.warn(
            f"input gradients are exactly zero for {stats.zero_fraction:.0%} of the batch "
            "(saturated or non-differentiable model, gradient masking?): gradient attacks "
            "will overestimate robustness; try a black-box attack",
            AttackWarning,
            stacklevel=5,
        )
