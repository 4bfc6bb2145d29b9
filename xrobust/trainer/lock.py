"""An exclusive lock on a run directory while a training run writes it.

Two trainings into one ``--out`` would interleave ``metrics.jsonl`` and leave a model of
one run beside the metrics of the other. :func:`run_lock` takes an advisory ``flock`` on
``<run>/.lock`` for as long as the run writes; a second writer (another process, or another
``train()`` in this one) gets a :class:`~xrobust.errors.ConfigError` naming the holder
before it writes anything. The kernel drops the lock when the holder exits, even on
``kill -9``, so a killed run never leaves a stale lock behind (``--resume`` just works).

The lock is re-entrant within one thread: ``train()`` holds it across fitting,
testing and the final save, and :meth:`Trainer.fit` inside it does not lock twice.

Example:
    >>> import tempfile
    >>> from xrobust.trainer.lock import run_lock
    >>> d = tempfile.mkdtemp()
    >>> with run_lock(d):
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

__all__ = ["LOCK_NAME", "run_lock"]

LOCK_NAME = ".lock"
_local = threading.local()  # .held: resolved run dir -> re-entry depth (this thread)


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
def run_lock(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the exclusive lock of ``run_dir`` (created if needed) for the ``with`` block.

    Raises:
        ConfigError: another training run holds the lock, or the folder cannot be created
            or locked (it is not writable, or sits under a file).
    """
    import fcntl

    d = Path(run_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError) as exc:
        raise ConfigError(f"run directory {str(d)!r}: a path component is a file ({exc})") from exc
    except PermissionError as exc:
        raise ConfigError(f"run directory {str(d)!r} cannot be created: permission denied") from exc
    except OSError as exc:
        raise ConfigError(f"run directory {str(d)!r} cannot be created: {exc}") from exc
    key = str(d.resolve())
    held = _held()
    if key in held:  # this thread holds it already (train() around Trainer.fit)
        held[key] += 1
        try:
            yield d
        finally:
            held[key] -= 1
        return
    path = d / LOCK_NAME
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except PermissionError as exc:
        raise ConfigError(f"run directory {str(d)!r} is not writable: permission denied") from exc
    except OSError as exc:
        raise ConfigError(f"run directory {str(d)!r} cannot be locked: {exc}") from exc
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(
                f"run directory {str(d)!r} is being written by another training run"
                f"{_holder(path)}; wait for it to finish, or train into another --out"
            ) from None
        held[key] = 1
        try:
            info = {
                "pid": os.getpid(),
                "host": os.uname().nodename,
                "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
            yield d
        finally:
            held.pop(key, None)
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
    finally:
        os.close(fd)  # closing the descriptor releases the flock
