"""One generic registry used for datasets, models, attacks and explainers.

Example:
    >>> from xrobust.registry import Registry
    >>> r = Registry("widget")
    >>> @r.register("spanner")
    ... class Spanner: ...
    >>> r.get("spanner") is Spanner
    True
    >>> r.list()
    ['spanner']
    >>> @r.register("socket-set")
    ... class SocketSet: ...
    >>> r.get("socket-set") is r.get("Socket_Set") is SocketSet, "socket-set" in r
    (True, True)
    >>> r.unregister("socket-set"); r.list()
    ['spanner']
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from xrobust.errors import ConfigError

__all__ = ["Registry", "normalise"]

T = TypeVar("T")


def normalise(name: object) -> str:
    """The one spelling of a registry name: lower case, ``-`` read as ``_`` (so
    ``"Hop-Skip-Jump"`` and ``"hop_skip_jump"`` are one name)."""
    return str(name).strip().lower().replace("-", "_")


class Registry(Generic[T]):
    """A name -> object mapping with did-you-mean suggestions for unknown names.

    Args:
        kind: what is registered ("attack", "explainer", ...), used in messages.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering an object under ``name`` (normalised by
        :func:`normalise`; unique)."""
        key = normalise(name)
        if not key:
            raise ValueError(f"a {self.kind} name must not be empty")

        def deco(obj: T) -> T:
            if key in self._items and self._items[key] is not obj:
                raise ValueError(f"{self.kind} {key!r} is already registered")
            self._items[key] = obj
            return obj

        return deco

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests register temporary entries this way).

        Raises:
            ConfigError: the name is unknown.
        """
        self.get(name)
        del self._items[normalise(name)]

    def get(self, name: str) -> T:
        """Return the object registered as ``name``.

        Raises:
            ConfigError: the name is unknown; the message suggests close matches.
        """
        key = normalise(name)
        if key in self._items:
            return self._items[key]
        close = difflib.get_close_matches(key, list(self._items), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(sorted(self._items))}."
        )

    def list(self, pattern: str | None = None) -> list[str]:
        """Sorted registered names, optionally filtered by a shell-style pattern."""
        names = sorted(self._items)
        if pattern:
            names = [n for n in names if fnmatch.fnmatch(n, pattern)]
        return names

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and normalise(name) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        """(name, object) pairs sorted by name."""
        return [(n, self._items[n]) for n in self.list()]
