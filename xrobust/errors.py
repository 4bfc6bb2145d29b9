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
    "QueryBudgetExhausted",
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


class QueryBudgetExhausted(XRobustError):
    """A classifier's query budget would be exceeded; nothing was asked.

    Attributes:
        budget: the budget (rows).
        used: rows asked about before this call.
        requested: rows this call wanted.
    """

    def __init__(self, budget: int, used: int, requested: int) -> None:
        self.budget, self.used, self.requested = int(budget), int(used), int(requested)
        super().__init__(
            f"query budget exhausted: {used} of {budget} queries used, and the next call "
            f"needs {requested} more; raise the budget (query_budget=, or --query-budget on "
            "the command line) to go on"
        )
