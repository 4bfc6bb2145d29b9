"""Atomic writes: a file (write to a temporary file in the same folder, fsync, rename), or
a whole folder of files (:func:`replace_folder`: written beside it, then swapped in), and
the checks that keep a command from replacing what it must not (:func:`safe_output`)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "check_replaceable",
    "replace_folder",
    "safe_output",
]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; parent folders are created."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        # mkstemp creates the file 0600; give it the usual permissions (0666 less the umask).
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with _suppress():
            os.unlink(tmp)
        raise
    return path


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike[str], obj: Any, indent: int | None = 2) -> Path:
    """Write ``obj`` as JSON to ``path`` atomically (NaN/Inf refused: not valid JSON)."""
    return atomic_write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def safe_output(
    path: str | os.PathLike[str],
    *,
    flag: str = "--out",
    folder: bool = False,
    inputs: tuple[str | os.PathLike[str] | None, ...] = (),
) -> None:
    """Refuse, before any work, an output that would replace what it must not: a symlink
    (it would be followed out, or replaced), something that is neither a regular file
    nor (``folder``) a directory (a device node, a pipe: ``/dev/stdout``), or one of the
    command's own ``inputs`` (the same file, or for a folder, a folder holding an input).

    Raises:
        ConfigError: naming the path and what it is.
    """
    import stat

    from xrobust.errors import ConfigError

    p = Path(path)
    try:
        st = os.lstat(p)
    except (FileNotFoundError, NotADirectoryError):
        st = None  # absent (or under a file: the caller says so)
    except OSError as exc:
        raise ConfigError(f"{flag} {str(p)!r} cannot be examined: {exc.strerror or exc}") from exc
    if st is not None:
        if stat.S_ISLNK(st.st_mode):
            raise ConfigError(
                f"{flag} {str(p)!r} is a symbolic link; xrobust does not write through links "
                "(it could replace a file elsewhere): give the real path"
            )
        if folder and not stat.S_ISDIR(st.st_mode):
            raise ConfigError(f"{flag} {str(p)!r} exists and is not a folder")
        if not folder and not stat.S_ISREG(st.st_mode):
            kind = (
                "a folder"
                if stat.S_ISDIR(st.st_mode)
                else "not a regular file (a device, pipe or socket)"
            )
            raise ConfigError(f"{flag} {str(p)!r} is {kind}; give the name of a regular file")
    target = p.resolve()
    for inp in inputs:
        if inp is None or not str(inp):
            continue
        q = Path(inp)
        if not q.exists():
            continue
        src = q.resolve()
        same = src == target or (folder and target in src.parents)
        if same:
            what = "is" if src == target else "holds"
            raise ConfigError(
                f"{flag} {str(p)!r} {what} the input {str(q)!r}; writing there would destroy "
                "it: give another output path"
            )


def replace_folder(
    folder: str | os.PathLike[str], files: dict[str, bytes], owned: tuple[str, ...]
) -> dict[str, Path]:
    """Replace the set of ``files`` (name -> content) in ``folder`` as a whole.

    The files are written (and fsynced) into a temporary folder beside ``folder``, which is
    then swapped in with one atomic ``renameat2(RENAME_EXCHANGE)`` where the system has it
    (else two renames, with the old set kept aside until the new one is in place, and put
    back by the next call if a crash came between them). A crash therefore leaves the old
    set or the new one, never a mix; leftovers of a crashed call are removed by the next.
    ``folder`` may hold only files named in ``owned`` (an earlier set) and hidden
    entries, so nothing else is ever deleted. Callers hold the folder's lock.

    Raises:
        ConfigError: ``folder`` is a link or not a folder, or holds files of its own.
    """
    import shutil

    dest = Path(os.path.abspath(folder))
    check_replaceable(dest, owned)
    parent = dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    _recover(dest)
    check_replaceable(dest, owned)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.new-", dir=parent))
    try:
        os.chmod(tmp, 0o777 & ~_umask())
        for name, data in files.items():
            with open(tmp / name, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.chmod(tmp / name, 0o666 & ~_umask())
        _fsync_dir(tmp)
        if not dest.exists():
            os.rename(tmp, dest)
        elif _exchange(tmp, dest):
            shutil.rmtree(tmp, ignore_errors=True)  # tmp now holds the old set
        else:
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.old-", dir=parent))
            os.rmdir(old)
            os.rename(dest, old)
            os.rename(tmp, dest)
            shutil.rmtree(old, ignore_errors=True)
        _fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {name: dest / name for name in files}


def check_replaceable(folder: str | os.PathLike[str], owned: tuple[str, ...]) -> None:
    """Refuse, before any work, a folder :func:`replace_folder` must not replace: a link or
    non-folder, the current directory or one holding it, or a folder with anything but
    regular files named in ``owned`` (hidden entries and sub-folders included).

    Raises:
        ConfigError: naming the folder and what is in the way.
    """
    from xrobust.errors import ConfigError

    dest = Path(os.path.abspath(folder))
    safe_output(dest, folder=True, flag="report folder")
    if not dest.name or dest == Path(os.getcwd()) or dest in Path(os.getcwd()).parents:
        raise ConfigError(
            f"{str(folder)!r} is the current directory or holds it; a report folder is replaced "
            "as a whole, so give a folder of its own (e.g. reports/audit)"
        )
    if not dest.is_dir():
        return
    other = sorted(
        e.name for e in dest.iterdir() if e.name not in owned or e.is_symlink() or not e.is_file()
    )
    if other:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        raise ConfigError(
            f"{str(folder)!r} holds entries that are not part of a report ({shown}); the report "
            "set is replaced as a whole, so give an empty folder or a report folder"
        )


def _recover(dest: Path) -> None:
    """Undo what a crashed :func:`replace_folder` left: an old set moved aside with no new
    one in place is put back; unfinished new sets and old sets are removed."""
    import shutil

    parent = dest.parent
    if not parent.is_dir():
        return
    olds = sorted(parent.glob(f".{dest.name}.old-*"), key=lambda p: p.stat().st_mtime)
    if olds and not dest.exists():
        os.rename(olds.pop(), dest)
    for p in [*olds, *parent.glob(f".{dest.name}.new-*")]:
        shutil.rmtree(p, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system
    cannot (then the caller falls back to renames)."""
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fn = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    rc = fn(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange)
    return rc == 0


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def _fsync_dir(d: Path) -> None:
    try:
        fd = os.open(d, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _suppress:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> bool:
        return True
