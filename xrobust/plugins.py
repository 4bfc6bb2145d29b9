"""Plugins: installed packages that add attacks, explainers, datasets and models.

A distribution adds to a registry by declaring an entry point in one of the groups of
:data:`GROUPS`; the entry point's name is the registry name and its object is what gets
registered. In a plugin's ``pyproject.toml``::

    [project.entry-points."xrobust.attacks"]
    toy_bim = "xrobust_toy.attack:ToyBIM"        # an xrobust.attacks.Attack subclass

    [project.entry-points."xrobust.explainers"]
    input_x_gradient = "xrobust_toy.explainer:InputXGradient"   # an Explainer subclass

``xrobust.datasets`` entries are dataset factories (called as
``f(size=..., test_fraction=..., seed=...)``, returning a ``DatasetBundle``) and
``xrobust.models`` entries architecture factories (``f(spec, **options)`` returning an
``nn.Module``), like the built-in ones; ``xrobust.audit_sections`` entries are
:class:`xrobust.audit.section.Section` subclasses (audit sections).

The rules:

- **Lazy, once per process.** A registry reads its group at its first lookup or listing
  (``get``, ``list``, ``in``); importing xrobust imports no plugin. A package installed
  later in a running session appears after :func:`reload`.
- **A broken plugin never breaks xrobust.** A plugin that fails to import, or whose object
  is not what the group expects, is left out and reported once as a :class:`PluginWarning`
  naming its distribution, its entry point and the error; everything else works.
- **Built-ins win, always.** A plugin cannot replace a built-in: an entry point named like
  a built-in entry is refused with a warning (register it under another name, e.g.
  ``pgd_fast``). Results and reports name the attack or method that produced them, so a
  built-in name must always mean xrobust's own code. Two distributions declaring the same
  name are both refused (which one ran would depend on the install order).
- **Names agree.** A class that declares a ``name`` (attacks and explainers do) must declare
  the entry point's name, since results carry the class's name.
- **Off switch.** ``XROBUST_PLUGINS=0`` (or ``false``, ``no``, ``off``) loads no plugin.

Example:
    >>> from xrobust.attacks import ATTACKS
    >>> ATTACKS.source("pgd")
    'built-in'
    >>> sorted(GROUPS)
    ['attack', 'dataset', 'explainer', 'model', 'section']
"""

from __future__ import annotations

import importlib
import os
import re
import sys
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any

from xrobust.errors import ConfigError
from xrobust.registry import normalise

if TYPE_CHECKING:
    from xrobust.registry import Registry

__all__ = [
    "ENV_VAR",
    "GROUPS",
    "Group",
    "PluginWarning",
    "enabled",
    "load_into",
    "problems",
    "reload",
]

#: the environment variable that turns plugin loading off
ENV_VAR = "XROBUST_PLUGINS"
_OFF = frozenset({"0", "false", "no", "off"})
_ON = frozenset({"", "1", "true", "yes", "on"})
_NAME = re.compile(r"[a-z0-9][a-z0-9_.]*")


@dataclass(frozen=True)
class Group:
    """An entry-point group and the registry it fills.

    Attributes:
        name: the entry-point group, e.g. ``"xrobust.attacks"``.
        registry: ``"module:ATTRIBUTE"`` of the registry.
        expects: ``"module:Class"`` every entry must subclass, or None for any callable.
    """

    name: str
    registry: str
    expects: str | None = None


#: registry kind -> its entry-point group
GROUPS: dict[str, Group] = {
    "attack": Group("xrobust.attacks", "xrobust.attacks:ATTACKS", "xrobust.attacks.base:Attack"),
    "explainer": Group(
        "xrobust.explainers", "xrobust.explain:EXPLAINERS", "xrobust.explain.base:Explainer"
    ),
    "dataset": Group("xrobust.datasets", "xrobust.data:DATASETS"),
    "model": Group("xrobust.models", "xrobust.models:MODELS"),
    "section": Group(
        "xrobust.audit_sections", "xrobust.audit.sections:SECTIONS", "xrobust.audit.section:Section"
    ),
}


class PluginWarning(UserWarning):
    """A plugin was left out (broken, refused, or shadowed by a built-in)."""


def enabled(environ: Mapping[str, str] | None = None) -> bool:
    """Whether plugins are loaded: ``XROBUST_PLUGINS`` unset, empty or ``1`` (also
    ``true``/``yes``/``on``) loads them; ``0`` (``false``/``no``/``off``) does not.

    Raises:
        ConfigError: any other value.
    """
    value = (os.environ if environ is None else environ).get(ENV_VAR, "").strip().lower()
    if value in _OFF:
        return False
    if value not in _ON:
        raise ConfigError(
            f"{ENV_VAR}={value!r} is not understood; use 0 to load no plugins or 1 to load them"
        )
    return True


_scanned: list[metadata.EntryPoints] = []  # every installed entry point, read once
_problems: list[str] = []  # what was reported, for front ends that show no warnings


def problems() -> list[str]:
    """The messages of every plugin left out so far in this process (each was also
    reported once as a :class:`PluginWarning`), for front ends that show no warnings,
    such as the dashboard. Only registries already looked up have read their plugins.

    Example:
        >>> from xrobust.attacks import list_attacks
        >>> names = list_attacks()  # the attack registry reads its plugins here
        >>> [m for m in problems() if "xrobust.attacks entry point" in m]  # none broken here
        []
    """
    return list(_problems)


