"""The transfer attack: a white-box attack run on a surrogate model, its adversarials
evaluated on the target (which may be a black box).

Papernot et al., "Transferability in machine learning: from phenomena to black-box
attacks using adversarial samples", arXiv:1605.07277. Any registered attack (``attack``,
default ``"pgd"``, with ``attack_options``) runs on the ``surrogate`` (a torch module, a
classifier with a torch module, or a run directory loaded with
:func:`xrobust.models.load_run`) with this attack's eps, norm, bounds, seed and AMP; the
target is asked once per attacked example, about its adversarial, through the attack
context (so the target needs no gradients: ``requires_gradients = False``). Norms: those
of the surrogate attack; inputs (N, ...) in ``bounds``.

The surrogate attack runs on the whole batch (the same draws whichever examples the
target already gets wrong) with the full budget (``early_stop=False``: its final,
usually deeper and more transferable iterate) unless ``attack_options`` sets
``early_stop``. With an explicit ``target`` in ``run`` the surrogate attack is targeted
and success means the target model predicts that class.

Reported in ``AttackResult.config``: ``surrogate`` (a description, never the module),
``surrogate_success`` (attacked examples whose adversarial fooled the surrogate),
``transferred`` (those that also fool the target), ``transfer_rate`` (their ratio, None
when the surrogate fooled none) and ``surrogate_gradient_passes``. These are per
:meth:`~xrobust.attacks.base.Attack.run` call; ``AttackResult.queries`` counts the
clean query and the one query per attacked example.

Example:
    >>> import torch
    >>> from xrobust.attacks import get_attack
    >>> target = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> surrogate = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> atk = get_attack("transfer", target, surrogate=surrogate, eps=0.3, attack_options={"steps": 5}, seed=0)
    >>> res = atk.run(torch.rand(4, 4), torch.tensor([0, 1, 2, 0]))
    >>> sorted(k for k in res.config if k.startswith("trans"))
    ['transfer_rate', 'transferred']
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from xrobust.attacks.base import Attack
from xrobust.attacks.config import AttackConfig
from xrobust.attacks.context import AttackContext, Batch, Outcome
from xrobust.errors import ConfigError

__all__ = ["Transfer", "TransferConfig", "describe_surrogate"]

#: options of the surrogate attack that the transfer attack sets itself
_OWN = ("eps", "norm", "bounds", "seed", "amp", "precision")


def describe_surrogate(surrogate: Any) -> str:
    """A short, JSON-ready description of a surrogate (what configs and reports record)."""
    if isinstance(surrogate, str | Path):
        return f"run {surrogate}"
    module = (
        getattr(surrogate, "module", None) if not isinstance(surrogate, nn.Module) else surrogate
    )
    if isinstance(module, nn.Module):
        n = sum(p.numel() for p in module.parameters())
        return f"{type(module).__name__} ({n} parameters)"
    return type(surrogate).__name__


@dataclass(frozen=True)
class TransferConfig(AttackConfig):
    """Transfer-attack hyperparameters (see :class:`AttackConfig` for the shared ones,
    which the surrogate attack gets too).

    Attributes:
        surrogate: the model the attack runs on: an ``nn.Module``, a classifier from
            ``as_classifier`` wrapping one, or a run directory (``xrobust train``'s output).
            Recorded as a description (:func:`describe_surrogate`), never dumped.
        attack: registry name of the white-box attack run on the surrogate ("pgd").
        attack_options: its other hyperparameters (steps, step_size, restarts, ...).
    """

    surrogate: object = field(default=None, compare=False)
    attack: str = "pgd"
    attack_options: dict | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.surrogate is None:
            raise ConfigError(
                "the transfer attack needs a surrogate: surrogate=<torch module or run "
                "directory> (the model its white-box attack runs on)"
            )
        from xrobust.attacks import ATTACKS

        if self.attack.lower().replace("-", "_") == "transfer":
            raise ConfigError("the transfer attack cannot run itself on the surrogate")
        cls = ATTACKS.get(self.attack)  # an unknown name: ConfigError with suggestions
        object.__setattr__(self, "attack", cls.name)
        opts = dict(self.attack_options or {})
        clash = sorted(k for k in opts if k in _OWN)
        if clash:
            raise ConfigError(
                f"attack_options may not set {', '.join(clash)}: the transfer attack passes "
                "its own eps, norm, bounds, seed, amp and precision to the surrogate attack"
            )
        from xrobust.attacks.config import parse_options

        object.__setattr__(self, "attack_options", parse_options(cls, opts))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict; the surrogate as a description."""
        d: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name == "surrogate":
                v = describe_surrogate(v)
            elif isinstance(v, tuple):
                v = list(v)
            elif isinstance(v, dict):
                v = {k: list(x) if isinstance(x, tuple) else x for k, x in v.items()}
            d[f.name] = v
        return d


class Transfer(Attack):
    """A white-box attack on a surrogate, evaluated on the target (one query per example).

    Example:
        >>> import torch
        >>> from xrobust.attacks import Transfer
        >>> m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
        >>> res = Transfer(m, surrogate=m, eps=0.2, seed=0).run(torch.rand(2, 4), torch.tensor([0, 1]))
        >>> int(res.queries.max()) <= 2
        True
    """

    name = "transfer"
    config_cls: ClassVar[type[AttackConfig]] = TransferConfig
    config: TransferConfig
    requires_gradients: ClassVar[bool] = False

    def __init__(self, model: Any, **kwargs: Any) -> None:
        super().__init__(model, **kwargs)
        self._inner: Attack | None = None

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config.to_dict().items())
        return f"{type(self).__name__}({args})"

    def surrogate_attack(self) -> Attack:
        """The white-box attack bound to the surrogate (built, and a run directory
        loaded, on first use)."""
        if self._inner is not None:
            return self._inner
        from xrobust.attacks import ATTACKS

        c = self.config
        surrogate: Any = c.surrogate
        if isinstance(surrogate, str | Path):
            from xrobust.models import load_run

            surrogate = load_run(surrogate).model.eval()
        opts = {"early_stop": False, **(c.attack_options or {})}
        self._inner = ATTACKS.get(c.attack)(
            surrogate, eps=c.eps, norm=c.norm, bounds=c.bounds, seed=c.seed,
            precision=c.precision, **({"amp": c.amp} if c.amp else {}), **opts,
        )  # fmt: skip
        return self._inner

    def perturb(self, ctx: AttackContext, batch: Batch) -> Outcome:
        inner = self.surrogate_attack()
        target = None
        if batch.target is not None:  # the full batch's targets (rows not attacked: any)
            target = torch.zeros(batch.full_x.shape[0], dtype=torch.long, device=batch.x.device)
            target[batch.idx] = batch.target
        y_full = torch.zeros(batch.full_x.shape[0], dtype=torch.long, device=batch.x.device)
        y_full[batch.idx] = batch.y
        res = inner.run(
            batch.full_x, y_full, target, eps=batch.full_eps, batch_index=ctx.batch_index
        )
        x_adv = res.x_adv[batch.idx].to(batch.x.device, batch.x.dtype)
        fooled_s = res.success[batch.idx].to(batch.x.device)
        pred = ctx.forward(x_adv, batch.origin).argmax(1)
        won = ctx.is_success(pred, batch.y, batch.target)
        n_s, n_t = int(fooled_s.sum()), int((fooled_s & won).sum())
        ctx.note("surrogate", describe_surrogate(self.config.surrogate))
        ctx.note("surrogate_success", n_s)
        ctx.note("transferred", n_t)
        ctx.note("transfer_rate", n_t / n_s if n_s else None)
        ctx.note("surrogate_gradient_passes", res.gradient_passes)
        out = Outcome.unchanged(batch.x)
        out.x_adv, out.pred = x_adv, pred
        out.steps = res.steps[batch.idx].to(batch.x.device)
        return out
