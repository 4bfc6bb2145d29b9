"""FAB-T: targeted FAB towards the top-ranked wrong classes, as AutoAttack's standard
version runs it (registry name ``fab_t``; ``"fab-t"`` works).

Croce and Hein, "Minimally distorted adversarial examples with a fast adaptive boundary
attack", arXiv:1907.02044; "Reliable evaluation of adversarial robustness with an
ensemble of diverse parameter-free attacks", arXiv:2003.01690. For each of the
``n_target_classes`` classes ranked 2nd, 3rd, ... by the clean logits (9 in the
reference), FAB runs on the examples still robust with the linearised boundary between
the true class and that class (one gradient pass per row and iteration); any wrong class
counts as success. With an explicit ``target`` in ``run`` one run pulls towards it and
success means reaching it. Everything else (norms linf/l2, inputs (N, ...) in
``bounds``, the budget modes, the minimal norms) is :mod:`xrobust.attacks.fab`'s.

Example:
    >>> import torch
    >>> from xrobust.attacks import FABT
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5))
    >>> res = FABT(model, eps=0.3, steps=10, n_target_classes=2).run(
    ...     torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 3]))
    >>> bool(res.norms.max() <= 0.3 + 1e-6)
    True
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from xrobust.attacks.config import AttackConfig, check_positive_int
from xrobust.attacks.context import AttackContext, Batch
from xrobust.attacks.fab import FAB, FABConfig

__all__ = ["FABT", "FABTConfig"]


@dataclass(frozen=True)
class FABTConfig(FABConfig):
    """FAB-T hyperparameters: FAB's, plus how many target classes.

    Attributes:
        n_target_classes: how many top-ranked wrong classes to target in turn
            (reference: 9; capped at C - 1).
    """

    n_target_classes: int = 9

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("n_target_classes", self.n_target_classes)


class FABT(FAB):
    """FAB-T: FAB towards each of the top-ranked wrong classes in turn (AutoAttack's).

    Example:
        >>> import torch
        >>> from xrobust.attacks import get_attack
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 6))
        >>> get_attack("fab-t", model, eps=0.1, steps=3).config.n_target_classes
        9
    """

    name = "fab_t"
    config_cls: ClassVar[type[AttackConfig]] = FABTConfig
    config: FABTConfig  # type: ignore[assignment]

    def _pulls(
        self, ctx: AttackContext, batch: Batch, logits: torch.Tensor
    ) -> list[torch.Tensor | None]:
        if batch.target is not None:
            return [batch.target]
        ranked = logits.argsort(dim=1)
        n_t = min(self.config.n_target_classes, logits.shape[1] - 1)
        ctx.note("target_classes", n_t)
        return [ranked[:, -(k + 2)] for k in range(n_t)]
