"""Render an :class:`~xrobust.audit.report.AuditReport` in every form and write the files.

Example:
    >>> from xrobust.audit.report import AuditReport
    >>> render(AuditReport(), "md").startswith("## ")
    True
"""

from __future__ import annotations

import os
from pathlib import Path

from xrobust._io import atomic_write_text
from xrobust.audit.report import AuditReport
from xrobust.errors import ConfigError

__all__ = ["FILENAMES", "FORMATS", "render", "write_report"]

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


def write_report(
    report: AuditReport, folder: str | os.PathLike[str], formats: tuple[str, ...] | None = None
) -> dict[str, Path]:
    """Write the report's files into ``folder`` (created), each atomically."""
    out = {}
    for fmt in formats or FORMATS:
        if fmt not in FILENAMES:
            raise ConfigError(
                f"unknown report format {fmt!r}; expected one of {', '.join(FORMATS)}"
            )
        out[fmt] = atomic_write_text(Path(folder) / FILENAMES[fmt], render(report, fmt))
    return out
