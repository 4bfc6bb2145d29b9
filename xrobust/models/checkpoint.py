"""Checkpoints: ``model.safetensors`` (weights) + ``model.json`` (metadata) in a run directory.

The metadata records how to rebuild the model (architecture name and options, dataset
spec), the training config and metrics, the library versions, and the SHA-256 of the
weights file, and ``integrity``: the SHA-256 of every other metadata field (architecture,
options, dataset spec with its input schema, class names, normalisation, bounds, training
config, metrics, completion). Loading verifies both and refuses a checkpoint whose weights
or metadata were changed, lost or damaged. The checksums detect accidental or careless
edits; they are not a signature (anyone who can write the files can recompute them).
``training.completed`` says whether the run finished: :func:`load_run` refuses a checkpoint
of an interrupted run unless ``allow_incomplete=True``. Nothing is pickled: weights are
read with safetensors, metadata with ``json``.

Example:
    >>> import tempfile
    >>> from xrobust.data.spec import DatasetSpec
    >>> from xrobust.models import build_model, load_model, save_checkpoint
    >>> spec = DatasetSpec("t", "tabular", (4,), 2, ("a", "b"), (-1.0, 1.0))
    >>> model = build_model("mlp", spec, hidden=(8,))
    >>> run = tempfile.mkdtemp()
    >>> _ = save_checkpoint(model, run, spec=spec)
    >>> type(load_model(run)).__name__
    'MLP'
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from xrobust._io import atomic_write_bytes, atomic_write_json
from xrobust.data.spec import DatasetSpec
from xrobust.device import resolve_device
from xrobust.errors import CheckpointError, ConfigError, XRobustError
from xrobust.models._build import MODELS, build_info, build_model

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "LoadedRun",
    "load_model",
    "load_run",
    "read_metadata",
    "save_checkpoint",
    "state_dict_of",
]

FORMAT = "xrobust-checkpoint"
FORMAT_VERSION = 2
WEIGHTS_NAME = "model.safetensors"
META_NAME = "model.json"
_REQUIRED = (
    "format",
    "format_version",
    "architecture",
    "arch_kwargs",
    "dataset",
    "weights",
    "integrity",
)


def _canonical(meta: dict[str, Any]) -> bytes:
    """The bytes the metadata checksum covers: every field but ``integrity`` (and the
    in-memory ``_path``), as sorted, compact JSON."""
    body = {k: v for k, v in meta.items() if k not in ("integrity", "_path")}
    return json.dumps(
        body, sort_keys=True, separators=(",", ":"), allow_nan=False, ensure_ascii=True
    ).encode("ascii")


def _seal(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` (made plain JSON) with its ``integrity`` checksum filled in."""
    plain = json.loads(json.dumps(meta, allow_nan=False))
    plain["integrity"] = {
        "sha256": hashlib.sha256(_canonical(plain)).hexdigest(),
        "covers": "every field of model.json except 'integrity'",
    }
    return plain


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel and/or torch.compile wrappers."""
    while True:
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod  # type: ignore[assignment]
        elif isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        else:
            return model


def state_dict_of(model: nn.Module) -> dict[str, torch.Tensor]:
    """CPU, contiguous, unshared copies of the module's state (safe for safetensors)."""
    return {
        k: v.detach().to("cpu", copy=True).contiguous()
        for k, v in unwrap(model).state_dict().items()
    }


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _versions() -> dict[str, str]:
    from xrobust import __version__

    return {"xrobust": __version__, "torch": torch.__version__, "python": platform.python_version()}


def save_checkpoint(
    model: nn.Module,
    out_dir: str | Path,
    *,
    spec: DatasetSpec | None,
    arch: str | None = None,
    arch_kwargs: dict[str, Any] | None = None,
    train_config: dict[str, Any] | None = None,
    metrics: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    training: dict[str, Any] | None = None,
) -> Path:
    """Write ``model.safetensors`` and ``model.json`` into ``out_dir``, atomically.

    The weights are written first and the metadata (holding their hash) second, so a run
    interrupted in between is refused by :func:`load_model` instead of loading mismatched
    files.

    Args:
        model: the model (DDP / torch.compile wrappers are unwrapped).
        out_dir: the run directory (created if needed).
        spec: the dataset spec the model was trained on (needed to rebuild it).
        arch / arch_kwargs: registry name and options; default to what
            :func:`~xrobust.models.build_model` recorded on the model. A model not built
            from the registry can be saved, but :func:`load_model` cannot rebuild it.
        train_config: the training config as a dict (stored as is).
        metrics: final metrics (stored as is).
        extra: any further JSON-ready metadata.
        training: the run's status, e.g. ``{"completed": False, "epoch": 7, "epochs": 15}``
            for an intermediate checkpoint (default ``{"completed": True}``), plus what
            determinism depends on (see :mod:`xrobust.trainer`).

    Returns:
        The path of ``model.json``.
    """
    from safetensors.torch import save

    out = Path(out_dir)
    info = build_info(model) or {}
    arch = arch if arch is not None else info.get("name")
    if arch_kwargs is None:
        arch_kwargs = info.get("kwargs", {}) if arch == info.get("name") else {}
    weights = save(state_dict_of(model), metadata={"format": FORMAT})
    atomic_write_bytes(out / WEIGHTS_NAME, weights)
    meta = _checkpoint_meta(
        model, spec, arch, arch_kwargs, train_config, metrics, extra, training, weights
    )
    try:
        return atomic_write_json(out / META_NAME, _seal(meta))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"checkpoint metadata is not JSON-serialisable: {exc}") from exc


