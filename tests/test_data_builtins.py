"""Built-in datasets, the stratified split, the registry and ``as_tensors``."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.utils.data import Dataset, Subset, TensorDataset

from xrobust.data import (
    DATASETS,
    DatasetSpec,
    TensorPairDataset,
    as_tensors,
    list_datasets,
    load_blobs,
    load_dataset,
    stratified_split,
)
from xrobust.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def bc():
    return load_dataset("breast_cancer")


def test_registry_lists_builtins():
    assert list_datasets() == ["blobs", "breast_cancer", "digits"]
    assert list_datasets("b*") == ["blobs", "breast_cancer"]
    assert "digits" in DATASETS


def test_unknown_name_suggests_and_mentions_paths():
    with pytest.raises(ConfigError) as ei:
        load_dataset("digit")
    msg = str(ei.value)
    assert "'digits'" in msg and "path" in msg


def test_missing_path_is_data_error(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_dataset(tmp_path / "nope.npz")
    with pytest.raises(DataError, match="no such file"):
        load_dataset("data/nope.csv")


def test_digits_default(digits):
    spec = digits.spec
    assert spec.modality == "image" and spec.input_shape == (1, 28, 28)
    assert spec.num_classes == 10 and spec.class_names == tuple("0123456789")
    assert spec.bounds == (0.0, 1.0) and spec.mean is None and spec.std is None
    assert len(digits.train) + len(digits.test) == 1797
    assert len(digits.test) == round(1797 * 0.2)
    x, y = digits.train[0]
    assert x.dtype == torch.float32 and x.shape == (1, 28, 28)
    assert y.dtype == torch.int64 and y.dim() == 0
    xt, _ = as_tensors(digits.train)
    assert xt.min() >= 0 and xt.max() <= 1 and xt.max() > 0.99


def test_digits_matches_independent_resize(digits):
    """Our 28x28 images equal sklearn's /16, bilinearly resized, indexed by the split."""
    from sklearn.datasets import load_digits

    d = load_digits()
    ref = torch.tensor(d.images, dtype=torch.float32).unsqueeze(1) / 16.0
    ref = F.interpolate(ref, size=(28, 28), mode="bilinear", align_corners=False).clamp(0, 1)
    tr, te = stratified_split(d.target, 0.2, 0)
    x, y = as_tensors(digits.test)
    torch.testing.assert_close(x, ref[torch.from_numpy(te)], rtol=0, atol=1e-6)
    assert torch.equal(y, torch.from_numpy(d.target[te]).long())
    x8, _ = as_tensors(load_dataset("digits", size=8).train)
    torch.testing.assert_close(
        x8, ref.new_tensor(d.images[tr] / 16.0).unsqueeze(1), rtol=0, atol=1e-7
    )


def test_digits_sizes():
    assert load_dataset("digits", size=8).spec.input_shape == (1, 8, 8)
    assert load_dataset("digits", size=12).spec.input_shape == (1, 12, 12)
    with pytest.raises(ConfigError, match="at least 8"):
        load_dataset("digits", size=4)
    with pytest.raises(ConfigError, match="size"):
        load_dataset("digits", size="big")  # type: ignore[arg-type]


def test_breast_cancer_standardised_with_train_stats(bc):
    from sklearn.datasets import load_breast_cancer

    spec = bc.spec
    assert spec.modality == "tabular" and spec.input_shape == (30,)
    assert spec.class_names == ("malignant", "benign") and spec.num_classes == 2
    assert spec.feature_names is not None and spec.feature_names[0] == "mean radius"
    xtr, _ = as_tensors(bc.train)
    xte, _ = as_tensors(bc.test)
    torch.testing.assert_close(xtr.mean(0), torch.zeros(30), atol=1e-5, rtol=0)
    torch.testing.assert_close(xtr.std(0), torch.ones(30), atol=1e-4, rtol=0)
    assert xte.mean(0).abs().max() > 1e-3  # test rows are not re-standardised
    d = load_breast_cancer()
    tr, _ = stratified_split(d.target, 0.2, 0)
    np.testing.assert_allclose(spec.extra["raw_mean"], d.data[tr].mean(0), rtol=1e-12)
    np.testing.assert_allclose(spec.extra["raw_std"], d.data[tr].std(0, ddof=1), rtol=1e-12)
    allx = torch.cat([xtr, xte])
    assert spec.bounds == (math.floor(allx.min()), math.ceil(allx.max()))
    assert spec.bounds[0] <= allx.min() and allx.max() <= spec.bounds[1]


def test_tabular_rejects_size():
    with pytest.raises(ConfigError, match="tabular"):
        load_dataset("breast_cancer", size=28)
    with pytest.raises(ConfigError, match="target"):
        load_dataset("digits", target="label")


def test_blobs_generated_and_seeded():
    a, b = (
        load_blobs(n_samples=40, n_features=3, n_classes=4),
        load_blobs(n_samples=40, n_features=3, n_classes=4),
    )
    xa, ya = as_tensors(a.train)
    xb, yb = as_tensors(b.train)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert a.spec.input_shape == (3,) and a.spec.num_classes == 4
    assert a.spec.feature_names == ("x0", "x1", "x2")
    assert len(a.train) == 32 and len(a.test) == 8
    c = load_blobs(n_samples=40, n_features=3, n_classes=4, random_state=1)
    assert not torch.equal(as_tensors(c.train)[0], xa)
    ds = load_dataset("blobs")
    assert ds.spec.num_classes == 3 and len(ds.train) + len(ds.test) == 300
    with pytest.raises(ConfigError):
        load_blobs(n_classes=1)


