"""The audit's result: one plain dataclass from which every report form is rendered.

:class:`AuditReport` holds every number, the configuration, seeds, versions and timings,
each section's results, the sanity checks and the requirements. It round-trips through
JSON (:meth:`AuditReport.to_dict` / :meth:`AuditReport.from_dict`) and validates against
the schema shipped as ``xrobust/audit/report.schema.json``.

Example:
    >>> from xrobust.audit.report import AuditReport, CheckResult
    >>> r = AuditReport(requirements=[CheckResult("min_clean_accuracy", "pass", "0.97 >= 0.9")])
    >>> AuditReport.from_dict(r.to_dict()) == r, r.verdict
    (True, 'passed')
    >>> AuditReport(requirements=[CheckResult("sanity_checks_pass", "not_evaluated", "not run")]).verdict
    'incomplete'

Verdicts: an audit is "failed" when a requirement failed, else "incomplete" when any
evidence is missing (a requirement not evaluated, a section that errored or stopped part
way, no requirement at all), else "passed". ``xrobust audit`` exits 0 / 1 / 3 for them.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from xrobust import __version__

__all__ = [
    "EXIT_CODES",
    "SCHEMA_VERSION",
    "AuditReport",
    "CheckResult",
    "SectionResult",
    "load_report",
    "report_schema",
]

SCHEMA_VERSION = "2.3"

Status = Literal["pass", "warn", "fail", "skip", "not_evaluated"]
SectionStatus = Literal["ok", "partial", "skipped", "not_available", "error"]
Verdict = Literal["passed", "failed", "incomplete"]

#: exit status of ``xrobust audit`` / ``xrobust report`` for each verdict
EXIT_CODES: dict[str, int] = {"passed": 0, "failed": 1, "incomplete": 3}

#: section statuses that mean the section did not gather all it was asked to
INCOMPLETE_SECTION = ("partial", "error")


@dataclass
class CheckResult:
    """One sanity check or requirement.

    Attributes:
        name: identifier (also the JUnit test-case name).
        status: "pass", "warn", "fail", "skip" (a sanity check that does not apply) or
            "not_evaluated" (a requirement whose evidence was not fully gathered: it
            neither passes nor fails, and makes the audit's verdict "incomplete").
        message: what was measured, in one sentence with the numbers.
        why: why the check matters (sanity checks) or what was required.
        details: the numbers behind the message.
    """

    name: str
    status: Status
    message: str
    why: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CheckResult:
        return cls(
            name=d["name"],
            status=d["status"],
            message=d["message"],
            why=d.get("why", ""),
            details=dict(d.get("details") or {}),
        )


@dataclass
class SectionResult:
    """One section of the audit.

    Attributes:
        name: section name ("clean", "adversarial", ...).
        status: "ok", "partial" (the query budget ran out: what ran is kept, ``reason``
            says where it stopped), "skipped" (switched off), "not_available" (a component
            it needs is missing, or the model cannot answer it: a black box has no
            gradients) or "error" (it raised; ``reason`` says what).
        reason: why the section is not "ok".
        seconds: wall time of the section.
        data: the section's numbers (keys documented in the schema).
        queries: rows the model was asked about in this section.
        skipped_parts: parts of the section that did not run, each ``{"part", "reason"}``
            (e.g. gradient attacks on a black box).
    """

    name: str
    status: SectionStatus = "ok"
    reason: str = ""
    seconds: float = 0.0
    data: dict[str, Any] = field(default_factory=dict)
    queries: int = 0
    skipped_parts: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SectionResult:
        return cls(
            name=d["name"],
            status=d.get("status", "ok"),
            reason=d.get("reason", ""),
            seconds=float(d.get("seconds", 0.0)),
            data=dict(d.get("data") or {}),
            queries=int(d.get("queries", 0)),
            skipped_parts=[dict(p) for p in d.get("skipped_parts") or []],
        )


@dataclass
class AuditReport:
    """Everything an audit measured.

    Attributes:
        schema_version: version of the JSON schema this report follows.
        xrobust_version: library version that produced it.
        created: ISO-8601 UTC time stamp.
        title: report title.
        model: description of the model (class, parameter count, source).
        dataset: the dataset's spec (``DatasetSpec.to_dict()``) and split sizes.
        config: the ``AuditConfig`` used (``to_dict()``).
        seeds: seeds used.
        versions: Python, torch, captum, numpy, platform.
        environment: device, world size, threads.
        timings: seconds per stage and in total.
        sections: section name -> :class:`SectionResult`.
        sanity_checks: evaluation sanity checks (section 5).
        requirements: requirement results (section 6).
        queries: rows the model was asked about: ``total``, ``per_section``, and the
            classifier's ``budget`` (None: unlimited).
    """

    schema_version: str = SCHEMA_VERSION
    xrobust_version: str = __version__
    created: str = ""
    title: str = "xrobust audit"
    model: dict[str, Any] = field(default_factory=dict)
    dataset: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    seeds: dict[str, int] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    environment: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    sections: dict[str, SectionResult] = field(default_factory=dict)
    sanity_checks: list[CheckResult] = field(default_factory=list)
    requirements: list[CheckResult] = field(default_factory=list)
    queries: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ verdicts
    @property
    def verdict(self) -> Verdict:
        """"failed" when a requirement failed, else "incomplete" when evidence is missing
        (see :meth:`missing_evidence`), else "passed"."""
        if any(r.status == "fail" for r in self.requirements):
            return "failed"
        return "incomplete" if self.missing_evidence() else "passed"

    @property
    def passed(self) -> bool:
        """True only when the verdict is "passed": every requirement was evaluated on
        complete evidence and none failed."""
        return self.verdict == "passed"

    @property
    def exit_code(self) -> int:
        """0 passed, 1 failed, 3 incomplete (what ``xrobust audit`` exits with)."""
        return EXIT_CODES[self.verdict]

    @property
    def failed_requirements(self) -> list[CheckResult]:
        """The requirements that failed."""
        return [r for r in self.requirements if r.status == "fail"]

    @property
    def unevaluated_requirements(self) -> list[CheckResult]:
        """The requirements whose evidence was not fully gathered."""
        return [r for r in self.requirements if r.status in ("not_evaluated", "skip")]

    def missing_evidence(self) -> list[str]:
        """What keeps the audit from a verdict of "passed", one sentence each: requirements
        not evaluated, sections that errored or stopped part way (a query budget that ran
        out), sections the budget left unrun, or no requirement at all."""
        out = [f"requirement {r.name} not evaluated: {r.message}" for r in self.unevaluated_requirements]
        for s in self.sections.values():
            if s.status in INCOMPLETE_SECTION:
                out.append(f"section {s.name} {s.status}" + (f": {s.reason}" if s.reason else ""))
            elif s.status == "skipped" and "budget" in s.reason:
                out.append(f"section {s.name} not run: {s.reason}")
        if not self.requirements:
            req = self.sections.get("requirements")
            why = f" ({req.reason})" if req is not None and req.reason else ""
            out.append(f"no requirement was evaluated{why}: nothing to pass")
        return out

    def not_run(self) -> list[dict[str, Any]]:
        """The parts of the audit that did not run, each once, in the order met:
        ``{"part", "reason", "sections"}``. A part that two sections skipped for the same
        reason (the explanations' attack is also one of the adversarial section's) is
        listed once, with both sections."""
        seen: dict[tuple[str, str], dict[str, Any]] = {}
        for s in self.sections.values():
            for p in s.skipped_parts:
                key = (str(p.get("part", "?")), str(p.get("reason", "")))
                entry = seen.setdefault(key, {"part": key[0], "reason": key[1], "sections": []})
                if s.name not in entry["sections"]:
                    entry["sections"].append(s.name)
        return list(seen.values())

    def section(self, name: str) -> SectionResult:
        """The section ``name`` (a "skipped" placeholder when absent)."""
        return self.sections.get(name, SectionResult(name, "skipped", "not run"))

    def check(self, name: str) -> CheckResult | None:
        """The sanity check or requirement called ``name``, or None."""
        for c in (*self.sanity_checks, *self.requirements):
            if c.name == name:
                return c
        return None

    # ------------------------------------------------------------------ conversion
    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (validates against :func:`report_schema`)."""
        d = dataclasses.asdict(self)
        d["passed"] = self.passed
        d["verdict"] = self.verdict
        d["missing"] = self.missing_evidence()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AuditReport:
        """Inverse of :meth:`to_dict`."""
        return cls(
            schema_version=str(d.get("schema_version", SCHEMA_VERSION)),
            xrobust_version=str(d.get("xrobust_version", "")),
            created=str(d.get("created", "")),
            title=str(d.get("title", "xrobust audit")),
            model=dict(d.get("model") or {}),
            dataset=dict(d.get("dataset") or {}),
            config=dict(d.get("config") or {}),
            seeds=dict(d.get("seeds") or {}),
            versions=dict(d.get("versions") or {}),
            environment=dict(d.get("environment") or {}),
            timings=dict(d.get("timings") or {}),
            sections={k: SectionResult.from_dict(v) for k, v in (d.get("sections") or {}).items()},
            sanity_checks=[CheckResult.from_dict(c) for c in d.get("sanity_checks") or []],
            requirements=[CheckResult.from_dict(c) for c in d.get("requirements") or []],
            queries=dict(d.get("queries") or {}),
        )

    def to_json(self) -> str:
        """The report as JSON text: objects indented, lists of numbers on one line.

        Raises:
            ValueError: a NaN or infinite number slipped in (not valid JSON).
        """
        return _dumps(self.to_dict(), 0)

    # ------------------------------------------------------------------ output
    def save(
        self, folder: str | os.PathLike[str], formats: tuple[str, ...] | None = None
    ) -> dict[str, Path]:
        """Write report.html, report.json, junit.xml and summary.md into ``folder``.

        Every file is written atomically. Returns the paths by format name
        ("html", "json", "junit", "md").
        """
        from xrobust.audit.render import write_report

        return write_report(self, folder, formats)


def _dumps(obj: Any, level: int) -> str:
    pad, inner = " " * level, " " * (level + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(str(k))}: {_dumps(v, level + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, list | tuple):
        if all(not isinstance(v, dict | list | tuple) for v in obj):
            return json.dumps(list(obj), allow_nan=False, separators=(",", ":"))
        if all(
            isinstance(v, list | tuple) and all(not isinstance(w, dict | list | tuple) for w in v)
            for v in obj
        ):
            rows = [json.dumps(list(v), allow_nan=False, separators=(",", ":")) for v in obj]
            return "[" + ",".join(rows) + "]"
        items = [inner + _dumps(v, level + 1) for v in obj]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(obj, allow_nan=False)


#: Largest report.json :func:`load_report` reads.
MAX_REPORT_BYTES = 256 << 20


def load_report(path: str | os.PathLike[str], *, check: bool = True) -> AuditReport:
    """Read a ``report.json`` written by :meth:`AuditReport.save`.

    The file is validated against the schema, and (``check``) its statuses must agree
    with each other and with its numbers (:mod:`xrobust.audit.consistency`).

    Raises:
        DataError: not JSON, not an audit report, not following the schema, or
            inconsistent (what disagrees is named).
    """
    from xrobust.errors import DataError

    p = Path(path)
    if p.is_dir():
        p = p / "report.json"
    if not p.is_file():
        raise DataError(f"{p}: no such file; expected a report.json written by `xrobust audit`")
    if p.stat().st_size > MAX_REPORT_BYTES:
        raise DataError(
            f"{p}: {p.stat().st_size} bytes; a report.json is at most {MAX_REPORT_BYTES}"
        )
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise DataError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    except (json.JSONDecodeError, RecursionError) as exc:
        raise DataError(f"{p}: not valid JSON ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{p}: cannot be read ({exc.strerror or exc})") from exc
    if not isinstance(d, dict) or "sections" not in d or "schema_version" not in d:
        raise DataError(f"{p}: not an xrobust audit report (no schema_version/sections)")
    major = str(d["schema_version"]).split(".")[0]
    if major != SCHEMA_VERSION.split(".")[0]:
        raise DataError(
            f"{p}: report schema version {d['schema_version']} is not supported by this "
            f"xrobust (schema {SCHEMA_VERSION})"
        )
    try:
        import jsonschema  # noqa: F401
    except ImportError:
        pass
    else:  # the structure is checked before anything renders it
        from xrobust.audit.validate import validate_report

        try:
            validate_report(d)
        except DataError as exc:
            raise DataError(f"{p}: {exc}") from exc
    try:
        report = AuditReport.from_dict(d)
    except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
        raise DataError(
            f"{p}: malformed audit report ({type(exc).__name__}: {exc}); expected the "
            "structure `xrobust audit` writes"
        ) from exc
    if check:
        from xrobust.audit.consistency import inconsistencies

        problems = inconsistencies(report, d)
        if problems:
            raise DataError(
                f"{p}: the report disagrees with itself, so it is not rendered: "
                + "; ".join(problems[:5])
                + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else "")
                + ". Was it edited by hand? Run the audit again to get a report you can trust."
            )
    return report


def report_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of ``report.json``: the one shipped in the package,
    with the registered sections' names and schemas (:attr:`Section.schema
    <xrobust.audit.section.Section.schema>`) under ``sections``."""
    text = resources.files("xrobust.audit").joinpath("report.schema.json").read_text("utf-8")
    schema = json.loads(text)
    from xrobust.audit.section import get_section, list_sections

    sections = schema["properties"]["sections"]
    sections["properties"] = {}  # a section not registered here follows #/$defs/section
    for name in list_sections():
        frag = get_section(name).schema
        if isinstance(frag, dict):  # a registered section's own fragment, kept in $defs
            schema["$defs"][f"section:{name}"] = frag
            frag = f"#/$defs/section:{name}"
        sections["properties"][name] = {"$ref": frag or "#/$defs/section"}
    return schema