def _entry_points(group: str) -> metadata.EntryPoints:
    """The installed entry points of ``group`` (the distributions are scanned once per
    process, for every group, until :func:`reload`)."""
    if not _scanned:
        _scanned.append(metadata.entry_points())
    return _scanned[0].select(group=group)


def _resolve(spec: str) -> Any:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def reload() -> None:
    """Forget every registry's plugin entries; the next lookup reads the installed
    distributions (and ``XROBUST_PLUGINS``) again."""
    importlib.invalidate_caches()
    _scanned.clear()
    _problems.clear()
    for group in GROUPS.values():
        _resolve(group.registry).reload_plugins()


def _initialising(module: str) -> bool:
    """True while ``module`` is being imported (its built-ins are not all registered yet)."""
    mod = sys.modules.get(module)
    if mod is None:
        importlib.import_module(module)
        return False
    return bool(getattr(getattr(mod, "__spec__", None), "_initializing", False))


def _label(ep: metadata.EntryPoint) -> tuple[str, str]:
    """(distribution name, "name version") of the distribution declaring ``ep``."""
    dist = getattr(ep, "dist", None)
    if dist is None:
        return "an unknown distribution", "an unknown distribution"
    name = str(dist.metadata["Name"] or "unnamed distribution")
    return name, f"{name} {dist.version}"


def _warn(group: Group, ep: metadata.EntryPoint, what: str) -> None:
    dist, label = _label(ep)
    message = (
        f"xrobust plugin {ep.name!r} ({group.name} entry point '{ep.name} = {ep.value}' of "
        f"{label}) {what}; the rest of xrobust works without it (uninstall or fix {dist}, "
        f"or set {ENV_VAR}=0 to load no plugins)"
    )
    _problems.append(message)
    warnings.warn_explicit(
        message, PluginWarning, filename=label, lineno=0, module="xrobust.plugins"
    )


def warn_shadowed(kind: str, name: str, source: str) -> None:
    """Report that a built-in registered after the plugins replaced a plugin's entry."""
    message = (
        f"xrobust plugin {kind} {name!r} of {source} is replaced by the built-in {kind} of "
        "that name (built-ins win); the plugin must register under another name"
    )
    _problems.append(message)
    warnings.warn(message, PluginWarning, stacklevel=3)


def _problem(obj: Any, group: Group, key: str) -> str | None:
    """Why ``obj`` cannot be the entry ``key`` of ``group``, or None."""
    if group.expects is not None:
        base = _resolve(group.expects)
        if not (isinstance(obj, type) and issubclass(obj, base)):
            what = obj.__name__ if isinstance(obj, type) else type(obj).__name__
            return (
                f"is refused: it points to {what}, which is not a subclass of "
                f"{base.__module__}.{base.__qualname__}"
            )
        declared = getattr(obj, "name", None)
        if isinstance(declared, str) and normalise(declared) != key:
            return (
                f"is refused: its class declares name = {declared!r}, which differs from the "
                f"entry point's name {key!r}; the two must agree (results carry the class's name)"
            )
    elif not callable(obj):
        return f"is refused: it points to a {type(obj).__name__}, which is not callable"
    return None


def _candidates(group: Group, registry: Registry[Any]) -> list[tuple[str, metadata.EntryPoint]]:
    """The group's entry points that may be loaded; the others are reported."""
    by_name: dict[str, list[metadata.EntryPoint]] = {}
    for ep in _entry_points(group.name):
        by_name.setdefault(normalise(ep.name), []).append(ep)
    out = []
    for key in sorted(by_name):
        eps = sorted(by_name[key], key=lambda e: _label(e)[1])
        if len(eps) > 1:
            who = " and ".join(_label(e)[1] for e in eps)
            for ep in eps:
                _warn(
                    group,
                    ep,
                    f"is refused: {key!r} is declared by both {who}, so neither is loaded",
                )
        elif not _NAME.fullmatch(key):
            _warn(
                group,
                eps[0],
                "is refused: a name is lower-case letters, digits, '_' and "
                "'.', starting with a letter or digit",
            )
        elif key in registry:
            _warn(
                group,
                eps[0],
                f"is refused: xrobust already has the {registry.kind} {key!r} "
                f"({registry.source(key)}), and built-ins win; register it under another name",
            )
        else:
            out.append((key, eps[0]))
    return out


def load_into(registry: Registry[Any]) -> bool:
    """Add the plugins of ``registry``'s group to it (the registry calls this at its first
    lookup). Returns False when it must be tried again later (the registry's package is
    still being imported), True otherwise.

    Raises:
        ConfigError: ``XROBUST_PLUGINS`` has a value that is not understood.
    """
    group = GROUPS.get(registry.kind)
    if group is None or not enabled():
        return True
    if _initialising(group.registry.partition(":")[0]):
        return False
    for key, ep in _candidates(group, registry):
        try:
            obj = ep.load()
        except Exception as exc:  # a plugin's import may fail in any way
            _warn(group, ep, f"could not be loaded: {type(exc).__name__}: {exc}")
            continue
        problem = _problem(obj, group, key)
        if problem is None and key in registry and registry.get(key) is not obj:
            problem = f"is refused: importing it registered another {registry.kind} as {key!r}"
        if problem is not None:
            _warn(group, ep, problem)
            continue
        registry.add_plugin(key, obj, _label(ep)[1])
    return True
