"""Fast Gradient Sign Method (FGSM) and its L2 form, the Fast Gradient Method (FGM).

Goodfellow et al., "Explaining and Harnessing Adversarial Examples", arXiv:1412.6572.
One step of size eps from the clean input along the sign of the gradient (linf) or the
L2-normalised gradient (l2), clipped to ``bounds``: PGD's pieces with one step and no
random start. Inputs of any shape (N, ...); the model returns logits (N, C).

Example:
    >>> import torch
    >>> from xrobust.attacks import FGSM
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> res = FGSM(model, eps=0.1, early_stop=False).run(torch.full((2, 4), 0.5), torch.tensor([0, 1]))
    >>> bool(((res.x_adv - 0.5).abs() - 0.1).abs().max() < 1e-6)
    True
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from xrobust.attacks.config import AttackConfig
from xrobust.attacks.context import Batch
from xrobust.attacks.iterative import Evaluation, IterativeAttack
from xrobust.errors import ConfigError

__all__ = ["FGSM", "FGSMConfig"]


@dataclass(frozen=True)
class FGSMConfig(AttackConfig):
    """FGSM hyperparameters (see :class:`AttackConfig`).

    Attributes:
        loss: "ce" (cross-entropy, as in the paper) or "margin" (logit margin).
    """

    loss: str = "ce"

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.loss not in ("ce", "margin"):
            raise ConfigError(f"unknown loss {self.loss!r}; expected 'ce' or 'margin'")


class FGSM(IterativeAttack):
    """One signed-gradient (linf) or normalised-gradient (l2) step of size eps.

    Goodfellow et al., arXiv:1412.6572: ``x_adv = clip(x + eps * direction(grad loss(x)))``.
    Untargeted (ascend the loss of ``y``) or targeted (descend the loss of ``target``).
    PGD's loop with one step from the clean input.

    Example:
        >>> import torch
        >>> from xrobust.attacks import FGSM
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> FGSM(model, eps=0.1, norm="l2").run(torch.rand(3, 4), torch.tensor([0, 1, 2])).norms.shape
        torch.Size([3])
    """

    name = "fgsm"
    config_cls = FGSMConfig
    config: FGSMConfig

    def reuses_clean_forward(self) -> bool:
        return True

    def n_steps(self) -> int:
        return 1

    def step(
        self, state: None, batch: Batch, x: torch.Tensor, ev: Evaluation, t: int
    ) -> tuple[torch.Tensor, None]:
        assert ev.grad is not None
        return batch.ball.project(batch.norm.step(x, ev.grad, batch.eps)), None
