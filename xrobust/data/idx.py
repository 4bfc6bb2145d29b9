"""Load MNIST-format IDX files (raw or gzipped), parsing the header with NumPy.

IDX layout (http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code
(0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32, 0x0D float32, 0x0E float64), the number
of dimensions, each dimension as a big-endian uint32, then the big-endian data.
"""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path

import numpy as np

from xrobust.data import _base
from xrobust.data._base import SizeArg, _array_bundle, _check_bytes, _existing
from xrobust.data.spec import DatasetBundle
from xrobust.errors import DataError

__all__ = ["is_idx_name", "load_idx", "read_idx"]

_TYPES: dict[int, str] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}
# e.g. train-images-idx3-ubyte, t10k-labels.idx1-ubyte.gz, images-idx3-ubyte
_NAME = re.compile(
    r"^(?:(?P<split>train|t10k|test)[-_.])?.*?(?P<kind>images|labels)[-_.]idx\d[-_.]ubyte(?:\.gz)?$",
    re.I,
)


def is_idx_name(name: str) -> bool:
    """Whether a file name follows the MNIST IDX naming (``*-images-idx3-ubyte[.gz]``)."""
    return _NAME.match(name) is not None


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    """Read one IDX file (gzipped or raw) into a native-endian NumPy array.

    Raises:
        DataError: the file is missing, not IDX, or truncated/corrupt.

    Example:
        >>> import numpy as np, tempfile, os
        >>> f = os.path.join(tempfile.mkdtemp(), "labels-idx1-ubyte")
        >>> _ = open(f, "wb").write(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 1, 2]))
        >>> read_idx(f).tolist()
        [7, 1, 2]
    """
    p = _existing(path, "an IDX file")
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise DataError(f"{p}: cannot be read ({exc})") from exc
    if raw[:2] == b"\x1f\x8b":
        try:
            d = zlib.decompressobj(wbits=31)  # gzip, inflated at most to the data cap
            out = d.decompress(raw, _base.MAX_DATA_BYTES + 1)
            if len(out) > _base.MAX_DATA_BYTES or d.unconsumed_tail:
                _check_bytes(_base.MAX_DATA_BYTES + 1, str(p), "the inflated IDX file")
            if not d.eof:
                raise EOFError("compressed file ended before the end-of-stream marker")
            raw = out
        except (OSError, EOFError, zlib.error) as exc:
            raise DataError(f"{p}: corrupt or truncated gzip data ({exc})") from exc
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(
            f"{p}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'}); "
            "expected bytes 00 00 <type> <ndim>"
        )
    code, ndim = raw[2], raw[3]
    if code not in _TYPES:
        raise DataError(
            f"{p}: unknown IDX type code 0x{code:02X}; expected one of "
            + ", ".join(f"0x{c:02X}" for c in _TYPES)
        )
    if ndim == 0:
        raise DataError(f"{p}: IDX header declares 0 dimensions; expected at least 1")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{p}: truncated IDX header ({len(raw)} bytes, {header} expected)")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_TYPES[code])
    count = int(np.prod(dims, dtype=np.int64))
    expected = count * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        what = "truncated" if got < expected else "has trailing bytes"
        raise DataError(
            f"{p}: {what}: {got} data bytes but the header's shape {dims} of "
            f"{dtype.name} needs {expected}"
        )
    arr = np.frombuffer(raw, dtype, count=count, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def _classify(files: list[Path]) -> dict[tuple[str | None, str], Path]:
    """(split or None, "images"/"labels") -> file; raw files win over their .gz twin."""
    found: dict[tuple[str | None, str], Path] = {}
    for f in sorted(files, key=lambda f: (f.name.lower().endswith(".gz"), f.name)):
        m = _NAME.match(f.name)
        if m is None:
            continue
        split = m.group("split")
        split = None if split is None else ("train" if split.lower() == "train" else "test")
        key = (split, m.group("kind").lower())
        if key in found:
            if found[key].name.lower() + ".gz" == f.name.lower():
                continue  # the .gz twin of a file already taken
            raise DataError(
                f"two candidate {key[1]} files for the {key[0] or 'unnamed'} split: "
                f"{found[key]} and {f}; keep one"
            )
        found[key] = f
    return found


def _labels_for(images: Path) -> Path:
    """The labels file beside an images file: ``images`` -> ``labels``, ``idxN`` -> ``idx1``."""
    n = re.sub(r"idx\d", "idx1", re.sub("images", "labels", images.name, flags=re.I), flags=re.I)
    stem = n[:-3] if n.lower().endswith(".gz") else n
    cands = [images.with_name(stem), images.with_name(stem + ".gz")]
    for c in cands:
        if c.exists():
            return c
    raise DataError(
        f"{images}: no labels file beside it; expected {cands[0].name} or {cands[1].name}"
    )


def load_idx(
    path: str | os.PathLike[str],
    *,
    size: SizeArg = None,
    test_fraction: float = 0.2,
    seed: int = 0,
    name: str | None = None,
) -> DatasetBundle:
    """Load MNIST-format IDX data from a folder or an images file.

    A folder holding ``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte`` and ``t10k-labels-idx1-ubyte`` (each optionally ``.gz``;
    ``test`` is accepted for ``t10k``, ``.`` or ``_`` for ``-``) gives the train and test
    sets as stored. A folder with one images/labels pair, or the path of an images file
    (its labels file is found beside it), is split here (stratified, seeded).

    Images (N, H, W) get one channel; (N, H, W, C) are moved channels-first. uint8 pixels
    are divided by 255; other types must already be in [0, 1].

    Args:
        path: the folder or the images file.
        size: resize images to this side (or (H, W)), bilinear; None keeps them.
        test_fraction: test share when only one pair is given.
        seed: seed of that split.
        name: the spec's name (the folder or file name by default).

    Raises:
        DataError: missing, corrupt or truncated files, or images and labels that differ
            in count.

    Example:
        >>> from xrobust.data import load_idx
        >>> ds = load_idx("mnist/")  # doctest: +SKIP
        >>> ds.spec.input_shape  # doctest: +SKIP
        (1, 28, 28)
    """
    p = _existing(path, "an IDX folder or images file")
    if p.is_dir():
        files = _folder_files(p)
    else:
        m = _NAME.match(p.name)
        if m is not None and m.group("kind").lower() == "labels":
            raise DataError(f"{p}: is a labels file; pass the images file or the folder")
        files = [p, _labels_for(p)]
    arrays = [read_idx(f) for f in files]
    xs, ys = arrays[0::2], arrays[1::2]
    for fi, fl, x, y in zip(files[0::2], files[1::2], xs, ys):
        if len(x) != len(y):
            raise DataError(
                f"{fi} holds {len(x)} images but {fl} holds {len(y)} labels; "
                "expected one label per image"
            )
        if x.ndim not in (3, 4):
            raise DataError(f"{fi}: IDX images must have 3 or 4 dimensions, got shape {x.shape}")
    return _array_bundle(
        name=name or (p.name if p.is_dir() else p.parent.name or p.stem),
        source=str(p),
        xs=xs,
        ys=ys,
        test_fraction=test_fraction,
        seed=seed,
        size=size,
        extra={"format": "idx", "files": [str(f) for f in files]},
    )


def _folder_files(p: Path) -> list[Path]:
    """A folder's IDX files in the order images, labels (train pair, then test pair)."""
    found = _classify([f for f in p.iterdir() if f.is_file()])
    pairs = {s for s, _ in found}
    if ("train", "images") in found and ("test", "images") in found:
        needed = [
            ("train", "images"),
            ("train", "labels"),
            ("test", "images"),
            ("test", "labels"),
        ]
    elif len(found) == 2 and len(pairs) == 1:
        (s,) = pairs
        needed = [(s, "images"), (s, "labels")]
    else:
        listed = ", ".join(sorted(f.name for f in found.values())) or "none"
        raise DataError(
            f"{p}: IDX files found: {listed}; expected train-images-idx3-ubyte, "
            "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
            "(optionally .gz), or a single images/labels pair"
        )
    missing = [f"{s or ''} {k}".strip() for s, k in needed if (s, k) not in found]
    if missing:
        raise DataError(f"{p}: missing IDX file(s) for: {', '.join(missing)}")
    return [found[k] for k in needed]
