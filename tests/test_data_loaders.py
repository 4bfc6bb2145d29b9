"""Loaders for users' data, on small files written here: npz, IDX, CSV, image folders."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from xrobust.data import (
    as_tensors,
    load_csv,
    load_dataset,
    load_idx,
    load_image_folder,
    load_npz,
    read_idx,
)


def _all(ds):
    """Train and test concatenated, sorted by a content key (order-free comparison)."""
    xtr, ytr = as_tensors(ds.train)
    xte, yte = as_tensors(ds.test)
    return torch.cat([xtr, xte]), torch.cat([ytr, yte])


def _json_ok(spec):
    """The spec survives a strict JSON round trip (audit reports store it)."""
    d = json.loads(json.dumps(spec.to_dict(), allow_nan=False))
    assert type(spec).from_dict(d) == spec


def _same_rows(x_got, y_got, x_ref, y_ref):
    """Same multiset of (x, y) pairs, regardless of order."""

    def key(x, y):
        return sorted(zip(y.tolist(), [tuple(r) for r in x.flatten(1).tolist()]))

    assert key(x_got, y_got) == key(torch.as_tensor(x_ref), torch.as_tensor(y_ref))


def _images_u8(n=30, h=6, w=5, c=None, seed=0):
    rng = np.random.default_rng(seed)
    shape = (n, h, w) if c is None else (n, h, w, c)
    return rng.integers(0, 256, shape, dtype=np.uint8), (np.arange(n) % 3).astype(np.int64)


def write_idx(path: Path, arr: np.ndarray, gz: bool = False) -> Path:
    """Write an IDX file by hand (independent of the reader)."""
    codes = {
        np.dtype("u1"): 8,
        np.dtype("i1"): 9,
        np.dtype(">i2"): 11,
        np.dtype(">i4"): 12,
        np.dtype(">f4"): 13,
        np.dtype(">f8"): 14,
    }
    big = arr.astype(arr.dtype.newbyteorder(">")) if arr.dtype.itemsize > 1 else arr
    code = codes[np.dtype(big.dtype)]
    head = bytes([0, 0, code, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    data = head + big.tobytes()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


# ----------------------------------------------------------------------------- npz


def test_npz_images_hw_split(tmp_path):
    x, y = _images_u8()
    f = tmp_path / "toy.npz"
    np.savez(f, x=x, y=y)
    ds = load_npz(f)
    assert ds.spec.modality == "image" and ds.spec.input_shape == (1, 6, 5)
    assert ds.spec.num_classes == 3 and ds.spec.class_names == ("0", "1", "2")
    assert ds.spec.name == "toy" and ds.spec.bounds == (0.0, 1.0)
    _json_ok(ds.spec)
    assert len(ds.test) == 6 and len(ds.train) == 24
    xa, ya = _all(ds)
    _same_rows(xa, ya, x[:, None].astype(np.float32) / 255, y)
    # through load_dataset, same result
    xb, _ = _all(load_dataset(str(f)))
    assert torch.equal(xa, xb)


def test_npz_channels_last_and_given_split(tmp_path):
    x, y = _images_u8(n=12, h=7, w=9, c=3)
    f = tmp_path / "rgb.npz"
    np.savez(
        f,
        x_train=x[:9],
        y_train=y[:9],
        x_test=x[9:],
        y_test=y[9:],
        class_names=np.array(["cat", "dog", "eel"]),
    )
    ds = load_npz(f)
    assert ds.spec.input_shape == (3, 7, 9) and ds.spec.class_names == ("cat", "dog", "eel")
    assert ds.spec.extra["split"] == {"method": "given"}
    _json_ok(ds.spec)
    xt, yt = as_tensors(ds.test)
    ref = torch.from_numpy(x[9:]).permute(0, 3, 1, 2).float() / 255
    assert torch.equal(xt, ref) and yt.tolist() == y[9:].tolist()


def test_npz_nchw_float_and_tabular(tmp_path):
    rng = np.random.default_rng(1)
    x = rng.random((20, 3, 8, 8)).astype(np.float32)
    y = np.arange(20) % 2
    np.savez(tmp_path / "f.npz", x=x, y=y)
    ds = load_npz(tmp_path / "f.npz", size=4)
    assert ds.spec.input_shape == (3, 4, 4)
    xt = rng.normal(size=(40, 5)) * 10
    yt = (np.arange(40) % 4).astype(np.float64)  # integral floats are fine
    np.savez(tmp_path / "t.npz", x=xt, y=yt, feature_names=np.array(list("abcde")))
    ds = load_npz(tmp_path / "t.npz")
    assert ds.spec.modality == "tabular" and ds.spec.feature_names == tuple("abcde")
    xa, ya = _all(ds)
    _same_rows(xa, ya, xt.astype(np.float32), yt.astype(np.int64))  # values kept as given
    lo, hi = ds.spec.bounds
    assert lo == math.floor(xt.min()) and hi == math.ceil(xt.max())
    dz = load_npz(tmp_path / "t.npz", standardize=True)
    torch.testing.assert_close(as_tensors(dz.train)[0].mean(0), torch.zeros(5), atol=1e-5, rtol=0)


# ----------------------------------------------------------------------------- IDX


def test_read_idx_types(tmp_path):
    for arr in (
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-3, 5], dtype=np.int8),
        np.array([[1000, -2000]], dtype=np.int16),
        np.array([70000, -1], dtype=np.int32),
        np.array([0.25, 1.5], dtype=np.float32),
        np.array([1e-300], dtype=np.float64),
    ):
        for gz in (False, True):
            got = read_idx(write_idx(tmp_path / f"a{gz}-idx", arr, gz=gz))
            assert got.shape == arr.shape and np.array_equal(got, arr)
            assert got.dtype.isnative


@pytest.mark.parametrize("gz", [False, True])
def test_idx_folder_train_t10k(tmp_path, gz):
    x, y = _images_u8(n=20, h=4, w=4)
    sfx = ".gz" if gz else ""
    write_idx(tmp_path / f"train-images-idx3-ubyte{sfx}", x[:15], gz)
    write_idx(tmp_path / f"train-labels-idx1-ubyte{sfx}", y[:15].astype(np.uint8), gz)
    write_idx(tmp_path / f"t10k-images-idx3-ubyte{sfx}", x[15:], gz)
    write_idx(tmp_path / f"t10k-labels-idx1-ubyte{sfx}", y[15:].astype(np.uint8), gz)
    ds = load_dataset(tmp_path)
    assert ds.spec.extra["format"] == "idx" and ds.spec.input_shape == (1, 4, 4)
    _json_ok(ds.spec)
    assert len(ds.train) == 15 and len(ds.test) == 5
    xt, yt = as_tensors(ds.test)
    assert torch.equal(xt, torch.from_numpy(x[15:]).float().unsqueeze(1) / 255)
    assert yt.tolist() == y[15:].tolist()


def test_idx_single_pair_and_images_path(tmp_path):
    x, y = _images_u8(n=25, h=5, w=5)
    img = write_idx(tmp_path / "images-idx3-ubyte.gz", x, gz=True)
    write_idx(tmp_path / "labels-idx1-ubyte", y.astype(np.uint8))
    a = load_idx(tmp_path, seed=2)
    b = load_dataset(img, seed=2)
    assert len(a.test) == 5 and len(a.train) == 20
    assert torch.equal(as_tensors(a.test)[0], as_tensors(b.test)[0])
    xa, ya = _all(a)
    _same_rows(xa, ya, x[:, None].astype(np.float32) / 255, y)
    assert load_idx(img, size=10).spec.input_shape == (1, 10, 10)


# ----------------------------------------------------------------------------- CSV


def test_csv_string_labels_and_standardisation(tmp_path):
    rng = np.random.default_rng(0)
    x = rng.normal(5, 3, size=(30, 3))
    labels = np.array(["virginica", "setosa", "versicolor"])[np.arange(30) % 3]
    lines = ["sepal,petal,width,species"] + [
        f"{a!r},{b!r},{c!r},{s}" for (a, b, c), s in zip(x.tolist(), labels)
    ]
    f = tmp_path / "iris.csv"
    f.write_text("\n".join(lines) + "\n")
    ds = load_csv(f, target="species")
    assert ds.spec.class_names == ("setosa", "versicolor", "virginica")
    assert ds.spec.feature_names == ("sepal", "petal", "width")
    assert ds.spec.input_shape == (3,) and ds.spec.modality == "tabular"
    _json_ok(ds.spec)
    xtr, _ = as_tensors(ds.train)
    torch.testing.assert_close(xtr.mean(0), torch.zeros(3), atol=1e-5, rtol=0)
    torch.testing.assert_close(xtr.std(0), torch.ones(3), atol=1e-5, rtol=0)
    # undo the standardisation with the stored raw statistics: the original rows come back
    m, s = np.array(ds.spec.extra["raw_mean"]), np.array(ds.spec.extra["raw_std"])
    xa, ya = _all(ds)
    raw = xa.double().numpy() * s + m
    want = {(round(r[0], 4), labels[i]) for i, r in enumerate(x.tolist())}
    got = {(round(r[0], 4), ds.spec.class_names[c]) for r, c in zip(raw.tolist(), ya.tolist())}
    assert got == want
    lo, hi = ds.spec.bounds
    assert lo <= xa.min() and xa.max() <= hi and lo == math.floor(xa.min())
    ds2 = load_dataset(f, target="species")
    assert torch.equal(as_tensors(ds2.test)[0], as_tensors(ds.test)[0])


def test_csv_default_target_numeric_labels_semicolon(tmp_path):
    rows = ["f1;Label;f2"] + [f"{i};{i % 2};{i * 0.5}" for i in range(20)]
    f = tmp_path / "t.csv"
    f.write_text("\n".join(rows))
    ds = load_csv(f, standardize=False)
    assert ds.spec.extra["target"] == "Label" and ds.spec.feature_names == ("f1", "f2")
    assert ds.spec.class_names == ("0", "1")
    xa, ya = _all(ds)
    assert torch.equal(ya, xa[:, 0].long() % 2)  # label index = original integer label
    torch.testing.assert_close(xa[:, 1], xa[:, 0] * 0.5)
    # integer labels sort numerically: -1 < 2 < 10
    rows = ["a,target"] + [f"{i},{[-1, 2, 10][i % 3]}" for i in range(15)]
    (tmp_path / "n.csv").write_text("\n".join(rows))
    assert load_csv(tmp_path / "n.csv").spec.class_names == ("-1", "2", "10")


# ----------------------------------------------------------------------------- image folder


def _write_folder(root: Path, modes=("L",), size=(6, 4), n=4, fmt="PNG", seed=0):
    rng = np.random.default_rng(seed)
    truth = []
    for c, cls in enumerate(["cat", "dog"]):
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            mode = modes[i % len(modes)]
            shape = (size[1], size[0]) + ((3,) if mode == "RGB" else ())
            a = rng.integers(0, 256, shape, dtype=np.uint8)
            ext = "png" if fmt == "PNG" else "jpg"
            Image.fromarray(a, mode).save(root / cls / f"{i}.{ext}", fmt)
            truth.append((a, c))
    return truth


def test_image_folder_png_grey_exact(tmp_path):
    truth = _write_folder(tmp_path / "pets", modes=("L",), size=(6, 4), n=5)
    ds = load_image_folder(tmp_path / "pets")
    assert ds.spec.class_names == ("cat", "dog") and ds.spec.input_shape == (1, 4, 6)
    assert len(ds.train) + len(ds.test) == 10 and ds.spec.name == "pets"
    _json_ok(ds.spec)
    xa, ya = _all(ds)
    _same_rows(
        xa,
        ya,
        np.stack([a[None] for a, _ in truth]).astype(np.float32) / 255,
        np.array([c for _, c in truth]),
    )
    assert torch.equal(as_tensors(load_dataset(tmp_path / "pets").test)[0], as_tensors(ds.test)[0])


def test_image_folder_mixed_grey_rgb_png_and_jpeg(tmp_path):
    truth = _write_folder(tmp_path / "d", modes=("RGB", "L"), size=(8, 8), n=4)
    _write_folder(tmp_path / "d", modes=("RGB",), size=(8, 8), n=2, fmt="JPEG", seed=1)
    ds = load_image_folder(tmp_path / "d")
    assert ds.spec.input_shape == (3, 8, 8)  # grey promoted to RGB
    xa, ya = _all(ds)
    assert len(xa) == 12 and xa.min() >= 0 and xa.max() <= 1
    # PNGs are exact (grey repeated on 3 channels); find each one among the loaded images
    for a, c in truth:
        ref = torch.from_numpy(a).float() / 255
        ref = ref.unsqueeze(0).repeat(3, 1, 1) if ref.dim() == 2 else ref.permute(2, 0, 1)
        assert any(torch.equal(ref, xa[i]) and ya[i] == c for i in range(len(xa)))
    assert load_image_folder(tmp_path / "d", channels=1).spec.input_shape == (1, 8, 8)


def test_image_folder_resize(tmp_path):
    root = tmp_path / "r"
    _write_folder(root, size=(10, 6), n=3)
    _write_folder(root, size=(7, 7), n=3, seed=2)  # overwrites some files with another size
    Image.fromarray(np.zeros((9, 5), np.uint8)).save(root / "cat" / "extra.png")
    ds = load_image_folder(root, size=(8, 6))
    assert ds.spec.input_shape == (1, 8, 6)
    # a constant image stays constant after resizing
    Image.fromarray(np.full((5, 5), 255, np.uint8)).save(root / "dog" / "white.png")
    xa, _ = _all(load_image_folder(root, size=3))
    assert any(torch.equal(r, torch.ones(1, 3, 3)) for r in xa)
