"""Validate a report dict against the shipped JSON Schema (needs ``jsonschema``)."""

from __future__ import annotations

from typing import Any

from xrobust.audit.report import report_schema
from xrobust.errors import DataError

__all__ = ["validate_report"]


def validate_report(d: dict[str, Any]) -> None:
    """Raise :class:`DataError` naming the first violation when ``d`` does not follow the
    report schema.

    Example:
        >>> try:
        ...     validate_report({"schema_version": "1.0"})
        ... except DataError as exc:
        ...     print(str(exc)[:33])
        report does not follow schema: at
    """
    try:
        import jsonschema
    except ImportError as exc:  # pragma: no cover - jsonschema is a dev dependency
        raise DataError(
            "validating a report needs the jsonschema package (pip install jsonschema)"
        ) from exc
    validator = jsonschema.Draft202012Validator(report_schema())
    errors = sorted(validator.iter_errors(d), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = "/".join(str(p) for p in e.path) or "(root)"
        raise DataError(
            f"report does not follow schema: at {where}: {e.message}"
            + (f" (and {len(errors) - 1} more)" if len(errors) > 1 else "")
        )
