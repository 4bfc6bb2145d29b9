"""Shared pieces of the data layer: the tensor dataset, the stratified split, array checks.

Every loader turns its source into NumPy arrays, checks them here (labels, shapes, finite
values, value ranges), splits them with :func:`stratified_split` and wraps them in
:class:`TensorPairDataset` so that items are ``(x float32 tensor, y int64 scalar tensor)``.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset, Subset, TensorDataset

from xrobust.data.spec import DatasetBundle, DatasetSpec
from xrobust.errors import ConfigError, DataError
from xrobust.registry import Registry

__all__ = ["DATASETS", "TensorPairDataset", "as_tensors", "stratified_split"]

#: Built-in datasets: name -> loader ``f(*, size, test_fraction, seed) -> DatasetBundle``.
DATASETS: Registry[Callable[..., DatasetBundle]] = Registry("dataset")

SizeArg = int | tuple[int, int] | None


def _env_bytes(name: str, default: int) -> int:
    try:
        v = int(os.environ.get(name, default))
    except ValueError:
        return default
    return v if v > 0 else default


#: Most bytes a loader may allocate for one dataset's arrays (float32 inputs after
#: conversion, or an archive member as declared). ``XROBUST_MAX_DATA_BYTES`` overrides it.
MAX_DATA_BYTES = _env_bytes("XROBUST_MAX_DATA_BYTES", 4 << 30)
#: Most classes a dataset may have (labels run 0..C-1).
MAX_CLASSES = 100_000
#: Splits smaller than this get a warning: their accuracies are mostly noise.
FEW_EXAMPLES = 20


def _check_bytes(nbytes: int, source: str, what: str) -> None:
    """Refuse to allocate more than :data:`MAX_DATA_BYTES` (a DataError naming the size)."""
    cap = MAX_DATA_BYTES  # read at call time: tests and users may lower it
    if nbytes > cap:
        raise DataError(
            f"{source}: {what} would take {nbytes / 2**30:.3g} GiB, more than the "
            f"{cap / 2**30:.3g} GiB xrobust allows for one dataset (set XROBUST_MAX_DATA_BYTES "
            "to raise the limit, or use a smaller size)"
        )


class TensorPairDataset(TensorDataset):
    """A dataset of ``(x, y)`` pairs held in two tensors (a :class:`TensorDataset`).

    Args:
        x: float32 inputs, first dimension N.
        y: int64 labels of shape (N,).

    Example:
        >>> import torch
        >>> ds = TensorPairDataset(torch.zeros(3, 2), torch.tensor([0, 1, 0]))
        >>> x, y = ds[1]
        >>> x.shape, y.item(), len(ds)
        (torch.Size([2]), 1, 3)
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        if x.dtype != torch.float32:
            raise DataError(f"inputs must be float32, got {x.dtype}")
        if y.dtype != torch.int64 or y.dim() != 1:
            raise DataError(f"labels must be a 1-D int64 tensor, got {y.dtype} {tuple(y.shape)}")
        if len(x) != len(y):
            raise DataError(f"{len(x)} inputs but {len(y)} labels; expected one label per input")
        super().__init__(x, y)

    @property
    def x(self) -> torch.Tensor:
        """All inputs, shape (N, *input_shape)."""
        return self.tensors[0]

    @property
    def y(self) -> torch.Tensor:
        """All labels, shape (N,)."""
        return self.tensors[1]


