"""pytest plugin (registered as ``xrobust`` through the ``pytest11`` entry point): fixtures
that gate models in your own suite and record the measured numbers in pytest's JUnit XML.

Example::

    def test_gate(robustness_gate, my_model):
        robustness_gate(my_model, "digits", attack="pgd", eps=0.1, min_accuracy=0.6)

Importing this module is cheap: torch and xrobust load only when a fixture is used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest


@pytest.fixture
def robustness_gate(record_property: Callable[[str, Any], None]) -> Callable[..., Any]:
    """A callable with :func:`xrobust.testing.assert_robust`'s arguments that also records
    ``robust_accuracy`` and ``clean_accuracy`` as JUnit properties of the test."""
    from xrobust.testing import assert_robust

    def gate(*args: Any, **kwargs: Any) -> Any:
        try:
            res = assert_robust(*args, **kwargs)
        except AssertionError as exc:
            record_property("xrobust_gate", str(exc))
            raise
        record_property("robust_accuracy", round(res.robust_accuracy, 6))
        from xrobust.attacks import ATTACKS

        name = kwargs.get("attack", args[2] if len(args) > 2 else "pgd")
        upper = name in ATTACKS and not ATTACKS.get(name).requires_gradients
        record_property("robust_accuracy_bound", "upper" if upper else "measured")
        record_property("clean_accuracy", round(res.clean_accuracy, 6))
        return res

    return gate


@pytest.fixture
def audit_gate(record_property: Callable[[str, Any], None]) -> Callable[..., Any]:
    """A callable ``audit_gate(model, dataset, config=None, out=None)`` running
    :func:`xrobust.audit.audit`, saving the reports to ``out`` when given, recording the
    headline numbers and the verdict as JUnit properties, and failing the test unless the
    verdict is "passed" (a failed requirement, or an incomplete audit: evidence missing)."""
    from xrobust.audit import audit
    from xrobust.audit.markdown import headline
    from xrobust.testing import assert_audit_passes

    def gate(model: Any, dataset: Any, config: Any = None, out: Any = None) -> Any:
        report = audit(model, dataset, config)
        if out is not None:
            report.save(out)
        for k, v in headline(report):
            record_property(k, v)
        record_property("verdict", report.verdict)
        assert_audit_passes(report)
        return report

    return gate
