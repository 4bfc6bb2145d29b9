"""Accuracy targets of the built-in demos with default settings (issue 2)."""

from __future__ import annotations

import pytest

from xrobust.trainer import TrainConfig, train


@pytest.mark.slow
def test_digits_small_cnn_reaches_97_percent() -> None:
    _, hist = train("digits", "small_cnn", TrainConfig(device="cpu"), progress=False)
    assert hist.test_acc is not None and hist.test_acc >= 0.97, hist.test_acc


def test_breast_cancer_mlp_reaches_95_percent() -> None:
    _, hist = train("breast_cancer", "mlp", TrainConfig(device="cpu"), progress=False)
    assert hist.test_acc is not None and hist.test_acc >= 0.95, hist.test_acc
