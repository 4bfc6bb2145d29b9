"""Adversarial training objectives: PGD-AT, fast FGSM-AT and TRADES.

* ``"pgd"``: Madry et al., "Towards Deep Learning Models Resistant to Adversarial
  Attacks", arXiv:1706.06083: train on PGD adversarials (random start, ``adv_steps``
  steps of ``adv_step_size``, default ``2.5 * eps / steps``).
* ``"fgsm"``: Wong et al., "Fast is better than free: Revisiting adversarial training",
  arXiv:2001.03994: one FGSM step of ``1.25 * eps`` (default) from a uniform random
  start in the ball, projected back.
* ``"trades"``: Zhang et al., "Theoretically Principled Trade-off between Robustness and
  Accuracy", arXiv:1901.08573: ``CE(f(x), y) + beta * KL(f(x) || f(x_adv))`` with x_adv
  maximising the KL term from ``x + 0.001 * N(0, 1)``.

The adversarial examples are generated with the attack package's pure functions, with
the model in eval mode (dropout off, batch-norm statistics untouched by the attack) and
its parameters frozen (no weight gradient is computed during generation); the model's
modes and ``requires_grad`` flags are then restored and the training loss is computed in
the mode the model was in. Inputs (N, ...) within ``bounds``.

Example:
    >>> import torch
    >>> from types import SimpleNamespace
    >>> from xrobust.trainer.adversarial import adversarial_loss
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> cfg = SimpleNamespace(adversarial="pgd", adv_eps=0.1, adv_norm="linf", adv_steps=3,
    ...                       adv_step_size=None, trades_beta=6.0)
    >>> out = adversarial_loss(model, torch.rand(5, 4), torch.tensor([0, 1, 2, 0, 1]), cfg,
    ...                        bounds=(0.0, 1.0), criterion=torch.nn.CrossEntropyLoss())
    >>> out.loss.requires_grad, out.adv_logits.shape
    (True, torch.Size([5, 3]))
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as tF
from torch import nn

from xrobust._modelstate import frozen_eval
from xrobust.attacks import _functional as F
from xrobust.errors import ConfigError

__all__ = ["AdvLoss", "adversarial_examples", "adversarial_loss"]


@dataclass
class AdvLoss:
    """The training objective of one batch.

    Attributes:
        loss: scalar loss to back-propagate (carries the graph to the weights).
        clean_logits: logits of the clean batch (detached), for the clean training accuracy.
        adv_logits: logits of the adversarial batch (detached).
        x_adv: the adversarial batch (detached).
    """

    loss: torch.Tensor
    clean_logits: torch.Tensor | None
    adv_logits: torch.Tensor
    x_adv: torch.Tensor


def _unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel/DataParallel wrapper (generation must
    not trigger the wrapper's gradient synchronisation)."""
    inner = getattr(model, "module", None)
    return inner if isinstance(inner, nn.Module) else model


def _method(config: Any) -> str:
    m = getattr(config, "adversarial", None)
    if m not in ("pgd", "fgsm", "trades"):
        raise ConfigError(
            f"unknown adversarial training method {m!r}; expected 'pgd', 'fgsm' or 'trades'"
        )
    return str(m)


