"""``blobs``: generated tabular Gaussian blobs, tiny and seeded, for tests and demos.

``n_classes`` isotropic Gaussian clusters with centres drawn uniformly in [-4, 4]^F and
standard deviation ``cluster_std``, the same for a given ``random_state``.
"""

from __future__ import annotations

import numpy as np

from xrobust.data._base import (
    DATASETS,
    _bundle,
    _check_split_args,
    _split_info,
    _tabular_bounds,
    stratified_split,
)
from xrobust.data.spec import DatasetBundle, DatasetSpec
from xrobust.errors import ConfigError

__all__ = ["load_blobs"]


def _positive_int(name: str, v: object, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or int(v) < minimum:
        raise ConfigError(f"{name} must be an integer >= {minimum}, got {v!r}")
    return int(v)


@DATASETS.register("blobs")
def load_blobs(
    *,
    n_samples: int = 300,
    n_features: int = 2,
    n_classes: int = 3,
    cluster_std: float = 1.0,
    random_state: int = 0,
    size: None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DatasetBundle:
    """Generate Gaussian blobs (not standardised) with a stratified split.

    Args:
        n_samples: total number of samples, shared equally among classes (the first
            classes get one more when it does not divide).
        n_features: number of features F.
        n_classes: number of classes (clusters).
        cluster_std: standard deviation of each cluster.
        random_state: seed of the generated data (the dataset itself).
        size: must be None (tabular data).
        test_fraction: share of samples in the test set.
        seed: seed of the split.

    Returns:
        A tabular bundle with features ``x0..x{F-1}`` and classes "0".."C-1";
        bounds are the (floor(min), ceil(max)) of the values.

    Example:
        >>> from xrobust.data import load_blobs
        >>> ds = load_blobs(n_samples=50, n_features=4, n_classes=2)
        >>> ds.spec.input_shape, len(ds.train), len(ds.test)
        ((4,), 40, 10)
    """
    if size is not None:
        raise ConfigError(
            "an image size (--size, Python: size=) applies to image datasets; blobs is tabular"
        )
    n_samples = _positive_int("n_samples", n_samples, 2)
    n_features = _positive_int("n_features", n_features, 1)
    n_classes = _positive_int("n_classes", n_classes, 2)
    if n_samples < n_classes:
        raise ConfigError(f"n_samples ({n_samples}) must be at least n_classes ({n_classes})")
    if not isinstance(cluster_std, (int, float)) or not cluster_std > 0:
        raise ConfigError(f"cluster_std must be a positive number, got {cluster_std!r}")
    _check_split_args(test_fraction, seed)
    rng = np.random.default_rng(int(random_state))
    centres = rng.uniform(-4.0, 4.0, size=(n_classes, n_features))
    counts = np.full(n_classes, n_samples // n_classes)
    counts[: n_samples % n_classes] += 1
    y = np.repeat(np.arange(n_classes, dtype=np.int64), counts)
    x = (centres[y] + cluster_std * rng.standard_normal((n_samples, n_features))).astype(np.float32)
    tr, te = stratified_split(y, test_fraction, seed)
    generator = {
        "n_samples": n_samples,
        "n_features": n_features,
        "n_classes": n_classes,
        "cluster_std": float(cluster_std),
        "random_state": int(random_state),
        "centres": centres.tolist(),
    }
    spec = _blobs_spec(x, n_classes, generator, _split_info(test_fraction, seed, len(tr), len(te)))
    return _bundle(x, y, tr, te, spec)


def _blobs_spec(x: np.ndarray, n_classes: int, generator: dict, split: dict) -> DatasetSpec:
    """The spec of generated blobs ``x`` (how they were generated and split in ``extra``)."""
    n_features = x.shape[1]
    return DatasetSpec(
        name="blobs",
        modality="tabular",
        input_shape=(n_features,),
        num_classes=n_classes,
        class_names=tuple(str(i) for i in range(n_classes)),
        bounds=_tabular_bounds(x),
        feature_names=tuple(f"x{i}" for i in range(n_features)),
        extra={"source": "generated", "generator": generator, **split},
    )
