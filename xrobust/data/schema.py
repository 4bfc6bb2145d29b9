"""Load data *for a trained model*: the model's input schema is applied, never re-derived.

A model's spec (stored in its checkpoint) records what its inputs mean: the feature names
and their order, the standardisation fitted on its training split, the class names, the
image size, where the training data came from and how it was split.
:func:`load_for_model` reads evaluation data through that schema, so the numbers an audit
reports are about the model as trained:

- a CSV table is matched to the model's columns by name (missing, extra or renamed columns
  are refused; reordered ones are re-mapped, with a logged warning), standardised with the
  model's training statistics (not the file's own), and its labels mapped to the model's
  classes (unknown labels are refused). A feature column whose median lies outside the
  range the model saw in training (other units or scaling?) is refused; single values
  outside it are reported with a warning;
- a built-in image dataset is served at the model's input size; a user's images of
  another size are refused, naming both shapes, unless ``resize=True`` (``--resize``), which
  resizes them (bilinear, antialiased when shrinking) with a warning naming both shapes;
  class folders / names must be among the model's classes;
- without ``data`` the model's own training source is used (a built-in by name, or the
  recorded file), with the recorded target column and split, so its test split is the
  one the model never trained on.

Example:
    >>> from xrobust.data import load_dataset
    >>> from xrobust.data.schema import load_for_model
    >>> spec = load_dataset("breast_cancer").spec
    >>> load_for_model(spec).spec.feature_names == spec.feature_names
    True
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xrobust.data._base import DATASETS, TensorPairDataset
from xrobust.data.spec import DatasetBundle, DatasetSpec
from xrobust.errors import ConfigError, DataError

__all__ = ["MODEL_SPEC_ATTR", "default_source", "load_for_data_of", "load_for_model", "spec_of"]

#: Attribute on models from ``load_run`` / ``train`` holding their dataset spec (as a dict).
MODEL_SPEC_ATTR = "_xrobust_spec"

log = logging.getLogger(__name__)


def default_source(spec: DatasetSpec) -> str:
    """Where the model's training data came from: a built-in name or the recorded path.

    Raises:
        ConfigError: the source is not recorded or no longer exists.
    """
    source = spec.extra.get("source")
    from_file = "format" in spec.extra  # the file loaders record their format; built-ins don't
    if spec.name in DATASETS and not from_file:
        return spec.name
    if isinstance(source, str) and source and source != "generated":
        if Path(source).exists():
            return source
        rel = "" if Path(source).is_absolute() else " (relative to the folder it was trained in)"
        raise ConfigError(
            f"the model was trained on {source!r}{rel}, which is not there; "
            "give the data with --data PATH (Python: data=PATH)"
        )
    raise ConfigError(
        f"the model's training data ({spec.name!r}) is not recorded as a file or a built-in "
        "dataset; give the data with --data NAME_OR_PATH (Python: data=...)"
    )


def _split_args(spec: DatasetSpec) -> dict[str, Any]:
    split = spec.extra.get("split")
    if isinstance(split, dict) and split.get("method") == "stratified":
        tf, seed = split.get("test_fraction"), split.get("seed")
        if isinstance(tf, float) and 0 < tf < 1 and isinstance(seed, int) and seed >= 0:
            return {"test_fraction": tf, "seed": seed}
    return {}


def load_for_model(
    spec: DatasetSpec,
    data: str | os.PathLike[str] | None = None,
    *,
    target: str | None = None,
    strict_range: bool = True,
    resize: bool = False,
) -> DatasetBundle:
    """Load ``data`` (default: the model's training source) as input to the model with ``spec``.

    Args:
        spec: the model's dataset spec (``load_run(...).spec``).
        data: a built-in name or a path; None for the model's recorded training data.
        target: the CSV label column (default: the one the model was trained with).
        strict_range: refuse a tabular feature whose median lies outside the range the
            model was trained on (False: only warn).
        resize: resize a user's images of another size to the model's (with a warning);
            False (default) refuses them.

    Returns:
        A bundle whose spec has the model's classes, feature names and input shape.

    Raises:
        ConfigError: no data given and none recorded; ``target`` for non-CSV data.
        DataError: the data does not fit the model's schema (see the module docstring),
            images of another size without ``resize``.
    """
    from xrobust.data.csv_file import load_csv

    src = os.fspath(data) if data is not None else default_source(spec)
    split = _split_args(spec) if data is None or str(src) == spec.extra.get("source") else {}
    is_csv = (
        not (isinstance(src, str) and src in DATASETS)
        and Path(src).suffix.lower() in (".csv", ".tsv")
        and Path(src).is_file()
    )
    if is_csv:
        if spec.modality != "tabular":
            raise DataError(f"{src}: a CSV table, but the model takes images {spec.input_shape}")
        bundle = load_csv(src, target=target, schema=spec, **split)
    else:
        bundle = _load_not_csv(src, spec, split, target, resize)
    if tuple(bundle.spec.input_shape) != tuple(spec.input_shape):
        raise DataError(
            f"{src}: inputs of shape {tuple(bundle.spec.input_shape)}, but the model takes "
            f"{tuple(spec.input_shape)}"
        )
    if spec.modality == "tabular":
        bundle = _check_range(bundle, spec, str(src), strict_range)
    return bundle


def _load_not_csv(
    src: Any, spec: DatasetSpec, split: dict[str, Any], target: str | None, resize: bool
) -> DatasetBundle:
    """A built-in or a user's non-CSV data, checked against the model's shape, classes
    and (tabular) features."""
    from xrobust.data.loading import load_dataset

    kwargs: dict[str, Any] = dict(split)
    if target is not None:
        kwargs["target"] = target  # load_dataset refuses it for non-CSV data, clearly
    builtin = isinstance(src, str) and src in DATASETS
    if spec.modality == "image" and len(spec.input_shape) == 3 and builtin:
        h, w = spec.input_shape[1:]  # a built-in is served at the size it was trained at
        try:
            bundle = load_dataset(src, size=h if h == w else (h, w), **kwargs)
        except ConfigError as exc:
            if "size" not in str(exc):
                raise
            bundle = load_dataset(src, **kwargs)
    elif spec.modality == "image" and len(spec.input_shape) == 3:
        bundle = _images_at_size(src, spec, kwargs, resize)
    else:
        bundle = load_dataset(src, **kwargs)
    if tuple(bundle.spec.input_shape) != tuple(spec.input_shape):
        raise DataError(
            f"{src}: inputs of shape {tuple(bundle.spec.input_shape)}, but the model takes "
            f"{tuple(spec.input_shape)}"
        )
    bundle = _match_classes(bundle, spec, str(src))
    if spec.modality == "tabular":
        _match_features(bundle.spec, spec, str(src))
    return bundle


def _images_at_size(
    src: str, spec: DatasetSpec, kwargs: dict[str, Any], resize: bool
) -> DatasetBundle:
    """A user's images as stored; of another size than the model's only with ``resize``."""
    from xrobust.data.loading import load_dataset

    want = tuple(spec.input_shape)
    h, w = want[1:]
    try:
        bundle = load_dataset(src, **kwargs)
    except DataError as exc:
        if "differ in size" not in str(exc):
            raise
        if not resize:
            raise DataError(
                f"{src}: images of several sizes, but the model takes {want}: give --resize "
                "to resize them to the model's size (Python: resize=True)"
            ) from None
        warnings.warn(
            f"{src}: images of several sizes resized to the model's input shape {want} (resize)",
            stacklevel=3,
        )
        return load_dataset(src, size=(h, w), **kwargs)
    except ConfigError as exc:  # a table for an image model: the shape check names both
        if "size" not in str(exc):
            raise
        return load_dataset(src, **kwargs)
    have = tuple(bundle.spec.input_shape)
    if bundle.spec.modality != "image" or len(have) != 3 or have[1:] == (h, w):
        return bundle  # a table, or the right size (channels are checked by the caller)
    if not resize:
        raise DataError(
            f"{src}: images of shape {have} ({have[1]}x{have[2]}), but the model takes {want} "
            f"({h}x{w}); xrobust does not resize them silently: give --resize to resize them "
            "to the model's size (bilinear, antialiased when shrinking; Python: resize=True), "
            "or give images of the model's size"
        )
    warnings.warn(
        f"{src}: images of shape {have} resized to the model's input shape {want} (resize); "
        "the figures are about the resized images",
        stacklevel=3,
    )
    return load_dataset(src, size=(h, w), **kwargs)


def _match_features(have: DatasetSpec, want: DatasetSpec, src: str) -> None:
    a, b = tuple(have.feature_names or ()), tuple(want.feature_names or ())
    default = lambda n: n == tuple(f"x{i}" for i in range(len(n)))  # noqa: E731
    if a and b and a != b and not default(a) and not default(b):
        raise DataError(
            f"{src}: feature names {list(a)[:8]} do not match the model's {list(b)[:8]}; "
            "give the features in the model's order and names"
        )


def _match_classes(bundle: DatasetBundle, spec: DatasetSpec, src: str) -> DatasetBundle:
    """Map the data's labels to the model's class indices by class name."""
    have, want = bundle.spec.class_names, spec.class_names
    if have == want:
        return bundle
    unnamed = have == tuple(str(i) for i in range(len(have)))
    if unnamed and len(have) <= len(want):
        mapping = None  # plain indices 0..k-1: they are the model's class indices
    elif all(c in want for c in have):
        mapping = torch.tensor([want.index(c) for c in have], dtype=torch.int64)
        log.warning("%s: class labels re-mapped by name to the model's classes", src)
    else:
        unknown = [c for c in have if c not in want]
        raise DataError(
            f"{src}: class(es) {unknown[:5]} are not among the model's classes {list(want)[:20]}"
        )

    def remap(ds: Any) -> Any:
        if mapping is None:
            return ds
        if isinstance(ds, TensorPairDataset):
            return TensorPairDataset(ds.x, mapping[ds.y])
        raise DataError(f"{src}: cannot re-map the labels of a {type(ds).__name__}")

    new_spec = replace(bundle.spec, num_classes=spec.num_classes, class_names=want)
    return DatasetBundle(train=remap(bundle.train), test=remap(bundle.test), spec=new_spec)


def _check_range(bundle: DatasetBundle, spec: DatasetSpec, src: str, strict: bool) -> DatasetBundle:
    """Refuse (or warn about) features far outside what the model was trained on."""
    lo, hi = spec.bounds
    xs = [d.x for d in (bundle.train, bundle.test) if isinstance(d, TensorPairDataset)]
    if not xs:
        return bundle
    x = torch.cat(xs).numpy()
    med = np.median(x, axis=0)
    names = list(spec.feature_names or [f"x{i}" for i in range(x.shape[1])])
    bad = [(names[j], float(med[j])) for j in range(x.shape[1]) if not lo <= med[j] <= hi]
    if bad:
        what = ", ".join(f"{n!r} (median {m:.3g})" for n, m in bad[:5])
        msg = (
            f"{src}: {len(bad)} feature column(s) lie outside the range the model was trained "
            f"on ([{lo:g}, {hi:g}] after its standardisation): {what}. Is the file in other "
            "units or already standardised?"
        )
        if strict:
            raise DataError(msg + " (Python: load_for_model(..., strict_range=False) to go on)")
        log.warning(msg)
    outside = int(((x < lo) | (x > hi)).sum())
    if outside:
        log.warning(
            "%s: %d value(s) (%.2g%%) lie outside the range the model was trained on [%g, %g]; "
            "attacks keep inputs within the widened range",
            src,
            outside,
            100.0 * outside / x.size,
            lo,
            hi,
        )
    dlo, dhi = bundle.spec.bounds
    bounds = (min(lo, dlo), max(hi, dhi))
    return replace(bundle, spec=replace(bundle.spec, bounds=bounds))


def spec_of(model: Any) -> DatasetSpec | None:
    """The dataset spec recorded on a model by ``load_run`` or ``train`` (None otherwise)."""
    d = getattr(model, MODEL_SPEC_ATTR, None)
    if not isinstance(d, dict):
        return None
    try:
        return DatasetSpec.from_dict(d)
    except (KeyError, TypeError, ValueError):
        return None


def load_for_data_of(
    model: Any, data: str | os.PathLike[str], *, resize: bool = False
) -> DatasetBundle:
    """``load_dataset(data)``, read through ``model``'s input schema when it carries one
    (models from ``load_run`` and ``train`` do; so do ONNX classifiers of files from
    ``xrobust export``, as ``model_spec``); plain modules get ``load_dataset``."""
    from xrobust.data.loading import load_dataset

    spec = spec_of(model)
    if spec is None:
        ms = getattr(model, "model_spec", None)
        spec = ms if isinstance(ms, DatasetSpec) else None
    if spec is None:
        return load_dataset(data)
    return load_for_model(spec, data, resize=resize)