def as_tensors(dataset: Dataset, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack a dataset's first ``limit`` items into ``(x float32, y int64)`` tensors.

    Fast for :class:`TensorDataset` (and :class:`Subset` of one); other map-style datasets
    are iterated item by item. The tensors are copies: changing them leaves the dataset as
    it was. Built-in and loaded datasets are shuffled when split, so the first ``limit``
    items are a random (seeded) sample, not one class.

    Args:
        dataset: a map-style dataset whose items are ``(x, y)``.
        limit: keep at most this many items (all if None).

    Returns:
        ``(x, y)`` with x of shape (n, *input_shape) and y of shape (n,).

    Raises:
        ConfigError: ``limit`` is not a positive integer.
        DataError: the dataset is empty or its items are not ``(x, integer label)`` pairs.

    Example:
        >>> from xrobust.data import load_dataset, as_tensors
        >>> x, y = as_tensors(load_dataset("digits").test, limit=16)
        >>> tuple(x.shape), y.dtype
        ((16, 1, 28, 28), torch.int64)
    """
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ConfigError(f"limit must be a positive integer or None, got {limit!r}")
    try:
        n = len(dataset)  # type: ignore[arg-type]
    except TypeError as exc:
        raise DataError(
            f"as_tensors needs a map-style dataset with len(), got {type(dataset).__name__}"
        ) from exc
    if n == 0:
        raise DataError("the dataset is empty; expected at least one (x, y) item")
    k = n if limit is None else min(limit, n)
    x, y = _first_items(dataset, k)
    y = _checked_label_tensor(y)
    return x.to(torch.float32, copy=True), y.to(torch.int64, copy=True)


def _first_items(dataset: Dataset, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``k`` items as stacked tensors: sliced from a (Subset of a)
    TensorDataset, else fetched item by item."""
    base, index = dataset, None
    if isinstance(dataset, Subset) and isinstance(dataset.dataset, TensorDataset):
        base, index = dataset.dataset, torch.as_tensor(list(dataset.indices[:k]), dtype=torch.long)
    if isinstance(base, TensorDataset) and len(base.tensors) >= 2:
        xs, ys = base.tensors[0], base.tensors[1]
        x = xs[index] if index is not None else xs[:k]
        y = ys[index] if index is not None else ys[:k]
        return x, y
    xl, yl = [], []
    for i in range(k):
        item = dataset[i]
        if not isinstance(item, (tuple, list)) or len(item) < 2:
            raise DataError(
                f"item {i} of the dataset is a {type(item).__name__}; expected an (x, y) pair"
            )
        xl.append(torch.as_tensor(item[0]))
        yl.append(torch.as_tensor(item[1]).reshape(-1))
    try:
        x = torch.stack(xl)
    except RuntimeError as exc:
        raise DataError(f"dataset inputs have different shapes: {exc}") from exc
    if any(t.numel() != 1 for t in yl):
        raise DataError("each label must be a single integer class index")
    return x, torch.cat(yl)


def _checked_label_tensor(y: torch.Tensor) -> torch.Tensor:
    """Labels of shape (N,) (an (N, 1) column is flattened) holding integer values."""
    if y.dim() == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dim() != 1:
        raise DataError(f"labels must have shape (N,), got {tuple(y.shape)}")
    if y.is_floating_point():
        if not torch.isfinite(y).all() or not torch.equal(y, y.round()):
            raise DataError("labels must be integer class indices; found non-integer values")
    elif y.dtype.is_complex or y.dtype == torch.bool:
        raise DataError(f"labels must be integer class indices, got dtype {y.dtype}")
    return y


# ----------------------------------------------------------------------------- checks


def _check_split_args(test_fraction: float, seed: int) -> None:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float)):
        raise ConfigError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    if not 0.0 < float(test_fraction) < 1.0:
        raise ConfigError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"seed must be a non-negative integer, got {seed!r}")


def _check_size(size: Any, *, minimum: int = 1) -> tuple[int, int] | None:
    """Normalise ``size`` (int or (H, W)) to (H, W)."""
    if size is None:
        return None
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        hw = (int(size), int(size))
    elif (
        isinstance(size, (tuple, list))
        and len(size) == 2
        and all(isinstance(s, (int, np.integer)) and not isinstance(s, bool) for s in size)
    ):
        hw = (int(size[0]), int(size[1]))
    else:
        raise ConfigError(f"size must be an int or an (height, width) pair, got {size!r}")
    if min(hw) < minimum:
        raise ConfigError(f"size must be at least {minimum}, got {size!r}")
    return hw


