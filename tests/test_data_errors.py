"""Bad input: every case is a DataError (or ConfigError) naming the file and the problem."""

from __future__ import annotations

import gzip
import warnings

import numpy as np
import pytest
from PIL import Image

from xrobust.data import as_tensors, load_csv, load_dataset, load_idx, load_image_folder, load_npz
from xrobust.errors import ConfigError, DataError


def _idx(path, arr, code=8, gz=False):
    head = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = (
        head
        + arr.astype(">" + arr.dtype.str[1:] if arr.dtype.itemsize > 1 else arr.dtype).tobytes()
    )
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


def _err(exc_type, fn, *args, match, **kw):
    with pytest.raises(exc_type) as ei:
        fn(*args, **kw)
    for m in [match] if isinstance(match, str) else match:
        assert m.lower() in str(ei.value).lower(), str(ei.value)
    return str(ei.value)


# ----------------------------------------------------------------------------- npz


def test_npz_missing_file(tmp_path):
    _err(DataError, load_npz, tmp_path / "none.npz", match=["none.npz", "no such file"])


@pytest.mark.parametrize(
    "arrays, match",
    [
        ({"x": np.zeros((4, 3)), "y": np.zeros(3, int)}, ["4 inputs but 3 labels"]),
        ({"x": np.full((4, 2), np.nan), "y": np.arange(4) % 2}, ["nan or inf", "row 0"]),
        ({"x": np.array([[0.0], [np.inf], [1], [2]]), "y": np.arange(4) % 2}, ["nan or inf"]),
        ({"x": np.zeros((4, 2)), "y": np.array([0, 1, -1, 0])}, ["negative"]),
        ({"x": np.zeros((4, 2)), "y": np.array([0, 1, 0.5, 0])}, ["integer", "0.5"]),
        ({"x": np.zeros((4, 2)), "y": np.array([1, 2, 3, 1])}, ["[0]", "1-based"]),
        ({"x": np.zeros((4, 2)), "y": np.eye(4, 2)}, ["one-hot"]),
        ({"x": np.zeros((4, 2)), "y": np.array(["a", "b", "a", "b"])}, ["integer"]),
        ({"x": np.zeros((0, 2)), "y": np.zeros(0, int)}, ["empty"]),
        ({"x": np.zeros((4, 2)), "y": np.zeros(4, int)}, ["one class"]),
        ({"x": np.full((4, 5, 5), 3.0), "y": np.arange(4) % 2}, ["[0, 1]", "255"]),
        ({"x": np.zeros((4, 5, 5, 7)), "y": np.arange(4) % 2}, ["channel"]),
        ({"x": np.zeros(4), "y": np.arange(4) % 2}, ["shape"]),
        (
            {"x": np.zeros((4, 2)), "y": np.arange(4) % 2, "class_names": np.array(["a"])},
            ["class_names"],
        ),
        (
            {"x": np.zeros((4, 2)), "y": np.arange(4) % 3, "class_names": np.array(["a", "b"])},
            ["label 2", "outside 0..1"],
        ),
        ({"images": np.zeros((4, 2)), "labels": np.arange(4) % 2}, ["'x' and 'y'"]),
        ({"x_train": np.zeros((4, 2)), "y_train": np.arange(4) % 2}, ["missing key"]),
        (
            {
                "x_train": np.zeros((4, 2)),
                "y_train": np.arange(4) % 2,
                "x_test": np.zeros((4, 3)),
                "y_test": np.arange(4) % 2,
            },
            ["same shape"],
        ),
    ],
)
def test_npz_bad_content(tmp_path, arrays, match):
    f = tmp_path / "bad.npz"
    np.savez(f, **arrays)
    _err(DataError, load_npz, f, match=[str(f), *match])


def test_npz_pickled_and_corrupt(tmp_path):
    f = tmp_path / "obj.npz"
    np.savez(f, x=np.array([{"a": 1}, None], dtype=object), y=np.array([0, 1]))
    _err(DataError, load_npz, f, match=["obj.npz", "python objects"])
    g = tmp_path / "junk.npz"
    g.write_bytes(b"this is not a zip archive at all")
    _err(DataError, load_npz, g, match=["junk.npz", "not an .npz (zip) archive"])
    z = tmp_path / "cut.npz"
    np.savez(z, x=np.zeros((4, 2)), y=np.arange(4) % 2)
    z.write_bytes(z.read_bytes()[:100])
    _err(DataError, load_npz, z, match=["cut.npz", "corrupt"])
    h = tmp_path / "arr.npz"
    with open(h, "wb") as fh:
        np.save(fh, np.zeros(3))
    _err(DataError, load_npz, h, match=".npy")


# ----------------------------------------------------------------------------- IDX


def test_idx_corrupt_and_truncated(tmp_path):
    x = np.zeros((3, 4, 4), np.uint8)
    good = _idx(tmp_path / "images-idx3-ubyte", x).read_bytes()
    _idx(tmp_path / "labels-idx1-ubyte", np.array([0, 1, 0], np.uint8))
    (tmp_path / "images-idx3-ubyte").write_bytes(good[:-5])
    _err(DataError, load_idx, tmp_path, match=["images-idx3-ubyte", "truncated", "43 data bytes"])
    (tmp_path / "images-idx3-ubyte").write_bytes(good + b"xx")
    _err(DataError, load_idx, tmp_path, match="trailing bytes")
    (tmp_path / "images-idx3-ubyte").write_bytes(b"\x08\x03" + good[2:])
    _err(DataError, load_idx, tmp_path, match="magic")
    (tmp_path / "images-idx3-ubyte").write_bytes(good[:2] + b"\x07" + good[3:])
    _err(DataError, load_idx, tmp_path, match="type code 0x07")
    (tmp_path / "images-idx3-ubyte").write_bytes(good[:9])
    _err(DataError, load_idx, tmp_path, match="truncated IDX header")
    (tmp_path / "images-idx3-ubyte").unlink()
    (tmp_path / "images-idx3-ubyte.gz").write_bytes(gzip.compress(good)[:-12])
    _err(DataError, load_idx, tmp_path, match=["images-idx3-ubyte.gz", "gzip"])


