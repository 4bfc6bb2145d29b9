"""The attack template: :class:`Attack`, whose final :meth:`Attack.run` does all that
every attack shares around a subclass's :meth:`Attack.perturb`.

``run`` validates the inputs, moves them to the model's device, puts the model in eval
mode and freezes its parameters (no weight gradient is ever computed, which is where the
speed over libraries calling ``loss.backward()`` comes from), runs the clean forward pass,
hands the rows to attack to ``perturb`` as a :class:`~xrobust.attacks.context.Batch`,
then projects, clips, predicts where the prediction is not known yet, measures, and
restores the model exactly as it was. With ``precision="bf16"``/``"fp16"`` the search's
passes run under autocast while the clean pass, the final predictions and every verdict
are fp32's (:meth:`~xrobust.attacks.context.AttackContext.verify`): a robust accuracy is
never lower than fp32 confirms. Iterative attacks derive from
:class:`~xrobust.attacks.iterative.IterativeAttack`, which owns the loop; see
:mod:`xrobust.attacks.guide` for writing one.

Budget modes (``early_stop``):

* ``early_stop=True`` (the default, "evaluation mode"): examples the model already gets
  wrong are not attacked, and an example leaves the active batch as soon as one iterate
  fools the model (its first successful adversarial is kept). This measures robust
  accuracy at a fraction of the cost and never reports a higher robust accuracy than the
  fixed budget, since each example follows the same trajectory until it is fooled.
* ``early_stop=False`` ("fixed budget"): every example gets every step, as in the peer
  libraries; the final iterate is returned.

Example:
    >>> import torch
    >>> from xrobust.attacks import PGD
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> x, y = torch.rand(8, 1, 2, 2), torch.randint(0, 3, (8,))
    >>> res = PGD(model, eps=0.1, steps=5, seed=0).run(x, y)
    >>> bool((res.x_adv - x).abs().max() <= 0.1 + 1e-6)
    True
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from xrobust._modelstate import frozen_eval
from xrobust.attacks import _inputs
from xrobust.attacks.checks import AttackWarning, model_in_train_mode
from xrobust.attacks.config import AttackConfig, check_positive_int, parse_options
from xrobust.attacks.context import AttackContext, Batch, Outcome
from xrobust.attacks.norms import Norm, get_norm
from xrobust.attacks.result import AttackResult
from xrobust.device import maybe_tune_allocator, search_dtype
from xrobust.errors import ConfigError, DataError, ModelError, QueryBudgetExhausted
from xrobust.models.classifier import Classifier, as_classifier

__all__ = ["Attack", "AttackConfig", "AttackResult"]


@dataclass
class _Prepared:
    """A validated batch on the model's device, in working precision."""

    x: torch.Tensor
    y: torch.Tensor
    eps: torch.Tensor
    x_in: torch.Tensor  # the caller's tensor (device and dtype of the result)
    y_in: torch.Tensor


