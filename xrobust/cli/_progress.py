"""The CLI's one renderer of the library's progress callbacks ``progress(stage, done, total)``.

On a terminal (stderr is a TTY) it draws a tqdm bar per stage; in a log (stderr redirected
to a file or a pipe) it writes at most one plain line every ``interval`` seconds (the first
one ``interval`` seconds after the first call), naming the stage, done/total and the time
elapsed, with no carriage returns. ``xrobust train``,
``attack``, ``explain`` and ``audit`` all use it.

Example:
    >>> import io
    >>> from xrobust.cli._progress import ProgressRenderer
    >>> out = io.StringIO()
    >>> with ProgressRenderer(out, interval=0.0) as progress:
    ...     progress("adversarial linf", 3, 12)
    >>> out.getvalue().startswith("[progress] adversarial linf 3/12")
    True
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO, Any

__all__ = ["DEFAULT_INTERVAL", "ProgressRenderer"]

#: seconds between two progress lines in a log
DEFAULT_INTERVAL = 5.0

_BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}]"


class ProgressRenderer:
    """A ``progress(stage, done, total)`` callable drawing on ``stream`` (default stderr).

    Args:
        stream: where to draw (default ``sys.stderr`` at call time).
        enabled: False draws nothing (``--no-progress``, or a rank other than 0).
        interval: least seconds between two lines when ``stream`` is not a terminal.
        tty: force bar (True) or line (False) rendering; default: ``stream.isatty()``.
        clock: monotonic seconds (default ``time.monotonic``; tests pass a fake clock).
    """

    def __init__(
        self,
        stream: IO[str] | None = None,
        *,
        enabled: bool = True,
        interval: float = DEFAULT_INTERVAL,
        tty: bool | None = None,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._stream = stream
        self.enabled = enabled
        self.interval = float(interval)
        self._tty = tty
        self._clock = clock
        self._t0: float | None = None
        self._last_line: float | None = None
        self._stage: str | None = None
        self._bar: Any = None

    @property
    def stream(self) -> IO[str]:
        return self._stream if self._stream is not None else sys.stderr

    @property
    def tty(self) -> bool:
        if self._tty is not None:
            return self._tty
        isatty = getattr(self.stream, "isatty", None)
        try:
            return bool(isatty()) if isatty is not None else False
        except (ValueError, OSError):  # a closed stream
            return False

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        now = self._clock() if self._clock is not None else time.monotonic()
        if self._t0 is None:
            self._t0 = now
            self._last_line = now  # a log hears first after one interval: quick runs stay quiet
        if self.tty:
            self._draw_bar(stage, done, total)
        else:
            self._write_line(stage, done, total, now)

    # ------------------------------------------------------------------ a log
    def _write_line(self, stage: str, done: int, total: int, now: float) -> None:
        if self._last_line is not None and now - self._last_line < self.interval:
            return
        self._last_line = now
        count = f"{done}/{total}" if total > 0 else f"{done}"
        pct = f" ({100.0 * done / total:.0f}%)" if total > 0 else ""
        elapsed = now - (self._t0 if self._t0 is not None else now)
        self.stream.write(f"[progress] {stage} {count}{pct}, {elapsed:.1f} s elapsed\n")
        self.stream.flush()

    # ------------------------------------------------------------------ a terminal
    def _draw_bar(self, stage: str, done: int, total: int) -> None:
        from tqdm import tqdm

        key = stage.split(":")[0]
        if key != self._stage:
            self._close_bar()
            self._stage = key
            self._bar = tqdm(
                total=total if total > 0 else None,
                desc=key,
                file=self.stream,
                leave=False,
                dynamic_ncols=True,
                bar_format=_BAR_FORMAT if total > 0 else None,
            )
        if total > 0:
            self._bar.total = total
        self._bar.n = done
        self._bar.refresh()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            self._stage = None

    def close(self) -> None:
        """Remove the current bar (lines in a log need no closing)."""
        self._close_bar()

    def __enter__(self) -> ProgressRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
