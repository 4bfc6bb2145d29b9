"""The model registry and :func:`build_model` (architectures register themselves here)."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from torch import nn

from xrobust.data.spec import DatasetSpec
from xrobust.errors import ConfigError
from xrobust.models.normalize import Normalize, NormalizedModel
from xrobust.registry import Registry

__all__ = ["MODELS", "build_model", "list_models"]

#: name -> factory ``f(spec, **kwargs) -> nn.Module`` returning (N, C) logits.
MODELS: Registry[Callable[..., nn.Module]] = Registry("model")

# Attribute set on built models so that the Trainer and checkpoints know how to rebuild them.
BUILD_ATTR = "_xrobust_build"


def list_models(pattern: str | None = None) -> list[str]:
    """Registered architecture names, sorted (optionally filtered by a shell pattern).

    Example:
        >>> from xrobust.models import list_models
        >>> "small_cnn" in list_models()
        True
    """
    return MODELS.list(pattern)


def build_model(name: str, spec: DatasetSpec, **kwargs: Any) -> nn.Module:
    """Build a registered architecture for the inputs and classes described by ``spec``.

    Options left as None are ignored (the architecture's default is used). When the spec
    carries a mean/std, the network is wrapped in a :class:`NormalizedModel`, so the
    returned model always takes raw inputs in ``spec.bounds``.

    Args:
        name: a registered architecture (see :func:`list_models`).
        spec: the dataset spec (input shape, number of classes, normalisation).
        **kwargs: architecture options, e.g. ``hidden=(64, 32)`` for ``mlp``.

    Returns:
        An ``nn.Module`` mapping ``(N, *spec.input_shape)`` to ``(N, spec.num_classes)`` logits.

    Raises:
        ConfigError: unknown name or option, or a spec the architecture cannot handle.

    Example:
        >>> from xrobust.data.spec import DatasetSpec
        >>> from xrobust.models import build_model
        >>> spec = DatasetSpec("toy", "tabular", (4,), 3, ("a", "b", "c"), (-5.0, 5.0))
        >>> build_model("mlp", spec, hidden=(8,))(__import__("torch").zeros(2, 4)).shape
        torch.Size([2, 3])
    """
    if not isinstance(spec, DatasetSpec):
        raise ConfigError(
            f"build_model needs a DatasetSpec (input shape and classes), got {type(spec).__name__}"
        )
    factory = MODELS.get(name)
    key = str(name).lower().replace("-", "_")
    opts = {k: v for k, v in kwargs.items() if v is not None}
    params = inspect.signature(factory).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    allowed = [p for p in params if p != "spec"]
    unknown = sorted(k for k in opts if k not in allowed)
    if unknown and not accepts_any:
        raise ConfigError(
            f"model {key!r} has no option(s) {', '.join(map(repr, unknown))}; "
            f"available: {', '.join(allowed) or '(none)'}"
        )
    if spec.num_classes < 2:
        raise ConfigError(f"a classifier needs at least 2 classes, spec has {spec.num_classes}")
    _check_size(factory, spec, opts, key)
    try:
        net = factory(spec, **opts)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model {key!r}: bad option value(s) {opts}: {exc}") from exc
    except (RuntimeError, MemoryError) as exc:
        raise ConfigError(f"model {key!r} with {opts} cannot be allocated: {exc}") from exc
    model: nn.Module = net
    if spec.mean is not None or spec.std is not None:
        if spec.mean is None or spec.std is None:
            raise ConfigError("the dataset spec sets only one of mean/std; set both or neither")
        norm = Normalize(spec.mean, spec.std, input_ndim=len(spec.input_shape))
        model = NormalizedModel(norm, net)
    setattr(model, BUILD_ATTR, {"name": key, "kwargs": _jsonable(opts)})
    return model


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_jsonable(v) for v in obj]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise ConfigError(
        f"model option value {obj!r} ({type(obj).__name__}) cannot be stored in a checkpoint; "
        "use numbers, strings, booleans or lists of them"
    )


#: Most parameters :func:`build_model` builds (400 MB of float32 weights).
MAX_PARAMETERS = 100_000_000


def _check_size(
    factory: Callable[..., nn.Module], spec: DatasetSpec, opts: dict[str, Any], key: str
) -> None:
    """Count the parameters on the meta device (no memory) and refuse huge models."""
    import torch

    try:
        with torch.device("meta"):
            probe = factory(spec, **opts)
        n = sum(p.numel() for p in probe.parameters())
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"model {key!r}: bad option value(s) {opts}: {exc}") from exc
    except Exception:  # an architecture that cannot be built on "meta": build it for real
        return
    if n > MAX_PARAMETERS:
        raise ConfigError(
            f"model {key!r} with {opts} would have {n:,} parameters ({4 * n / 2**30:.3g} GiB); "
            f"at most {MAX_PARAMETERS:,} are supported: choose smaller sizes (--model-arg)"
        )


def build_info(model: nn.Module) -> dict[str, Any] | None:
    """``{"name", "kwargs"}`` recorded by :func:`build_model`, or None for other modules."""
    inner = getattr(model, "module", None)  # DistributedDataParallel
    for m in (model, getattr(model, "_orig_mod", None), inner):
        info = getattr(m, BUILD_ATTR, None) if m is not None else None
        if info is not None:
            return dict(info)
    return None
