"""What every dataset bundle carries: the train/test datasets and a spec.

The spec is plain data (round-trips through JSON) so that checkpoints and audit
reports can store it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from torch.utils.data import Dataset

__all__ = ["DatasetBundle", "DatasetSpec"]

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

        return cls(
            name=str(d["name"]),
            modality=d["modality"],
            input_shape=tuple(int(i) for i in d["input_shape"]),
            num_classes=int(d["num_classes"]),
            class_names=tuple(str(c) for c in d["class_names"]),
            bounds=(float(d["bounds"][0]), float(d["bounds"][1])),
            mean=tup(d.get("mean")),
            std=tup(d.get("std")),
            feature_names=tup(d.get("feature_names")),
            extra=dict(d.get("extra") or {}),
        )


@dataclass
class DatasetBundle:
    """Train and test datasets with their spec. Items are ``(x, y)`` with x a float32
    tensor of ``spec.input_shape`` and y an int64 scalar tensor."""

    train: Dataset
    test: Dataset
    spec: DatasetSpec
