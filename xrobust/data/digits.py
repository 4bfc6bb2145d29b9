"""``digits``: scikit-learn's bundled 8x8 handwritten digits (no download).

1,797 grey-scale images of the digits 0-9 (UCI "Optical Recognition of Handwritten
Digits"), values 0..16 scaled to [0, 1], served at 1x28x28 by default (bilinear resize,
clamped to [0, 1]) so that MNIST-sized models fit, or at their native 1x8x8 with ``size=8``.
"""

from __future__ import annotations

import numpy as np

from xrobust.data._base import (
    DATASETS,
    SizeArg,
    _bundle,
    _check_size,
    _check_split_args,
    _resize,
    _split_info,
    stratified_split,
)
from xrobust.data.spec import DatasetBundle, DatasetSpec

__all__ = ["load_digits"]


@DATASETS.register("digits")
def load_digits(*, size: SizeArg = 28, test_fraction: float = 0.2, seed: int = 0) -> DatasetBundle:
    """Load the digits images with a seeded, stratified train/test split.

    Args:
        size: side of the served images (>= 8; 28 by default, 8 for the native images), or
            an (height, width) pair. None means the default 28.
        test_fraction: share of images in the test set.
        seed: seed of the split.

    Returns:
        A bundle of 1x{size}x{size} float32 images in [0, 1], labels 0..9, class names
        "0".."9", bounds (0, 1).

    Example:
        >>> from xrobust.data import load_digits
        >>> ds = load_digits(size=8)
        >>> ds.spec.input_shape, len(ds.train) + len(ds.test)
        ((1, 8, 8), 1797)
    """
    hw = _check_size(28 if size is None else size, minimum=8)
    _check_split_args(test_fraction, seed)
    from sklearn.datasets import load_digits as _sk_digits

    d = _sk_digits()
    x = (np.asarray(d.images, dtype=np.float32) / 16.0)[:, None]
    y = np.asarray(d.target, dtype=np.int64)
    x = _resize(x, hw)
    tr, te = stratified_split(y, test_fraction, seed)
    spec = DatasetSpec(
        name="digits",
        modality="image",
        input_shape=tuple(int(s) for s in x.shape[1:]),
        num_classes=10,
        class_names=tuple(str(i) for i in range(10)),
        bounds=(0.0, 1.0),
        extra={
            "source": "sklearn.datasets.load_digits",
            **_split_info(test_fraction, seed, len(tr), len(te)),
        },
    )
    return _bundle(x, y, tr, te, spec)
