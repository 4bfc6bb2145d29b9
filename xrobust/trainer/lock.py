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
import os
from collections.abc import Iterator
from pathlib import Path

from xrobust._lock import exclusive_lock
from xrobust.errors import ConfigError

__all__ = ["LOCK_NAME", "run_lock"]

LOCK_NAME = ".lock"


@contextlib.contextmanager
def run_lock(run_dir: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the exclusive lock of ``run_dir`` (created if needed) for the ``with`` block.

    Raises:
        ConfigError: another training run holds the lock, or the folder cannot be created
            or locked (it is not writable, or sits under a file).
    """
    d = Path(run_dir)
    try:
        d.mkdir(parents=True, exist_ok=True)
    except (NotADirectoryError, FileExistsError) as exc:
        raise ConfigError(f"run directory {str(d)!r}: a path component is a file ({exc})") from exc
    except PermissionError as exc:
        raise ConfigError(f"run directory {str(d)!r} cannot be created: permission denied") from exc
    except OSError as exc:
        raise ConfigError(f"run directory {str(d)!r} cannot be created: {exc}") from exc
    with exclusive_lock(
        d / LOCK_NAME,
        f"run directory {str(d)!r} is being written by another training run",
        "wait for it to finish, or train into another --out",
    ):
        yield d
