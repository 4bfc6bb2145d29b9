"""The Basic Iterative Method, written against xrobust's public attack API only.

Kurakin, Goodfellow, Bengio, "Adversarial examples in the physical world",
arXiv:1607.02533: from the clean input, ``steps`` signed-gradient steps of size ``alpha``
(its L2-normalised gradient for l2), each followed by a projection onto the eps-ball and
the bounds. The paper takes ``alpha = 1/255`` and about ``1.25 * eps / alpha`` steps, so
the default step is ``1.25 * eps / steps``. It is PGD without the random start.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xrobust.attacks import AttackConfig, Batch, Evaluation, IterativeAttack
from xrobust.attacks.config import check_positive_int, check_positive_number

__all__ = ["BIM", "BIMConfig"]


@dataclass(frozen=True)
class BIMConfig(AttackConfig):
    """BIM hyperparameters.

    Attributes:
        steps: iterations.
        step_size: alpha in input units; None = ``1.25 * eps / steps`` (the paper's budget).
    """

    steps: int = 10
    step_size: float | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("steps", self.steps)
        if self.step_size is not None:
            object.__setattr__(
                self, "step_size", check_positive_number("step_size", self.step_size)
            )


class BIM(IterativeAttack):
    """Basic Iterative Method (Kurakin et al., arXiv:1607.02533), linf or l2."""

    name = "bim"  # must equal the entry point's name
    config_cls = BIMConfig
    config: BIMConfig

    def reuses_clean_forward(self) -> bool:
        return True  # the first iterate is the clean input

    def step(
        self, state: None, batch: Batch, x: torch.Tensor, ev: Evaluation, t: int
    ) -> tuple[torch.Tensor, None]:
        assert ev.grad is not None
        c = self.config
        relative = c.step_size / c.eps if c.step_size is not None and c.eps else 1.25 / c.steps
        return batch.ball.project(batch.norm.step(x, ev.grad, batch.eps * relative)), None