def adversarial_examples(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: Any,
    *,
    bounds: tuple[float, float] | None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Adversarial inputs for training, and the clean logits seen on the way (or None).

    Args:
        model: the model being trained (wrappers such as DDP are unwrapped).
        x, y: the batch (inputs within ``bounds``) and labels.
        config: an object with ``adversarial``, ``adv_eps``, ``adv_norm``, ``adv_steps``,
            ``adv_step_size`` (e.g. :class:`xrobust.trainer.TrainConfig`).
        bounds: valid input range, or None.
        generator: random generator for the starts (default: torch's global one).

    Returns:
        ``(x_adv, clean_logits)``; x_adv is detached, in the eps-ball and the bounds.
    """
    method = _method(config)
    eps = float(config.adv_eps)
    norm = F.check_norm(getattr(config, "adv_norm", "linf"))
    steps = int(getattr(config, "adv_steps", 10))
    step_size = getattr(config, "adv_step_size", None)
    if eps <= 0:
        raise ConfigError(f"adv_eps must be > 0, got {eps}")
    net = _unwrap(model)
    x = x.detach()
    work = torch.float64 if x.dtype == torch.float64 else torch.float32
    xw = x.to(work)

    def fwd(inp: torch.Tensor) -> torch.Tensor:
        out = net(inp.to(x.dtype))
        return out.float() if out.dtype in (torch.float16, torch.bfloat16) else out

    clean_logits = None
    with frozen_eval(net):
        if method == "fgsm":
            alpha = 1.25 * eps if step_size is None else float(step_size)
            n_steps = 1
            xa = F.random_start(xw, eps, norm, bounds, generator)
        elif method == "pgd":
            alpha = 2.5 * eps / steps if step_size is None else float(step_size)
            n_steps = steps
            xa = F.random_start(xw, eps, norm, bounds, generator)
        else:  # trades
            alpha = 2.5 * eps / steps if step_size is None else float(step_size)
            n_steps = steps
            noise = torch.randn(xw.shape, generator=generator, device=xw.device, dtype=work)
            xa = F.clip_to_ball_and_bounds(xw + 0.001 * noise, xw, eps, norm, bounds)
            with torch.no_grad():
                clean_logits = fwd(xw)
            p_clean = tF.softmax(clean_logits.float(), dim=1)
        for _ in range(n_steps):
            xa = xa.detach().requires_grad_(True)
            with torch.enable_grad():
                logits = fwd(xa).float()
                if method == "trades":
                    loss = tF.kl_div(tF.log_softmax(logits, dim=1), p_clean, reduction="sum")
                else:
                    loss = tF.cross_entropy(logits, y, reduction="sum")
                (g,) = torch.autograd.grad(loss, xa)
            with torch.no_grad():
                xa = F.gradient_step(xa, g.to(work), alpha, norm)
                xa = F.clip_to_ball_and_bounds(xa, xw, eps, norm, bounds)
    return xa.detach().to(x.dtype), clean_logits


def adversarial_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    config: Any,
    *,
    bounds: tuple[float, float] | None,
    criterion: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> AdvLoss:
    """The adversarial training loss of one batch (call it in the model's training mode).

    Args:
        model: the model being trained (its mode is used for the loss forward passes).
        x, y: the batch and its labels.
        config: ``TrainConfig``-like object (``adversarial`` in "pgd", "fgsm", "trades",
            ``adv_eps``, ``adv_norm``, ``adv_steps``, ``adv_step_size``, ``trades_beta``).
        bounds: valid input range, or None.
        criterion: the clean loss (default: cross-entropy).
        generator: random generator for the starts.

    Returns:
        :class:`AdvLoss` with the loss (with graph) and detached logits.
    """
    crit = criterion if criterion is not None else nn.CrossEntropyLoss()
    method = _method(config)
    x_adv, clean_logits = adversarial_examples(
        model, x, y, config, bounds=bounds, generator=generator
    )
    if method == "trades":
        beta = float(getattr(config, "trades_beta", 6.0))
        logits_clean = model(x)
        logits_adv = model(x_adv)
        kl = tF.kl_div(
            tF.log_softmax(logits_adv.float(), dim=1),
            tF.softmax(logits_clean.float(), dim=1),
            reduction="batchmean",
        )
        loss = crit(logits_clean, y) + beta * kl
        return AdvLoss(loss, logits_clean.detach(), logits_adv.detach(), x_adv)
    logits_adv = model(x_adv)
    loss = crit(logits_adv, y)
    if clean_logits is None:
        with torch.no_grad(), frozen_eval(_unwrap(model)):
            clean_logits = _unwrap(model)(x)
    return AdvLoss(loss, clean_logits.detach(), logits_adv.detach(), x_adv)
