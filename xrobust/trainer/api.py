"""``train()``: dataset name or bundle + architecture name -> trained model and checkpoint."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from torch import nn

from xrobust.data.spec import DatasetBundle
from xrobust.errors import ConfigError
from xrobust.seeding import seed_everything
from xrobust.trainer.config import TrainConfig
from xrobust.trainer.lock import run_lock
from xrobust.trainer.trainer import History, ProgressFn, Trainer

__all__ = ["train"]


def train(
    data: str | os.PathLike[str] | DatasetBundle,
    model_name: str,
    config: TrainConfig | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    *,
    model_kwargs: dict[str, Any] | None = None,
    data_kwargs: dict[str, Any] | None = None,
    resume: bool = False,
    progress: ProgressFn | bool | None = None,
) -> tuple[nn.Module, History]:
    """Train a registered architecture on a dataset and evaluate it on the test split.

    The weights are initialised under ``config.seed``, so the same call gives the same
    model. With ``out_dir`` the run directory receives ``model.safetensors`` and
    ``model.json`` (with the test metrics), ``metrics.jsonl`` and the resumable state; the
    folder is locked while the run writes it (a second run into it gets a ``ConfigError``).

    Args:
        data: a built-in dataset name, a path to the user's data, or a loaded bundle.
        model_name: a registered architecture (``xrobust.models.list_models()``).
        config: training options (default ``TrainConfig()``).
        out_dir: the run directory, or None to keep nothing on disk.
        model_kwargs: architecture options (None values are ignored).
        data_kwargs: options for ``load_dataset`` such as ``size`` or ``target``
            (None values are ignored).
        resume: continue an interrupted run in ``out_dir``.
        progress: a callback ``progress(stage, done, total)`` after every training step
            (see :meth:`Trainer.fit`); the CLI renders it.

    Returns:
        ``(model, history)``: the trained model in eval mode and its :class:`History`
        (``history.test_acc`` / ``history.test_loss`` filled in).

    Example:
        >>> from xrobust.trainer import TrainConfig, train
        >>> model, hist = train("breast_cancer", "mlp", TrainConfig(epochs=2, device="cpu"),
        ...                     progress=False)
        >>> 0.0 <= hist.test_acc <= 1.0
        True
    """
    from xrobust.models import build_model

    cfg = config if config is not None else TrainConfig()
    bundle = _bundle_of(data, data_kwargs)
    seed_everything(cfg.seed)
    model = build_model(model_name, bundle.spec, **(model_kwargs or {}))
    trainer = Trainer(model, cfg, spec=bundle.spec)
    # one lock from the first write to the final checkpoint: a concurrent run into the same
    # folder fails before writing anything (rank 0 writes; other ranks never lock)
    lock = (
        run_lock(out_dir)
        if out_dir is not None and os.environ.get("RANK", "0") == "0"
        else contextlib.nullcontext()
    )
    with lock:
        history = trainer.fit(bundle.train, None, out_dir, resume=resume, progress=progress)
        test = trainer.evaluate(bundle.test)
        history.test_loss, history.test_acc = test["loss"], test["acc"]
        history.test_n = int(test["n"])
        if out_dir is not None:
            trainer.save(out_dir)
    from xrobust.data.schema import MODEL_SPEC_ATTR

    setattr(trainer.model, MODEL_SPEC_ATTR, bundle.spec.to_dict())  # read by schema.spec_of
    return trainer.model, history


def _bundle_of(
    data: str | os.PathLike[str] | DatasetBundle, data_kwargs: dict[str, Any] | None
) -> DatasetBundle:
    """The loaded bundle, or the dataset of that name or path loaded with ``data_kwargs``."""
    if isinstance(data, DatasetBundle):
        if data_kwargs and any(v is not None for v in data_kwargs.values()):
            raise ConfigError("data_kwargs apply when data is a name or path, not a loaded bundle")
        return data
    from xrobust.data import load_dataset

    kwargs = {k: v for k, v in (data_kwargs or {}).items() if v is not None}
    return load_dataset(str(data) if isinstance(data, Path) else data, **kwargs)
