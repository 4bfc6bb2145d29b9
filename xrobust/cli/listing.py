"""``xrobust list``: what is registered (models, datasets, attacks, explainers)."""

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
        description="List what is registered. With no KIND, list everything.",
    )
    p.add_argument("kind", nargs="?", choices=sorted(_KINDS), help="what to list")
    p.add_argument("--pattern", help="shell-style filter, e.g. 'pgd*'")
    p.set_defaults(func=run)


def _names(kind: str, pattern: str | None) -> list[str]:
    module, attr = _KINDS[kind]
    try:
        registry = getattr(importlib.import_module(module), attr)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise ConfigError(f"{kind} are not available in this installation ({exc})") from exc
    return registry.list(pattern)


def run(args: argparse.Namespace) -> int:
    kinds = [args.kind] if args.kind else sorted(_KINDS)
    for kind in kinds:
        names = _names(kind, args.pattern)
        if len(kinds) == 1:
            print("\n".join(names))
        else:
            print(f"{kind}: {', '.join(names) if names else '(none)'}")
    return 0
