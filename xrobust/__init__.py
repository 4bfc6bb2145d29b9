"""xrobust: how far can you trust a neural network?

Attributions (why a model decides), adversarial attacks (how easily it is fooled)
and audits that turn both into reports a CI can gate on.

Example:
    >>> import xrobust
    >>> xrobust.__version__
    '0.1.0'

The public names below are imported lazily so that ``import xrobust`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "load_dataset": "xrobust.data",
    "DatasetSpec": "xrobust.data",
    "DatasetBundle": "xrobust.data",
    "build_model": "xrobust.models",
    "load_model": "xrobust.models",
    "list_models": "xrobust.models",
    "load_run": "xrobust.models",
    "LoadedRun": "xrobust.models",
    "train": "xrobust.trainer",
    "Trainer": "xrobust.trainer",
    "TrainConfig": "xrobust.trainer",
    "FGSM": "xrobust.attacks",
    "PGD": "xrobust.attacks",
    "get_attack": "xrobust.attacks",
    "list_attacks": "xrobust.attacks",
    "explain": "xrobust.explain",
    "get_explainer": "xrobust.explain",
    "list_explainers": "xrobust.explain",
    "audit": "xrobust.audit",
    "AuditConfig": "xrobust.audit",
    "XRobustError": "xrobust.errors",
}

__all__ = ["__version__", *sorted(_LAZY)]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xrobust' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
