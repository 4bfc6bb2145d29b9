"""Load a user's CSV table: one row per sample, a header, a named target column."""

from __future__ import annotations

import csv
import logging
import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from xrobust.data._base import _array_bundle, _check_bytes, _existing
from xrobust.data.spec import DatasetBundle, DatasetSpec, valid_standardisation
from xrobust.errors import DataError

__all__ = ["load_csv"]

log = logging.getLogger(__name__)

#: Target columns looked for, in order, when ``target`` is not given.
DEFAULT_TARGETS = ("target", "label")


def _integer_labels(values: list[str]) -> list[int] | None:
    """The values as integers when all are ("3", "-1", "2.0"), else None."""
    ints: list[int] = []
    for v in values:
        try:
            f = float(v)
        except ValueError:
            return None
        if not math.isfinite(f) or f != int(f):
            return None
        ints.append(int(f))
    return ints


def _labels_from_strings(
    values: list[str], source: str, column: str
) -> tuple[np.ndarray, list[str]]:
    """Map target values to class indices 0..C-1 in sorted order.

    All-integer values (``"3"``, ``"-1"``, ``"2.0"``) sort numerically and are named by
    their integer; anything else sorts as text.
    """
    ints = _integer_labels(values)
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
    schema: DatasetSpec | None = None,
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

    With ``schema`` (the spec of a model trained on a CSV, as stored in its checkpoint)
    the file is read *for that model*: its feature columns must be exactly the model's
    (by name; columns in another order are re-mapped to the model's order, with a logged
    warning), the features are standardised with the model's stored training statistics
    (not this file's), and target values map to the model's class names (an unknown label
    is an error). The target column defaults to the one the model was trained with.

    Args:
        path: the CSV file.
        target: name of the label column.
        test_fraction: share of rows in the test set.
        seed: seed of the stratified split.
        standardize: standardise features with train statistics.
        name: the spec's name (the file stem by default).
        schema: read the file as input to the model with this spec (see above).

    Raises:
        DataError: missing file or target column, ragged rows, empty or non-numeric
            cells, NaN/Inf, fewer than 2 classes; with ``schema``: missing, extra or
            renamed columns, or labels the model does not know.

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
    header, data = _read_table(p, source)
    col = _target_column(header, target, schema, source)
    _check_row_lengths(data, len(header), source)
    feat_cols = [j for j in range(len(header)) if j != col]
    if schema is not None:
        feat_cols = _schema_columns(header, feat_cols, schema, source)
    x = _feature_matrix(data, header, feat_cols, source)
    raw_labels = _target_values(data, col, source)
    table = _Table(p, source, header, col, feat_cols, x, raw_labels)
    if schema is not None:
        return _with_schema(table, schema, name, test_fraction, seed)
    return _own_bundle(table, name, test_fraction, seed, standardize)


@dataclass
class _Table:
    """A parsed CSV file: where it is from, its header, label column, feature columns
    (in the order served), feature values and label cells."""

    path: Any
    source: str
    header: list[str]
    col: int
    feat_cols: list[int]
    x: np.ndarray
    raw_labels: list[str]

    def bundle(
        self,
        y: np.ndarray,
        class_names: Any,
        name: str | None,
        test_fraction: float,
        seed: int,
        **options: Any,
    ) -> DatasetBundle:
        """The bundle of these features with labels ``y`` (``options`` for _array_bundle)."""
        return _array_bundle(
            name=name or self.path.stem,
            source=self.source,
            xs=[self.x],
            ys=[y],
            test_fraction=test_fraction,
            seed=seed,
            class_names=class_names,
            feature_names=[self.header[j] for j in self.feat_cols],
            **options,
        )


def _own_bundle(
    t: _Table, name: str | None, test_fraction: float, seed: int, standardize: bool
) -> DatasetBundle:
    """Build the bundle with the file's own classes and (if asked) standardisation."""
    target = t.header[t.col]
    y, class_names = _labels_from_strings(t.raw_labels, t.source, target)
    if len(class_names) < 2:
        raise DataError(
            f"{t.source}: target column {target!r} has a single value "
            f"{class_names[0]!r}; expected at least 2 classes"
        )
    extra = {"format": "csv", "target": target}
    return t.bundle(y, class_names, name, test_fraction, seed, standardize=standardize, extra=extra)


def _read_table(p: Any, source: str) -> tuple[list[str], list[list[str]]]:
    """The header (stripped names) and the non-blank data rows of the file."""
    if p.is_dir():
        raise DataError(f"{source}: is a folder; expected a CSV file")
    _check_bytes(8 * p.stat().st_size, source, "the parsed CSV table (about 8x the file)")
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
    return header, data


def _target_column(
    header: list[str], target: str | None, schema: DatasetSpec | None, source: str
) -> int:
    """Index of the label column: ``target``, the model's, or "target"/"label"."""
    if target is None and schema is not None:
        target = schema.extra.get("target") if isinstance(schema.extra.get("target"), str) else None
    if target is None:
        lower = [h.lower() for h in header]
        col = next((lower.index(t) for t in DEFAULT_TARGETS if t in lower), None)
        if col is None:
            raise DataError(
                f"{source}: no 'target' or 'label' column among {header}; name the label "
                "column with --target COLUMN (Python: target=COLUMN)"
            )
    else:
        if target not in header:
            raise DataError(f"{source}: no column named {target!r}; columns are {header}")
        col = header.index(target)
    if len(header) < 2:
        raise DataError(f"{source}: only the target column; expected at least one feature")
    return col


def _check_row_lengths(data: list[list[str]], width: int, source: str) -> None:
    for i, r in enumerate(data):
        if len(r) != width:
            raise DataError(
                f"{source}: data row {i + 1} (line {i + 2}) has {len(r)} fields; "
                f"the header has {width}"
            )


def _feature_matrix(
    data: list[list[str]], header: list[str], feat_cols: list[int], source: str
) -> np.ndarray:
    """The feature columns as float64 (N, F): every cell a finite number."""
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
    return x


def _target_values(data: list[list[str]], col: int, source: str) -> list[str]:
    """The label cells (stripped); none may be empty."""
    raw_labels = [r[col].strip() for r in data]
    if any(not v for v in raw_labels):
        i = next(i for i, v in enumerate(raw_labels) if not v)
        raise DataError(f"{source}: empty target in data row {i + 1} (line {i + 2})")
    return raw_labels


def _default_names(names: tuple[str, ...]) -> bool:
    return names == tuple(f"x{i}" for i in range(len(names)))


def _schema_columns(
    header: list[str], feat_cols: list[int], schema: DatasetSpec, source: str
) -> list[int]:
    """The file's column indices in the model's feature order (or a DataError)."""
    want = tuple(schema.feature_names or ())
    have = [header[j] for j in feat_cols]
    if schema.modality != "tabular" or not want:
        raise DataError(f"{source}: the model takes {schema.modality} inputs, not a CSV table")
    if _default_names(want) and have != list(want):
        # the model was trained on unnamed features (an .npz): match by position
        if len(have) != len(want):
            raise DataError(
                f"{source}: {len(have)} feature columns; the model takes {len(want)} features"
            )
        log.warning(
            "%s: the model's %d features are unnamed; using the file's columns by position",
            source,
            len(want),
        )
        return feat_cols
    missing = [f for f in want if f not in have]
    unexpected = [f for f in have if f not in want]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing column(s) {missing}")
        if unexpected:
            parts.append(f"unexpected column(s) {unexpected}")
        hint = " (renamed columns? give them the model's names)" if missing and unexpected else ""
        raise DataError(
            f"{source}: the columns do not match the model's input schema: {'; '.join(parts)}"
            f"{hint}. The model takes the features {list(want)} and target "
            f"{schema.extra.get('target', '?')!r}"
        )
    if have != list(want):
        moved = [f for i, f in enumerate(want) if have[i] != f]
        log.warning(
            "%s: feature columns are in another order than the model's; re-mapped by name to "
            "the model's order (%d of %d columns moved: %s)",
            source,
            len(moved),
            len(want),
            ", ".join(moved[:8]) + (", ..." if len(moved) > 8 else ""),
        )
    return [header.index(f) for f in want]


def _with_schema(
    t: _Table, schema: DatasetSpec, name: str | None, test_fraction: float, seed: int
) -> DatasetBundle:
    """Build the bundle with the model's standardisation and class names."""
    ints = _integer_labels(t.raw_labels)
    keys = [str(i) for i in ints] if ints is not None else t.raw_labels
    index = {c: i for i, c in enumerate(schema.class_names)}
    unknown = sorted({k for k in keys if k not in index})
    if unknown:
        raise DataError(
            f"{t.source}: target column {t.header[t.col]!r} has label(s) {unknown[:5]}"
            f"{' ...' if len(unknown) > 5 else ''} that the model does not know; its classes "
            f"are {list(schema.class_names)}"
        )
    y = np.array([index[k] for k in keys], dtype=np.int64)
    stats = None
    if schema.extra.get("standardized"):
        mean, std = schema.extra.get("raw_mean"), schema.extra.get("raw_std")
        nf = t.x.shape[1]
        if not valid_standardisation(schema.extra, nf):
            raise DataError(
                f"the model's stored standardisation (raw_mean/raw_std) does not fit its "
                f"{nf} features; cannot read {t.source} for it"
            )
        stats = (mean, std)
    extra = {"format": "csv", "target": t.header[t.col], "schema": "model"}
    return t.bundle(
        y,
        schema.class_names,
        name,
        test_fraction,
        seed,
        standardize=False,
        stats=stats,
        extra=extra,
    )
