"""Render an :class:`~xrobust.audit.report.AuditReport` in every form and write the files.

Example:
    >>> from xrobust.audit.report import AuditReport
    >>> render(AuditReport(), "md").startswith("## ")
    True
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from xrobust._io import replace_folder
from xrobust.audit.report import AuditReport
from xrobust.errors import ConfigError

__all__ = ["FILENAMES", "FORMATS", "render", "report_lock", "write_report"]

#: format -> default file name inside a report folder
FILENAMES = {"html": "report.html", "json": "report.json", "junit": "junit.xml", "md": "summary.md"}
FORMATS = tuple(FILENAMES)


def render(report: AuditReport, fmt: str) -> str:
    """The report as text in ``fmt``: "html", "json", "junit" or "md".

    Raises:
        ConfigError: unknown format.
    """
    fmt = fmt.lower()
    if fmt == "html":
        from xrobust.audit.html import render_html

        return render_html(report)
    if fmt == "json":
        return report.to_json() + "\n"
    if fmt == "junit":
        from xrobust.audit.junit import render_junit

        return render_junit(report)
    if fmt in ("md", "markdown"):
        from xrobust.audit.markdown import render_markdown

        return render_markdown(report)
    raise ConfigError(f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}")


@contextlib.contextmanager
def report_lock(folder: str | os.PathLike[str]) -> Iterator[Path]:
    """Hold the lock of report folder ``folder`` (the lock ``xrobust train`` takes on its
    run folder; the file ``.<name>.lock`` sits beside the folder, which is swapped as a
    whole). ``xrobust audit`` holds it from the start, so a second audit into the same
    ``--out`` is refused before any work; :func:`write_report` takes it (re-entrant).

    Raises:
        ConfigError: another audit is writing the folder (its pid is named).
    """
    from xrobust._io import check_replaceable
    from xrobust._lock import exclusive_lock

    d = Path(os.path.abspath(folder))
    check_replaceable(d, tuple(FILENAMES.values()))
    d.parent.mkdir(parents=True, exist_ok=True)
    with exclusive_lock(
        d.parent / f".{d.name}.lock",
        f"report folder {str(folder)!r} is being written by another audit",
        "wait for it to finish, or give another --out",
        remove=True,
    ):
        yield d


def write_report(
    report: AuditReport, folder: str | os.PathLike[str], formats: tuple[str, ...] | None = None
) -> dict[str, Path]:
    """Write the report's files into ``folder``, replacing the folder's earlier report set
    as a whole (written beside it, then swapped in): a crash leaves the old set or the new
    one, never a mix. ``folder`` must not be a link, and may hold only report files.

    Raises:
        ConfigError: unknown format, another audit writing the folder, or a folder that
            is a link or holds other files.
    """
    texts = {}
    for fmt in formats or FORMATS:
        if fmt not in FILENAMES:
            raise ConfigError(
                f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}"
            )
        texts[FILENAMES[fmt]] = render(report, fmt).encode("utf-8")
    with report_lock(folder):
        paths = replace_folder(folder, texts, owned=tuple(FILENAMES.values()))
    return {fmt: paths[FILENAMES[fmt]] for fmt in formats or FORMATS}