def _labels(y: Any, source: str, num_classes: int | None = None) -> np.ndarray:
    """Check integer class labels and return them as int64 of shape (N,)."""
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        hint = " (one-hot labels? store y.argmax(1) instead)" if y.ndim == 2 else ""
        raise DataError(
            f"{source}: labels must have shape (N,), got {y.shape}{hint}; "
            "expected integer class indices 0..C-1"
        )
    if y.dtype.kind == "b":
        y = y.astype(np.int64)
    elif y.dtype.kind == "f":
        if not np.isfinite(y).all():
            raise DataError(f"{source}: labels contain NaN or Inf; expected integers 0..C-1")
        if not np.array_equal(y, np.round(y)):
            bad = y[y != np.round(y)][0]
            raise DataError(f"{source}: labels must be integer class indices 0..C-1, found {bad!r}")
    elif y.dtype.kind not in "iu":
        raise DataError(
            f"{source}: labels must be integer class indices 0..C-1, got dtype {y.dtype}"
        )
    y = y.astype(np.int64)
    if len(y) and y.min() < 0:
        raise DataError(
            f"{source}: labels must be class indices 0..C-1, found negative label {y.min()}"
        )
    if num_classes is not None and len(y) and y.max() >= num_classes:
        raise DataError(
            f"{source}: label {y.max()} is outside 0..{num_classes - 1} "
            f"({num_classes} classes declared)"
        )
    return y


def _num_classes(ys: Sequence[np.ndarray], source: str, class_names: Sequence[str] | None) -> int:
    """Number of classes: len(class_names), or max label + 1 with every class present."""
    if class_names is not None:
        c = len(class_names)
        for y in ys:
            _labels(y, source, c)
        present = np.unique(np.concatenate(ys))
        if len(present) < c:
            warnings.warn(
                f"{source}: {c - len(present)} of {c} declared classes have no samples",
                stacklevel=3,
            )
        return c
    y_all = np.concatenate(ys)
    c = int(y_all.max()) + 1
    if c > MAX_CLASSES:
        raise DataError(
            f"{source}: labels run up to {c - 1}; at most {MAX_CLASSES} classes are supported "
            "(labels must be class indices 0..C-1)"
        )
    present = np.unique(y_all)
    missing = np.setdiff1d(np.arange(c), present)[:10].tolist()
    if missing:
        raise DataError(
            f"{source}: labels run up to {c - 1} but class(es) {missing[:10]} have no samples; "
            "labels must be 0..C-1 (1-based labels? subtract 1), or declare the classes "
            "with class_names"
        )
    if c < 2:
        raise DataError(f"{source}: only one class (label 0) found; expected at least 2 classes")
    return c


def _images(x: Any, source: str, channels_first: bool = False) -> np.ndarray:
    """Image array (N,H,W), (N,C,H,W) or (N,H,W,C) -> float32 (N,C,H,W) in [0, 1].

    With ``channels_first`` a 4-D array is known to be (N,C,H,W): no layout guess.
    """
    x = np.asarray(x)
    if x.ndim == 4 and channels_first:
        pass
    elif x.ndim == 3:
        x = x[:, None]
    elif x.ndim == 4:
        first, last = x.shape[1] in (1, 3, 4), x.shape[3] in (1, 3, 4)
        if first and last:
            # both readings possible: keep the one with the larger image (ties: channels-last)
            last = x.shape[1] >= x.shape[3]
            warnings.warn(
                f"{source}: image array of shape {x.shape} could be (N,C,H,W) or (N,H,W,C); "
                f"reading it as {'(N,H,W,C)' if last else '(N,C,H,W)'}",
                stacklevel=3,
            )
        if last:
            x = np.moveaxis(x, 3, 1)
        elif not first:
            raise DataError(
                f"{source}: 4-D images of shape {x.shape} have no channel axis of size 1, 3 "
                "or 4; expected (N,C,H,W) or (N,H,W,C)"
            )
    else:
        raise DataError(
            f"{source}: images must have shape (N,H,W), (N,C,H,W) or (N,H,W,C), got {x.shape}"
        )
    _check_bytes(4 * int(x.size), source, f"{x.shape} images as float32")
    kind = x.dtype.kind
    if x.dtype == np.uint8:
        out = x.astype(np.float32) / 255.0
    elif kind == "b":
        out = x.astype(np.float32)
    elif kind in "iuf":
        if kind == "f" and not np.isfinite(x).all():
            raise DataError(f"{source}: images contain NaN or Inf values")
        lo, hi = (float(x.min()), float(x.max())) if x.size else (0.0, 0.0)
        if lo < -1e-6 or hi > 1.0 + 1e-6:
            raise DataError(
                f"{source}: image values range over [{lo:g}, {hi:g}]; expected uint8 0..255 "
                "or floats in [0, 1] (divide by 255 first?)"
            )
        out = np.clip(x.astype(np.float32), 0.0, 1.0)
    else:
        raise DataError(f"{source}: images must be numeric, got dtype {x.dtype}")
    return np.ascontiguousarray(out)