@pytest.mark.parametrize("name", ["digits", "breast_cancer", "blobs"])
def test_split_deterministic_disjoint_and_seeded(name):
    a, b = load_dataset(name, seed=0), load_dataset(name, seed=0)
    c = load_dataset(name, seed=1)
    xa, ya = as_tensors(a.test)
    xb, yb = as_tensors(b.test)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(as_tensors(c.test)[0], xa)
    # train and test rows are disjoint and together are the whole set
    xtr, _ = as_tensors(a.train)
    rows_tr = {tuple(r.tolist()) for r in xtr.flatten(1)}
    rows_te = {tuple(r.tolist()) for r in xa.flatten(1)}
    assert not rows_tr & rows_te


def test_spec_json_round_trip(digits, bc):
    for spec in (digits.spec, bc.spec, load_dataset("blobs").spec):
        d = json.loads(json.dumps(spec.to_dict(), allow_nan=False))
        assert DatasetSpec.from_dict(d) == spec


def test_stratified_split_properties():
    y = np.array([0] * 50 + [1] * 30 + [2] * 20)
    tr, te = stratified_split(y, 0.2, seed=3)
    assert len(te) == 20 and len(tr) == 80
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(100))
    assert np.bincount(y[te]).tolist() == [10, 6, 4]
    tr2, te2 = stratified_split(y, 0.2, seed=3)
    assert np.array_equal(tr, tr2) and np.array_equal(te, te2)
    _, te3 = stratified_split(y, 0.2, seed=4)
    assert not np.array_equal(np.sort(te), np.sort(te3))
    # shuffled: the first test items are not one class
    assert len(set(y[te[:10]].tolist())) > 1
    # uneven proportions: counts stay within one of the exact share
    y = np.array([0] * 7 + [1] * 11 + [2] * 5)
    _, te = stratified_split(y, 0.3, seed=0)
    exact = np.bincount(y) * len(te) / len(y)
    assert len(te) == round(23 * 0.3)
    assert np.all(np.abs(np.bincount(y[te], minlength=3) - exact) < 1)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.1, True, "0.2"])
def test_bad_test_fraction(bad):
    with pytest.raises(ConfigError, match="test_fraction"):
        load_dataset("blobs", test_fraction=bad)


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 40), min_size=1, max_size=6),
    frac=st.floats(0.05, 0.95),
    seed=st.integers(0, 2**32),
)
def test_stratified_split_partition_property(counts, frac, seed):
    y = np.repeat(np.arange(len(counts)), counts)
    n, n_test = len(y), int(np.floor(len(y) * frac + 0.5))
    if not 1 <= n_test <= n - 1:
        with pytest.raises(DataError):
            stratified_split(y, frac, seed)
        return
    tr, te = stratified_split(y, frac, seed)
    assert len(te) == n_test and len(tr) == n - n_test
    assert sorted(np.concatenate([tr, te]).tolist()) == list(range(n))
    exact = np.array(counts) * n_test / n
    assert np.all(np.abs(np.bincount(y[te], minlength=len(counts)) - exact) < 1)


def test_bad_seed():
    with pytest.raises(ConfigError, match="seed"):
        load_dataset("blobs", seed=-1)
    with pytest.raises(ConfigError, match="seed"):
        load_dataset("blobs", seed=1.5)  # type: ignore[arg-type]


def test_split_too_small():
    with pytest.raises(DataError, match="cannot split"):
        stratified_split([0, 1], 0.2)


class _Items(Dataset):
    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return np.full((2, 2), i, dtype=np.float64), i % 3


def test_as_tensors_paths():
    x = torch.arange(20, dtype=torch.float32).reshape(10, 2)
    y = torch.arange(10) % 2
    ds = TensorPairDataset(x, y)
    xs, ys = as_tensors(ds)
    assert torch.equal(xs, x) and torch.equal(ys, y)
    xs, ys = as_tensors(ds, limit=3)
    assert torch.equal(xs, x[:3]) and xs.dtype == torch.float32 and ys.dtype == torch.int64
    xs[:] = -1  # a copy: the dataset is unchanged
    assert ds.x.min() == 0
    assert as_tensors(ds, limit=100)[0].shape == (10, 2)
    sub = Subset(ds, [7, 2, 5])
    xs, ys = as_tensors(sub, limit=2)
    assert torch.equal(xs, x[[7, 2]]) and torch.equal(ys, y[[7, 2]])
    xs, ys = as_tensors(TensorDataset(x.double(), y.float().unsqueeze(1)))
    assert xs.dtype == torch.float32 and ys.dtype == torch.int64 and ys.shape == (10,)
    xs, ys = as_tensors(_Items(5), limit=4)
    assert xs.shape == (4, 2, 2) and xs.dtype == torch.float32
    assert ys.tolist() == [0, 1, 2, 0]


def test_as_tensors_errors():
    ds = TensorPairDataset(torch.zeros(3, 2), torch.zeros(3, dtype=torch.long))
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ConfigError, match="limit"):
            as_tensors(ds, limit=bad)
    with pytest.raises(DataError, match="empty"):
        as_tensors(TensorPairDataset(torch.zeros(0, 2), torch.zeros(0, dtype=torch.long)))
    with pytest.raises(DataError, match="integer"):
        as_tensors(TensorDataset(torch.zeros(2, 2), torch.tensor([0.5, 1.0])))
    with pytest.raises(DataError, match="float32"):
        TensorPairDataset(torch.zeros(3, 2, dtype=torch.float64), torch.zeros(3, dtype=torch.long))
    with pytest.raises(DataError, match="one label per input"):
        TensorPairDataset(torch.zeros(3, 2), torch.zeros(2, dtype=torch.long))
