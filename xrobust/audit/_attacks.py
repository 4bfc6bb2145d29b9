"""The audit's one door to :mod:`xrobust.attacks`: build an attack by name with the
options it accepts, run it on a batch, return plain tensors."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
import warnings
from dataclasses import dataclass
from typing import Any

import torch

from xrobust.audit._runtime import Runtime

log = logging.getLogger(__name__)

__all__ = ["AttackOutput", "attacks_unavailable", "make_attack", "run_attack"]


@dataclass
class AttackOutput:
    x_adv: torch.Tensor  # CPU
    pred_adv: torch.Tensor  # CPU int64
    success: torch.Tensor  # CPU bool: fooled (pred_adv != y) for examples clean-correct


def attacks_unavailable() -> str | None:
    """None when :mod:`xrobust.attacks` can be used, else why not."""
    try:
        import xrobust.attacks as A

        A.get_attack  # noqa: B018
    except (ImportError, AttributeError) as exc:
        return f"xrobust.attacks is not available in this installation ({exc})"
    return None


def _accepted(cls: Any) -> set[str] | None:
    """Option names attack class ``cls`` takes (its config dataclass's fields), or None
    when unknown (then every option is passed)."""
    cfg = getattr(cls, "config_cls", None)
    if cfg is not None and dataclasses.is_dataclass(cfg):
        return {f.name for f in dataclasses.fields(cfg)}
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return set(sig.parameters)


def accepted_options(name: str) -> set[str] | None:
    """Option names the registered attack ``name`` accepts (None: unknown, pass all)."""
    from xrobust.attacks import ATTACKS

    return _accepted(ATTACKS.get(name))


def attack_kwargs(rt: Runtime, name: str, norm: str, **options: Any) -> dict[str, Any]:
    """Keyword arguments for attack ``name`` (without eps): norm, bounds (None when the data
    is unbounded), AMP, and those ``options`` the attack accepts (FGSM has no ``steps``)."""
    lo, hi = rt.bounds
    kwargs: dict[str, Any] = {"norm": norm, "bounds": (lo, hi) if math.isfinite(hi - lo) else None}
    if rt.amp is not None:
        kwargs["amp"] = rt.config.amp
    kwargs.update({k: v for k, v in options.items() if v is not None})
    ok = accepted_options(name)
    if ok is not None:
        dropped = sorted(k for k in kwargs if k not in ok)
        if dropped:
            log.debug("attack %s ignores options %s", name, dropped)
        kwargs = {k: v for k, v in kwargs.items() if k in ok}
    return kwargs


def make_attack(rt: Runtime, name: str, norm: str, eps: float, **options: Any) -> Any:
    """``get_attack(name, model, eps=..., **attack_kwargs(...))``."""
    from xrobust.attacks import get_attack

    return get_attack(name, rt.model, eps=float(eps), **attack_kwargs(rt, name, norm, **options))


def run_attack(
    rt: Runtime,
    name: str,
    norm: str,
    eps: float,
    x: torch.Tensor,
    y: torch.Tensor,
    **options: Any,
) -> AttackOutput:
    """Attack a batch; returns adversarial inputs and predictions on the CPU."""
    atk = make_attack(rt, name, norm, eps, **options)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = atk.run(x.to(rt.device), y.to(rt.device))
    seen = rt.cache.setdefault("attack_warnings", {})
    for w in caught:  # kept once each in the report instead of flooding the console
        msg = str(w.message)
        if msg not in seen:
            seen[msg] = name
            log.info("attack %s warned: %s", name, msg)
    x_adv = res.x_adv.detach().float().cpu()
    pred_adv = torch.as_tensor(res.pred_adv).long().cpu()
    return AttackOutput(x_adv=x_adv, pred_adv=pred_adv, success=pred_adv != y.cpu())
