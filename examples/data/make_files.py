"""Write the small data files the README's Tour reads, from data scikit-learn ships.

    python examples/data/make_files.py [FOLDER]     # default: this script's folder

They are committed (about 60 KB in all), so a reader never runs this; the test suite runs it
into a temporary folder and checks that the shipped files hold exactly what it writes.

- ``digits.npz``: 300 of the built-in 8x8 digits, ``x`` (300, 8, 8) float32 in [0, 1] and
  ``y`` int64, for the ``.npz`` loader (split by the loader);
- ``iris.csv``: Fisher's iris table (150 rows, four measurements in cm, target ``species``
  by name), for the CSV loader and ``xrobust train --data ... --target species``;
- ``digits_idx/``: the same digits as MNIST IDX files (``train-`` and ``t10k-images-idx3-ubyte.gz``
  and their labels: 240 and 60 images);
- ``images/``: an image folder, one subfolder per class (``zero``, ``one``: 50 grey 8x8 PNG
  digits each).
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits, load_iris

N_DIGITS = 300
N_IDX_TRAIN = 240
N_PER_FOLDER = 50


def _digits(n: int | None = N_DIGITS) -> tuple[np.ndarray, np.ndarray]:
    d = load_digits()
    x = (d.images[:n] / 16.0).astype(np.float32)
    return x, d.target[:n].astype(np.int64)


def write_npz(folder: Path) -> None:
    x, y = _digits()
    np.savez_compressed(folder / "digits.npz", x=x, y=y)


def write_csv(folder: Path) -> None:
    iris = load_iris()
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    rows = [",".join([*names, "species"])]
    for feats, k in zip(iris.data, iris.target):
        rows.append(",".join(f"{v:.1f}" for v in feats) + f",{iris.target_names[k]}")
    (folder / "iris.csv").write_text("\n".join(rows) + "\n")


def _idx(array: np.ndarray) -> bytes:
    """An IDX file: two zero bytes, type 0x08 (unsigned byte), the rank, big-endian dims."""
    head = bytes([0, 0, 0x08, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return gzip.compress(head + array.astype(np.uint8).tobytes(), mtime=0)


def write_idx(folder: Path) -> None:
    x, y = _digits()
    pixels = np.rint(x * 255).astype(np.uint8)
    out = folder / "digits_idx"
    out.mkdir(exist_ok=True)
    for split, part in (("train", slice(0, N_IDX_TRAIN)), ("t10k", slice(N_IDX_TRAIN, None))):
        (out / f"{split}-images-idx3-ubyte.gz").write_bytes(_idx(pixels[part]))
        (out / f"{split}-labels-idx1-ubyte.gz").write_bytes(_idx(y[part]))


def write_images(folder: Path) -> None:
    x, y = _digits(None)
    for label, name in ((0, "zero"), (1, "one")):
        sub = folder / "images" / name
        sub.mkdir(parents=True, exist_ok=True)
        for i, k in enumerate(np.flatnonzero(y == label)[:N_PER_FOLDER]):
            grey = np.rint(x[k] * 255).astype(np.uint8)
            Image.fromarray(grey, mode="L").save(sub / f"{i:02d}.png")


def write_all(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    write_npz(folder)
    write_csv(folder)
    write_idx(folder)
    write_images(folder)


if __name__ == "__main__":
    write_all(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent)
