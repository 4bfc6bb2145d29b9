"""``breast_cancer``: scikit-learn's bundled Wisconsin diagnostic breast-cancer table.

569 samples, 30 named real-valued features, 2 classes ("malignant" = 0, "benign" = 1).
Features are standardised with the train split's mean and (unbiased) standard deviation,
so an attack's ``eps`` is in z-score units; the raw statistics are kept in
``spec.extra["raw_mean"]`` / ``spec.extra["raw_std"]``.
"""

from __future__ import annotations

import numpy as np

from xrobust.data._base import (
    DATASETS,
    _bundle,
    _check_split_args,
    _split_info,
    _standardize,
    _tabular_bounds,
    stratified_split,
)
from xrobust.data.spec import DatasetBundle, DatasetSpec
from xrobust.errors import ConfigError

__all__ = ["load_breast_cancer"]


@DATASETS.register("breast_cancer")
def load_breast_cancer(
    *, size: None = None, test_fraction: float = 0.2, seed: int = 0
) -> DatasetBundle:
    """Load the breast-cancer table, standardised with train statistics.

    Args:
        size: must be None (tabular data has no image size).
        test_fraction: share of samples in the test set.
        seed: seed of the split.

    Returns:
        A tabular bundle: inputs of shape (30,), 2 classes, ``spec.bounds`` the
        (floor(min), ceil(max)) of the standardised values over the whole table.

    Example:
        >>> from xrobust.data import load_breast_cancer
        >>> ds = load_breast_cancer()
        >>> ds.spec.input_shape, ds.spec.class_names
        ((30,), ('malignant', 'benign'))
    """
    if size is not None:
        raise ConfigError(
            "an image size (--size, Python: size=) applies to image datasets; breast_cancer is tabular"
        )
    _check_split_args(test_fraction, seed)
    from sklearn.datasets import load_breast_cancer as _sk_bc

    d = _sk_bc()
    x = np.asarray(d.data, dtype=np.float64)
    y = np.asarray(d.target, dtype=np.int64)
    tr, te = stratified_split(y, test_fraction, seed)
    z, mean, std = _standardize(x, tr)
    spec = DatasetSpec(
        name="breast_cancer",
        modality="tabular",
        input_shape=(int(x.shape[1]),),
        num_classes=2,
        class_names=tuple(str(c) for c in d.target_names),
        bounds=_tabular_bounds(z),
        feature_names=tuple(str(f) for f in d.feature_names),
        extra={
            "source": "sklearn.datasets.load_breast_cancer",
            "standardized": True,
            "raw_mean": mean,
            "raw_std": std,
            **_split_info(test_fraction, seed, len(tr), len(te)),
        },
    )
    return _bundle(z, y, tr, te, spec)
