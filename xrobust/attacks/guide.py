"""Writing an attack.

An attack is a class with a frozen config dataclass and its algorithm; the driver does
the rest. Everything used below is public API of :mod:`xrobust.attacks`.

1. **The config** derives from :class:`~xrobust.attacks.AttackConfig`, which already
   holds ``eps``, ``norm``, ``bounds``, ``early_stop``, ``precision``, ``seed`` (and the
   deprecated ``amp``). Add your hyperparameters with defaults and check them in
   ``__post_init__`` (the helpers of :mod:`xrobust.attacks.config` give the same
   messages everywhere). User options (a
   TOML table, ``--param key=value``) are validated against these fields, with
   did-you-mean on unknown names.
2. **The algorithm.** An iterative attack derives from
   :class:`~xrobust.attacks.IterativeAttack` and writes :meth:`step`: given the rows
   still being attacked (a :class:`~xrobust.attacks.Batch`: ``x``, ``y``, ``eps``, the
   norm object and the ``ball`` to project onto), the current iterate and its
   :class:`~xrobust.attacks.Evaluation` (logits, loss, input gradient), return the next
   iterate and the attack's state. State that lives per example goes in a dataclass:
   the driver removes retired rows from every tensor field. Optional hooks: ``start``
   (the first iterate; default the clean input), ``loss`` (default: the config's
   ``loss`` field, else cross-entropy) and ``output`` (what an example never fooled
   returns; default its final iterate).
3. **What you do not write:** validation, devices and AMP, eval mode and frozen
   parameters, the success test, retiring fooled examples and keeping their first
   adversarial (evaluation mode) or running every step (fixed budget), restarts,
   per-example eps, projection safety nets, final predictions, query counting, and the
   :class:`~xrobust.attacks.AttackResult`. A non-iterative attack derives from
   :class:`~xrobust.attacks.Attack` and writes ``perturb(ctx, batch) -> Outcome``, using
   ``ctx.forward`` / ``ctx.grad`` (counted, under AMP) and ``ctx.generator``.
4. **Register it** under its file name, ``ATTACKS.register("mifgsm")(MIFGSM)`` in
   ``xrobust/attacks/__init__.py``: the CLI, the audit configs, the dashboard and the
   contract tests (``tests/test_attacks_contract.py``) pick it up from the registry.

The complete example, :class:`MIFGSM` below, is the momentum iterative method of Dong
et al., "Boosting Adversarial Attacks with Momentum", arXiv:1710.06081: the gradient is
scaled by its mean absolute value and accumulated with decay ``mu`` into a momentum
``g``, and each step moves ``alpha`` along ``direction(g)`` (its sign for Linf), then
projects onto the ball. The test suite registers it and runs it through every contract
test, and checks it against torchattacks' ``MIFGSM``.

Example:
    >>> import torch
    >>> from xrobust.attacks.guide import MIFGSM
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 4))
    >>> res = MIFGSM(model, eps=0.1, steps=5, seed=0).run(torch.rand(8, 1, 4, 4), torch.arange(8) % 4)
    >>> bool(res.norms.max() <= 0.1 + 1e-6)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xrobust.attacks import AttackConfig, Batch, Evaluation, IterativeAttack
from xrobust.attacks.config import check_positive_int, check_positive_number

__all__ = ["MIFGSM", "MIFGSMConfig"]


@dataclass(frozen=True)
class MIFGSMConfig(AttackConfig):
    """MI-FGSM hyperparameters.

    Attributes:
        steps: iterations (paper: 10).
        decay: momentum decay mu (paper: 1.0).
        step_size: alpha in input units; None = eps / steps (the paper's choice).
    """

    steps: int = 10
    decay: float = 1.0
    step_size: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("steps", self.steps)
        check_positive_number("decay", self.decay)
        if self.step_size is not None:
            object.__setattr__(self, "step_size", check_positive_number("step_size", self.step_size))


@dataclass
class _Momentum:
    g: torch.Tensor  # accumulated, normalised gradient per example


class MIFGSM(IterativeAttack):
    """Momentum iterative FGSM (Dong et al., arXiv:1710.06081), linf or l2."""

    name = "mifgsm"
    config_cls = MIFGSMConfig
    config: MIFGSMConfig

    def reuses_clean_forward(self) -> bool:
        return True  # the first iterate is the clean input

    def step(
        self, state: _Momentum | None, batch: Batch, x: torch.Tensor, ev: Evaluation, t: int
    ) -> tuple[torch.Tensor, _Momentum]:
        assert ev.grad is not None
        dims = tuple(range(1, x.dim()))
        g = ev.grad / ev.grad.abs().mean(dim=dims, keepdim=True).clamp_min(1e-12)
        if state is not None:
            g = g + self.config.decay * state.g
        c = self.config
        alpha = batch.eps * (c.step_size / c.eps if c.step_size and c.eps else 1.0 / c.steps)
        return batch.ball.project(batch.norm.step(x, g, alpha)), _Momentum(g)
