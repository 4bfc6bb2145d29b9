"""Exceptions that carry a user-facing message.

Every error caused by bad user input (a wrong option, a malformed file, an
unknown name) is raised as an :class:`XRobustError` subclass with a message that
says what was wrong and what was expected. The CLI prints that message on one
line and exits non-zero; library users can catch the class.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "ModelError",
    "TrainingError",
    "XRobustError",
]


class XRobustError(ValueError):
    """Base class of every user-facing xrobust error."""


class ConfigError(XRobustError):
    """An option or configuration value is invalid."""


class DataError(XRobustError):
    """A dataset or data file is missing, malformed or inconsistent."""


class CheckpointError(XRobustError):
    """A checkpoint is missing, tampered with, or its metadata is malformed."""


class ModelError(XRobustError):
    """A model does not fit what an operation needs (output shape, layers, ...)."""


class TrainingError(XRobustError):
    """Training failed for a reason its options explain (for example a diverged loss)."""
