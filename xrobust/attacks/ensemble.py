"""An ensemble of attacks run in sequence, in the spirit of AutoAttack.

Croce and Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", arXiv:2003.01690. Each attack runs only on the examples
that every previous attack failed to break; each example keeps its first successful
adversarial (its worst case) and the result says which attack broke it
(``AttackResult.broken_by``). Members are named by registry name. Presets:

* ``standard`` (the default): APGD-CE then APGD-T (DLR, 9 target classes), 100
  iterations each: AutoAttack's standard version without FAB-T and Square.
* ``autoattack``: AutoAttack's standard version in full: APGD-CE, APGD-T, FAB-T (9 target
  classes, 100 iterations) and Square (5000 queries), each on the examples still robust.
  Square is a query-only attack (registry name ``square``); where it is not registered the
  preset raises a ConfigError saying so.
* ``fast``: PGD then APGD-CE.

The name ``standard`` keeps the meaning it had (reports and configs that recorded it rerun
the same attacks); AutoAttack's "standard" version is ``autoattack`` here. Models with
fewer than 4 classes skip APGD-T (its loss needs 4 logits).

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

from xrobust.attacks.base import Attack
from xrobust.attacks.config import AttackConfig, check_positive_int
from xrobust.attacks.context import AttackContext, Batch, Outcome
from xrobust.errors import ConfigError

__all__ = ["PRESETS", "Ensemble", "EnsembleConfig"]

log = logging.getLogger(__name__)

#: preset name -> attack names run in order
PRESETS: dict[str, tuple[str, ...]] = {
    "standard": ("apgd", "apgd_t"),
    "autoattack": ("apgd", "apgd_t", "fab_t", "square"),
    "fast": ("pgd", "apgd"),
}


@dataclass(frozen=True)
class EnsembleConfig(AttackConfig):
    """Ensemble hyperparameters (see :class:`AttackConfig` for the shared ones).

    Attributes:
        preset: "standard" (APGD-CE, APGD-T), "autoattack" (APGD-CE, APGD-T, FAB-T,
            Square: AutoAttack's standard version) or "fast" (PGD, APGD-CE); ignored when
            ``attacks`` is given.
        attacks: registry names run in order, or empty for the preset.
        steps: iterations of each member that has ``steps`` (100 = the reference's budget).
        n_target_classes: target classes of APGD-T and FAB-T (reference: 9).
        queries: query budget per example of members that have ``queries`` (Square;
            reference: 5000).
    """

    preset: str = "standard"
    attacks: tuple[str, ...] = ()
    steps: int = 100
    n_target_classes: int = 9
    queries: int = 5000

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("steps", self.steps)
        check_positive_int("n_target_classes", self.n_target_classes)
        check_positive_int("queries", self.queries)
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

    Each member runs with its own random generator, seeded from the ensemble's (so the
    ensemble's ``seed`` makes the whole run repeatable), or with the member's own
    ``seed`` (plus the batch number) for members built with one; the seeds used and what
    each member ran are recorded in ``AttackResult.config["members"]``.

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
            if a.classifier is not model and a.model is not model:
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
        missing = [n for n in c.members() if n not in ATTACKS]
        if missing:
            what = f"preset {c.preset!r}" if not c.attacks else "attack list"
            raise ConfigError(
                f"the ensemble's {what} needs {', '.join(repr(n) for n in missing)}, not "
                f"registered in this installation (registered: {', '.join(ATTACKS.list())}); "
                "choose another preset or list the attacks with attacks=[...]"
            )
        out: list[Attack] = []
        for name in c.members():
            cls = ATTACKS.get(name)
            fields = cls.config_cls.__dataclass_fields__
            kw: dict[str, Any] = dict(
                eps=c.eps, norm=c.norm, bounds=c.bounds, early_stop=c.early_stop,
                precision=c.precision,
            )
            if c.amp:  # the deprecated alias, passed on as given
                kw["amp"] = c.amp
            shared = {
                "steps": c.steps,
                "n_target_classes": c.n_target_classes,
                "queries": c.queries,
            }
            kw.update({k: v for k, v in shared.items() if k in fields})
            out.append(cls(self.classifier, **kw))
        self._members = out
        return out

    def num_classes_ok(self, num_classes: int) -> bool:
        return any(a.num_classes_ok(num_classes) for a in self.members())

    def perturb(self, ctx: AttackContext, batch: Batch) -> Outcome:
        out = Outcome.unchanged(batch.x)
        out.broken_by = [None] * len(batch)
        alive = torch.ones(len(batch), dtype=torch.bool, device=batch.x.device)
        assigned = torch.zeros_like(alive)
        report: list[dict[str, Any]] = []
        for atk in self.members():
            if not bool(alive.any()):
                break
            skip = self._skip_reason(atk, ctx, batch)
            if skip:
                log.info("ensemble: skipping %s (%s)", atk.name, skip)
                report.append({"attack": atk.name, "skipped": skip})
                continue
            pos = alive.nonzero().squeeze(1)
            seed = _member_seed(atk, ctx)
            mctx = ctx.fork(seed, reduced=atk.reduced_precision_search)
            won = _take(out, _member_outcome(atk, mctx, batch.select(pos)), pos, batch, ctx, assigned, atk.name)
            alive[pos[won]] = False
            report.append(
                {"attack": atk.name, "seed": seed, "attacked": int(pos.numel()),
                 "broken": int(won.sum()), "precision": mctx.precision, **mctx.notes}
            )  # fmt: skip
        ctx.note("members", report)
        return out

    def _skip_reason(self, atk: Attack, ctx: AttackContext, batch: Batch) -> str | None:
        if not atk.num_classes_ok(ctx.num_classes):
            return f"needs {atk.min_classes} classes, the model has {ctx.num_classes}"
        if batch.target is not None and not atk.supports_targeted:
            return "does not support targeted runs"
        return None


def _member_seed(atk: Attack, ctx: AttackContext) -> int:
    if atk.config.seed is not None:
        return int(atk.config.seed) + ctx.batch_index
    return int(torch.randint(0, 2**62, (1,), generator=ctx.generator, device=ctx.device).item())


def _member_outcome(atk: Attack, ctx: AttackContext, sub: Batch) -> Outcome:
    """A member's outcome on ``sub`` with every prediction known (fp32 verdicts under
    reduced precision, so that a row fp32 does not confirm stays for the next member)."""
    cur = ctx.verify(atk.perturb(ctx, sub), sub)
    unknown = cur.pred < 0
    if bool(unknown.any()):
        i = unknown.nonzero().squeeze(1)
        cur.pred[i] = ctx.forward(cur.x_adv[i], sub.origin[i]).argmax(1)
    return cur


def _take(
    out: Outcome,
    cur: Outcome,
    pos: torch.Tensor,
    batch: Batch,
    ctx: AttackContext,
    assigned: torch.Tensor,
    name: str,
) -> torch.Tensor:
    """Write a member's adversarials for the rows ``pos``: those it broke, and any row
    no earlier member wrote. Returns which rows of ``pos`` it broke."""
    target = None if batch.target is None else batch.target[pos]
    won = ctx.is_success(cur.pred, batch.y[pos], target)
    take = won | ~assigned[pos]
    p = pos[take]
    out.x_adv[p] = cur.x_adv[take]
    out.pred[p] = cur.pred[take]
    if out.loss is not None and cur.loss is not None:
        out.loss[p] = cur.loss[take]
    out.steps[pos] += cur.steps
    assigned[pos] = True
    assert out.broken_by is not None
    for i in pos[won].tolist():
        out.broken_by[i] = name
    return won