def _checkpoint_meta(
    model: nn.Module,
    spec: DatasetSpec | None,
    arch: str | None,
    arch_kwargs: dict[str, Any] | None,
    train_config: dict[str, Any] | None,
    metrics: dict[str, Any] | None,
    extra: dict[str, Any] | None,
    training: dict[str, Any] | None,
    weights: bytes,
) -> dict[str, Any]:
    """The content of ``model.json`` (before sealing) for the serialised ``weights``."""
    normalization = None
    if spec is not None and spec.mean is not None:
        normalization = {"mean": list(spec.mean), "std": list(spec.std or ())}
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": arch,
        "arch_kwargs": dict(arch_kwargs or {}),
        "model_class": type(unwrap(model)).__name__,
        "dataset": spec.to_dict() if spec is not None else None,
        "class_names": list(spec.class_names) if spec is not None else None,
        "normalization": normalization,
        "train_config": train_config,
        "metrics": metrics or {},
        "versions": _versions(),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "weights": {"file": WEIGHTS_NAME, "sha256": _sha256(weights), "bytes": len(weights)},
        "training": {"completed": True, **(training or {})},
        **({"extra": extra} if extra else {}),
    }
    return meta


def _meta_path(path: str | Path) -> Path:
    p = Path(path)
    if p.is_dir():
        return p / META_NAME
    if p.suffix == ".json":
        return p
    if p.suffix == ".safetensors":
        return p.with_suffix(".json")
    if not p.exists():
        raise CheckpointError(
            f"checkpoint {str(p)!r} not found; give a run directory, its model.json or "
            "its model.safetensors"
        )
    raise CheckpointError(
        f"{str(p)!r} is not a checkpoint; expected a run directory, a .json or a .safetensors file"
    )


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The validated metadata (``model.json``) of a checkpoint, without loading weights.

    Raises:
        CheckpointError: the metadata is missing, not JSON, or lacks required fields.
    """
    meta_path = _meta_path(path)
    meta = _read_json(meta_path)
    _check_format(meta, meta_path)
    _check_integrity(meta, meta_path)
    _check_weights_entry(meta, meta_path)
    meta["_path"] = str(meta_path)
    return meta


def _read_json(meta_path: Path) -> dict[str, Any]:
    """The metadata file's JSON object."""
    if not meta_path.is_file():
        raise CheckpointError(
            f"checkpoint metadata {str(meta_path)!r} is missing; a checkpoint is a run directory "
            f"holding {META_NAME} and {WEIGHTS_NAME} (written by `xrobust train --out DIR`)"
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(
            f"checkpoint metadata {str(meta_path)!r} is not valid JSON: {exc}"
        ) from exc
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint metadata {str(meta_path)!r} is not a JSON object")
    return meta


def _check_format(meta: dict[str, Any], meta_path: Path) -> None:
    """The required fields, the format name and its version."""
    missing = [k for k in _REQUIRED if k not in meta]
    if missing:
        raise CheckpointError(
            f"checkpoint metadata {str(meta_path)!r} lacks field(s) {', '.join(missing)}"
        )
    if meta["format"] != FORMAT:
        raise CheckpointError(
            f"{str(meta_path)!r} is not an xrobust checkpoint (format {meta['format']!r})"
        )
    if meta["format_version"] != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(meta_path)!r} has format version {meta['format_version']!r}; "
            f"this xrobust reads version {FORMAT_VERSION}"
        )


