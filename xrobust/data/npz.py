"""Load a user's NumPy ``.npz`` archive (read with ``allow_pickle=False``)."""

from __future__ import annotations

import os
import warnings
import zipfile
from typing import Any
from zlib import error as zlib_error

import numpy as np

from xrobust.data import _base
from xrobust.data._base import SizeArg, _array_bundle, _check_bytes, _existing
from xrobust.data.spec import DatasetBundle
from xrobust.errors import DataError

__all__ = ["load_npz"]

_OPTIONAL = ("class_names", "feature_names")
_MAX_MEMBERS = 64


def _inspect(p: Any, source: str) -> None:
    """Read every member's .npy header (not its data) and refuse, before anything is
    inflated or allocated, archives whose declared arrays are too large, hold Python
    objects, or whose compressed members would inflate beyond what their header declares."""
    try:
        zf = zipfile.ZipFile(p)
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise DataError(f"{source}: corrupt .npz archive ({exc})") from exc
    with zf:
        infos = zf.infolist()
        if len(infos) > _MAX_MEMBERS:
            raise DataError(f"{source}: {len(infos)} arrays in the archive; expected a few")
        total = 0
        for info in infos:
            if info.file_size > _base.MAX_DATA_BYTES:
                _check_bytes(info.file_size, source, f"array {info.filename!r} (inflated)")
            try:
                with zf.open(info) as fh:
                    version = np.lib.format.read_magic(fh)
                    if version == (1, 0):
                        shape, _fortran, dtype = np.lib.format.read_array_header_1_0(fh)
                    elif version in ((2, 0), (3, 0)):
                        shape, _fortran, dtype = np.lib.format.read_array_header_2_0(fh)
                    else:
                        raise ValueError(f"unsupported .npy version {version}")
            except (ValueError, OSError, EOFError, zipfile.BadZipFile, NotImplementedError,
                    RuntimeError, zlib_error) as exc:  # fmt: skip
                raise DataError(
                    f"{source}: member {info.filename!r} is not a valid .npy array ({exc})"
                ) from exc
            if dtype.hasobject:
                raise DataError(
                    f"{source}: array {info.filename!r} holds Python objects, which are not "
                    "loaded for safety; expected plain numeric arrays (and string arrays for names)"
                )
            count = 1
            for d in shape:
                count *= int(d)
            nbytes = count * max(dtype.itemsize, 1)
            total += nbytes + 4 * count  # the array, and its float32 copy
            _check_bytes(total, source, f"the arrays (shape {tuple(shape)} of {dtype})")
            if info.file_size > nbytes + 4096:
                raise DataError(
                    f"{source}: member {info.filename!r} inflates to {info.file_size} bytes but "
                    f"declares only {nbytes} bytes of data; refusing a malformed archive"
                )


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
    arrays = _read_arrays(p, source)
    xs, ys = _layout(arrays, source)
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


def _read_arrays(p: Any, source: str) -> dict[str, Any]:
    """The archive's arrays by lower-case key (no pickled objects), or a DataError."""
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
    _inspect(p, source)
    try:
        with np.load(p, allow_pickle=False) as z:
            for k in z.files:
                arrays[k.lower()] = z[k]
    except ValueError as exc:
        raise DataError(
            f"{source}: holds an array of Python objects, which is not loaded for safety "
            f"({exc}); expected plain numeric arrays (and string arrays for names)"
        ) from exc
    except (
        OSError,
        zipfile.BadZipFile,
        EOFError,
        KeyError,
        zlib_error,
        NotImplementedError,
    ) as exc:
        raise DataError(f"{source}: corrupt .npz archive ({exc})") from exc
    except MemoryError as exc:
        raise DataError(f"{source}: too large to load into memory") from exc
    return arrays


def _layout(arrays: dict[str, Any], source: str) -> tuple[list[Any], list[Any]]:
    """``(xs, ys)`` of the archive's layout: ``[x], [y]`` or the train and test splits
    (unknown keys are warned about)."""
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
        # stacklevel 3: the warning points at load_npz's caller, as before
        warnings.warn(f"{source}: ignoring unknown key(s) {unknown}", stacklevel=3)
    return xs, ys
