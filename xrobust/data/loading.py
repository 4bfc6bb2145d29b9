"""``load_dataset``: a built-in dataset by name, or a user's file or folder by path."""

from __future__ import annotations

import os
from pathlib import Path

from xrobust.data._base import DATASETS, _check_split_args
from xrobust.data.csv_file import load_csv
from xrobust.data.idx import is_idx_name, load_idx
from xrobust.data.image_folder import IMAGE_SUFFIXES, load_image_folder
from xrobust.data.npz import load_npz
from xrobust.data.spec import DatasetBundle
from xrobust.errors import ConfigError, DataError

__all__ = ["list_datasets", "load_dataset"]

_PATH_HINT = (
    "load_dataset also accepts a path: an .npz file, a .csv file, a folder of MNIST IDX "
    "files, or a folder with one subfolder of images per class"
)


def list_datasets(pattern: str | None = None) -> list[str]:
    """Names of the built-in datasets, optionally filtered by a shell-style pattern.

    Example:
        >>> from xrobust.data import list_datasets
        >>> list_datasets()
        ['blobs', 'breast_cancer', 'digits']
    """
    return DATASETS.list(pattern)


def _looks_like_path(s: str) -> bool:
    return os.sep in s or "/" in s or (os.altsep is not None and os.altsep in s) or "." in s


def load_dataset(
    name_or_path: str | os.PathLike[str],
    *,
    size: int | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    target: str | None = None,
) -> DatasetBundle:
    """Load a built-in dataset by name, or a user's data by path.

    A string that is a registered name (see :func:`list_datasets`) loads that built-in,
    even if a file of that name exists (write ``./digits`` for the file). Anything else
    is a path, read according to what it is:

    - ``*.npz``: :func:`~xrobust.data.load_npz`
    - ``*.csv`` / ``*.tsv``: :func:`~xrobust.data.load_csv` (``target`` names the label column)
    - an IDX file (``*-images-idx3-ubyte[.gz]``) or a folder holding IDX files:
      :func:`~xrobust.data.load_idx`
    - any other folder: :func:`~xrobust.data.load_image_folder` (one subfolder per class)

    Args:
        name_or_path: built-in name or path.
        size: image side to serve (digits: >= 8, default 28; user images: resize, default
            as stored). Not allowed for tabular data.
        test_fraction: share of samples in the test set (when the data is split here).
        seed: seed of the stratified split.
        target: label column of a CSV file.

    Returns:
        A :class:`DatasetBundle` with ``train``, ``test`` (items ``(x float32, y int64)``)
        and ``spec``.

    Raises:
        ConfigError: unknown name (with close matches), or an option that does not apply.
        DataError: the file or folder is missing or malformed.

    Example:
        >>> from xrobust.data import load_dataset
        >>> ds = load_dataset("digits")
        >>> ds.spec.input_shape, ds.spec.num_classes, len(ds.train), len(ds.test)
        ((1, 28, 28), 10, 1438, 359)
    """
    _check_split_args(test_fraction, seed)
    if isinstance(name_or_path, str) and name_or_path in DATASETS:
        if target is not None:
            raise ConfigError(
                f"a target column (--target, Python: target=) applies to CSV files, not the built-in {name_or_path!r}"
            )
        return DATASETS.get(name_or_path)(size=size, test_fraction=test_fraction, seed=seed)
    p = _existing_path(name_or_path)
    if p.is_file():
        return _load_file(p, size=size, test_fraction=test_fraction, seed=seed, target=target)
    return _load_folder(p, size=size, test_fraction=test_fraction, seed=seed, target=target)


def _existing_path(name_or_path: str | os.PathLike[str]) -> Path:
    """The path, checked to exist (a misspelt built-in name gets the close matches)."""
    try:
        raw = os.fspath(name_or_path)
    except TypeError as exc:
        raise ConfigError(
            f"expected a dataset name or a path, got {type(name_or_path).__name__}"
        ) from exc
    if isinstance(raw, bytes):
        raw = os.fsdecode(raw)
    p = Path(raw)
    if not p.exists():
        if isinstance(name_or_path, str) and not _looks_like_path(raw):
            try:
                DATASETS.get(raw)
            except ConfigError as exc:
                raise ConfigError(f"{exc} {_PATH_HINT}.") from None
        raise DataError(f"{p}: no such file or folder. {_PATH_HINT}")
    return p


def _load_file(
    p: Path, *, size: int | None, test_fraction: float, seed: int, target: str | None
) -> DatasetBundle:
    """A file, by its suffix (or IDX name)."""
    suffix = p.suffix.lower()
    if target is not None and suffix not in (".csv", ".tsv"):
        raise ConfigError(
            f"a target column (--target, Python: target=) applies to CSV files, not {p}"
        )
    if suffix == ".npz":
        return load_npz(p, size=size, test_fraction=test_fraction, seed=seed)
    if suffix in (".csv", ".tsv"):
        if size is not None:
            raise ConfigError(
                f"an image size (--size, Python: size=) applies to image data; {p} is a CSV table"
            )
        return load_csv(p, target=target, test_fraction=test_fraction, seed=seed)
    if is_idx_name(p.name) or "idx" in p.name.lower():
        return load_idx(p, size=size, test_fraction=test_fraction, seed=seed)
    raise DataError(
        f"{p}: unsupported file type {suffix or '(no suffix)'!r}; expected .npz, .csv, "
        "an IDX images file, or a folder"
    )


def _load_folder(
    p: Path, *, size: int | None, test_fraction: float, seed: int, target: str | None
) -> DatasetBundle:
    """A folder of IDX files, or of one subfolder of images per class."""
    if target is not None:
        raise ConfigError(
            f"a target column (--target, Python: target=) applies to CSV files, not the folder {p}"
        )
    if any(f.is_file() and is_idx_name(f.name) for f in p.iterdir()):
        return load_idx(p, size=size, test_fraction=test_fraction, seed=seed)
    if any(d.is_dir() and not d.name.startswith(".") for d in p.iterdir()):
        return load_image_folder(p, size=size, test_fraction=test_fraction, seed=seed)
    suffixes = ", ".join(IMAGE_SUFFIXES)
    raise DataError(
        f"{p}: folder has neither IDX files nor class subfolders; expected MNIST IDX files "
        f"(train-images-idx3-ubyte, ...) or one subfolder per class holding {suffixes} images"
    )
