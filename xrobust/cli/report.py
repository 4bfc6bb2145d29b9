"""``xrobust report``: render a saved ``report.json`` again as HTML, Markdown, JUnit or JSON.

The file is checked first: the schema, then that its statuses agree (requirements with
the checks and sections behind them, the verdict with its parts); an inconsistent file is
refused, naming what disagrees. Exit status as for ``xrobust audit``: 0 passed, 1 failed,
3 incomplete, 2 for an unusable file.
"""

from __future__ import annotations

import argparse
import sys


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report",
        help="render an audit's report.json as HTML, Markdown or JUnit XML",
        description="Render an audit report again from its report.json (no model needed).",
    )
    p.add_argument("report", metavar="REPORT_JSON", help="report.json (or the folder holding it)")
    p.add_argument(
        "--format",
        default="html",
        choices=["html", "md", "junit", "json"],
        help="output format (default: html)",
    )
    p.add_argument("--out", metavar="FILE", help="output file (default: standard output)")
    p.add_argument(
        "--validate",
        action="store_true",
        help="validate the JSON against the shipped schema first (needs jsonschema)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from xrobust._io import atomic_write_text
    from xrobust.audit.render import render
    from xrobust.audit.report import load_report
    from xrobust.cli._common import check_out
    from xrobust.errors import DataError, XRobustError

    src = Path(args.report)
    check_out(args.out, inputs=(src / "report.json" if src.is_dir() else src,))
    report = load_report(args.report)
    if args.validate:
        from xrobust.audit.validate import validate_report

        validate_report(report.to_dict())
    try:
        text = render(report, args.format)
    except XRobustError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        # the JSON followed the schema's outline but a section's data has the wrong shape
        raise DataError(
            f"{args.report}: cannot render section data ({type(exc).__name__}: {exc}); the "
            "report was edited or written by an incompatible tool (check it with --validate)"
        ) from exc
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    print(f"verdict: {report.verdict}", file=sys.stderr)
    return report.exit_code
