"""Load a user's NumPy ``.npz`` archive (read with ``allow_pickle=False``)."""

from __future__ import annotations

import os
import warnings
import zipfile
from typing import Any

import numpy as np

from xrobust.data._base import SizeArg, _array_bundle, _existing
from xrobust.data.spec import DatasetBundle
from xrobust.errors import DataError

__all__ = ["load_npz"]

_OPTIONAL = ("class_names", "feature_names")


def _strings(a: np.ndarray, key: str, source: str) -> list[str]:
    if a.dtype.kind not in "US" or a.ndim != 1:
        raise DataError(
            f"{source}: {key!r} must be a 1-D array of strings, got {a.dtype} {a.shape}"
        )
    return [s.decode() if isinstance(s, bytes) else str(s) for s in a.tolist()]


def load_npz(
    path: str | os.PathLike[str],
    *,
    size: SizeArg = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    standardize: bool = False,
    name: str | None = None,
) -> DatasetBundle:
    """Load inputs and labels from an ``.npz`` archive.

    The archive holds either ``x`` and ``y`` (split here: stratified, seeded) or
    ``x_train``, ``y_train``, ``x_test``, ``y_test`` (used as given). Optional keys:
    ``class_names`` and ``feature_names`` (1-D string arrays).

    Inputs: 2-D ``x`` (N, F) is tabular; images are (N, H, W) (one channel added),
    (N, C, H, W) or (N, H, W, C) with C in {1, 3, 4} (moved channels first). uint8 images
    are divided by 255; other images must already be in [0, 1]. Labels are integers
    0..C-1 (C = max label + 1 unless ``class_names`` declares it).

    Args:
        path: the ``.npz`` file.
        size: resize images to this side (or (H, W)), bilinear; None keeps them.
        test_fraction: test share when the archive holds only ``x``/``y``.
        seed: seed of that split.
        standardize: standardise tabular features with the train split's mean/std
            (raw statistics in ``spec.extra``). Off by default: the values are kept.
        name: the spec's name (the file stem by default).

    Raises:
        DataError: the file is missing or malformed (missing keys, pickled objects,
            length mismatch, NaN/Inf, bad labels, images outside [0, 1]).

    Example:
        >>> import numpy as np, tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "toy.npz")
        >>> rng = np.random.default_rng(0)
        >>> np.savez(f, x=rng.integers(0, 256, (20, 8, 8), dtype=np.uint8), y=np.arange(20) % 2)
        >>> ds = load_npz(f)
        >>> ds.spec.input_shape, ds.spec.num_classes, len(ds.test)
        ((1, 8, 8), 2, 4)
    """
    p = _existing(path, "an .npz archive")
    source = str(p)
    if p.is_dir():
        raise DataError(f"{source}: is a folder; expected an .npz file")
    arrays: dict[str, Any] = {}
    try:
        with open(p, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise DataError(f"{source}: cannot be read ({exc})") from exc
    if magic == b"\x93NUMPY":
        raise DataError(f"{source}: is a single .npy array; expected an .npz archive (numpy.savez)")
    if not magic.startswith(b"PK"):
        raise DataError(f"{source}: is not an .npz (zip) archive; expected numpy.savez output")
    try:
        with np.load(p, allow_pickle=False) as z:
            for k in z.files:
                arrays[k.lower()] = z[k]
    except ValueError as exc:
        raise DataError(
            f"{source}: holds an array of Python objects, which is not loaded for safety "
            f"({exc}); expected plain numeric arrays (and string arrays for names)"
        ) from exc
    except (OSError, zipfile.BadZipFile, EOFError, KeyError) as exc:
        raise DataError(f"{source}: corrupt .npz archive ({exc})") from exc

    split_keys = {"x_train", "y_train", "x_test", "y_test"}
    has_xy = "x" in arrays or "y" in arrays
    has_split = bool(split_keys & arrays.keys())
    if has_xy and has_split:
        raise DataError(
            f"{source}: holds both x/y and x_train/.../y_test; expected one of the two layouts"
        )
    if has_split:
        missing = sorted(split_keys - arrays.keys())
        if missing:
            raise DataError(f"{source}: missing key(s) {missing}; expected {sorted(split_keys)}")
        xs, ys = [arrays["x_train"], arrays["x_test"]], [arrays["y_train"], arrays["y_test"]]
        known = split_keys
    elif "x" in arrays and "y" in arrays:
        xs, ys = [arrays["x"]], [arrays["y"]]
        known = {"x", "y"}
    else:
        raise DataError(
            f"{source}: found keys {sorted(arrays)}; expected 'x' and 'y', or "
            "'x_train', 'y_train', 'x_test' and 'y_test'"
        )
    unknown = sorted(arrays.keys() - known - set(_OPTIONAL))
    if unknown:
        warnings.warn(f"{source}: ignoring unknown key(s) {unknown}", stacklevel=2)
    class_names = (
        _strings(arrays["class_names"], "class_names", source) if "class_names" in arrays else None
    )
    feature_names = (
        _strings(arrays["feature_names"], "feature_names", source)
        if "feature_names" in arrays
        else None
    )
    return _array_bundle(
        name=name or p.stem,
        source=source,
        xs=xs,
        ys=ys,
        test_fraction=test_fraction,
        seed=seed,
        size=size,
        class_names=class_names,
        feature_names=feature_names,
        standardize=standardize,
        extra={"format": "npz"},
    )