def test_idx_mismatch_and_missing(tmp_path):
    _idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 4, 4), np.uint8))
    _idx(tmp_path / "train-labels-idx1-ubyte", np.array([0, 1], np.uint8))
    _err(DataError, load_idx, tmp_path, match=["3 images", "2 labels"])
    _idx(tmp_path / "t10k-images-idx3-ubyte", np.zeros((3, 4, 4), np.uint8))
    _err(DataError, load_idx, tmp_path, match=["missing", "test labels"])
    lone = tmp_path / "solo"
    lone.mkdir()
    img = _idx(lone / "images-idx3-ubyte", np.zeros((3, 4, 4), np.uint8))
    _err(DataError, load_idx, img, match=["no labels file", "labels-idx1-ubyte"])
    _err(DataError, load_idx, tmp_path / "train-labels-idx1-ubyte", match="labels file")


# ----------------------------------------------------------------------------- CSV


@pytest.mark.parametrize(
    "text, kw, match",
    [
        ("a,b\n1,2\n3,4\n", {}, ["no 'target' or 'label' column", "target="]),
        ("a,b\n1,0\n3,1\n", {"target": "y"}, ["no column named 'y'"]),
        ("a,label\n1,0\nx,1\n", {}, ["'a'", "non-numeric", "'x'", "line 3"]),
        ("a,label\n1,0\n,1\n", {}, ["empty cell", "line 3"]),
        ("a,label\n1,0\nnan,1\n", {}, ["'nan'", "finite"]),
        ("a,label\n1,0\n2,1,3\n", {}, ["3 fields", "header has 2"]),
        ("a,label\n1,0\n2,0\n", {}, ["single value"]),
        ("a,label\n1,0\n2,\n", {}, ["empty target"]),
        ("", {}, ["empty"]),
        ("a,label\n", {}, ["no data rows"]),
        ("a,a,label\n1,2,0\n", {}, ["duplicate"]),
        ("label\n0\n1\n", {}, ["at least one feature"]),
    ],
)
def test_csv_bad(tmp_path, text, kw, match):
    f = tmp_path / "bad.csv"
    f.write_text(text)
    _err(DataError, load_csv, f, match=["bad.csv", *match], **kw)


def test_csv_not_utf8(tmp_path):
    f = tmp_path / "latin.csv"
    f.write_bytes("a,label\n1,caf\xe9\n".encode("latin-1"))
    _err(DataError, load_csv, f, match="utf-8")


# ----------------------------------------------------------------------------- image folder


def _png(path, shape=(4, 4), mode="L"):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.zeros(shape, np.uint8), mode).save(path)


def test_image_folder_bad(tmp_path):
    root = tmp_path / "imgs"
    root.mkdir()
    _err(DataError, load_image_folder, root, match=["imgs", "no subfolders"])
    _png(root / "a" / "1.png")
    (root / "b").mkdir()
    (root / "b" / "notes.txt").write_text("hi")
    _err(DataError, load_image_folder, root, match=["b", "no images"])
    _png(root / "b" / "1.png", shape=(5, 4))
    _png(root / "b" / "2.png")
    with pytest.warns(UserWarning, match="skipped 1 non-image file"):
        _err(DataError, load_image_folder, root, match=["differ in size", "1.png", "size="])
    (root / "b" / "notes.txt").unlink()
    _png(root / "b" / "1.png")
    (root / "b" / "3.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    _err(DataError, load_image_folder, root, match=["3.jpg", "unreadable"])
    (root / "b" / "3.jpg").unlink()
    good = root / "b" / "2.png"
    good.write_bytes(good.read_bytes()[:40])  # truncated PNG
    _err(DataError, load_image_folder, root, match=["2.png", "unreadable"])
    _err(ConfigError, load_image_folder, root, channels=2, match="channels")


# ----------------------------------------------------------------------------- dispatch


def test_dispatch_errors(tmp_path):
    f = tmp_path / "data.parquet"
    f.write_bytes(b"PAR1")
    _err(DataError, load_dataset, f, match=["unsupported", ".parquet"])
    empty = tmp_path / "empty"
    empty.mkdir()
    _err(DataError, load_dataset, empty, match=["neither IDX files nor class subfolders"])
    np.savez(tmp_path / "t.npz", x=np.zeros((4, 2)), y=np.arange(4) % 2)
    _err(ConfigError, load_dataset, tmp_path / "t.npz", target="y", match="target=")
    _err(ConfigError, load_dataset, tmp_path / "t.npz", size=8, match="tabular")
    _err(ConfigError, load_dataset, 3.5, match="name or a path")


def test_no_warnings_on_clean_builtin():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        x, y = as_tensors(load_dataset("blobs").test)
    assert len(x) == len(y) == 60
