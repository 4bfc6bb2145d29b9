"""The audit's one door to :mod:`xrobust.attacks`: the options an attack gets, building it
by name, running it on a batch.

An attack's options come from three places, later ones winning:

1. the threat model (norm, bounds of the data, mixed precision), the audit's default
   budget (``DEFAULT_ATTACK_OPTIONS``: PGD-20) and evaluation mode;
2. the section's shared budget (``adversarial.steps`` / ``adversarial.restarts``), given
   to every attack whose config has that field;
3. ``[adversarial.options.<attack>]`` in the TOML config, validated against the attack's
   config dataclass by :func:`xrobust.attacks.parse_options` (an unknown key is an error
   with a did-you-mean, a value of the wrong type an error naming the expected type).

Nothing is dropped silently: shared settings go only to attacks that have the field
(the class says so), and every user option must be one the attack takes.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import warnings
from typing import Any

import torch

from xrobust.audit._runtime import Runtime
from xrobust.device import precision_name

log = logging.getLogger(__name__)

__all__ = [
    "attack_fields",
    "attack_kwargs",
    "attack_options",
    "attacks_for",
    "attacks_unavailable",
    "run_attack",
]


def attacks_unavailable() -> str | None:
    """None when :mod:`xrobust.attacks` can be used, else why not."""
    try:
        import xrobust.attacks as A

        A.get_attack  # noqa: B018
    except (ImportError, AttributeError) as exc:
        return f"xrobust.attacks is not available in this installation ({exc})"
    return None


def attacks_for(rt: Runtime, names: list[str]) -> list[str]:
    """Of ``names``, those the model can answer: all of them on a white box; on a black
    box the query-only ones, then ``adversarial.black_box_attacks`` (each skipped part is
    recorded with its reason)."""
    from xrobust.attacks import ATTACKS

    if rt.white_box:
        return list(names)
    src = rt.classifier.source
    out: list[str] = []
    for n in names:
        if ATTACKS.get(n).requires_gradients:
            rt.skip_part(f"attack {n}", f"needs input gradients; the model is a black box ({src})")
        else:
            out.append(n)
    for n in rt.config.adversarial.black_box_attacks:
        if n in out:
            continue
        if n not in ATTACKS:
            rt.skip_part(f"attack {n}", "not registered in this installation")
        elif ATTACKS.get(n).requires_gradients:
            rt.skip_part(f"attack {n}", "listed in black_box_attacks but needs input gradients")
        else:
            out.append(n)
    return out


def attack_fields(name: str) -> dict[str, Any]:
    """The fields of attack ``name``'s config dataclass, with their defaults."""
    from xrobust.attacks import ATTACKS

    cls = ATTACKS.get(name)
    return {f.name: f.default for f in dataclasses.fields(cls.config_cls)}


def attack_options(rt: Runtime, name: str) -> dict[str, Any]:
    """The section's budget for attack ``name``: the audit's defaults for it, the shared
    steps, restarts and evaluation mode where its config has those fields, then its
    ``options.<name>`` table (validated)."""
    from xrobust.attacks import parse_options
    from xrobust.audit.config import DEFAULT_ATTACK_OPTIONS

    a = rt.config.adversarial
    fields = attack_fields(name)
    opts = parse_options(name, DEFAULT_ATTACK_OPTIONS.get(name) or {})
    shared = {"steps": a.steps, "restarts": a.restarts, "early_stop": a.early_stop}
    opts.update({k: v for k, v in shared.items() if v is not None and k in fields})
    opts.update(parse_options(name, a.options.get(name) or {}))
    return opts


def attack_kwargs(rt: Runtime, name: str, norm: str, **overrides: Any) -> dict[str, Any]:
    """Keyword arguments for attack ``name`` (without eps): the threat model (norm, the
    data's bounds or None when unbounded), the search's precision, :func:`attack_options`,
    then ``overrides`` (validated like user options)."""
    from xrobust.attacks import parse_options

    fields = attack_fields(name)
    lo, hi = rt.bounds
    kwargs: dict[str, Any] = {"norm": norm, "bounds": (lo, hi) if math.isfinite(hi - lo) else None}
    if "precision" in fields:
        # the search's precision; an audit under CUDA AMP searches in AMP's type
        amp = precision_name(rt.amp) if rt.amp is not None else "fp32"
        kwargs["precision"] = rt.config.precision if rt.config.precision != "fp32" else amp
    kwargs.update(attack_options(rt, name))
    kwargs.update(parse_options(name, overrides))
    return kwargs


def run_attack(
    rt: Runtime,
    name: str,
    norm: str,
    eps: float,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    seed: int | None = None,
    keep_adv: bool = True,
    **overrides: Any,
) -> Any:
    """Attack a batch with a seeded attack; returns its ``AttackResult`` on the CPU.

    Warnings the attack raises are kept once each for the report's sanity section instead
    of flooding the console.
    """
    from xrobust.attacks import get_attack

    kw = attack_kwargs(rt, name, norm, **overrides)
    if seed is not None:
        kw["seed"] = int(seed)
    atk = get_attack(name, rt.classifier, eps=float(eps), **kw)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = atk.run(x.to(rt.device), y.to(rt.device))
    seen = rt.cache.setdefault("attack_warnings", {})
    for w in caught:
        msg = str(w.message)
        if msg not in seen:
            seen[msg] = name
            log.info("attack %s warned: %s", name, msg)
    return _to_cpu(res, keep_adv)


def _to_cpu(res: Any, keep_adv: bool) -> Any:
    """The result with every tensor on the CPU (``x_adv`` as float32, or dropped)."""
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(res):
        v = getattr(res, f.name)
        if isinstance(v, torch.Tensor):
            changes[f.name] = v.detach().cpu()
    x_adv = res.x_adv
    changes["x_adv"] = x_adv.detach().float().cpu() if keep_adv and x_adv is not None else None
    return dataclasses.replace(res, **changes)
