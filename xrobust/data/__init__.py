"""Built-in datasets (bundled or generated, no downloads) and loaders for users' data.

Every loader returns a :class:`DatasetBundle`: ``train`` and ``test`` datasets whose items
are ``(x float32 tensor, y int64 scalar tensor)``, and a :class:`DatasetSpec` (modality,
input shape, classes, bounds, feature names). Images are in [0, 1]; normalisation is the
model's job, not the data's.

Example:
    >>> from xrobust.data import load_dataset, as_tensors, list_datasets
    >>> list_datasets()
    ['blobs', 'breast_cancer', 'digits']
    >>> ds = load_dataset("breast_cancer")
    >>> x, y = as_tensors(ds.test, limit=8)
    >>> tuple(x.shape), ds.spec.bounds[0] < 0 < ds.spec.bounds[1]
    ((8, 30), True)
"""

from __future__ import annotations

from xrobust.data._base import DATASETS, TensorPairDataset, as_tensors, stratified_split
from xrobust.data.blobs import load_blobs
from xrobust.data.breast_cancer import load_breast_cancer
from xrobust.data.csv_file import load_csv
from xrobust.data.digits import load_digits
from xrobust.data.idx import load_idx, read_idx
from xrobust.data.image_folder import load_image_folder
from xrobust.data.loading import list_datasets, load_dataset
from xrobust.data.npz import load_npz
from xrobust.data.spec import DatasetBundle, DatasetSpec

__all__ = [
    "DATASETS",
    "DatasetBundle",
    "DatasetSpec",
    "TensorPairDataset",
    "as_tensors",
    "list_datasets",
    "load_blobs",
    "load_breast_cancer",
    "load_csv",
    "load_dataset",
    "load_digits",
    "load_idx",
    "load_image_folder",
    "load_npz",
    "read_idx",
    "stratified_split",
]
