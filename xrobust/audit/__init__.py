"""Robustness audits: one call, one report.

``audit(model, dataset, config)`` measures clean performance, adversarial and corruption
robustness and explanations, checks that the evaluation itself can be trusted, and turns
the configuration's requirements into pass/fail results. The :class:`AuditReport` renders
as self-contained HTML, JSON (with a shipped JSON Schema), JUnit XML and Markdown.

Example:
    >>> from xrobust.audit import AuditConfig, audit
    >>> cfg = AuditConfig.from_dict({"requirements": {"min_clean_accuracy": 0.9}})
    >>> report = audit(model, "digits", cfg)  # doctest: +SKIP
    >>> report.save("reports/run")            # doctest: +SKIP
    >>> report.passed                          # doctest: +SKIP
    True
"""

from __future__ import annotations

from xrobust.audit.config import (
    SECTIONS,
    AdversarialConfig,
    AuditConfig,
    CleanConfig,
    CorruptionConfig,
    DeployedConfig,
    ExplanationConfig,
    RequirementsConfig,
    RobustRequirement,
    SanityConfig,
    load_config,
)
from xrobust.audit.corruptions import corrupt, list_corruptions
from xrobust.audit.report import (
    SCHEMA_VERSION,
    AuditReport,
    CheckResult,
    SectionResult,
    load_report,
    report_schema,
)
from xrobust.audit.runner import audit
from xrobust.audit.sections.deployed import compare_deployed

__all__ = [
    "SCHEMA_VERSION",
    "SECTIONS",
    "AdversarialConfig",
    "AuditConfig",
    "AuditReport",
    "CheckResult",
    "CleanConfig",
    "CorruptionConfig",
    "DeployedConfig",
    "ExplanationConfig",
    "RequirementsConfig",
    "RobustRequirement",
    "SanityConfig",
    "SectionResult",
    "audit",
    "compare_deployed",
    "corrupt",
    "list_corruptions",
    "load_config",
    "load_report",
    "report_schema",
]