def _tabular(x: Any, source: str) -> np.ndarray:
    """Tabular array (N, F) -> float32 with finite values."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise DataError(f"{source}: tabular inputs must have shape (N, F), got {x.shape}")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{source}: features must be numeric, got dtype {x.dtype}")
    _check_bytes(4 * int(x.size), source, f"features of shape {x.shape} as float32")
    out = x.astype(np.float32)
    if not np.isfinite(out).all():
        rows, cols = np.nonzero(~np.isfinite(out))
        raise DataError(
            f"{source}: features contain NaN or Inf (or values too large for float32), "
            f"first at row {rows[0]}, column {cols[0]}; expected finite numbers"
        )
    return out


def _check_nonempty(x: np.ndarray, y: np.ndarray, source: str) -> None:
    if len(x) != len(y):
        raise DataError(
            f"{source}: {len(x)} inputs but {len(y)} labels; expected one label per input"
        )
    if len(x) == 0:
        raise DataError(f"{source}: the dataset is empty; expected at least one sample")


# ----------------------------------------------------------------------------- transforms


def _resize(x: np.ndarray, hw: tuple[int, int] | None) -> np.ndarray:
    """Bilinear resize of float images (N,C,H,W), antialiased when shrinking, clamped."""
    if hw is None or tuple(x.shape[2:]) == hw:
        return x
    _check_bytes(
        4 * x.shape[0] * x.shape[1] * hw[0] * hw[1],
        "resize",
        f"{x.shape[0]} images of {hw[0]}x{hw[1]}",
    )
    t = torch.from_numpy(x)
    shrink = hw[0] < x.shape[2] or hw[1] < x.shape[3]
    t = F.interpolate(t, size=hw, mode="bilinear", align_corners=False, antialias=shrink)
    return t.clamp_(0.0, 1.0).numpy()


def _standardize(
    x: np.ndarray, train_idx: np.ndarray
) -> tuple[np.ndarray, list[float], list[float]]:
    """Standardise features with the train rows' mean and (unbiased) std.

    Constant features (std 0) are only centred. Returns the new array and the raw stats.
    """
    tr = x[train_idx].astype(np.float64)
    mean = tr.mean(axis=0)
    std = tr.std(axis=0, ddof=1) if len(tr) > 1 else np.zeros_like(mean)
    std = np.where(std > 0, std, 1.0)
    z = ((x.astype(np.float64) - mean) / std).astype(np.float32)
    return z, mean.tolist(), std.tolist()


def _tabular_bounds(x: np.ndarray) -> tuple[float, float]:
    """(floor(min), ceil(max)) over all values, widened to a non-empty interval."""
    lo, hi = float(math.floor(x.min())), float(math.ceil(x.max()))
    if hi <= lo:
        hi = lo + 1.0
    return lo, hi


# ----------------------------------------------------------------------------- split


def stratified_split(
    y: np.ndarray | torch.Tensor | Sequence[int], test_fraction: float = 0.2, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded, stratified train/test split of sample indices.

    The test set gets ``round(N * test_fraction)`` samples, shared among classes in
    proportion to their sizes (largest remainders). Each returned index array is
    shuffled (seeded), so taking its first items gives a mixed sample of classes.

    Args:
        y: class labels, shape (N,).
        test_fraction: share of samples in the test set, strictly between 0 and 1.
        seed: seed of the split; the same labels and seed always give the same split.

    Returns:
        ``(train_idx, test_idx)``: disjoint int64 index arrays covering 0..N-1.

    Raises:
        ConfigError: test_fraction or seed is invalid.
        DataError: too few samples to put at least one in each part.

    Example:
        >>> tr, te = stratified_split([0, 0, 0, 0, 1, 1, 1, 1, 1, 1], 0.2, seed=0)
        >>> len(tr), len(te), sorted([0, 0, 0, 0, 1, 1, 1, 1, 1, 1][i] for i in te)
        (8, 2, [0, 1])
    """
    _check_split_args(test_fraction, seed)
    y = np.asarray(y).reshape(-1)
    n = len(y)
    n_test = math.floor(n * float(test_fraction) + 0.5)
    if n_test < 1 or n_test > n - 1:
        raise DataError(
            f"cannot split {n} samples with test_fraction={test_fraction}: "
            "each part needs at least one sample"
        )
    rng = np.random.default_rng(int(seed))
    classes, counts = np.unique(y, return_counts=True)
    exact = counts * (n_test / n)
    alloc = np.floor(exact).astype(np.int64)
    remainder = n_test - int(alloc.sum())
    order = np.argsort(-(exact - alloc), kind="stable")
    alloc[order[:remainder]] += 1
    train, test = [], []
    for c, k in zip(classes, alloc):
        idx = rng.permutation(np.flatnonzero(y == c))
        test.append(idx[:k])
        train.append(idx[k:])
    tr = rng.permutation(np.concatenate(train)).astype(np.int64)
    te = rng.permutation(np.concatenate(test)).astype(np.int64)
    return tr, te


