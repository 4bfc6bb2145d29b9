"""Gate a model in your own pytest suite with xrobust.testing.

Run: pytest examples/test_gate_model.py
(the demo CNN is trained once and cached under $XROBUST_CACHE or ~/.cache/xrobust)
"""

import pytest

from xrobust.audit.demo import demo_run
from xrobust.testing import assert_accuracy, assert_robust


@pytest.fixture(scope="module")
def model():
    return demo_run("digits").model


def test_clean_accuracy(model):
    assert_accuracy(model, "digits", min_accuracy=0.9)


def test_robust_to_small_perturbations(model):
    # a standard (not adversarially trained) CNN keeps some accuracy at eps = 0.02
    assert_robust(model, "digits", attack="pgd", eps=0.02, min_accuracy=0.5, n=128, steps=10)


def test_gate_records_numbers_in_junit(model, robustness_gate):
    # the fixture from the xrobust pytest plugin: the robust accuracy lands in JUnit XML
    result = robustness_gate(model, "digits", attack="fgsm", eps=0.02, min_accuracy=0.5, n=128)
    assert result.robust_accuracy >= 0.5


def test_a_weak_model_is_caught(model):
    with pytest.raises(AssertionError, match="not robust enough"):
        assert_robust(model, "digits", attack="pgd", eps=0.3, min_accuracy=0.5, n=64, steps=10)
