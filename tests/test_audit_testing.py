"""xrobust.testing: assertions that gate models in users' suites."""

from __future__ import annotations

import pytest

from xrobust.audit import AuditReport, CheckResult
from xrobust.errors import ConfigError
from xrobust.testing import assert_accuracy, assert_audit_passes, assert_robust


def test_assert_robust_passes_and_fails(digits28, digits_cnn) -> None:
    data = (digits28["x_test"], digits28["y_test"])
    res = assert_robust(digits_cnn, data, attack="pgd", eps=0.02, min_accuracy=0.5, n=64, steps=5)
    assert res.n == 64 and res.robust_accuracy >= 0.5
    with pytest.raises(
        AssertionError, match=r"not robust enough: pgd \(eps=0.2.*below the required 0.9"
    ):
        assert_robust(digits_cnn, data, attack="pgd", eps=0.2, min_accuracy=0.9, n=64, steps=5)
    with pytest.raises(ConfigError, match="min_accuracy"):
        assert_robust(digits_cnn, data, min_accuracy=2.0)
    with pytest.raises(ConfigError, match="bounds"):
        assert_robust(digits_cnn, (data[0] * 4 - 2, data[1]), n=8)


def test_assert_accuracy(digits28, digits_cnn) -> None:
    data = (digits28["x_test"], digits28["y_test"])
    acc = assert_accuracy(digits_cnn, data, 0.9)
    assert 0.9 <= acc <= 1.0
    with pytest.raises(AssertionError, match=r"below the required 0\.999"):
        assert_accuracy(digits_cnn, data, 0.999)


def test_assert_audit_passes() -> None:
    assert_audit_passes(AuditReport(requirements=[CheckResult("a", "pass", "ok")]))
    bad = AuditReport(requirements=[CheckResult("min_clean_accuracy", "fail", "0.5 < 0.9")])
    with pytest.raises(AssertionError, match=r"min_clean_accuracy: 0\.5 < 0\.9"):
        assert_audit_passes(bad)