# ----------------------------------------------------------------------------- bundles


def _dataset(x: np.ndarray, y: np.ndarray) -> TensorPairDataset:
    return TensorPairDataset(
        torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)),
        torch.from_numpy(np.ascontiguousarray(y, dtype=np.int64)),
    )


def _bundle(
    x: np.ndarray,
    y: np.ndarray,
    train_idx: np.ndarray,
    test_idx: np.ndarray,
    spec: DatasetSpec,
) -> DatasetBundle:
    return DatasetBundle(
        train=_dataset(x[train_idx], y[train_idx]),
        test=_dataset(x[test_idx], y[test_idx]),
        spec=spec,
    )


def _split_info(test_fraction: float, seed: int, n_train: int, n_test: int) -> dict[str, Any]:
    return {
        "split": {"method": "stratified", "seed": int(seed), "test_fraction": float(test_fraction)},
        "n_train": int(n_train),
        "n_test": int(n_test),
    }


def _array_bundle(
    *,
    name: str,
    source: str,
    xs: Sequence[Any],
    ys: Sequence[Any],
    test_fraction: float,
    seed: int,
    size: SizeArg = None,
    class_names: Sequence[str] | None = None,
    feature_names: Sequence[str] | None = None,
    standardize: bool = False,
    extra: dict[str, Any] | None = None,
    channels_first: bool = False,
    stats: tuple[Sequence[float], Sequence[float]] | None = None,
) -> DatasetBundle:
    """Check arrays and build a bundle.

    ``xs``/``ys`` hold either one part (split here, stratified and seeded) or two parts
    (train, test) used as given. 2-D inputs are tabular, 3-D/4-D ones images
    (``channels_first``: 4-D images are known to be (N,C,H,W)). ``stats`` = (mean, std):
    standardise tabular features with these (a model's stored training statistics)
    instead of this data's own.
    """
    _check_split_args(test_fraction, seed)
    given = len(xs) == 2
    tabular = np.asarray(xs[0]).ndim == 2
    if tabular and size is not None:
        raise ConfigError(
            f"{source}: an image size (--size, Python: size=) applies to image data; this data is tabular"
        )
    hw = _check_size(size)
    cx, cy = _checked_parts(xs, ys, source, tabular, channels_first)
    class_names = _checked_class_names(class_names, source)
    c = _num_classes(cy, source, class_names)
    names = class_names if class_names is not None else tuple(str(i) for i in range(c))
    if not tabular:
        cx = [_resize(x, hw) for x in cx]
    x, y = np.concatenate(cx), np.concatenate(cy)
    info: dict[str, Any] = {"source": source, **(extra or {})}
    tr, te = _split_indices(len(cx[0]) if given else None, y, test_fraction, seed, source, info)
    fnames = None
    if tabular:
        x, fnames = _tabular_features(x, tr, feature_names, stats, standardize, source, info)
        bounds = _tabular_bounds(x)
    else:
        bounds = (0.0, 1.0)
    spec = DatasetSpec(
        name=name,
        modality="tabular" if tabular else "image",
        input_shape=tuple(int(s) for s in x.shape[1:]),
        num_classes=c,
        class_names=names,
        bounds=bounds,
        feature_names=fnames,
        extra=info,
    )
    return _bundle(x, y, tr, te, spec)


