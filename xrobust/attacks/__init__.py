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

from xrobust.attacks.base import Attack, AttackConfig, AttackResult
from xrobust.attacks.checks import AttackWarning, GradientStats
from xrobust.registry import Registry

__all__ = [
    "APGD",
    "APGDT",
    "ATTACKS",
    "FGSM",
    "PGD",
    "Attack",
    "AttackConfig",
    "AttackResult",
    "AttackWarning",
    "Ensemble",
    "GradientStats",
    "get_attack",
    "list_attacks",
]

#: name -> Attack subclass
ATTACKS: Registry[type[Attack]] = Registry("attack")

from xrobust.attacks.apgd import APGD  # noqa: E402
from xrobust.attacks.apgd_t import APGDT  # noqa: E402
from xrobust.attacks.ensemble import Ensemble  # noqa: E402
from xrobust.attacks.fgsm import FGSM  # noqa: E402
from xrobust.attacks.pgd import PGD  # noqa: E402

for _cls in (FGSM, PGD, APGD, APGDT, Ensemble):
    ATTACKS.register(_cls.name)(_cls)


def get_attack(name: str, model: nn.Module, **kwargs: Any) -> Attack:
    """Build the attack registered as ``name`` on ``model`` with hyperparameters ``kwargs``.

    Raises:
        ConfigError: unknown name (with suggestions) or invalid hyperparameters.

    Example:
        >>> import torch
        >>> from xrobust.attacks import get_attack
        >>> get_attack("fgsm", torch.nn.Linear(2, 2), eps=0.1).config.eps
        0.1
    """
    import dataclasses

    from xrobust.errors import ConfigError

    cls = ATTACKS.get(name)
    known = {f.name for f in dataclasses.fields(cls.config_cls)}
    unknown = sorted(set(kwargs) - known)
    if unknown:
        raise ConfigError(
            f"attack {cls.name!r} has no option(s) {', '.join(unknown)}; "
            f"it takes {', '.join(sorted(known))}"
        )
    return cls(model, **kwargs)


def list_attacks(pattern: str | None = None) -> list[str]:
    """Registered attack names, sorted, optionally filtered by a shell pattern."""
    return ATTACKS.list(pattern)
