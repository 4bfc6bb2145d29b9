"""What every dataset bundle carries: the train/test datasets and a spec.

The spec is plain data (round-trips through JSON) so that checkpoints and audit
reports can store it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from torch.utils.data import Dataset

__all__ = ["MAX_CLASSES", "MAX_INPUT_NUMEL", "DatasetBundle", "DatasetSpec"]

#: Largest input (values per example) a stored spec may declare: 3 x 2048 x 2048.
MAX_INPUT_NUMEL = 3 * 2048 * 2048
#: Most classes a stored spec may declare.
MAX_CLASSES = 100_000

Modality = Literal["image", "tabular"]


@dataclass(frozen=True)
class DatasetSpec:
    """Description of a dataset's inputs and labels.

    Attributes:
        name: dataset name (built-in name or file stem).
        modality: "image" (inputs C x H x W) or "tabular" (inputs of shape (F,)).
        input_shape: shape of one input, without the batch dimension.
        num_classes: number of classes C; labels are 0..C-1.
        class_names: one name per class.
        bounds: (low, high) range of valid input values (attacks clip to it).
        mean / std: per-channel (image) or per-feature (tabular) normalisation that the
            model applies internally, or None. Inputs given to models are *not* normalised.
        feature_names: tabular feature names, else None.
    """

    name: str
    modality: Modality
    input_shape: tuple[int, ...]
    num_classes: int
    class_names: tuple[str, ...]
    bounds: tuple[float, float]
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    feature_names: tuple[str, ...] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict."""
        d = asdict(self)
        for k in ("input_shape", "class_names", "bounds", "mean", "std", "feature_names"):
            if d[k] is not None:
                d[k] = list(d[k])
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DatasetSpec:
        """Inverse of :meth:`to_dict`."""

        def tup(v: Any) -> Any:
            return None if v is None else tuple(v)

        if not isinstance(d, dict):
            raise TypeError(f"a dataset spec is a JSON object, got {type(d).__name__}")
        shape = d["input_shape"]
        if not isinstance(shape, list | tuple) or not 1 <= len(shape) <= 4:
            raise ValueError(f"input_shape must be a list of 1 to 4 sizes, got {shape!r}")
        if not all(isinstance(i, int) and not isinstance(i, bool) and i >= 1 for i in shape):
            raise ValueError(f"input_shape must hold positive integers, got {shape!r}")
        if math.prod(shape) > MAX_INPUT_NUMEL:
            raise ValueError(
                f"input_shape {shape} has {math.prod(shape)} values per input; at most "
                f"{MAX_INPUT_NUMEL} are supported"
            )
        nc = d["num_classes"]
        if not isinstance(nc, int) or isinstance(nc, bool) or not 2 <= nc <= MAX_CLASSES:
            raise ValueError(f"num_classes must be an integer in 2..{MAX_CLASSES}, got {nc!r}")
        if d["modality"] not in ("image", "tabular"):
            raise ValueError(f"modality must be 'image' or 'tabular', got {d['modality']!r}")
        for key in ("mean", "std"):
            v = d.get(key)
            if v is not None and not (
                isinstance(v, list | tuple)
                and all(isinstance(f, int | float) and math.isfinite(f) for f in v)
            ):
                raise ValueError(f"{key} must be a list of finite numbers or null, got {v!r}")
        if d.get("std") is not None and any(f <= 0 for f in d["std"]):
            raise ValueError("std must hold positive numbers")
        extra = d.get("extra") or {}
        if not isinstance(extra, dict):
            raise TypeError("extra must be a JSON object")
        return cls(
            name=str(d["name"]),
            modality=d["modality"],
            input_shape=tuple(int(i) for i in shape),
            num_classes=int(nc),
            class_names=tuple(str(c) for c in d["class_names"]),
            bounds=(float(d["bounds"][0]), float(d["bounds"][1])),
            mean=tup(d.get("mean")),
            std=tup(d.get("std")),
            feature_names=tup(d.get("feature_names")),
            extra=dict(extra),
        )


@dataclass
class DatasetBundle:
    """Train and test datasets with their spec. Items are ``(x, y)`` with x a float32
    tensor of ``spec.input_shape`` and y an int64 scalar tensor."""

    train: Dataset
    test: Dataset
    spec: DatasetSpec


def valid_standardisation(extra: dict[str, Any], n_features: int) -> bool:
    """Whether ``extra`` (a tabular spec's) holds a usable feature standardisation:
    ``raw_mean`` and ``raw_std`` lists of ``n_features`` finite numbers, every std > 0."""
    mean, std = extra.get("raw_mean"), extra.get("raw_std")
    return (
        isinstance(mean, list)
        and isinstance(std, list)
        and len(mean) == n_features
        and len(std) == n_features
        and all(isinstance(v, int | float) and math.isfinite(v) for v in mean + std)
        and all(v > 0 for v in std)
    )
