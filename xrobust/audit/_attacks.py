"""The audit's one door to :mod:`xrobust.attacks`: build an attack by name with the
options it accepts, run it on a batch, return plain tensors."""

from __future__ import annotations

import dataclasses
import inspect
import logging
import math
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


def make_attack(rt: Runtime, name: str, norm: str, eps: float, **options: Any) -> Any:
    """``get_attack(name, model, eps=..., norm=..., bounds=..., **options)`` keeping only the
    options the attack accepts (FGSM has no ``steps``)."""
    from xrobust.attacks import ATTACKS, get_attack

    cls = ATTACKS.get(name)
    lo, hi = rt.bounds
    bounds = (lo, hi) if math.isfinite(hi - lo) else None
    kwargs: dict[str, Any] = {"eps": float(eps), "norm": norm, "bounds": bounds}
    if rt.amp is not None:
        kwargs["amp"] = rt.config.amp
    kwargs.update({k: v for k, v in options.items() if v is not None})
    ok = _accepted(cls)
    if ok is not None:
        dropped = sorted(k for k in kwargs if k not in ok)
        if dropped:
            log.debug("attack %s ignores options %s", name, dropped)
        kwargs = {k: v for k, v in kwargs.items() if k in ok}
    return get_attack(name, rt.model, **kwargs)


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
    res = atk.run(x.to(rt.device), y.to(rt.device))
    x_adv = res.x_adv.detach().float().cpu()
    pred_adv = torch.as_tensor(res.pred_adv).long().cpu()
    return AttackOutput(x_adv=x_adv, pred_adv=pred_adv, success=pred_adv != y.cpu())
