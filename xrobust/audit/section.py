"""Audit sections as registered parts: what each one reads, needs, runs and renders.

A section is a :class:`Section` subclass registered in :data:`SECTIONS` (by
:func:`register_section`, or from an installed package's ``xrobust.audit_sections`` entry
point). It declares

- its **name**: the registry name, the key of its options in the :class:`AuditConfig`
  (``[name]`` in TOML, ``--skip name``) and of its result in ``report.sections``;
- its **config**: the dataclass of its options (it must have ``enabled``; the built-in
  sections' are fields of :class:`AuditConfig`, a registered section's are kept beside
  them and read with :meth:`AuditConfig.section_config`);
- what it **needs** of the model: ``"queries"`` (skipped once the query budget ran out)
  and ``"gradients"`` (not available on a black box, with the reason);
- how it **runs**: :meth:`Section.run` gets the shared :class:`~xrobust.audit._runtime.Runtime`
  (model and classifier, data, config, progress, budget) and the report built so far, so it
  can read the results of the sections before it (the sanity checks read the adversarial
  section's curves, the requirements every section's numbers);
- how it **renders**: :meth:`Section.html` (its HTML fragment), :meth:`Section.summary`
  (its rows in the summary table of the HTML page and the Markdown summary),
  :meth:`Section.markdown` (extra Markdown lines) and :attr:`Section.schema` (the JSON
  Schema of its result: a ``#/$defs/...`` pointer into ``report.schema.json``, or a fragment).

:func:`xrobust.audit.audit` runs the sections in their declared :attr:`~Section.order`;
the report shows them in :attr:`~Section.place` order, numbered.

Example:
    >>> from xrobust.audit.section import Section, list_sections, register_section
    >>> list_sections()
    ['clean', 'adversarial', 'corruption', 'explanations', 'deployed', 'sanity', 'requirements']
    >>> @register_section
    ... class Support(Section):
    ...     name = "support"
    ...     title = "Test examples per class"
    ...     def run(self, rt, report):
    ...         return {"counts": rt.y.bincount(minlength=rt.num_classes).tolist()}
    >>> "support" in list_sections()
    True
    >>> SECTIONS.unregister("support")
"""

from __future__ import annotations

import dataclasses
import html as _html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from xrobust.errors import ConfigError
from xrobust.registry import Registry

if TYPE_CHECKING:
    from xrobust.audit._runtime import Runtime
    from xrobust.audit.report import AuditReport, SectionResult

__all__ = [
    "NEEDS",
    "SECTIONS",
    "Section",
    "SectionConfig",
    "get_section",
    "list_sections",
    "register_section",
]

#: what a section may need of the model
NEEDS = ("queries", "gradients")


@dataclass
class SectionConfig:
    """The options of a section that declares none of its own.

    Attributes:
        enabled: run the section.
    """

    enabled: bool = True