def _checked_parts(
    xs: Sequence[Any], ys: Sequence[Any], source: str, tabular: bool, channels_first: bool
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Each part's inputs and labels checked (one part, or train and test of one shape)."""
    given = len(xs) == 2
    parts = ("train", "test") if given else ("",)
    cx, cy = [], []
    for part, x, y in zip(parts, xs, ys):
        src = f"{source} [{part}]" if part else source
        x = _tabular(x, src) if tabular else _images(x, src, channels_first)
        y = _labels(y, src)
        _check_nonempty(x, y, src)
        cx.append(x)
        cy.append(y)
    if given and cx[0].shape[1:] != cx[1].shape[1:]:
        raise DataError(
            f"{source}: train inputs have shape {cx[0].shape[1:]} but test inputs "
            f"{cx[1].shape[1:]}; expected the same shape"
        )
    return cx, cy


def _checked_class_names(class_names: Sequence[str] | None, source: str) -> tuple[str, ...] | None:
    if class_names is None:
        return None
    names = tuple(str(c) for c in class_names)
    if len(names) < 2 or len(set(names)) != len(names):
        raise DataError(f"{source}: class_names must hold at least 2 distinct names, got {names}")
    return names


def _split_indices(
    n_given_train: int | None,
    y: np.ndarray,
    test_fraction: float,
    seed: int,
    source: str,
    info: dict[str, Any],
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test indices: the given split (its first ``n_given_train`` rows train)
    or a stratified seeded one; recorded in ``info``; too few examples are warned about."""
    if n_given_train is not None:
        tr = np.arange(n_given_train, dtype=np.int64)
        te = np.arange(n_given_train, len(y), dtype=np.int64)
        info.update({"split": {"method": "given"}, "n_train": len(tr), "n_test": len(te)})
    else:
        tr, te = stratified_split(y, test_fraction, seed)
        info.update(_split_info(test_fraction, seed, len(tr), len(te)))
    if min(len(tr), len(te)) < FEW_EXAMPLES:
        warnings.warn(
            f"{source}: only {len(tr)} training and {len(te)} test examples; accuracies "
            f"measured on fewer than {FEW_EXAMPLES} examples are mostly noise",
            stacklevel=4,  # the loader's caller, as before
        )
    return tr, te


def _tabular_features(
    x: np.ndarray,
    tr: np.ndarray,
    feature_names: Sequence[str] | None,
    stats: tuple[Sequence[float], Sequence[float]] | None,
    standardize: bool,
    source: str,
    info: dict[str, Any],
) -> tuple[np.ndarray, tuple[str, ...]]:
    """Feature names (given, or x0..) and the features standardised with ``stats`` (a
    model's) or, if asked, the train rows' own statistics (recorded in ``info``)."""
    nf = x.shape[1]
    if feature_names is not None:
        fnames = tuple(str(f) for f in feature_names)
        if len(fnames) != nf:
            raise DataError(
                f"{source}: {len(fnames)} feature names for {nf} features; expected one each"
            )
    else:
        fnames = tuple(f"x{i}" for i in range(nf))
    if stats is not None:
        mean_a = np.asarray(stats[0], dtype=np.float64)
        std_a = np.asarray(stats[1], dtype=np.float64)
        x = ((x.astype(np.float64) - mean_a) / std_a).astype(np.float32)
        if not np.isfinite(x).all():
            raise DataError(f"{source}: values overflow after standardisation")
        info.update({"standardized": True, "raw_mean": mean_a.tolist(), "raw_std": std_a.tolist()})
    elif standardize:
        x, mean, std = _standardize(x, tr)
        info.update({"standardized": True, "raw_mean": mean, "raw_std": std})
    return x, fnames


def _existing(path: Any, what: str) -> Any:
    """``Path(path)``, checked to exist (a DataError naming it otherwise)."""
    from pathlib import Path

    try:
        p = Path(path)
    except TypeError as exc:
        raise ConfigError(f"expected a path to {what}, got {path!r}") from exc
    if not p.exists():
        raise DataError(f"{p}: no such file or folder; expected {what}")
    return p