def _check_integrity(meta: dict[str, Any], meta_path: Path) -> None:
    """The metadata's SHA-256 seal matches its content."""
    integ = meta["integrity"]
    if not (isinstance(integ, dict) and isinstance(integ.get("sha256"), str)):
        raise CheckpointError(
            f"checkpoint metadata {str(meta_path)!r}: malformed 'integrity' entry"
        )
    try:
        digest = hashlib.sha256(_canonical(meta)).hexdigest()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint metadata {str(meta_path)!r} holds values that are not plain JSON ({exc})"
        ) from exc
    if digest != integ["sha256"]:
        raise CheckpointError(
            f"checkpoint metadata {str(meta_path)!r} does not match its recorded SHA-256 "
            "('integrity'): a field was edited or damaged (architecture, dataset spec, class "
            "names, normalisation, bounds, ...); refusing to load it. Retrain, or restore the "
            "original model.json"
        )


def _check_weights_entry(meta: dict[str, Any], meta_path: Path) -> None:
    """The weights entry names a plain file beside the metadata, with a hash."""
    w = meta["weights"]
    if not (
        isinstance(w, dict) and isinstance(w.get("file"), str) and isinstance(w.get("sha256"), str)
    ):
        raise CheckpointError(f"checkpoint metadata {str(meta_path)!r}: malformed 'weights' entry")
    if not w["file"] or Path(w["file"]).name != w["file"] or w["file"] in (".", ".."):
        raise CheckpointError(
            f"checkpoint metadata {str(meta_path)!r}: weights file must be a plain file name, "
            f"got {w['file']!r}"
        )


def _read_weights(meta: dict[str, Any]) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load

    meta_path = Path(meta["_path"])
    wpath = meta_path.parent / meta["weights"]["file"]
    if not wpath.is_file():
        raise CheckpointError(f"checkpoint weights {str(wpath)!r} are missing")
    data = wpath.read_bytes()
    digest = _sha256(data)
    if digest != meta["weights"]["sha256"]:
        raise CheckpointError(
            f"checkpoint weights {str(wpath)!r} do not match the SHA-256 recorded in "
            f"{meta_path.name} (expected {meta['weights']['sha256'][:16]}..., got {digest[:16]}...): "
            "the file was modified or damaged; refusing to load it"
        )
    try:
        return load(data)
    except (SafetensorError, ValueError, RuntimeError) as exc:
        raise CheckpointError(f"checkpoint weights {str(wpath)!r} are malformed: {exc}") from exc


@dataclass
class LoadedRun:
    """A loaded checkpoint: the model (eval mode), its dataset spec and all metadata.

    Attributes:
        model: the rebuilt model with its weights, in eval mode.
        spec: the dataset spec it was trained on (bounds, classes, normalisation).
        metadata: the content of ``model.json``.
        path: the run directory.
    """

    model: nn.Module
    spec: DatasetSpec
    metadata: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    @property
    def class_names(self) -> tuple[str, ...]:
        return self.spec.class_names

    @property
    def bounds(self) -> tuple[float, float]:
        return self.spec.bounds


def load_run(
    path: str | Path, device: str | torch.device = "cpu", *, allow_incomplete: bool = False
) -> LoadedRun:
    """Load a checkpoint written by :func:`save_checkpoint` (or ``xrobust train``).

    Args:
        path: the run directory, its ``model.json`` or its ``model.safetensors``.
        device: where to put the model ("cpu", "cuda", "auto", ...).
        allow_incomplete: load the intermediate checkpoint of a training run that did not
            finish (killed, or still running) with a warning, instead of refusing it.

    Raises:
        CheckpointError: missing/malformed metadata, weights or metadata not matching their
            hash, an unfinished run (unless ``allow_incomplete``), unknown architecture, or
            weights that do not fit the architecture.

    Example:
        >>> run = load_run("runs/digits")  # doctest: +SKIP
        >>> run.spec.bounds, run.model(x).shape  # doctest: +SKIP
    """
    meta = read_metadata(path)
    where = meta["_path"]
    _check_finished(meta, where, allow_incomplete)
    spec = _rebuildable_spec(meta, where)
    model = _rebuild(meta, spec, where)
    model.to(resolve_device(device)).eval()
    from xrobust.data.schema import MODEL_SPEC_ATTR

    setattr(model, MODEL_SPEC_ATTR, spec.to_dict())  # read back by data.schema.spec_of
    meta.pop("_path", None)
    return LoadedRun(model=model, spec=spec, metadata=meta, path=Path(where).parent)


