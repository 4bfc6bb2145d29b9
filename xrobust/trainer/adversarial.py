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

The adversarial examples come from the attacks' public API, the same attack the
attack tests cover: :class:`xrobust.attacks.PGD` with a fixed budget (``early_stop=False``:
every example gets every step, the final iterate is returned) and a random start; fast
FGSM-AT is that PGD with one step of ``1.25 * eps`` (the public ``FGSM`` starts at ``x``,
not in the ball); TRADES is PGD whose loss (the :meth:`~xrobust.attacks.IterativeAttack.loss`
hook) is the KL term and whose start is the small Gaussian one. The model is put in eval
mode (dropout off, batch-norm statistics untouched by the attack) with its parameters
frozen (no weight gradient is computed during generation) for the generation; its modes
and ``requires_grad`` flags are then restored and the training loss is computed in the
mode the model was in. The attack's random starts use its own generator, seeded from
torch's global one (or ``generator``), so ``seed_everything`` makes a run repeatable and
a resumed run continues the same draws. Inputs (N, ...) within ``bounds``: a batch
outside them is refused with a :class:`~xrobust.errors.DataError` naming its range (the
loaders' bounds always hold their data).

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

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as tF
from torch import nn

from xrobust._modelstate import frozen_eval
from xrobust.attacks import PGD, AttackContext, AttackWarning, Batch
from xrobust.errors import ConfigError
from xrobust.models import TorchClassifier

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


class _TradesKL(PGD):
    """PGD on the TRADES inner objective: maximise ``KL(f(x) || f(x'))`` from
    ``x' = x + 0.001 * N(0, I)`` (projected into the ball and the bounds).

    ``p_clean``: the clean softmax of the batch (N, C), fixed for the whole search.
    """

    name = "trades_kl"

    def __init__(self, model: nn.Module | TorchClassifier, p_clean: torch.Tensor, **kw: Any):
        super().__init__(model, **kw)
        self._p_clean = p_clean

    def start(self, ctx: AttackContext, batch: Batch, restart: int) -> torch.Tensor:
        full = batch.full_x
        noise = torch.randn(
            full.shape, generator=ctx.generator, device=full.device, dtype=full.dtype
        )
        return batch.ball.project(batch.x + 0.001 * noise[batch.idx])

    def loss(self, logits: torch.Tensor, batch: Batch) -> torch.Tensor:
        log_q = tF.log_softmax(logits.float(), dim=1)
        return tF.kl_div(log_q, self._p_clean[batch.idx], reduction="none").sum(1)


def _forward(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = net(x)
    return out.float() if out.dtype in (torch.float16, torch.bfloat16) else out


def _attack_seed(generator: torch.Generator | None) -> int:
    """A seed for the attack's generator, drawn from ``generator`` (default: torch's)."""
    device = generator.device if generator is not None else None
    return int(torch.randint(0, 2**62, (1,), generator=generator, device=device).item())


def _attack_options(config: Any, method: str, eps: float, bounds: Any, seed: int) -> dict:
    """PGD's options for a training method: fixed budget, random start."""
    steps = int(getattr(config, "adv_steps", 10))
    step_size = getattr(config, "adv_step_size", None)
    opts: dict[str, Any] = dict(
        eps=eps,
        norm=getattr(config, "adv_norm", "linf"),
        bounds=None if bounds is None else tuple(bounds),
        early_stop=False,
        random_start=True,
        seed=seed,
    )
    if method == "fgsm":  # Wong et al.: one step of 1.25 * eps from a random start
        opts.update(steps=1, step_size=1.25 * eps if step_size is None else float(step_size))
    else:  # PGD's default step: 2.5 * eps / steps (Madry et al.)
        opts.update(steps=steps, step_size=None if step_size is None else float(step_size))
    return opts


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
        generator: draws the seed of the attack's random starts (default: torch's
            global generator).

    Returns:
        ``(x_adv, clean_logits)``; x_adv is detached, in the eps-ball and the bounds.
    """
    method = _method(config)
    eps = float(config.adv_eps)
    if eps <= 0:
        raise ConfigError(f"adv_eps must be > 0, got {eps}")
    net = _unwrap(model)
    x = x.detach()
    opts = _attack_options(config, method, eps, bounds, _attack_seed(generator))
    clean_logits = None
    with frozen_eval(net), warnings.catch_warnings():
        # gradient-health advice is for evaluations; a model in training is expected to
        # have small or saturated gradients at times
        warnings.simplefilter("ignore", AttackWarning)
        clf = TorchClassifier(net, channels_last=False)  # the model's own kernels
        if method == "trades":
            with torch.no_grad():
                clean_logits = _forward(net, x)
            attack: PGD = _TradesKL(clf, tF.softmax(clean_logits.float(), dim=1), **opts)
        else:
            attack = PGD(clf, **opts)
        x_adv = attack.run(x, y).x_adv
    assert x_adv is not None
    return x_adv.detach(), clean_logits


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
