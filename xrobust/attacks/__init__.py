"""White-box adversarial attacks and robustness evaluation.

Every attack is registered in :data:`ATTACKS` under its file name; build one by class or
by name, then call ``run(x, y, target=None)`` for an :class:`AttackResult`.

Example:
    >>> import torch
    >>> from xrobust.attacks import get_attack, list_attacks
    >>> "pgd" in list_attacks()
    True
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> atk = get_attack("pgd", model, eps=0.1, steps=3, seed=0)
    >>> atk.run(torch.rand(2, 4), torch.tensor([0, 1])).x_adv.shape
    torch.Size([2, 4])
"""

from __future__ import annotations

from typing import Any

from torch import nn

from xrobust.attacks.base import Attack
from xrobust.attacks.checks import AttackWarning, GradientStats
from xrobust.attacks.config import AttackConfig, parse_options
from xrobust.attacks.context import AttackContext, Batch, Outcome
from xrobust.attacks.iterative import Evaluation, IterativeAttack
from xrobust.attacks.norms import Norm, get_norm, list_norms
from xrobust.attacks.result import AttackResult
from xrobust.registry import Registry

__all__ = [
    "APGD",
    "APGDT",
    "ATTACKS",
    "FAB",
    "FABT",
    "FGSM",
    "PGD",
    "Attack",
    "AttackConfig",
    "AttackContext",
    "AttackResult",
    "AttackWarning",
    "Batch",
    "Ensemble",
    "Evaluation",
    "GradientStats",
    "HopSkipJump",
    "IterativeAttack",
    "Norm",
    "Outcome",
    "Square",
    "Transfer",
    "get_attack",
    "get_norm",
    "list_attacks",
    "list_norms",
    "parse_options",
]

#: name -> Attack subclass
ATTACKS: Registry[type[Attack]] = Registry("attack")

from xrobust.attacks.apgd import APGD  # noqa: E402
from xrobust.attacks.apgd_t import APGDT  # noqa: E402
from xrobust.attacks.ensemble import Ensemble  # noqa: E402
from xrobust.attacks.fab import FAB  # noqa: E402
from xrobust.attacks.fab_t import FABT  # noqa: E402
from xrobust.attacks.fgsm import FGSM  # noqa: E402
from xrobust.attacks.hop_skip_jump import HopSkipJump  # noqa: E402
from xrobust.attacks.pgd import PGD  # noqa: E402
from xrobust.attacks.square import Square  # noqa: E402
from xrobust.attacks.transfer import Transfer  # noqa: E402

for _cls in (FGSM, PGD, APGD, APGDT, FAB, FABT, Ensemble, Square, HopSkipJump, Transfer):
    ATTACKS.register(_cls.name)(_cls)


def get_attack(name: str, model: nn.Module, **kwargs: Any) -> Attack:
    """Build the attack registered as ``name`` on ``model`` with hyperparameters ``kwargs``.

    Raises:
        ConfigError: unknown name or option (with suggestions), or invalid values.

    Example:
        >>> import torch
        >>> from xrobust.attacks import get_attack
        >>> get_attack("fgsm", torch.nn.Linear(2, 2), eps=0.1).config.eps
        0.1
    """
    return ATTACKS.get(name)(model, **kwargs)


def list_attacks(pattern: str | None = None, *, requires_gradients: bool | None = None) -> list[str]:
    """Registered attack names, sorted, optionally filtered by a shell pattern and by
    whether they need input gradients (``requires_gradients=False``: query-only attacks,
    which run on black boxes)."""
    names = ATTACKS.list(pattern)
    if requires_gradients is None:
        return names
    return [n for n in names if ATTACKS.get(n).requires_gradients == requires_gradients]
