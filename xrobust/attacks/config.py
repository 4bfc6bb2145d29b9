"""Attack hyperparameters: :class:`AttackConfig`, the checks subclasses reuse, and
:func:`parse_options`, which validates user-given options (a TOML table, ``--param
key=value`` strings) against an attack's config dataclass.

Example:
    >>> from xrobust.attacks.config import parse_options
    >>> parse_options("pgd", ["steps=40", "random_start=true", "step_size=0.01"])
    {'steps': 40, 'random_start': True, 'step_size': 0.01}
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from xrobust.attacks.norms import get_norm
from xrobust.device import parse_precision
from xrobust.errors import ConfigError

__all__ = [
    "AttackConfig",
    "check_fraction",
    "check_positive_int",
    "check_positive_number",
    "parse_options",
]


def check_positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` if it is an int >= ``minimum``, else a ConfigError naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_positive_number(name: str, value: Any) -> float:
    """``value`` as a float if it is finite and > 0, else a ConfigError naming ``name``."""
    try:
        v = float(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{name} must be a number, got {value!r}") from exc
    if isinstance(value, bool) or not math.isfinite(v) or v <= 0:
        raise ConfigError(f"{name} must be a finite number > 0, got {value!r}")
    return v


def check_fraction(name: str, value: Any) -> float:
    """``value`` as a float in (0, 1], else a ConfigError naming ``name``."""
    v = check_positive_number(name, value)
    if v > 1.0:
        raise ConfigError(f"{name} must be in (0, 1], got {value!r}")
    return v


@dataclass(frozen=True)
class AttackConfig:
    """Hyperparameters shared by every attack (subclasses add theirs).

    Attributes:
        eps: radius of the threat model in input units (>= 0).
        norm: "linf" or "l2" (see :mod:`xrobust.attacks.norms`).
        bounds: (low, high) valid input range, or None for unbounded inputs.
        early_stop: evaluation mode (True, default) or fixed budget (False): see
            :mod:`xrobust.attacks.base`.
        precision: "fp32" (default), "bf16" or "fp16": the type the search's forward and
            backward passes run in (autocast, on CPU and CUDA); perturbation maths stay in
            fp32, and every verdict is verified with an fp32 forward pass: an example counts
            as broken only if fp32 says so, and the per-example best is chosen by its fp32
            margin (:meth:`~xrobust.attacks.context.AttackContext.verify`). fp32 is the
            default on every device (on CUDA no measurement chose otherwise yet).
        amp: deprecated alias kept for old code: mixed precision on CUDA only (True/"auto",
            "bf16", "fp16"), ignored elsewhere; use ``precision``.
        seed: seed of the attack's random generator (None: drawn from torch's global RNG,
            so ``torch.manual_seed`` makes runs repeatable too; the seed drawn is recorded
            in ``AttackResult.config``).
    """

    eps: float = 8 / 255
    norm: str = "linf"
    bounds: tuple[float, float] | None = (0.0, 1.0)
    early_stop: bool = True
    amp: bool | str = False
    seed: int | None = None
    precision: str = "fp32"

    def __post_init__(self) -> None:
        self._check_precision()
        norm = get_norm(self.norm)
        object.__setattr__(self, "norm", norm.name)
        try:
            eps = float(self.eps)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"eps must be a number, got {self.eps!r}") from exc
        if not math.isfinite(eps) or eps < 0:
            raise ConfigError(f"eps must be a finite number >= 0, got {self.eps!r}")
        object.__setattr__(self, "eps", eps)
        if self.bounds is not None:
            object.__setattr__(self, "bounds", _check_bounds(self.bounds))
        limit = norm.max_radius(self.bounds, None)
        if eps > limit:
            raise ConfigError(
                f"eps={eps} is larger than the bounds allow: a {norm.name} perturbation can "
                f"be at most {limit:.4g} for bounds {self.bounds}"
            )
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise ConfigError(f"seed must be an int or None, got {self.seed!r}")

    def _check_precision(self) -> None:
        object.__setattr__(self, "precision", parse_precision(self.precision))
        if self.amp is False or self.amp is None:
            return
        if self.precision != "fp32":
            raise ConfigError(
                f"give precision={self.precision!r} or the deprecated amp={self.amp!r}, not both"
            )
        warnings.warn(
            "the attacks' amp option is deprecated: use precision='bf16' or 'fp16' (on CPU and "
            "CUDA, every verdict verified in fp32); amp keeps its old meaning (CUDA only)",
            DeprecationWarning,
            stacklevel=5,
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the hyperparameters (tuples become lists)."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


def _check_bounds(bounds: Any) -> tuple[float, float]:
    try:
        lo, hi = (float(b) for b in bounds)
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"bounds must be a (low, high) pair of numbers or None, got {bounds!r}"
        ) from exc
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise ConfigError(f"bounds must satisfy low < high (finite), got {bounds!r}")
    return lo, hi


# ------------------------------------------------------------------ user options
def parse_options(
    attack: str | type, options: Mapping[str, Any] | Sequence[str] | None
) -> dict[str, Any]:
    """Validate options for an attack against its config dataclass.

    Args:
        attack: a registry name or an Attack class.
        options: a mapping (TOML, Python) or a sequence of ``"key=value"`` strings (the
            CLI's ``--param``), whose values are parsed: ``none``, ``true``/``false``,
            numbers, ``a,b`` for pairs.

    Returns:
        The options with values converted to the fields' types.

    Raises:
        ConfigError: an unknown option (with the closest names) or a value of the wrong type.
    """
    cls = _attack_class(attack)
    if options is None:
        return {}
    from_strings = not isinstance(options, Mapping)
    items = _split_pairs(options) if from_strings else dict(options)
    hints = typing.get_type_hints(cls.config_cls)
    fields = {f.name for f in dataclasses.fields(cls.config_cls)}
    out: dict[str, Any] = {}
    for key, value in items.items():
        if key not in fields:
            raise ConfigError(_unknown_option(cls.name, key, fields))
        out[key] = _coerce(cls.name, key, value, hints[key], from_strings)
    return out


def _attack_class(attack: str | type) -> Any:
    if isinstance(attack, str):
        from xrobust.attacks import ATTACKS

        return ATTACKS.get(attack)
    if not hasattr(attack, "config_cls"):
        raise ConfigError(f"expected an attack name or class, got {attack!r}")
    return attack


def _unknown_option(attack: str, key: str, fields: set[str]) -> str:
    close = difflib.get_close_matches(key, sorted(fields), n=3, cutoff=0.6)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return (
        f"attack {attack!r} has no option(s) {key}.{hint} It takes: {', '.join(sorted(fields))}"
    )


def _split_pairs(pairs: Sequence[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for p in pairs:
        key, sep, value = str(p).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected key=value, got {p!r}")
        out[key.strip()] = value.strip()
    return out


def _coerce(attack: str, key: str, value: Any, hint: Any, from_string: bool) -> Any:
    allowed = _alternatives(hint)
    if from_string and isinstance(value, str):
        value = _parse_string(value, allowed)
    for kind in allowed:
        ok, v = _as_kind(value, kind)
        if ok:
            return v
    names = " or ".join(_kind_name(k) for k in allowed)
    raise ConfigError(f"option {key!r} of attack {attack!r} must be {names}, got {value!r}")


def _alternatives(hint: Any) -> list[Any]:
    """The members of a union type (``float | None`` -> [float, NoneType]), bool first."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        kinds = list(typing.get_args(hint))
    else:
        kinds = [hint]
    return sorted(kinds, key=lambda k: k is not bool)


def _parse_string(text: str, allowed: list[Any]) -> Any:
    low = text.lower()
    if low in ("none", "null") and type(None) in allowed:
        return None
    if low in ("true", "false") and bool in allowed:
        return low == "true"
    if any(typing.get_origin(k) is tuple for k in allowed):
        return tuple(p.strip() for p in text.split(",")) if text else ()
    for conv in (int, float):
        if conv in allowed or (conv is int and float in allowed):
            try:
                return conv(text)
            except ValueError:
                pass
    return text


def _as_kind(value: Any, kind: Any) -> tuple[bool, Any]:
    if kind is type(None):
        return value is None, None
    if kind is bool:
        return isinstance(value, bool), value
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        return ok, float(value) if ok else value
    if kind is str:
        return isinstance(value, str), value
    if typing.get_origin(kind) is tuple:
        return _as_tuple(value, typing.get_args(kind))
    return isinstance(value, kind), value


def _as_tuple(value: Any, args: tuple[Any, ...]) -> tuple[bool, Any]:
    if not isinstance(value, list | tuple):
        return False, value
    if len(args) == 2 and args[1] is Ellipsis:
        kinds = [args[0]] * len(value)
    elif len(args) != len(value):
        return False, value
    else:
        kinds = list(args)
    out = []
    for v, k in zip(value, kinds):
        if k is float and isinstance(v, str):
            try:
                v = float(v)
            except ValueError:
                return False, value
        ok, cv = _as_kind(v, k)
        if not ok:
            return False, value
        out.append(cv)
    return True, tuple(out)


def _kind_name(kind: Any) -> str:
    if kind is type(None):
        return "none"
    if typing.get_origin(kind) is tuple:
        args = typing.get_args(kind)
        inner = ", ".join("..." if a is Ellipsis else _kind_name(a) for a in args)
        return f"a list ({inner})"
    return {bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        kind, getattr(kind, "__name__", str(kind))
    )
