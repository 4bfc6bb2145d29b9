"""The ``xrobust`` command line.

Each subcommand lives in its own module of this package and exposes
``add_parser(subparsers)`` (which registers its arguments and sets
``func=run``) and ``run(args) -> int``. The CLI only parses options, builds
configs and calls the library; user errors (:class:`xrobust.errors.XRobustError`,
bad flag values, unreadable or unwritable paths) are printed as one line and give exit
status 2; ``xrobust audit`` exits 1 when a requirement fails and 3 when the audit is
incomplete (evidence missing).

Third-party logs: unless ``-v`` is given, TensorFlow's C++ start-up lines (oneDNN, CPU
features, ``absl::InitializeLog``) are kept out of the output by setting
``TF_CPP_MIN_LOG_LEVEL=2`` before any subcommand can import TensorFlow (a value the user set
is kept), and the ``absl`` and ``tensorflow`` Python loggers show warnings only.

Threads: unless ``OMP_WAIT_POLICY`` is already set, ``PASSIVE`` is set before torch is
imported (by ``import xrobust``, so library calls get it too). On a busy machine OpenMP's default spin-waiting made commands
several times slower (see the README's "Speed on a shared machine"); on a quiet one the
two were within noise.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
from collections.abc import MutableMapping, Sequence

from xrobust import __version__
from xrobust.errors import XRobustError

__all__ = ["main"]

# Subcommand modules, in the order `xrobust --help` lists them. A module that
# does not exist yet is skipped, so the CLI grows as the library does.
_SUBCOMMANDS = ("train", "attack", "explain", "audit", "export", "report", "app", "listing")


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line (and exit status 2)."""

    def error(self, message: str) -> None:  # type: ignore[override]
        first = " ".join(message.split())
        self.exit(2, f"{self.prog}: error: {first} (see `{self.prog} --help`)\n")


def _thread_defaults() -> None:
    """Passive OpenMP waiting unless the user chose (must run before torch is imported).
    ``import xrobust`` has normally done it already; a second call changes nothing."""
    from xrobust import _thread_defaults as defaults

    defaults()


#: environment variables that quieten third-party native libraries unless ``-v``
_QUIET_ENV = {"TF_CPP_MIN_LOG_LEVEL": "2"}  # TensorFlow / XLA C++ logs: warnings and errors only
#: Python loggers of third-party libraries held at WARNING unless ``-v``
_QUIET_LOGGERS = ("absl", "tensorflow", "tf2onnx", "h5py")


def quiet_third_party(verbose: bool, environ: MutableMapping[str, str] | None = None) -> None:
    """Keep third-party start-up chatter out of the CLI's output unless ``verbose``: the
    variables of ``_QUIET_ENV`` are set where the user has not set them (they must be in
    place before TensorFlow is imported), and the ``_QUIET_LOGGERS`` show warnings only.
    With ``verbose`` nothing is changed."""
    if verbose:
        return
    env = os.environ if environ is None else environ
    for key, value in _QUIET_ENV.items():
        env.setdefault(key, value)
    for name in _QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser with every available subcommand."""
    parser = _Parser(
        prog="xrobust",
        description="How far can you trust a neural network? Train, attack, explain and audit models.",
    )
    parser.add_argument("--version", action="version", version=f"xrobust {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _SUBCOMMANDS:
        try:
            mod = importlib.import_module(f"xrobust.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"xrobust.cli.{name}":
                continue
            raise
        mod.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: parse ``argv`` and run the subcommand; returns the exit status."""
    _thread_defaults()
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    quiet_third_party(args.verbose)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except XRobustError as exc:
        _say_error(args.command, str(exc))
        return 2
    except FileNotFoundError as exc:
        _say_error(args.command, f"file not found: {exc.filename or exc}")
        return 2
    except OSError as exc:  # permissions, a path under a file, a full disk, ...
        where = f": {exc.filename}" if exc.filename else ""
        _say_error(args.command, f"{exc.strerror or exc}{where}")
        return 2
    except MemoryError:
        print(
            f"xrobust {args.command}: error: out of memory; use smaller sizes "
            "(--batch-size, --size, --limit, model options)",
            file=sys.stderr,
        )
        return 2
    except KeyboardInterrupt:
        print(f"xrobust {args.command}: interrupted", file=sys.stderr)
        return 130


def _say_error(command: str, message: str) -> None:
    """One line on stderr. The message may quote a server's answer, a file or a path: escape
    sequences and control characters are removed, so that it cannot move the cursor, rewrite
    earlier lines or print a forged verdict."""
    from xrobust._text import clean_for_terminal

    print(f"xrobust {command}: error: {clean_for_terminal(message, 4000)}", file=sys.stderr)


def _entry() -> None:  # pragma: no cover - console-script shim
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
