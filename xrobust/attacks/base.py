"""The attack template: :class:`Attack` (final ``run``) and :class:`AttackResult`.

A subclass declares a frozen config dataclass and writes ``_perturb``; the base class
validates the inputs, moves them to the model's device, puts the model in eval mode and
freezes its parameters (no weight gradients are ever computed, which is where the speed
over libraries calling ``loss.backward()`` comes from), calls ``_perturb``, then
projects, clips, predicts and measures, and restores the model exactly as it was.

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

import dataclasses
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from xrobust._modelstate import frozen_eval
from xrobust.attacks import _functional as F
from xrobust.attacks.checks import (
    AttackWarning,
    gradient_stats_from_grad,
    model_in_train_mode,
    output_looks_like_probabilities,
)
from xrobust.device import amp_dtype, autocast, model_device
from xrobust.errors import ConfigError, DataError, ModelError

__all__ = ["Attack", "AttackConfig", "AttackResult"]

log = logging.getLogger(__name__)

_BOUND_TOL = 1e-6


@dataclass(frozen=True)
class AttackConfig:
    """Hyperparameters shared by every attack (subclasses add theirs).

    Attributes:
        eps: radius of the threat model in input units (>= 0).
        norm: "linf" or "l2".
        bounds: (low, high) valid input range, or None for unbounded inputs.
        early_stop: evaluation mode (True, default) or fixed budget (False); see module doc.
        amp: mixed precision for the model's forward on CUDA (False, True/"auto", "bf16",
            "fp16"); perturbation maths stay in fp32. Ignored on CPU.
        seed: seed of the attack's random generator (None: drawn from torch's global RNG,
            so ``torch.manual_seed`` makes runs repeatable too).
    """

    eps: float = 8 / 255
    norm: str = "linf"
    bounds: tuple[float, float] | None = (0.0, 1.0)
    early_stop: bool = True
    amp: bool | str = False
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "norm", F.check_norm(self.norm))
        try:
            eps = float(self.eps)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"eps must be a number, got {self.eps!r}") from exc
        if not math.isfinite(eps) or eps < 0:
            raise ConfigError(f"eps must be a finite number >= 0, got {self.eps!r}")
        object.__setattr__(self, "eps", eps)
        if self.bounds is not None:
            try:
                lo, hi = (float(b) for b in self.bounds)
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"bounds must be a (low, high) pair of numbers or None, got {self.bounds!r}"
                ) from exc
            if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
                raise ConfigError(f"bounds must satisfy low < high (finite), got {self.bounds!r}")
            object.__setattr__(self, "bounds", (lo, hi))
            if self.norm == "linf" and eps > hi - lo:
                raise ConfigError(
                    f"eps={eps} is larger than the bounds allow: a linf perturbation can be at "
                    f"most high - low = {hi - lo} for bounds {self.bounds}"
                )
        if self.seed is not None and not isinstance(self.seed, int):
            raise ConfigError(f"seed must be an int or None, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the hyperparameters."""
        d = dataclasses.asdict(self)
        if d.get("bounds") is not None:
            d["bounds"] = list(d["bounds"])
        for k, v in list(d.items()):
            if isinstance(v, tuple):
                d[k] = list(v)
        return d


def _check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


