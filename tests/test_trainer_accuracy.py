"""Accuracy targets of the built-in demos with default settings (issue 2)."""

from __future__ import annotations

import pytest
import torch

from xrobust.trainer import TrainConfig, train


@pytest.fixture(autouse=True)
def _one_thread():
    """One thread: these small models train faster so, and a busy machine hurts less."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.mark.slow
def test_digits_small_cnn_reaches_97_percent() -> None:
    _, hist = train("digits", "small_cnn", TrainConfig(device="cpu"), progress=False)
    assert hist.test_acc is not None and hist.test_acc >= 0.97, hist.test_acc


def test_breast_cancer_mlp_reaches_95_percent() -> None:
    _, hist = train("breast_cancer", "mlp", TrainConfig(device="cpu"), progress=False)
    assert hist.test_acc is not None and hist.test_acc >= 0.95, hist.test_acc