def _check_finished(meta: dict[str, Any], where: str, allow_incomplete: bool) -> None:
    """Refuse (or, if allowed, warn about) the checkpoint of an unfinished run."""
    status = meta.get("training")
    if isinstance(status, dict) and status.get("completed") is False:
        at = ""
        if isinstance(status.get("epoch"), int) and isinstance(status.get("epochs"), int):
            at = f" (saved after epoch {status['epoch']} of {status['epochs']})"
        msg = (
            f"checkpoint {where!r} is from a training run that did not finish{at}: it was "
            "interrupted, or is still running"
        )
        if not allow_incomplete:
            raise CheckpointError(
                f"{msg}. Finish it with `xrobust train ... --out {Path(where).parent} --resume`, "
                "or load it anyway with allow_incomplete=True (CLI: --allow-incomplete)"
            )
        # stacklevel 3: the warning points at load_run's caller, as before
        warnings.warn(f"{msg}; loading it because allow_incomplete=True", stacklevel=3)


def _rebuildable_spec(meta: dict[str, Any], where: str) -> DatasetSpec:
    """The dataset spec, checked with the architecture for a rebuild by name."""
    if meta["architecture"] is None:
        raise CheckpointError(
            f"checkpoint {where!r} holds weights of a custom model ({meta.get('model_class')}); "
            "it cannot be rebuilt by name: build the model yourself and load the weights"
        )
    if meta["dataset"] is None:
        raise CheckpointError(f"checkpoint {where!r} records no dataset spec; cannot rebuild it")
    try:
        spec = DatasetSpec.from_dict(meta["dataset"])
    except (KeyError, TypeError, ValueError, IndexError, OverflowError) as exc:
        raise CheckpointError(f"checkpoint {where!r}: malformed dataset spec ({exc})") from exc
    _check_consistent(meta, spec, where)
    if meta["architecture"] not in MODELS:
        raise CheckpointError(
            f"checkpoint {where!r} needs architecture {meta['architecture']!r}, which is not "
            f"registered here (available: {', '.join(MODELS.list())})"
        )
    if not isinstance(meta["arch_kwargs"], dict):
        raise CheckpointError(f"checkpoint {where!r}: 'arch_kwargs' must be an object")
    return spec


def _rebuild(meta: dict[str, Any], spec: DatasetSpec, where: str) -> nn.Module:
    """The registered architecture built for ``spec`` with the checked weights."""
    state = _read_weights(meta)
    try:
        model = build_model(meta["architecture"], spec, **meta["arch_kwargs"])
    except XRobustError as exc:
        raise CheckpointError(f"checkpoint {where!r}: cannot rebuild the model: {exc}") from exc
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        msg = " ".join(str(exc).split())
        raise CheckpointError(
            f"checkpoint {where!r}: weights do not fit architecture {meta['architecture']!r} "
            f"with {meta['arch_kwargs']}: {msg[:400]}"
        ) from exc
    return model


def _check_consistent(meta: dict[str, Any], spec: DatasetSpec, where: str) -> None:
    """The copies of the class names and normalisation must agree with the dataset spec."""
    problems = []
    if meta.get("class_names") is not None and tuple(meta["class_names"]) != spec.class_names:
        problems.append("'class_names' differs from dataset.class_names")
    if len(spec.class_names) != spec.num_classes:
        problems.append(
            f"dataset.num_classes is {spec.num_classes} but it names {len(spec.class_names)} classes"
        )
    norm = meta.get("normalization")
    if norm is not None:
        same = isinstance(norm, dict) and (
            list(norm.get("mean") or []) == list(spec.mean or [])
            and list(norm.get("std") or []) == list(spec.std or [])
        )
        if not same:
            problems.append("'normalization' differs from dataset.mean/std")
    elif spec.mean is not None:
        problems.append("dataset.mean is set but 'normalization' is missing")
    lo, hi = spec.bounds
    if not (lo < hi) or lo != lo or hi != hi:
        problems.append(f"dataset.bounds {spec.bounds} is not an interval low < high")
    if spec.modality not in ("image", "tabular"):
        problems.append(f"dataset.modality {spec.modality!r} is not 'image' or 'tabular'")
    if (
        spec.modality == "tabular"
        and spec.feature_names is not None
        and len(spec.feature_names) != (spec.input_shape[0] if spec.input_shape else -1)
    ):
        problems.append("dataset.feature_names does not match dataset.input_shape")
    if problems:
        raise CheckpointError(f"checkpoint {where!r}: inconsistent metadata: {'; '.join(problems)}")


def load_model(
    path: str | Path, device: str | torch.device = "cpu", *, allow_incomplete: bool = False
) -> nn.Module:
    """Rebuild a checkpointed model (eval mode) without pickle; see :func:`load_run`.

    Example:
        >>> model = load_model("runs/digits")  # doctest: +SKIP
    """
    return load_run(path, device, allow_incomplete=allow_incomplete).model
