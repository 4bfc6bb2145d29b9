"""Training: :class:`TrainConfig`, :class:`Trainer`, and :func:`train` for built-in runs.

Example:
    >>> from xrobust.trainer import TrainConfig, train
    >>> model, history = train("digits", "small_cnn", TrainConfig(epochs=1), "runs/x")  # doctest: +SKIP
"""

from __future__ import annotations

from xrobust.trainer.api import train
from xrobust.trainer.config import ADVERSARIAL_METHODS, TrainConfig
from xrobust.trainer.trainer import EpochRecord, History, Trainer

__all__ = ["ADVERSARIAL_METHODS", "EpochRecord", "History", "TrainConfig", "Trainer", "train"]
