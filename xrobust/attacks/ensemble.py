"""An ensemble of attacks run in sequence, in the spirit of AutoAttack.

Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", arXiv:2003.01690. Each attack runs only on the examples
that every previous attack failed to break; each example keeps its first successful
adversarial (its worst case) and the result says which attack broke it
(``AttackResult.broken_by``). The ``standard`` preset is APGD-CE then APGD-T (DLR, 9
target classes), 100 iterations each, as AutoAttack's standard version without FAB-T and
Square. Models with fewer than 4 classes skip APGD-T (its loss needs 4 logits).

Example:
    >>> import torch
    >>> from xrobust.attacks import Ensemble
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 5))
    >>> res = Ensemble(model, eps=0.1, steps=5, seed=0).run(torch.rand(4, 1, 4, 4), torch.tensor([0, 1, 2, 3]))
    >>> len(res.broken_by)
    4
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from xrobust.attacks.base import (
    Attack,
    AttackConfig,
    _check_positive_int,
    _Context,
    _Perturbed,
)
from xrobust.errors import ConfigError

__all__ = ["PRESETS", "Ensemble", "EnsembleConfig"]

log = logging.getLogger(__name__)

#: preset name -> attack names run in order
PRESETS: dict[str, tuple[str, ...]] = {
    "standard": ("apgd", "apgd_t"),
    "fast": ("pgd", "apgd"),
}


@dataclass(frozen=True)
class EnsembleConfig(AttackConfig):
    """Ensemble hyperparameters (see :class:`AttackConfig` for the shared ones).

    Attributes:
        preset: "standard" (APGD-CE, APGD-T) or "fast" (PGD, APGD-CE); ignored when
            ``attacks`` is given.
        attacks: registry names run in order, or empty for the preset.
        steps: iterations of each member (100 = the reference's budget).
        n_target_classes: target classes of APGD-T (reference: 9).
    """

    preset: str = "standard"
    attacks: tuple[str, ...] = ()
    steps: int = 100
    n_target_classes: int = 9

    def __post_init__(self) -> None:
        super().__post_init__()
        _check_positive_int("steps", self.steps)
        _check_positive_int("n_target_classes", self.n_target_classes)
        object.__setattr__(self, "attacks", tuple(str(a) for a in self.attacks))
        if not self.attacks and self.preset not in PRESETS:
            raise ConfigError(
                f"unknown ensemble preset {self.preset!r}; expected one of {', '.join(PRESETS)}"
            )
        if "ensemble" in self.attacks:
            raise ConfigError("an ensemble cannot contain itself")

    def members(self) -> tuple[str, ...]:
        """The attack names run in order."""
        return self.attacks or PRESETS[self.preset]


class Ensemble(Attack):
    """Attacks in sequence on the still-robust examples, keeping each one's worst case.

    Example:
        >>> import torch
        >>> from xrobust.attacks import Ensemble, FGSM, PGD
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> ens = Ensemble.from_attacks(model, [FGSM(model, eps=0.1), PGD(model, eps=0.1, steps=3)])
        >>> ens.run(torch.rand(2, 4), torch.tensor([0, 1])).attack
        'ensemble'
    """

    name = "ensemble"
    config_cls = EnsembleConfig
    config: EnsembleConfig

    def __init__(self, model: nn.Module, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._members: list[Attack] | None = None

    @classmethod
    def from_attacks(cls, model: nn.Module, attacks: Sequence[Attack], **kwargs: Any) -> Ensemble:
        """An ensemble of already-built attacks (same model, norm, eps and bounds).

        Raises:
            ConfigError: the attacks disagree on the threat model or the model.
        """
        if not attacks:
            raise ConfigError("an ensemble needs at least one attack")
        first = attacks[0].config
        for a in attacks:
            if a.model is not model:
                raise ConfigError("every attack of an ensemble must be bound to the same model")
            c = a.config
            if (c.norm, c.eps, c.bounds) != (first.norm, first.eps, first.bounds):
                raise ConfigError(
                    "attacks of an ensemble must share norm, eps and bounds; got "
                    f"{(c.norm, c.eps, c.bounds)} and {(first.norm, first.eps, first.bounds)}"
                )
        kwargs.setdefault("eps", first.eps)
        kwargs.setdefault("norm", first.norm)
        kwargs.setdefault("bounds", first.bounds)
        ens = cls(model, attacks=tuple(a.name for a in attacks), **kwargs)
        ens._members = list(attacks)
        return ens

    def members(self) -> list[Attack]:
        """The member attacks, built from the config on first use."""
        if self._members is not None:
            return self._members
        from xrobust.attacks import ATTACKS

        c = self.config
        out: list[Attack] = []
        for i, name in enumerate(c.members()):
            cls = ATTACKS.get(name)
            kw: dict[str, Any] = dict(
                eps=c.eps, norm=c.norm, bounds=c.bounds, early_stop=c.early_stop, amp=c.amp
            )
            fields = cls.config_cls.__dataclass_fields__
            if "steps" in fields:
                kw["steps"] = c.steps
            if "n_target_classes" in fields:
                kw["n_target_classes"] = c.n_target_classes
            if "seed" in fields and c.seed is not None:
                kw["seed"] = c.seed + i
            out.append(cls(self.model, **kw))
        return out

    def _perturb(
        self,
        ctx: _Context,
        x: torch.Tensor,
        y: torch.Tensor,
        target: torch.Tensor | None,
        eps: torch.Tensor,
        active: torch.Tensor,
    ) -> _Perturbed:
        n = x.shape[0]
        res = _Perturbed(
            x.clone(),
            torch.full((n,), -1, dtype=torch.long, device=x.device),
            torch.zeros(n, dtype=torch.long, device=x.device),
            broken_by=[None] * n,
        )
        rows = active.clone()
        num_classes: int | None = None
        for atk in self.members():
            if not bool(rows.any()):
                break
            if num_classes is None:
                with torch.no_grad():
                    num_classes = int(ctx.forward(x[:1]).shape[1])
            if num_classes < atk.min_classes:
                log.info(
                    "ensemble: skipping %s (needs %d classes, model has %d)",
                    atk.name,
                    atk.min_classes,
                    num_classes,
                )
                continue
            if target is not None and not atk.supports_targeted:
                continue
            cur = atk._perturb(ctx, x, y, target, eps, rows)
            unknown = rows & (cur.pred < 0)
            if bool(unknown.any()):
                with torch.no_grad():
                    cur.pred[unknown] = ctx.forward(cur.x_adv[unknown]).argmax(1)
            res.steps[rows] += cur.steps[rows]
            won = rows & ctx.is_success(cur.pred, y, target)
            first = rows & (res.pred < 0)
            take = won | first
            res.x_adv[take] = cur.x_adv[take]
            res.pred[take] = cur.pred[take]
            for i in won.nonzero().squeeze(1).tolist():
                res.broken_by[i] = atk.name  # type: ignore[index]
            rows = rows & ~won
        return res
