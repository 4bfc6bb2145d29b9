"""An exclusive, re-entrant advisory lock on one lock file: what keeps two writers out of
one folder (a training run's directory, an audit's report folder).

:func:`exclusive_lock` takes ``flock`` on the file for the ``with`` block and writes the
holder (pid, host, start) into it; a second writer (another process, or another thread
of this one) gets a :class:`~xrobust.errors.ConfigError` naming the holder before it
writes anything. The kernel drops the lock when the holder exits, even on ``kill -9``,
so a killed writer never leaves a stale lock. Within one thread the lock is re-entrant.

Example:
    >>> import tempfile, pathlib
    >>> from xrobust._lock import exclusive_lock
    >>> p = pathlib.Path(tempfile.mkdtemp()) / ".lock"
    >>> with exclusive_lock(p, "the folder is being written by another run"):
    ...     pass
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from xrobust.errors import ConfigError

__all__ = ["exclusive_lock"]

_local = threading.local()  # .held: resolved lock path -> re-entry depth (this thread)


def _held() -> dict[str, int]:
    if not hasattr(_local, "held"):
        _local.held = {}
    return _local.held  # type: ignore[no-any-return]


def _holder(path: Path) -> str:
    try:
        info = json.loads(path.read_text(encoding="utf-8") or "{}")
        return (
            f" (pid {int(info['pid'])} on {info.get('host', '?')}, since {info.get('since', '?')})"
        )
    except (OSError, ValueError, KeyError, TypeError):
        return ""


@contextlib.contextmanager
def exclusive_lock(
    path: Path, busy: str, advice: str = "", *, remove: bool = False
) -> Iterator[Path]:
    """Hold the exclusive lock of the file ``path`` (created; its folder must exist).

    ``remove``: delete the lock file when released (it then leaves nothing behind). A
    writer that locked a file another one removed meanwhile sees it (the path no longer
    names the file it holds) and tries again, so two writers never both hold the lock.

    Raises:
        ConfigError: another writer holds it (``busy`` + the holder + ``advice``), or the
            file cannot be created or locked.
    """
    key = str(path.parent.resolve() / path.name)
    held = _held()
    if key in held:
        held[key] += 1
        try:
            yield path
        finally:
            held[key] -= 1
        return
    fd = _acquire(path, busy, advice)
    held[key] = 1
    try:
        info = {
            "pid": os.getpid(),
            "host": os.uname().nodename,
            "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)
        yield path
    finally:
        held.pop(key, None)
        with contextlib.suppress(OSError):
            if remove:
                os.unlink(path)  # while still holding it: a waiter then sees a new file
            else:
                os.ftruncate(fd, 0)
        os.close(fd)  # closing the descriptor releases the flock


def _acquire(path: Path, busy: str, advice: str) -> int:
    import fcntl

    where = str(path.parent)
    for _ in range(8):
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except PermissionError as exc:
            raise ConfigError(f"{where!r} is not writable: permission denied") from exc
        except OSError as exc:
            raise ConfigError(f"{str(path)!r} cannot be locked: {exc.strerror or exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise ConfigError(
                f"{busy}{_holder(path)}" + (f"; {advice}" if advice else "")
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.fstat(fd).st_ino == os.stat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed it as we locked it: lock the new file
    raise ConfigError(f"{str(path)!r} cannot be locked: it keeps being replaced")
