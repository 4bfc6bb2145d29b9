"""``mlp``: a multilayer perceptron for tabular data (any input shape is flattened)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import nn

from xrobust.data.spec import DatasetSpec
from xrobust.errors import ConfigError
from xrobust.models._build import MODELS

__all__ = ["MLP", "mlp"]

_ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "silu": nn.SiLU}


class MLP(nn.Module):
    """Linear -> activation -> dropout blocks, then a linear head giving (N, C) logits.

    Args:
        in_features: size of the flattened input.
        num_classes: number of output logits.
        hidden: width of each hidden layer (empty: logistic regression).
        dropout: dropout probability after each hidden layer.
        activation: "relu", "gelu", "tanh" or "silu".
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int,
        hidden: Sequence[int] = (64, 32),
        dropout: float = 0.1,
        activation: str = "relu",
    ) -> None:
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {activation!r}; expected one of {sorted(_ACTIVATIONS)}"
            )
        if not 0.0 <= float(dropout) < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {dropout}")
        widths = [int(h) for h in hidden]
        if any(h < 1 for h in widths):
            raise ConfigError(f"hidden sizes must be >= 1, got {list(hidden)}")
        layers: list[nn.Module] = [nn.Flatten()]
        prev = in_features
        for h in widths:
            layers += [nn.Linear(prev, h), _ACTIVATIONS[activation]()]
            if dropout > 0:
                layers.append(nn.Dropout(float(dropout)))
            prev = h
        layers.append(nn.Linear(prev, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x):  # type: ignore[no-untyped-def]
        return self.layers(x)


@MODELS.register("mlp")
def mlp(
    spec: DatasetSpec,
    hidden: Sequence[int] = (64, 32),
    dropout: float = 0.1,
    activation: str = "relu",
) -> nn.Module:
    """Multilayer perceptron for ``spec`` (input flattened; default two hidden layers 64, 32).

    Example:
        >>> from xrobust.data.spec import DatasetSpec
        >>> spec = DatasetSpec("t", "tabular", (30,), 2, ("no", "yes"), (-10.0, 10.0))
        >>> mlp(spec, hidden=(16,)).layers[1].in_features
        30
    """
    if isinstance(hidden, int):
        hidden = (hidden,)
    return MLP(math.prod(spec.input_shape), spec.num_classes, hidden, dropout, activation)
