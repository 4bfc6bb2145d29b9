"""xrobust: how far can you trust a neural network?

Attributions (why a model decides), adversarial attacks (how easily it is fooled)
and audits that turn both into reports a CI can gate on.

Example:
    >>> import xrobust
    >>> xrobust.__version__
    '0.1.0'

The public names below are imported lazily so that ``import xrobust`` stays cheap.

Threads: ``import xrobust`` sets ``OMP_WAIT_POLICY=PASSIVE`` in ``os.environ`` when you have
not set ``OMP_WAIT_POLICY`` (nor ``GOMP_SPINCOUNT`` / ``KMP_BLOCKTIME``) and torch is not
imported yet. OpenMP reads the variable once, when torch loads it, so importing xrobust after
torch leaves torch's threads as they are: set the variable yourself before importing torch
then. On a busy machine spin-waiting threads made audits about 2x slower (README, "Speed on
a shared machine"); ``OMP_WAIT_POLICY=ACTIVE`` keeps spinning.
"""

from __future__ import annotations

import importlib
import os
import sys
from typing import Any

__version__ = "0.1.0"

#: variables by which a user chooses how OpenMP threads wait; any of them set: left alone
_OMP_WAIT_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "KMP_BLOCKTIME")


def _thread_defaults() -> bool:
    """Passive OpenMP waiting unless the user chose or torch (its OpenMP runtime) is already
    loaded, where setting it would have no effect. Returns whether it set the variable."""
    if any(v in os.environ for v in _OMP_WAIT_VARS) or "torch" in sys.modules:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


#: whether ``import xrobust`` set ``OMP_WAIT_POLICY`` (False: the user's, or too late)
_OMP_POLICY_SET = _thread_defaults()

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