@dataclass
class AttackResult:
    """What an attack found, per example and in summary.

    Attributes:
        x_adv: adversarial inputs (shape, device and dtype of the input batch), or None when
            :meth:`Attack.run_loader` was asked not to keep them.
        y: true labels.
        pred_clean: model predictions on the clean inputs.
        pred_adv: model predictions on ``x_adv`` (for an example fooled in evaluation mode,
            the prediction of the forward pass that found its adversarial: no pass is
            repeated).
        success: per example, the attack's goal is met at ``x_adv`` (untargeted: the
            prediction is wrong; targeted: it equals the target).
        norms: per example, ``||x_adv - x||`` in the attack's norm.
        attacked: per example, whether the attack ran on it (evaluation mode skips examples
            already misclassified, or already classified as the target).
        steps: per example, gradient steps spent on it.
        attack: registry name of the attack.
        norm / eps: the threat model.
        config: the attack's hyperparameters.
        target: target classes of a targeted run, else None.
        broken_by: per example, the name of the attack that first broke it (ensembles), or None.
        forward_passes / gradient_passes: model evaluations, counted in examples.
        time_s: wall-clock seconds of the run.
    """

    x_adv: torch.Tensor | None
    y: torch.Tensor
    pred_clean: torch.Tensor
    pred_adv: torch.Tensor
    success: torch.Tensor
    norms: torch.Tensor
    attacked: torch.Tensor
    steps: torch.Tensor
    attack: str
    norm: str
    eps: float
    config: dict[str, Any] = field(default_factory=dict)
    target: torch.Tensor | None = None
    broken_by: list[str | None] | None = None
    forward_passes: int = 0
    gradient_passes: int = 0
    time_s: float = 0.0

    @property
    def n(self) -> int:
        """Number of examples."""
        return int(self.y.shape[0])

    @property
    def clean_accuracy(self) -> float:
        """Accuracy on the clean inputs."""
        return float((self.pred_clean == self.y).float().mean()) if self.n else float("nan")

    @property
    def robust_accuracy(self) -> float:
        """Accuracy on the adversarial inputs."""
        return float((self.pred_adv == self.y).float().mean()) if self.n else float("nan")

    @property
    def success_rate(self) -> float:
        """Fraction of attacked examples on which the attack met its goal."""
        k = int(self.attacked.sum())
        return float((self.success & self.attacked).sum()) / k if k else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no tensors) for reports."""
        ok = self.success & self.attacked
        nrm = self.norms[ok].float()
        d: dict[str, Any] = {
            "attack": self.attack,
            "norm": self.norm,
            "eps": self.eps,
            "config": self.config,
            "targeted": self.target is not None,
            "n": self.n,
            "n_attacked": int(self.attacked.sum()),
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "success_rate": self.success_rate,
            "mean_norm_successful": float(nrm.mean()) if nrm.numel() else None,
            "median_norm_successful": float(nrm.median()) if nrm.numel() else None,
            "max_norm": float(self.norms.max()) if self.norms.numel() else None,
            "steps_total": int(self.steps.sum()),
            "forward_passes": self.forward_passes,
            "gradient_passes": self.gradient_passes,
            "time_s": self.time_s,
        }
        if self.broken_by is not None:
            counts: dict[str, int] = {}
            for b in self.broken_by:
                if b is not None:
                    counts[b] = counts.get(b, 0) + 1
            d["broken_by"] = counts
        return d


@dataclass
class _Perturbed:
    """What ``_perturb`` hands back: full-batch adversarials, predictions where known
    (-1 elsewhere), steps spent per example, and optional per-example attack names."""

    x_adv: torch.Tensor
    pred: torch.Tensor
    steps: torch.Tensor
    broken_by: list[str | None] | None = None


class _Context:
    """Per-run state handed to ``_perturb``: forward/gradient helpers with AMP and
    counters, the random generator, and the goal test."""

    def __init__(
        self,
        model: nn.Module,
        device: torch.device,
        amp: torch.dtype | None,
        generator: torch.Generator,
        param_dtype: torch.dtype | None,
        targeted: bool,
    ) -> None:
        self.model = model
        self.device = device
        self.amp = amp
        self.generator = generator
        self.param_dtype = param_dtype
        self.targeted = targeted
        self.forward_passes = 0
        self.gradient_passes = 0
        self._grad_checked = False
        #: (input, logits with graph) of the clean forward when the attack reuses it
        self.clean_graph: tuple[torch.Tensor, torch.Tensor] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (float32 or float64) of ``x``; autocast when AMP is on."""
        self.forward_passes += int(x.shape[0])
        xin = x if self.param_dtype is None or self.amp is not None else x.to(self.param_dtype)
        with autocast(self.device, self.amp):
            out = self.model(xin)
        if not isinstance(out, torch.Tensor):
            raise ModelError(
                f"the model returned {type(out).__name__}; attacks need a tensor of logits (N, C)"
            )
        return out.float() if out.dtype in (torch.float16, torch.bfloat16) else out

    def grad(
        self, loss: torch.Tensor, x: torch.Tensor, rows: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Gradient of scalar ``loss`` with respect to input ``x`` (float maths).

        ``rows`` (mask or indices) names the rows the loss depends on; the first call's
        gradient health check looks only at them.
        """
        self.gradient_passes += int(x.shape[0])
        (g,) = torch.autograd.grad(loss, x)
        if not self._grad_checked:
            self._grad_checked = True
            stats = gradient_stats_from_grad(g if rows is None else g[rows])
            if stats.nonfinite_fraction > 0:
                warnings.warn(
                    f"non-finite input gradients for {stats.nonfinite_fraction:.0%} of the "
                    "batch: the attack cannot follow them and robustness will be overestimated",
                    AttackWarning,
                    stacklevel=4,
                )
            elif stats.zero_fraction > 0.5:
                warnings.warn(
                    f"input gradients are exactly zero for {stats.zero_fraction:.0%} of the "
                    "batch (saturated or non-differentiable model, gradient masking?): "
                    "gradient attacks will overestimate robustness; try a black-box attack",
                    AttackWarning,
                    stacklevel=4,
                )
        return g.to(x.dtype)

    def is_success(
        self, pred: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None
    ) -> torch.Tensor:
        """Per-example goal test: wrong prediction, or the target class when targeted."""
        return pred == target if target is not None else pred != y


class Attack:
    """Base class of every attack: a final :meth:`run` around a subclass's ``_perturb``.

    Subclasses set ``name`` (the registry name), ``config_cls`` (a frozen dataclass
    deriving from :class:`AttackConfig`) and implement ``_perturb``.

    Args:
        model: a ``nn.Module`` mapping inputs (in input space) to logits (N, C).
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
    #: smallest number of classes the attack's loss needs
    min_classes: ClassVar[int] = 2

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        if not isinstance(model, nn.Module):
            raise ModelError(
                f"attacks need a torch.nn.Module returning logits, got {type(model).__name__}"
            )
        self.model = model
        self.config = self.config_cls(**kwargs)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in dataclasses.asdict(self.config).items())
        return f"{type(self).__name__}({args})"

    # ------------------------------------------------------------------ public API
    def run(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | int | None = None,
    ) -> AttackResult:
        """Attack a batch.

        Args:
            x: inputs (N, ...) inside ``config.bounds``, on any device; moved to the model's.
            y: true labels (N,).
            target: class(es) to reach (an int for all, or a tensor (N,)); None for an
                untargeted attack.

        Returns:
            An :class:`AttackResult` with ``x_adv`` on ``x``'s device and of its dtype.

        Raises:
            ConfigError / DataError / ModelError: bad inputs or options, with the reason.
        """
        return self._execute(x, y, target)

    def run_loader(
        self,
        data: Any,
        batch_size: int = 256,
        *,
        keep_adv: bool = False,
        target: int | None = None,
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
            target: a target class for every example (targeted run), or None.
            limit: attack at most this many examples.
            progress: called as ``progress(done, total_or_minus_1)`` after each batch.

        Returns:
            One :class:`AttackResult` over all examples.
        """
        _check_positive_int("batch_size", batch_size)
        t0 = time.perf_counter()
        parts: list[AttackResult] = []
        advs: list[torch.Tensor] = []
        done = 0
        total = _len_or_minus_one(data, limit)
        for bi, (xb, yb) in enumerate(_iter_batches(data, batch_size)):
            if limit is not None and done >= limit:
                break
            if limit is not None and done + len(xb) > limit:
                xb, yb = xb[: limit - done], yb[: limit - done]
            r = self._execute(xb, yb, target, seed_offset=bi)
            if keep_adv and r.x_adv is not None:
                advs.append(r.x_adv.detach().cpu())
            r.x_adv = None
            parts.append(r)
            done += len(xb)
            if progress is not None:
                progress(done, total)
        if not parts:
            raise DataError("run_loader got no data: the dataset or loader is empty")
        cat = torch.cat
        return AttackResult(
            x_adv=cat(advs) if keep_adv else None,
            y=cat([p.y for p in parts]),
            pred_clean=cat([p.pred_clean for p in parts]),
            pred_adv=cat([p.pred_adv for p in parts]),
            success=cat([p.success for p in parts]),
            norms=cat([p.norms for p in parts]),
            attacked=cat([p.attacked for p in parts]),
            steps=cat([p.steps for p in parts]),
            attack=self.name,
            norm=self.config.norm,
            eps=self.config.eps,
            config=self.config.to_dict(),
            target=None
            if target is None
            else cat([p.target for p in parts if p.target is not None]),
            broken_by=None
            if parts[0].broken_by is None
            else [b for p in parts for b in (p.broken_by or [])],
            forward_passes=sum(p.forward_passes for p in parts),
            gradient_passes=sum(p.gradient_passes for p in parts),
            time_s=time.perf_counter() - t0,
        )

    # ------------------------------------------------------------------ subclass hooks
    def _reuses_clean_forward(self) -> bool:
        """True when the first step starts at the clean input, so the clean forward's graph
        can give the first gradient (saves one forward pass)."""
        return False

    def _perturb(
        self,
        ctx: _Context,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        eps: torch.Tensor,
        active: torch.Tensor,
    ) -> _Perturbed:
        """Compute adversarials for the examples where ``active`` is True.

        ``x`` is the full batch on the model's device in fp32 (fp64 if given), ``eps`` a
        per-example radius (N,). Return a :class:`_Perturbed` for the full batch
        (inactive rows equal to ``x``); the base projects, clips and predicts.
        """
        raise NotImplementedError

    # ------------------------------------------------------------------ template
    def _execute(
        self,
        x: Any,
        y: Any,
        target: Any,
        *,
        eps: torch.Tensor | None = None,
        seed_offset: int = 0,
    ) -> AttackResult:
        t0 = time.perf_counter()
        cfg = self.config
        x, y = _as_tensor_pair(x, y)
        if target is not None and not self.supports_targeted:
            raise ConfigError(f"attack {self.name!r} does not support targeted runs")
        _validate_inputs(x, y, cfg)
        dev = model_device(self.model)
        work_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        xw = x.detach().to(dev, work_dtype)
        yw = y.detach().to(dev, torch.long)
        n = xw.shape[0]
        if eps is None:
            eps_t = torch.full((n,), cfg.eps, device=dev, dtype=work_dtype)
        else:
            eps_t = eps.detach().to(dev, work_dtype).reshape(-1)
            if eps_t.shape[0] != n:
                raise ConfigError(f"per-example eps has {eps_t.shape[0]} entries for {n} inputs")
        if cfg.norm == "l2" and cfg.bounds is not None and n:
            limit = (cfg.bounds[1] - cfg.bounds[0]) * math.sqrt(xw[0].numel())
            if float(eps_t.max()) > limit:
                raise ConfigError(
                    f"eps={float(eps_t.max())} is larger than the bounds allow: an l2 "
                    f"perturbation of these inputs can be at most {limit:.4g}"
                )
        if model_in_train_mode(self.model):
            warnings.warn(
                "the model was in train mode; the attack evaluates it in eval mode (dropout "
                "off, batch-norm running statistics) and restores train mode afterwards",
                AttackWarning,
                stacklevel=3,
            )
        gen = torch.Generator(device=dev)
        base_seed = (
            cfg.seed
            if cfg.seed is not None
            else int(torch.randint(0, 2**62, (1,), generator=None).item())
        )
        gen.manual_seed(base_seed + seed_offset)
        param = next((p for p in self.model.parameters() if p.is_floating_point()), None)
        ctx = _Context(
            self.model,
            dev,
            amp_dtype(dev, cfg.amp),
            gen,
            param.dtype if param is not None else None,
            targeted=target is not None,
        )
        with frozen_eval(self.model), torch.no_grad():
            if self._reuses_clean_forward():
                # the first step starts at x: keep the clean pass's graph for its gradient
                x_req = xw.detach().requires_grad_(True)
                with torch.enable_grad():
                    logits_g = ctx.forward(x_req)
                ctx.clean_graph = (x_req, logits_g)
                logits = logits_g.detach()
            else:
                logits = ctx.forward(xw)
            _check_logits(logits, n)
            num_classes = logits.shape[1]
            if num_classes < self.min_classes:
                raise ModelError(
                    f"attack {self.name!r} needs a model with at least {self.min_classes} "
                    f"classes, this one has {num_classes}"
                )
            if int(yw.max()) >= num_classes:
                raise DataError(
                    f"labels go up to {int(yw.max())} but the model has {num_classes} outputs"
                )
            tw = _as_target(target, n, num_classes, dev)
            if output_looks_like_probabilities(logits):
                warnings.warn(
                    "model outputs look like probabilities (non-negative rows summing to 1, or "
                    "values in [0, 1]); attacks expect logits: remove the final softmax/sigmoid "
                    "or robustness will be overestimated",
                    AttackWarning,
                    stacklevel=3,
                )
            pred_clean = logits.argmax(1)
            if cfg.early_stop:
                active = ~ctx.is_success(pred_clean, yw, tw)
            else:
                active = torch.ones(n, dtype=torch.bool, device=dev)
            if cfg.eps > 0 or eps is not None:
                out = self._perturb(ctx, xw, yw, tw, eps_t, active)
            else:
                out = _Perturbed(xw.clone(), torch.full_like(yw, -1), torch.zeros_like(yw))
            x_adv = out.x_adv.detach()
            x_adv = torch.where(_bcast(active, x_adv), x_adv, xw)
            # safety net: project anything a subclass left outside the ball or bounds
            bad = _outside(x_adv, xw, eps_t, cfg)
            if bool(bad.any()):
                x_adv[bad] = F.clip_to_ball_and_bounds(
                    x_adv[bad], xw[bad], eps_t[bad], cfg.norm, cfg.bounds
                )
            pred = _final_predictions(ctx, x_adv, active, bad, out.pred, pred_clean)
            norms = F.lp_norm(x_adv - xw, cfg.norm)
            success = ctx.is_success(pred, yw, tw)
        broken = out.broken_by
        if broken is not None:
            broken = [
                b if bool(s) and bool(a) else None for b, s, a in zip(broken, success, active)
            ]
        out_dev = x.device
        return AttackResult(
            x_adv=x_adv.to(out_dev, x.dtype),
            y=y.detach().to(out_dev),
            pred_clean=pred_clean.to(out_dev),
            pred_adv=pred.to(out_dev),
            success=success.to(out_dev),
            norms=norms.to(out_dev, torch.float32),
            attacked=active.to(out_dev),
            steps=torch.where(active, out.steps, torch.zeros_like(out.steps)).to(out_dev),
            attack=self.name,
            norm=cfg.norm,
            eps=cfg.eps,
            config=cfg.to_dict(),
            target=None if tw is None else tw.to(out_dev),
            broken_by=broken,
            forward_passes=ctx.forward_passes,
            gradient_passes=ctx.gradient_passes,
            time_s=time.perf_counter() - t0,
        )


# ---------------------------------------------------------------------- helpers
def _final_predictions(
    ctx: _Context,
    x_adv: torch.Tensor,
    active: torch.Tensor,
    moved: torch.Tensor,
    known: torch.Tensor,
    pred_clean: torch.Tensor,
) -> torch.Tensor:
    """Predictions at ``x_adv``, running the model only where they are not known yet.

    Rows not attacked keep ``x_adv == x`` and their clean prediction; rows whose
    adversarial was already evaluated by the attack (the forward pass that found it, in
    evaluation mode) keep that prediction; the rest (survivors' final iterates, the
    fixed budget's last step, rows the safety net moved) get one forward pass.
    """
    pred = torch.where(active, known, pred_clean)
    need = active & ((known < 0) | moved)
    if bool(need.all()):
        return ctx.forward(x_adv).argmax(1)
    if bool(need.any()):
        pred[need] = ctx.forward(x_adv[need]).argmax(1)
    return pred


def _bcast(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(-1, *([1] * (like.dim() - 1)))


def _outside(
    x_adv: torch.Tensor, x: torch.Tensor, eps: torch.Tensor, cfg: AttackConfig
) -> torch.Tensor:
    tol = 1e-5 * (1.0 + eps)
    bad = F.lp_norm(x_adv - x, cfg.norm) > eps + tol
    if cfg.bounds is not None:
        flat = x_adv.reshape(x_adv.shape[0], -1)
        bad |= (flat < cfg.bounds[0]).any(1) | (flat > cfg.bounds[1]).any(1)
    return bad


def _as_tensor_pair(x: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(x, dtype=torch.float32)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"inputs must be a tensor or array, got {type(x).__name__}") from exc
    if not isinstance(y, torch.Tensor):
        try:
            y = torch.as_tensor(y)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise DataError(f"labels must be a tensor or array, got {type(y).__name__}") from exc
    return x, y


def _validate_inputs(x: torch.Tensor, y: torch.Tensor, cfg: AttackConfig) -> None:
    if not x.is_floating_point():
        raise DataError(f"inputs must be floating point, got dtype {x.dtype}")
    if x.dim() < 2:
        raise DataError(
            f"inputs must be a batch of shape (N, ...) with at least 2 dimensions, got {tuple(x.shape)}"
        )
    if y.dim() != 1 or y.shape[0] != x.shape[0]:
        raise DataError(
            f"labels must have shape ({x.shape[0]},) to match the inputs, got {tuple(y.shape)}"
        )
    if y.is_floating_point() or y.dtype == torch.bool:
        raise DataError(f"labels must be integer class indices, got dtype {y.dtype}")
    if x.shape[0] == 0:
        raise DataError("the batch is empty: nothing to attack")
    if int(y.min()) < 0:
        raise DataError("labels must be >= 0")
    if not bool(torch.isfinite(x).all()):
        raise DataError("inputs contain NaN or infinite values")
    if cfg.bounds is not None:
        lo, hi = float(x.min()), float(x.max())
        if lo < cfg.bounds[0] - _BOUND_TOL or hi > cfg.bounds[1] + _BOUND_TOL:
            raise DataError(
                f"inputs range over [{lo:.4g}, {hi:.4g}], outside the attack's bounds "
                f"{cfg.bounds}; pass bounds=(low, high) matching your data (inputs are "
                "expected in input space, normalisation inside the model)"
            )


def _check_logits(logits: torch.Tensor, n: int) -> None:
    if logits.dim() != 2 or logits.shape[0] != n:
        raise ModelError(
            f"the model must return logits of shape (N, C) = ({n}, C), got {tuple(logits.shape)}"
        )
    if logits.shape[1] < 2:
        raise ModelError(
            "the model returns a single output; attacks need one logit per class (N, C >= 2)"
        )
    if not bool(torch.isfinite(logits).all()):
        raise ModelError("the model returned NaN or infinite logits on the clean inputs")


def _as_target(target: Any, n: int, num_classes: int, dev: torch.device) -> torch.Tensor | None:
    if target is None:
        return None
    if isinstance(target, bool):
        raise ConfigError("target must be a class index or a tensor of class indices")
    if isinstance(target, int):
        t = torch.full((n,), target, dtype=torch.long, device=dev)
    else:
        t = torch.as_tensor(target).to(dev)
        if t.is_floating_point():
            raise ConfigError("target must hold integer class indices")
        t = t.long().reshape(-1)
        if t.numel() == 1:
            t = t.expand(n).clone()
    if t.shape[0] != n:
        raise ConfigError(f"target has {t.shape[0]} entries for {n} inputs")
    if int(t.min()) < 0 or int(t.max()) >= num_classes:
        raise ConfigError(f"target classes must be in [0, {num_classes - 1}]")
    return t


def _len_or_minus_one(data: Any, limit: int | None) -> int:
    try:
        if isinstance(data, tuple | list) and len(data) == 2:
            total = len(data[0])
        elif hasattr(data, "dataset"):
            total = len(data.dataset)
        else:
            total = len(data)
    except TypeError:
        return -1
    return min(total, limit) if limit is not None else total


def _iter_batches(data: Any, batch_size: int) -> Iterable[tuple[torch.Tensor, torch.Tensor]]:
    if isinstance(data, tuple | list) and len(data) == 2 and isinstance(data[0], torch.Tensor):
        x, y = data
        for i in range(0, len(x), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]
        return
    from torch.utils.data import DataLoader, Dataset

    if isinstance(data, DataLoader):
        loader: Iterable[Any] = data
    elif isinstance(data, Dataset):
        loader = DataLoader(data, batch_size=batch_size, shuffle=False)
    else:
        raise DataError(
            "run_loader needs a DataLoader, a Dataset of (x, y) items or an (x, y) tensor "
            f"pair, got {type(data).__name__}"
        )
    for batch in loader:
        if not isinstance(batch, tuple | list) or len(batch) < 2:
            raise DataError("each batch must be an (x, y) pair")
        yield batch[0], batch[1]