class Attack:
    """Base class of every attack: a final :meth:`run` around a subclass's :meth:`perturb`.

    Subclasses set ``name`` (the registry name) and ``config_cls`` (a frozen dataclass
    deriving from :class:`AttackConfig`) and implement :meth:`perturb` (or, for an
    iterative attack, derive from ``IterativeAttack`` and write its steps).

    Args:
        model: a ``nn.Module`` mapping inputs (in input space) to logits (N, C), or a
            :class:`~xrobust.models.Classifier` (any source: ONNX, endpoint, callable);
            attacks that need gradients refuse a classifier that has none. Bounds the
            classifier declares are the default ``bounds``.
        **kwargs: hyperparameters of ``config_cls``.

    Example:
        >>> import torch
        >>> from xrobust.attacks import FGSM
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> res = FGSM(model, eps=0.05).run(torch.rand(2, 4), torch.tensor([0, 1]))
        >>> res.x_adv.shape
        torch.Size([2, 4])
    """

    name: ClassVar[str] = "attack"
    config_cls: ClassVar[type[AttackConfig]] = AttackConfig
    #: whether ``run(..., target=...)`` is supported
    supports_targeted: ClassVar[bool] = True
    #: whether the attack needs input gradients
    requires_gradients: ClassVar[bool] = True
    #: smallest number of classes the attack's loss needs
    min_classes: int = 2
    #: whether the search may run in reduced precision (``precision``); an attack whose
    #: steps need fp32 decisions (FAB, HopSkipJump: the decision boundary) sets False
    reduced_precision_search: ClassVar[bool] = True

    def __init__(self, model: nn.Module | Classifier, **kwargs: Any) -> None:
        if not isinstance(model, nn.Module | Classifier):
            raise ModelError(
                f"attacks need a torch.nn.Module returning logits or a classifier from "
                f"xrobust.models.as_classifier, got {type(model).__name__}"
            )
        self.classifier: Classifier = as_classifier(model)
        #: the torch module gradients flow through, or None for a black box
        self.model: nn.Module | None = self.classifier.module
        if self.requires_gradients and not self.classifier.differentiable:
            from xrobust.attacks import list_attacks

            able = list_attacks(requires_gradients=False)
            raise ModelError(
                f"attack {self.name!r} needs input gradients, but the classifier "
                f"{self.classifier.name!r} ({self.classifier.source}) has none; attacks "
                "that need only queries: " + (", ".join(able) or "none registered")
            )
        if "bounds" not in kwargs and self.classifier.bounds is not None:
            kwargs["bounds"] = self.classifier.bounds
        self.config = self.config_cls(**parse_options(type(self), kwargs))
        self.norm: Norm = get_norm(self.config.norm)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self.config).items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ the hook
    def perturb(self, ctx: AttackContext, batch: Batch) -> Outcome:
        """Adversarials for the rows of ``batch`` (the examples to attack).

        Called by :meth:`run` (and by ensembles on the rows still robust). ``batch.x`` is
        on the model's device in fp32 (fp64 if given). Return an :class:`Outcome` for
        these rows; ``run`` projects, clips and predicts where ``Outcome.pred`` is -1.
        """
        raise NotImplementedError

    def reuses_clean_forward(self) -> bool:
        """True when the first step starts at the clean input, so that ``run`` keeps the
        clean forward's graph for its first gradient (saves one forward pass)."""
        return False

    def num_classes_ok(self, num_classes: int) -> bool:
        """Whether the attack can run on a model with ``num_classes`` outputs."""
        return num_classes >= self.min_classes

    # ------------------------------------------------------------------ public API
    def run(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | int | None = None,
        *,
        eps: torch.Tensor | float | None = None,
        batch_index: int = 0,
    ) -> AttackResult:
        """Attack a batch.

        Args:
            x: inputs (N, ...) inside ``config.bounds``, on any device; moved to the model's.
            y: true labels (N,).
            target: class(es) to reach (an int for all, or a tensor (N,)); None for an
                untargeted attack.
            eps: a radius per example (tensor (N,)) or for all (float) instead of
                ``config.eps`` (``minimal_perturbation`` bisects with it).
            batch_index: offset of the random generator's seed (``run_loader`` passes the
                batch number so that batches draw different starts, repeatably).

        Returns:
            An :class:`AttackResult` with ``x_adv`` on ``x``'s device and of its dtype.

        Raises:
            ConfigError / DataError / ModelError: bad inputs or options, with the reason.
        """
        return self._run(x, y, target, eps, None, batch_index)

    def _run(
        self, x: Any, y: Any, target: Any, eps: Any, seed: int | None, batch_index: int
    ) -> AttackResult:
        t0 = time.perf_counter()
        if target is not None and not self.supports_targeted:
            raise ConfigError(f"attack {self.name!r} does not support targeted runs")
        prep = self._prepare(x, y, eps)
        maybe_tune_allocator(prep.x.device)  # once per process, CPU only, as the CLI does
        ctx, seed = self._context(prep, target is not None, seed, batch_index)
        frozen = frozen_eval(self.model) if self.model is not None else contextlib.nullcontext()
        with frozen, torch.no_grad():
            logits = self._clean_forward(ctx, prep)
            tw = _inputs.as_target(target, prep.x.shape[0], logits.shape[1], prep.x.device)
            pred_clean = logits.argmax(1)
            if self.config.early_stop:
                active = ~ctx.is_success(pred_clean, prep.y, tw)
            else:
                active = torch.ones_like(prep.y, dtype=torch.bool)
            ctx.clean_graph = ctx.clean_graph if bool(active.any()) else None
            out = self._perturb_rows(ctx, prep, tw, active)
            x_adv, pred = self._finish(ctx, prep, out, active, pred_clean)
            success = ctx.is_success(pred, prep.y, tw)
        return self._result(
            prep, ctx, seed, pred_clean, x_adv, pred, success, active, out, tw, t0
        )

    def run_loader(
        self,
        data: Any,
        batch_size: int = 256,
        *,
        keep_adv: bool = False,
        target: int | torch.Tensor | None = None,
        limit: int | None = None,
        progress: Callable[[int, int], None] | None = None,
    ) -> AttackResult:
        """Attack a whole dataset batch by batch, with bounded memory.

        Args:
            data: a ``DataLoader`` yielding ``(x, y)``, a ``Dataset`` of ``(x, y)`` items,
                or an ``(x, y)`` pair of tensors.
            batch_size: batch size when ``data`` is not already a DataLoader.
            keep_adv: keep every adversarial input (on the CPU); otherwise ``x_adv`` is None
                and only per-example predictions, norms and flags are kept.
            target: a target class for every example (an int), one per example (a tensor
                (N,) in the data's order), or None for an untargeted run.
            limit: attack at most this many examples.
            progress: called as ``progress(done, total_or_minus_1)`` after each batch.

        Returns:
            One :class:`AttackResult` over all examples (:meth:`AttackResult.concat`).
        """
        check_positive_int("batch_size", batch_size)
        t0 = time.perf_counter()
        parts: list[AttackResult] = []
        total = _inputs.length(data, limit)
        seed = self._seed(None)
        for bi, (xb, yb) in enumerate(_inputs.batches(data, batch_size, limit)):
            tb = target
            if isinstance(target, torch.Tensor) and target.dim() > 0:
                start = sum(p.n for p in parts)
                tb = target[start : start + len(xb)]
            try:
                r = self._run(xb, yb, tb, None, seed, bi)
            except QueryBudgetExhausted as exc:
                if not parts:
                    raise
                return self._stopped(parts, keep_adv, total, exc, t0)
            r.x_adv = r.x_adv.detach().cpu() if keep_adv and r.x_adv is not None else None
            parts.append(r)
            if progress is not None:
                progress(sum(p.n for p in parts), total)
        if not parts:
            raise DataError("run_loader got no data: the dataset or loader is empty")
        res = AttackResult.concat(parts, keep_adv=keep_adv)
        res.time_s = time.perf_counter() - t0
        return res

    def _stopped(
        self,
        parts: list[AttackResult],
        keep_adv: bool,
        total: int,
        exc: QueryBudgetExhausted,
        t0: float,
    ) -> AttackResult:
        """The batches done before the budget ran out, marked partial."""
        res = AttackResult.concat(parts, keep_adv=keep_adv)
        res.partial = True
        of = f" of {total}" if total >= 0 else ""
        res.stop_reason = f"stopped after {res.n}{of} examples: {exc}"
        res.time_s = time.perf_counter() - t0
        return res

    # ------------------------------------------------------------------ template steps
    def _prepare(self, x: Any, y: Any, eps: Any) -> _Prepared:
        cfg = self.config
        x, y = _inputs.as_tensor_pair(x, y)
        _inputs.validate(x, y, cfg.bounds)
        dev = self.classifier.device
        self.classifier.check_data(tuple(x.shape[1:]), None, "batch")
        work = torch.float64 if x.dtype == torch.float64 else torch.float32
        xw = x.detach().to(dev, work)
        radius = cfg.eps if eps is None else eps
        limit = self.norm.max_radius(cfg.bounds, xw[0].numel())
        if radius is None:
            # an attack without a radius (minimal perturbation, e.g. HopSkipJump's
            # eps=None): the ball of the largest radius the bounds allow holds every input
            radius = min(limit, torch.finfo(work).max / 4)
        eps_t = _inputs.per_example_eps(radius, xw)
        if float(eps_t.max()) > limit * (1 + 1e-6):
            raise ConfigError(
                f"eps={float(eps_t.max())} is larger than the bounds allow: an "
                f"{self.norm.name} perturbation of these inputs can be at most {limit:.4g}"
            )
        if self.model is not None and model_in_train_mode(self.model):
            warnings.warn(
                "the model was in train mode; the attack evaluates it in eval mode (dropout "
                "off, batch-norm running statistics) and restores train mode afterwards",
                AttackWarning,
                stacklevel=4,
            )
        return _Prepared(xw, y.detach().to(dev, torch.long), eps_t, x, y)

    def _seed(self, seed: int | None) -> int:
        """The run's seed: given, configured, or drawn from torch's global generator."""
        if seed is not None:
            return seed
        if self.config.seed is not None:
            return self.config.seed
        return int(torch.randint(0, 2**62, (1,)).item())

    def _context(
        self, prep: _Prepared, targeted: bool, seed: int | None, batch_index: int
    ) -> tuple[AttackContext, int]:
        cfg, dev = self.config, prep.x.device
        seed = self._seed(seed)
        gen = torch.Generator(device=dev)
        gen.manual_seed(seed + batch_index)
        params = self.model.parameters() if self.model is not None else iter(())
        param = next((p for p in params if p.is_floating_point()), None)
        ctx = AttackContext(
            self.classifier.runner(prep.x),  # the module, or its channels_last copy
            dev,
            search_dtype(dev, cfg.precision, cfg.amp) if self.reduced_precision_search else None,
            gen,
            param.dtype if param is not None else None,
            targeted=targeted,
            n=prep.x.shape[0],
            classifier=self.classifier,
        )
        ctx.batch_index = batch_index
        return ctx, seed

    def _clean_forward(self, ctx: AttackContext, prep: _Prepared) -> torch.Tensor:
        x = prep.x
        if self.reuses_clean_forward():
            # the first step starts at x: keep the clean pass's graph for its gradient
            x_req = x.detach().requires_grad_(True)
            with torch.enable_grad():
                logits_g = ctx.forward(x_req, full_precision=True)
            ctx.clean_graph = (x_req, logits_g)
            logits = logits_g.detach()
        else:
            logits = ctx.forward(x, full_precision=True)  # clean verdicts are fp32's
        _inputs.check_logits(logits, x.shape[0])
        ctx.num_classes = int(logits.shape[1])
        if not self.num_classes_ok(logits.shape[1]):
            raise ModelError(
                f"attack {self.name!r} needs a model with at least {self.min_classes} "
                f"classes, this one has {logits.shape[1]}"
            )
        _inputs.check_labels(prep.y, logits.shape[1])
        if ctx.output_kind == "logits":
            _inputs.warn_if_probabilities(logits)
        return logits

    def _perturb_rows(
        self, ctx: AttackContext, prep: _Prepared, tw: torch.Tensor | None, active: torch.Tensor
    ) -> Outcome:
        """The subclass's outcome scattered into the full batch (inactive rows: x)."""
        full = Outcome.unchanged(prep.x)
        if not bool(active.any()) or not bool((prep.eps > 0).any()):
            return full
        batch = Batch.of(prep.x, prep.y, prep.eps, active, self.norm, self.config.bounds, tw)
        try:
            out = ctx.verify(self.perturb(ctx, batch), batch)  # fp32 verdicts (if reduced)
        except QueryBudgetExhausted as exc:
            # an attack that does not stop by itself: its rows stay clean (not broken)
            ctx.stop(str(exc))
            return full
        full.x_adv[batch.idx] = out.x_adv.detach()
        full.pred[batch.idx] = out.pred
        full.steps[batch.idx] = out.steps
        if out.broken_by is not None:
            names: list[str | None] = [None] * prep.x.shape[0]
            for i, b in zip(batch.idx.tolist(), out.broken_by):
                names[i] = b
            full.broken_by = names
        return full

    def _finish(
        self,
        ctx: AttackContext,
        prep: _Prepared,
        out: Outcome,
        active: torch.Tensor,
        pred_clean: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Project what a subclass left outside the ball or bounds (a safety net), then
        predict where the prediction is not known."""
        x_adv = torch.where(_inputs.rows_like(active, out.x_adv), out.x_adv, prep.x)
        bad = _inputs.outside(x_adv, prep.x, prep.eps, self.norm, self.config.bounds)
        if bool(bad.any()):
            x_adv[bad] = self.norm.clip(x_adv[bad], prep.x[bad], prep.eps[bad], self.config.bounds)
        pred = torch.where(active, out.pred, pred_clean)
        need = active & ((out.pred < 0) | bad)
        k = int(need.sum())
        if k and not ctx.can_query(k):
            # no budget to learn where these rows went: they return their clean input, whose
            # prediction is known (not broken within the budget)
            ctx.budget_stop(k)
            x_adv[need] = prep.x[need]
            pred[need] = pred_clean[need]
            return x_adv, pred
        if bool(need.all()):
            pred = ctx.forward(x_adv, full_precision=True).argmax(1)
        elif bool(need.any()):
            idx = need.nonzero().squeeze(1)
            pred[idx] = ctx.forward(x_adv[idx], idx, full_precision=True).argmax(1)
        return x_adv, pred

    def _result(
        self,
        prep: _Prepared,
        ctx: AttackContext,
        seed: int,
        pred_clean: torch.Tensor,
        x_adv: torch.Tensor,
        pred: torch.Tensor,
        success: torch.Tensor,
        active: torch.Tensor,
        out: Outcome,
        tw: torch.Tensor | None,
        t0: float,
    ) -> AttackResult:
        dev = prep.x_in.device
        broken = out.broken_by
        if broken is not None:
            broken = [b if bool(s) and bool(a) else None for b, s, a in zip(broken, success, active)]
        config = {**self.config.to_dict(), "seed": seed, **ctx.notes}
        if ctx.reduced:
            config["verification"] = {"rows": ctx.verified, "rejected": ctx.rejected}
        return AttackResult(
            x_adv=x_adv.to(dev, prep.x_in.dtype),
            y=prep.y_in.detach().to(dev),
            pred_clean=pred_clean.to(dev),
            pred_adv=pred.to(dev),
            success=success.to(dev),
            norms=self.norm.measure(x_adv - prep.x).to(dev, torch.float32),
            attacked=active.to(dev),
            steps=torch.where(active, out.steps, torch.zeros_like(out.steps)).to(dev),
            attack=self.name,
            norm=self.norm.name,
            eps=self.config.eps,
            config=config,
            target=None if tw is None else tw.to(dev),
            broken_by=broken,
            forward_passes=ctx.forward_passes,
            gradient_passes=ctx.gradient_passes,
            time_s=time.perf_counter() - t0,
            queries=ctx.queries.to(dev),
            partial=ctx.stopped is not None,
            stop_reason=ctx.stopped,
            precision=ctx.precision,
        )
