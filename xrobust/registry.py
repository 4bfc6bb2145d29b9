"""One generic registry used for datasets, models, attacks and explainers.

Every method reads a name through :func:`normalise`, so one spelling works everywhere.
Registries whose kind has an entry-point group (:data:`xrobust.plugins.GROUPS`) also hold
what installed packages declare there; they are loaded lazily, once per process, at the
first lookup or listing (see :mod:`xrobust.plugins`).

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
    >>> r.list("Socket-*")
    ['socket_set']
    >>> r.unregister("socket-set"); r.list()
    ['spanner']
"""

from __future__ import annotations

import difflib
import fnmatch
import threading
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from xrobust.errors import ConfigError

__all__ = ["BUILTIN", "Registry", "normalise"]

T = TypeVar("T")

#: the source of an entry defined inside xrobust
BUILTIN = "built-in"


def normalise(name: object) -> str:
    """The one spelling of a registry name: lower case, ``-`` read as ``_`` (so
    ``"Hop-Skip-Jump"`` and ``"hop_skip_jump"`` are one name)."""
    return str(name).strip().lower().replace("-", "_")


def _origin(obj: object) -> str:
    """Where an object registered in code comes from: built-in, or its module."""
    module = str(getattr(obj, "__module__", "") or "")
    if module == "xrobust" or module.startswith("xrobust."):
        return BUILTIN
    return f"module {module}" if module else "registered at run time"


class Registry(Generic[T]):
    """A name -> object mapping with did-you-mean suggestions for unknown names.

    Args:
        kind: what is registered ("attack", "explainer", ...), used in messages; a kind
            listed in :data:`xrobust.plugins.GROUPS` also takes installed plugins.
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._items: dict[str, T] = {}
        self._sources: dict[str, str] = {}
        self._plugin_keys: set[str] = set()
        self._plugins_loaded = False
        self._loading = False
        self._lock = threading.RLock()

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering an object under ``name`` (normalised by
        :func:`normalise`; unique). An entry defined in xrobust replaces a plugin's entry
        of the same name (built-ins win; the plugin is reported)."""
        key = normalise(name)
        if not key:
            raise ValueError(f"a {self.kind} name must not be empty")

        def deco(obj: T) -> T:
            source = _origin(obj)
            if key in self._items and self._items[key] is not obj:
                if not (key in self._plugin_keys and source == BUILTIN):
                    raise ValueError(f"{self.kind} {key!r} is already registered")
                from xrobust.plugins import warn_shadowed

                warn_shadowed(self.kind, key, self._sources[key])
                self._plugin_keys.discard(key)
            self._items[key] = obj
            self._sources[key] = source
            return obj

        return deco

    def add_plugin(self, name: str, obj: T, source: str) -> None:
        """Add an installed plugin's entry (called by :mod:`xrobust.plugins`, which has
        already refused clashes)."""
        key = normalise(name)
        self._items[key] = obj
        self._sources[key] = source
        self._plugin_keys.add(key)

    def reload_plugins(self) -> None:
        """Forget the plugins' entries; the next lookup reads the installed ones again (after
        ``pip install`` in a running session, or when ``XROBUST_PLUGINS`` changed)."""
        with self._lock:
            for key in self._plugin_keys:
                self._items.pop(key, None)
                self._sources.pop(key, None)
            self._plugin_keys.clear()
            self._plugins_loaded = False

    def _ensure_plugins(self) -> None:
        if self._plugins_loaded:
            return
        with self._lock:
            if self._plugins_loaded or self._loading:
                return  # a plugin's import looks names up: it sees what is there so far
            from xrobust.plugins import load_into

            self._loading = True
            try:
                self._plugins_loaded = load_into(self)
            finally:
                self._loading = False

    def unregister(self, name: str) -> None:
        """Remove ``name`` (tests register temporary entries this way).

        Raises:
            ConfigError: the name is unknown.
        """
        self.get(name)
        key = normalise(name)
        del self._items[key]
        self._sources.pop(key, None)
        self._plugin_keys.discard(key)

    def get(self, name: str) -> T:
        """Return the object registered as ``name``.

        Raises:
            ConfigError: the name is unknown; the message suggests close matches.
        """
        self._ensure_plugins()
        key = normalise(name)
        if key in self._items:
            return self._items[key]
        close = difflib.get_close_matches(key, list(self._items), n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"unknown {self.kind} {name!r}.{hint} Available: {', '.join(sorted(self._items))}."
        )

    def source(self, name: str) -> str:
        """Where ``name`` comes from: ``"built-in"``, a plugin's ``"<distribution>
        <version>"``, or ``"module <name>"`` for an entry registered by other code.

        Raises:
            ConfigError: the name is unknown.
        """
        self.get(name)
        return self._sources[normalise(name)]

    def list(self, pattern: str | None = None) -> list[str]:
        """Sorted registered names, optionally filtered by a shell-style pattern (matched
        without regard to case; ``-`` in the pattern also matches ``_``)."""
        self._ensure_plugins()
        names = sorted(self._items)
        if pattern:
            plain, spelled = str(pattern).lower(), normalise(pattern)
            names = [
                n for n in names if fnmatch.fnmatchcase(n, plain) or fnmatch.fnmatchcase(n, spelled)
            ]
        return names

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        self._ensure_plugins()
        return normalise(name) in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.list())

    def __len__(self) -> int:
        self._ensure_plugins()
        return len(self._items)

    def items(self) -> list[tuple[str, T]]:
        """(name, object) pairs sorted by name."""
        return [(n, self._items[n]) for n in self.list()]
