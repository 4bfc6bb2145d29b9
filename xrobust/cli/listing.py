"""``xrobust list``: what is registered (models, datasets, attacks, explainers), and where
each entry comes from: ``built-in``, or the plugin distribution (name and version) that
declared it through an entry point (see :mod:`xrobust.plugins`)."""

from __future__ import annotations

import argparse
import importlib

from xrobust.errors import ConfigError

# kind -> (module, registry attribute)
_KINDS = {
    "models": ("xrobust.models", "MODELS"),
    "datasets": ("xrobust.data", "DATASETS"),
    "attacks": ("xrobust.attacks", "ATTACKS"),
    "explainers": ("xrobust.explain", "EXPLAINERS"),
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "list",
        help="list registered models, datasets, attacks or explainers",
        description=(
            "List what is registered, with where each entry comes from (built-in, or the "
            "plugin distribution and version). With no KIND, list everything. Plugins are "
            "installed packages declaring entry points (xrobust.attacks, xrobust.explainers, "
            "xrobust.datasets, xrobust.models); XROBUST_PLUGINS=0 loads none."
        ),
    )
    p.add_argument("kind", nargs="?", choices=sorted(_KINDS), help="what to list")
    p.add_argument("--pattern", help="shell-style filter, e.g. 'pgd*'")
    p.add_argument(
        "--names",
        action="store_true",
        help="names only: one per line for one KIND, one line per kind for all",
    )
    p.set_defaults(func=run)


def _entries(kind: str, pattern: str | None) -> list[tuple[str, str]]:
    """(name, source) of the registered entries of ``kind``."""
    module, attr = _KINDS[kind]
    try:
        registry = getattr(importlib.import_module(module), attr)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise ConfigError(f"{kind} are not available in this installation ({exc})") from exc
    return [(name, registry.source(name)) for name in registry.list(pattern)]


def _table(entries: list[tuple[str, str]], indent: str) -> list[str]:
    width = max((len(n) for n, _ in entries), default=0)
    return [f"{indent}{name:<{width}}  {source}" for name, source in entries]


def run(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else sorted(_KINDS)
    lines: list[str] = []
    for kind in kinds:
        entries = _entries(kind, args.pattern)
        if args.names and len(kinds) == 1:
            lines += [name for name, _ in entries]
        elif args.names:
            lines.append(f"{kind}: {', '.join(n for n, _ in entries) or '(none)'}")
        elif len(kinds) == 1:
            lines += _table(entries, "")
        else:
            lines += [f"{kind}:", *(_table(entries, "  ") or ["  (none)"])]
    print("\n".join(lines))
    return 0
