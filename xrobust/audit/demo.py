"""The built-in demo: a small model trained on a bundled dataset (cached), and an audit
configuration sized to run on a laptop CPU in about a minute.

The trained model is cached under ``$XROBUST_CACHE`` (default ``~/.cache/xrobust``) in
``demo/<demo>-<architecture>/`` as an ordinary run folder (safetensors + JSON), so the
second demo skips training.

Demos: ``digits`` (a small CNN, standard training), ``digits_robust`` (the same CNN and
data, adversarially trained with PGD at linf eps 0.1: the dashboard's Compare page starts
with the pair, ``xrobust audit --demo digits-robust`` audits it) and ``breast_cancer`` (an
MLP on the bundled table). Names are normalised like registry names (``digits-robust``).

Example:
    >>> from xrobust.audit.demo import demo_config
    >>> demo_config("digits").adversarial.n
    128
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from xrobust.audit.config import AuditConfig
from xrobust.errors import CheckpointError, ConfigError

__all__ = ["DEMOS", "cache_dir", "demo_config", "demo_dataset", "demo_path", "demo_run"]

log = logging.getLogger(__name__)

#: demo name -> (architecture, training options); a demo trains on the dataset of its name
#: unless :data:`DEMO_DATA` names another
DEMOS: dict[str, tuple[str, dict[str, Any]]] = {
    "digits": ("small_cnn", {"epochs": 6, "batch_size": 64, "seed": 0, "label_smoothing": 0.0}),
    "digits_robust": (
        "small_cnn",
        # PGD-5 adversarial training (Madry et al.) at the dashboard's headline eps: about
        # 20 s on 2 busy CPU cores, clean accuracy ~0.93, PGD-20 robust accuracy at
        # eps 0.1 ~0.65 where the standard digits demo keeps ~0.35
        {
            "epochs": 6,
            "batch_size": 64,
            "seed": 0,
            "label_smoothing": 0.0,
            "adversarial": "pgd",
            "adv_eps": 0.1,
            "adv_norm": "linf",
            "adv_steps": 5,
        },
    ),
    "breast_cancer": ("mlp", {"epochs": 30, "batch_size": 32, "seed": 0, "label_smoothing": 0.0}),
}

#: demo name -> built-in dataset, for demos not named after their dataset
DEMO_DATA: dict[str, str] = {"digits_robust": "digits"}


def cache_dir() -> Path:
    """``$XROBUST_CACHE`` or ``~/.cache/xrobust``."""
    env = os.environ.get("XROBUST_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "xrobust"


def _check(name: str) -> str:
    key = name.lower().replace("-", "_")
    if key not in DEMOS:
        raise ConfigError(f"unknown demo {name!r}; expected one of {', '.join(DEMOS)}")
    return key


def demo_dataset(name: str) -> str:
    """The built-in dataset demo ``name`` is trained on (``digits_robust`` -> ``digits``)."""
    key = _check(name)
    return DEMO_DATA.get(key, key)


def demo_path(name: str) -> Path:
    """The run folder the demo model ``name`` is cached in (it may not exist yet)."""
    key = _check(name)
    return cache_dir() / "demo" / f"{key}-{DEMOS[key][0]}"


def demo_run(
    name: str = "digits",
    *,
    progress: Callable[[str, int, int], None] | None = None,
    retrain: bool = False,
) -> Any:
    """The demo's trained model as a :class:`~xrobust.models.LoadedRun`, training it (and
    caching it) when no valid cached copy exists.

    Args:
        name: "digits" (small CNN), "digits_robust" (the same CNN, PGD adversarially
            trained) or "breast_cancer" (MLP).
        progress: the trainer's progress callback ``progress(stage, done, total)``.
        retrain: ignore the cache.
    """
    from xrobust.models import load_run
    from xrobust.trainer import TrainConfig, train

    key = _check(name)
    arch, opts = DEMOS[key]
    target = demo_path(key)
    if not retrain and (target / "model.json").exists():
        try:
            return load_run(target)
        except CheckpointError as exc:
            log.warning("cached demo model %s is unusable (%s); training it again", target, exc)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{key}-", dir=target.parent))
    except OSError as exc:
        raise ConfigError(
            f"the demo model cache {str(target.parent)!r} is not writable "
            f"({exc.strerror or exc}); set XROBUST_CACHE to a writable folder"
        ) from exc
    try:
        cfg = TrainConfig(device="cpu", **opts)
        train(demo_dataset(key), arch, cfg, out_dir=tmp, progress=progress)
        if target.exists():
            shutil.rmtree(target, ignore_errors=True)
        with contextlib.suppress(OSError):  # another process cached it meanwhile: use theirs
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return load_run(target)


def demo_config(name: str = "digits") -> AuditConfig:
    """An audit configuration sized for the demo (about a minute on 2 CPU cores), with
    example requirements (a demo trained on another demo's dataset gets that one's)."""
    key = demo_dataset(name)
    if key == "digits":
        d: dict[str, Any] = {
            "adversarial": {
                "n": 128,
                "eps": {"linf": [0.05, 0.1, 0.2, 0.3], "l2": [0.5, 1.0, 2.0, 3.0]},
                "options": {"apgd": {"steps": 50}},
            },
            "corruption": {"n": 256},
            "explanations": {"n": 4, "n_metrics": 16},
            "sanity": {"n": 64, "convergence_factor": 3},
            "requirements": {
                "min_clean_accuracy": 0.9,
                "max_ece": 0.1,
                "robust": [{"attack": "worst", "norm": "linf", "eps": 0.05, "min_accuracy": 0.5}],
            },
        }
    else:
        d = {
            "adversarial": {"n": 114, "options": {"apgd": {"steps": 50}}},
            "corruption": {"n": 114},
            "explanations": {"n": 4, "n_metrics": 16},
            "sanity": {"n": 64, "convergence_factor": 3},
            "requirements": {"min_clean_accuracy": 0.9, "max_ece": 0.15},
        }
    return AuditConfig.from_dict(d)