class Section:
    """One part of an audit (subclass it, set the class attributes, write :meth:`run`).

    Attributes:
        name: registry name, config key and report key.
        title: heading in the report (numbered there by :attr:`place`).
        config: the dataclass of its options; it must have a boolean ``enabled``.
        needs: what it asks of the model, a subset of :data:`NEEDS`.
        order: when it runs (built-ins 10..70; the default 65 runs after the sanity
            checks and before the requirements).
        place: where the report shows it (built-ins 1..7; the default after them).
        summary_place: where its rows go in the summary table (default: ``place``).
        checks: the report list (``"sanity_checks"``, ``"requirements"``) that receives
            the ``"checks"`` of its result's data, or None.
        schema: the JSON Schema of its :class:`SectionResult`: a ``"#/$defs/..."`` pointer
            into ``report.schema.json``, a schema fragment (a dict; it may refer to
            ``#/$defs/section``), or None for the generic section schema.
        always_shown: the report shows it even when it is absent from the report (as "not
            run"); else only when it ran.
    """

    name: ClassVar[str] = ""
    title: ClassVar[str] = ""
    config: ClassVar[type] = SectionConfig
    needs: ClassVar[tuple[str, ...]] = ("queries",)
    order: ClassVar[float] = 65.0
    place: ClassVar[float] = 100.0
    summary_place: ClassVar[float | None] = None
    checks: ClassVar[str | None] = None
    schema: ClassVar[str | dict[str, Any] | None] = None
    always_shown: ClassVar[bool] = False

    def applies(self, rt: Runtime) -> bool:
        """Whether the section belongs in this audit at all (the deployed section only
        when a source model was given); a section that does not apply is left out of the
        report, not marked skipped."""
        return True

    def check_inputs(self, config: Any, source: Any) -> None:
        """Refuse bad inputs before any work (an :class:`~xrobust.errors.XRobustError`
        naming what is wrong); nothing by default."""

    def run(self, rt: Runtime, report: AuditReport) -> dict[str, Any]:
        """The section's numbers (JSON-ready). ``report`` holds the sections run before it.

        The result may carry ``"_partial": reason`` (stopped part way: the sections after
        it are skipped) or ``"_unavailable": reason``; raising
        :class:`~xrobust.errors.QueryBudgetExhausted` marks it partial, any other
        exception but an :class:`~xrobust.errors.XRobustError` marks it "error".
        """
        raise NotImplementedError(f"section {self.name!r} does not define run()")

    def html(self, s: SectionResult, report: AuditReport) -> str:
        """The section's HTML body (escaped); by default its data as a table."""
        rows = "".join(
            f"<tr><td>{_html.escape(str(k))}</td><td>{_html.escape(_plain(v))}</td></tr>"
            for k, v in s.data.items()
        )
        return f"<table><thead><tr><th>measure</th><th>value</th></tr></thead><tbody>{rows}</tbody></table>"

    def summary(self, report: AuditReport) -> list[tuple[str, str]]:
        """Its (measure, value) rows in the summary table (none by default)."""
        return []

    def markdown(self, s: SectionResult, report: AuditReport) -> list[str]:
        """Extra Markdown lines under the summary (none by default)."""
        return []


def _plain(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return ", ".join(_plain(i) for i in v)
    return str(v)


#: every audit section, built-in and registered
SECTIONS: Registry[type[Section]] = Registry("section")


def _check(cls: Any) -> None:
    """A section class declares a name, a config dataclass with ``enabled``, known needs."""
    if not (isinstance(cls, type) and issubclass(cls, Section)):
        raise ConfigError(f"a section must be a Section subclass, got {cls!r}")
    if not cls.name or not isinstance(cls.name, str):
        raise ConfigError(f"section class {cls.__name__} declares no name")
    cfg = cls.config
    if not dataclasses.is_dataclass(cfg) or "enabled" not in {
        f.name for f in dataclasses.fields(cfg)
    }:
        raise ConfigError(
            f"section {cls.name!r}: config must be a dataclass with an 'enabled' field, got {cfg!r}"
        )
    unknown = set(cls.needs) - set(NEEDS)
    if unknown:
        raise ConfigError(
            f"section {cls.name!r} needs {sorted(unknown)}; expected some of {', '.join(NEEDS)}"
        )


def register_section(cls: type[Section]) -> type[Section]:
    """Class decorator registering a :class:`Section` subclass under its ``name``.

    Raises:
        ConfigError: not a Section subclass, no name, or a config without ``enabled``.
        ValueError: the name is taken.
    """
    _check(cls)
    return SECTIONS.register(cls.name)(cls)


def _builtins() -> None:
    import xrobust.audit.sections  # noqa: F401  (registers the built-in sections)


def get_section(name: str) -> type[Section]:
    """The section class called ``name`` (unknown names suggest close matches)."""
    _builtins()
    return SECTIONS.get(name)


def list_sections() -> list[str]:
    """Every section's name, in the order an audit runs them."""
    _builtins()
    classes = [SECTIONS.get(n) for n in SECTIONS.list()]
    return [c.name for c in sorted(classes, key=lambda c: (c.order, c.name))]


def report_order(names: list[str] | None = None) -> list[type[Section]]:
    """The registered sections in report order (by ``place``), optionally only ``names``."""
    _builtins()
    classes = [SECTIONS.get(n) for n in SECTIONS.list()]
    if names is not None:
        classes = [c for c in classes if c.name in names]
    return sorted(classes, key=lambda c: (c.place, c.name))
