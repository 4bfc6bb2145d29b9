"""Load a user's CSV table: one row per sample, a header, a named target column."""

from __future__ import annotations

import csv
import math
import os

import numpy as np

from xrobust.data._base import _array_bundle, _existing
from xrobust.data.spec import DatasetBundle
from xrobust.errors import DataError

__all__ = ["load_csv"]

#: Target columns looked for, in order, when ``target`` is not given.
DEFAULT_TARGETS = ("target", "label")


def _labels_from_strings(
    values: list[str], source: str, column: str
) -> tuple[np.ndarray, list[str]]:
    """Map target values to class indices 0..C-1 in sorted order.

    All-integer values (``"3"``, ``"-1"``, ``"2.0"``) sort numerically and are named by
    their integer; anything else sorts as text.
    """
    ints: list[int] | None = []
    for v in values:
        try:
            f = float(v)
        except ValueError:
            ints = None
            break
        if not math.isfinite(f) or f != int(f):
            ints = None
            break
        ints.append(int(f))
    if ints is not None:
        uniq = sorted(set(ints))
        index = {c: i for i, c in enumerate(uniq)}
        return np.array([index[v] for v in ints], dtype=np.int64), [str(c) for c in uniq]
    uniq_s = sorted(set(values))
    index_s = {c: i for i, c in enumerate(uniq_s)}
    return np.array([index_s[v] for v in values], dtype=np.int64), uniq_s


def load_csv(
    path: str | os.PathLike[str],
    *,
    target: str | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    standardize: bool = True,
    name: str | None = None,
) -> DatasetBundle:
    """Load a tabular dataset from a CSV file with a header row.

    The target column is ``target`` when given, else the first of the columns named
    ``"target"`` or ``"label"`` (case-insensitive); there is no guessing beyond that (a
    wrong guess would train on the label). Every other column is a numeric feature, named
    by its header. Class names are the sorted distinct target values (numerically sorted
    when they are all integers, so labels 0..C-1 keep their index). The delimiter
    (``,``, ``;``, tab or ``|``) is detected.

    Features are standardised with the train split's mean and standard deviation, as the
    ``breast_cancer`` built-in is (raw statistics in ``spec.extra``), unless
    ``standardize=False``; ``spec.bounds`` is the (floor(min), ceil(max)) of the values.

    Args:
        path: the CSV file.
        target: name of the label column.
        test_fraction: share of rows in the test set.
        seed: seed of the stratified split.
        standardize: standardise features with train statistics.
        name: the spec's name (the file stem by default).

    Raises:
        DataError: missing file or target column, ragged rows, empty or non-numeric
            cells, NaN/Inf, fewer than 2 classes.

    Example:
        >>> import tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "toy.csv")
        >>> rows = ["a,b,label"] + [f"{i},{i % 3},{'yes' if i % 2 else 'no'}" for i in range(10)]
        >>> _ = open(f, "w").write("\\n".join(rows))
        >>> ds = load_csv(f)
        >>> ds.spec.feature_names, ds.spec.class_names
        (('a', 'b'), ('no', 'yes'))
    """
    p = _existing(path, "a CSV file")
    source = str(p)
    if p.is_dir():
        raise DataError(f"{source}: is a folder; expected a CSV file")
    try:
        with open(p, newline="", encoding="utf-8-sig") as fh:
            sample = fh.read(64 * 1024)
            fh.seek(0)
            try:
                dialect: type[csv.Dialect] | csv.Dialect = csv.Sniffer().sniff(
                    sample, delimiters=",;\t|"
                )
            except csv.Error:
                dialect = csv.excel
            rows = [r for r in csv.reader(fh, dialect) if any(c.strip() for c in r)]
    except UnicodeDecodeError as exc:
        raise DataError(f"{source}: not UTF-8 text ({exc}); expected a CSV file") from exc
    except (OSError, csv.Error) as exc:
        raise DataError(f"{source}: cannot be read as CSV ({exc})") from exc
    if not rows:
        raise DataError(f"{source}: the file is empty; expected a header row and data rows")
    header = [h.strip() for h in rows[0]]
    data = rows[1:]
    if not data:
        raise DataError(f"{source}: has a header but no data rows")
    if len(set(header)) != len(header):
        dup = sorted({h for h in header if header.count(h) > 1})
        raise DataError(f"{source}: duplicate column name(s) {dup}; expected unique names")
    if target is None:
        lower = [h.lower() for h in header]
        col = next((lower.index(t) for t in DEFAULT_TARGETS if t in lower), None)
        if col is None:
            raise DataError(
                f"{source}: no 'target' or 'label' column among {header}; pass target=<column name>"
            )
    else:
        if target not in header:
            raise DataError(f"{source}: no column named {target!r}; columns are {header}")
        col = header.index(target)
    if len(header) < 2:
        raise DataError(f"{source}: only the target column; expected at least one feature")
    for i, r in enumerate(data):
        if len(r) != len(header):
            raise DataError(
                f"{source}: data row {i + 1} (line {i + 2}) has {len(r)} fields; "
                f"the header has {len(header)}"
            )
    feat_cols = [j for j in range(len(header)) if j != col]
    x = np.empty((len(data), len(feat_cols)), dtype=np.float64)
    for k, j in enumerate(feat_cols):
        for i, r in enumerate(data):
            cell = r[j].strip()
            try:
                v = float(cell)
            except ValueError:
                what = "an empty cell" if not cell else f"non-numeric value {cell!r}"
                raise DataError(
                    f"{source}: feature column {header[j]!r} has {what} in data row {i + 1} "
                    f"(line {i + 2}); expected numbers in every feature column "
                    "(encode categories as numbers first)"
                ) from None
            if not math.isfinite(v):
                raise DataError(
                    f"{source}: feature column {header[j]!r} has {cell!r} in data row {i + 1} "
                    f"(line {i + 2}); expected finite numbers"
                )
            x[i, k] = v
    raw_labels = [r[col].strip() for r in data]
    if any(not v for v in raw_labels):
        i = next(i for i, v in enumerate(raw_labels) if not v)
        raise DataError(f"{source}: empty target in data row {i + 1} (line {i + 2})")
    y, class_names = _labels_from_strings(raw_labels, source, header[col])
    if len(class_names) < 2:
        raise DataError(
            f"{source}: target column {header[col]!r} has a single value "
            f"{class_names[0]!r}; expected at least 2 classes"
        )
    return _array_bundle(
        name=name or p.stem,
        source=source,
        xs=[x],
        ys=[y],
        test_fraction=test_fraction,
        seed=seed,
        class_names=class_names,
        feature_names=[header[j] for j in feat_cols],
        standardize=standardize,
        extra={"format": "csv", "target": header[col]},
    )
