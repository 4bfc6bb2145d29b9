"""The explainer base class, the :class:`Explanation` result and the registry.

Template method: :meth:`Explainer.explain` validates the input, moves it to the model's
device, puts the model in eval mode (restoring every module's mode afterwards), resolves
the targets, chooses batch sizes from a memory budget, calls the subclass's ``_explain``
chunk by chunk and returns an :class:`Explanation`. A subclass writes only its call to
Captum.

Example:
    >>> import torch
    >>> from torch import nn
    >>> from xrobust.explain import get_explainer
    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    >>> e = get_explainer("saliency", model).explain(torch.ones(2, 4), target=1)
    >>> tuple(e.attributions.shape), e.method
    ((2, 4), 'saliency')
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import logging
import random
import warnings
import weakref
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from xrobust._modelstate import eval_mode as _eval_mode
from xrobust.device import model_device
from xrobust.errors import ConfigError, DataError, ModelError
from xrobust.registry import Registry
from xrobust.validation import check_batch, check_logits

__all__ = [
    "EXPLAINERS",
    "BaseParams",
    "Explainer",
    "Explanation",
    "TargetSpec",
]

log = logging.getLogger(__name__)

EXPLAINERS: Registry[type[Explainer]] = Registry("explainer")

#: What ``target`` may be: None (predicted class), an int (same class for every example),
#: a 1-D sequence/tensor (one class per example) or a 2-D one of shape (N, K) (K classes per
#: example, giving attributions of shape (N, K, *x.shape[1:])).
TargetSpec = int | Sequence[int] | Sequence[Sequence[int]] | torch.Tensor | None

_DEFAULT_CPU_BUDGET_MB = 256.0
_CUDA_BUDGET_FRACTION = 0.25


@dataclass(frozen=True)
class BaseParams:
    """Options every explainer takes.

    Attributes:
        internal_batch_size: rows per forward/backward pass handed to Captum. None picks it
            from ``memory_budget_mb``, and then the examples are also processed in chunks.
        memory_budget_mb: memory the method may use for activations. None: 256 MB on CPU,
            a quarter of the free memory on CUDA.
    """

    internal_batch_size: int | None = None
    memory_budget_mb: float | None = None


@dataclass
class Explanation:
    """Attributions for a batch, with what produced them.

    Attributes:
        attributions: tensor with the shape of the input ``x`` (or ``(N, K, *x.shape[1:])``
            when K targets per example were asked for), on x's device and dtype.
        method: registry name of the explainer.
        target: the explained classes, int64 of shape (N,) or (N, K).
        delta: per-example convergence delta (integrated gradients, deeplift,
            gradient_shap), else None. Same leading shape as ``target``.
        params: the explainer's hyperparameters (JSON-ready).
        feature_names: tabular feature names, when known.
    """

    attributions: torch.Tensor
    method: str
    target: torch.Tensor
    delta: torch.Tensor | None = None
    params: dict[str, Any] = field(default_factory=dict)
    feature_names: tuple[str, ...] | None = None

    def numpy(self) -> np.ndarray:
        """The attributions as a float NumPy array (detached, on the CPU)."""
        return self.attributions.detach().cpu().float().numpy()

    @property
    def multi_target(self) -> bool:
        """True when several targets per example were explained."""
        return self.target.ndim == 2

    def to_dict(self, include_attributions: bool = True) -> dict[str, Any]:
        """JSON-ready dict (attributions as nested lists unless left out)."""
        d: dict[str, Any] = {
            "method": self.method,
            "target": self.target.tolist(),
            "shape": list(self.attributions.shape),
            "delta": None if self.delta is None else self.delta.detach().cpu().tolist(),
            "params": dict(self.params),
            "feature_names": None if self.feature_names is None else list(self.feature_names),
        }
        if include_attributions:
            d["attributions"] = self.numpy().tolist()
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Explanation:
        """Inverse of :meth:`to_dict` (needs the attributions)."""
        if "attributions" not in d:
            raise DataError("explanation dict has no 'attributions'; save it with them")
        return cls(
            attributions=torch.tensor(d["attributions"], dtype=torch.float32),
            method=str(d["method"]),
            target=torch.tensor(d["target"], dtype=torch.long),
            delta=None if d.get("delta") is None else torch.tensor(d["delta"]),
            params=dict(d.get("params") or {}),
            feature_names=None if d.get("feature_names") is None else tuple(d["feature_names"]),
        )


def _jsonable(v: Any) -> Any:
    if isinstance(v, torch.Tensor):
        return f"tensor{tuple(v.shape)}"
    if isinstance(v, nn.Module):
        return type(v).__name__
    if isinstance(v, tuple | list):
        return [_jsonable(i) for i in v]
    if isinstance(v, int | float | str | bool) or v is None:
        return v
    return repr(v)


@contextlib.contextmanager
def quiet_captum() -> Iterator[None]:
    """Silence Captum's informational warnings (hooks set on activations, input
    requires_grad set automatically), which say nothing the user can act on."""
    with warnings.catch_warnings():
        for msg in (
            ".*did not already require gradients.*",
            ".*Setting forward, backward hooks.*",
            ".*Setting backward hooks on ReLU.*",
            ".*Internal batch size cannot be less.*",
            ".*multiple inputs for Lime.*",
        ):
            warnings.filterwarnings("ignore", message=msg)
        yield


@contextlib.contextmanager
def _seeded(seed: int | None, device: torch.device) -> Iterator[None]:
    """Run with torch's, NumPy's and Python's global generators seeded (Captum draws from
    all three, e.g. GradientShap picks baselines with NumPy), restoring them afterwards."""
    if seed is None:
        yield
        return
    devices = [device] if device.type == "cuda" else []
    np_state, py_state = np.random.get_state(), random.getstate()
    try:
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            np.random.seed(seed % 2**32)
            random.seed(seed)
            yield
    finally:
        np.random.set_state(np_state)
        random.setstate(py_state)


# model -> {(input shape, dtype, with backward): bytes per row}
_ROW_BYTES: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], int]] = (
    weakref.WeakKeyDictionary()
)


def _estimate_row_bytes(forward: Callable[..., torch.Tensor], x1: torch.Tensor, grad: bool) -> int:
    """Memory of one input row through the model: the outputs of every leaf module plus the
    input, times 2 for intermediates applied with ``torch.nn.functional`` (which hooks cannot
    see), times 2 again for the backward pass of gradient methods. On a conv net with
    functional ReLUs (benchmarks/bench_explain.py) the live tensors of integrated gradients
    were about 0.8 of this estimate per row."""
    key = (tuple(x1.shape[1:]), x1.dtype, grad)
    cache = _ROW_BYTES.get(forward) if isinstance(forward, nn.Module) else None
    if cache is not None and key in cache:
        return cache[key]
    total = [0]

    def hook(_m: nn.Module, _i: Any, out: Any) -> None:
        outs = out if isinstance(out, tuple | list) else (out,)
        for o in outs:
            if isinstance(o, torch.Tensor):
                total[0] += o.numel() * o.element_size()

    handles = []
    if isinstance(forward, nn.Module):
        for m in forward.modules():
            if next(m.children(), None) is None:
                handles.append(m.register_forward_hook(hook))
    try:
        with torch.no_grad():
            out = forward(x1)
    finally:
        for h in handles:
            h.remove()
    if not handles and isinstance(out, torch.Tensor):
        total[0] += out.numel() * out.element_size()
    act = total[0] + x1.numel() * x1.element_size()
    per_row = int(act * (4.0 if grad else 2.0)) + 1
    if isinstance(forward, nn.Module):
        _ROW_BYTES.setdefault(forward, {})[key] = per_row
    return per_row


def _budget_bytes(budget_mb: float | None, device: torch.device) -> int:
    if budget_mb is not None:
        if budget_mb <= 0:
            raise ConfigError(f"memory_budget_mb must be positive, got {budget_mb}")
        return int(budget_mb * 2**20)
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free * _CUDA_BUDGET_FRACTION)
    return int(_DEFAULT_CPU_BUDGET_MB * 2**20)


def _build_params(cls: type, kwargs: dict[str, Any], method: str) -> Any:
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in kwargs if k not in names]
    if unknown:
        bad = unknown[0]
        close = difflib.get_close_matches(bad, names, n=2, cutoff=0.5)
        hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
        raise ConfigError(
            f"explainer {method!r} has no option {bad!r}.{hint} Options: {', '.join(names)}."
        )
    for k, v in kwargs.items():
        _check_param(cls, k, v, method)
    try:
        return cls(**kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"bad options for explainer {method!r}: {exc}") from exc


#: Largest value an integer explainer option (steps, samples, batch sizes) may take.
MAX_INT_PARAM = 100_000


def _check_param(cls: type, key: str, value: Any, method: str) -> None:
    """Type and range of one option, checked against the ``Params`` annotation before
    Captum sees it (Captum answers bad values with AssertionError / TypeError)."""
    import typing

    try:
        hint = typing.get_type_hints(cls).get(key)
    except Exception:  # unresolvable annotation: leave the check to the dataclass
        return
    if hint is None:
        return
    args = typing.get_args(hint)
    allowed = set(args) if args else {hint}
    if value is None:
        if type(None) in allowed:
            return
        raise ConfigError(f"explainer {method!r}: option {key!r} cannot be null")
    where = f"explainer {method!r}: option {key!r}"
    if int in allowed and isinstance(value, int) and not isinstance(value, bool):
        lo = 0 if "seed" in key else 1
        if not lo <= value <= MAX_INT_PARAM:
            raise ConfigError(
                f"{where} must be an integer from {lo} to {MAX_INT_PARAM}, got {value}"
            )
        return
    if float in allowed and isinstance(value, int | float) and not isinstance(value, bool):
        import math

        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        if key.endswith("_mb") and value <= 0:
            raise ConfigError(f"{where} must be > 0, got {value!r}")
        if value < 0 and key in ("stdevs", "sigma", "alpha"):
            raise ConfigError(f"{where} must be >= 0, got {value!r}")
        return
    if bool in allowed and isinstance(value, bool):
        return
    if str in allowed and isinstance(value, str):
        return
    simple = {int, float, bool, str, type(None)}
    if allowed <= simple:
        names = " or ".join(
            "null" if t is type(None) else t.__name__ for t in sorted(allowed, key=str)
        )
        raise ConfigError(f"{where} must be {names}, got {value!r} ({type(value).__name__})")


class Explainer:
    """Base class: a model bound at construction, hyperparameters as keywords.

    Subclasses set ``name``, ``requires_gradients`` (True: white-box, needs a
    differentiable ``torch.nn.Module``; False: forward calls only, usable on black boxes),
    ``Params`` (a frozen dataclass deriving from :class:`BaseParams`) and implement
    ``_explain(x, target, rows)`` returning ``(attributions, delta or None)`` for a chunk of
    examples on the model's device, where ``rows`` is the number of input rows one
    forward/backward pass may hold.

    Args:
        model: the model (logits of shape (N, classes)); a plain callable for forward-only
            methods.
        **params: hyperparameters, see each explainer's ``Params``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> from xrobust.explain import get_explainer
        >>> ig = get_explainer("integrated_gradients", nn.Linear(3, 2), n_steps=16)
        >>> ig.explain(torch.ones(1, 3), target=0).delta.shape
        torch.Size([1])
    """

    name: ClassVar[str] = ""
    requires_gradients: ClassVar[bool] = True
    Params: ClassVar[type] = BaseParams

    def __init__(self, model: nn.Module | Callable[[torch.Tensor], torch.Tensor], **params: Any):
        from xrobust.models.classifier import Classifier

        if isinstance(model, Classifier):
            # white-box methods differentiate through its torch module; forward-only ones
            # ask the classifier, so that every query is counted (and budgeted)
            self.classifier: Classifier | None = model
            if self.requires_gradients and model.module is not None:
                model = model.module
        else:
            self.classifier = None
        self.model = model
        self.params = _build_params(self.Params, params, self.name)

    # ---- to override -------------------------------------------------------------------
    def _explain(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        raise NotImplementedError

    def _prepare(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Per-example tensors computed once on the whole batch (e.g. baselines), sliced
        along with x when the batch is processed in chunks."""
        return {}

    def _rows_per_example(self) -> int:
        """Rows one example needs in one pass when its work cannot be split further."""
        return 1

    def _validate_model(self, x: torch.Tensor) -> None:
        """Hook for method-specific model checks (e.g. gradcam needs a convolution)."""

    # ---- template ----------------------------------------------------------------------
    def _check_model(self) -> None:
        if self.requires_gradients and not isinstance(self.model, nn.Module):
            forward_only = ", ".join(n for n, c in EXPLAINERS.items() if not c.requires_gradients)
            what = (
                f"the classifier {self.classifier.name!r} ({self.classifier.source}) has none"
                if self.classifier is not None
                else f"the model must be a torch.nn.Module; got {type(self.model).__name__}"
            )
            raise ModelError(
                f"{self.name!r} needs gradients, and {what}. Forward-only methods: {forward_only}."
            )
        if not callable(self.model):
            raise ModelError(
                f"{self.name!r} needs a model it can call on a batch (a torch.nn.Module or a "
                f"function returning logits); got {type(self.model).__name__} without a forward"
            )

    def explain(
        self,
        x: torch.Tensor,
        target: TargetSpec = None,
        *,
        seed: int | None = None,
        feature_names: Sequence[str] | None = None,
    ) -> Explanation:
        """Attribute the model's output for ``target`` to the features of ``x``.

        Args:
            x: batch of inputs (N, ...), floating point, in input space.
            target: None for the predicted class, an int, one class per example (N,), or
                several per example (N, K).
            seed: seeds torch's generators for stochastic methods (state restored after).
            feature_names: names of the features (tabular inputs of shape (N, F)).

        Returns:
            An :class:`Explanation` with attributions on x's device and dtype.

        Raises:
            DataError: x is not a non-empty floating-point batch, or contains NaN/Inf.
            ConfigError: a target is outside the model's classes.
            ModelError: the model does not suit this method.
        """
        self._check_model()
        x = _check_input(x)
        device = model_device(self.model) if isinstance(self.model, nn.Module) else x.device
        xd = x.detach().to(device)
        if feature_names is not None and (xd.ndim != 2 or len(feature_names) != xd.shape[1]):
            raise DataError(
                f"{len(feature_names)} feature names given for inputs of shape "
                f"{tuple(x.shape)}; expected one name per column of an (N, F) batch"
            )
        with _eval_mode(self.model), _seeded(seed, device), quiet_captum():
            self._validate_model(xd)
            targets = _resolve_targets(self.model, xd, target)
            rows = self._row_budget(xd, device)
            prep = self._prepare(xd)
            cols = [targets] if targets.ndim == 1 else list(targets.unbind(1))
            attrs, deltas = [], []
            for t in cols:
                a, d = self._chunked(xd, t, rows, prep)
                attrs.append(a)
                deltas.append(d)
        if targets.ndim == 1:
            attributions, delta = attrs[0], deltas[0]
        else:
            attributions = torch.stack(attrs, 1)
            delta = None if deltas[0] is None else torch.stack(deltas, 1)  # type: ignore[arg-type]
        attributions = attributions.detach().to(device=x.device, dtype=x.dtype)
        if delta is not None:
            delta = delta.detach().to(x.device).float()
        return Explanation(
            attributions=attributions,
            method=self.name,
            target=targets.to(x.device),
            delta=delta,
            params={k: _jsonable(v) for k, v in dataclasses.asdict(self.params).items()},
            feature_names=None if feature_names is None else tuple(str(n) for n in feature_names),
        )

    def _row_budget(self, x: torch.Tensor, device: torch.device) -> int:
        if self.params.internal_batch_size is not None:
            if self.params.internal_batch_size < 1:
                raise ConfigError(
                    f"internal_batch_size must be at least 1, got {self.params.internal_batch_size}"
                )
            return int(self.params.internal_batch_size)
        row = _estimate_row_bytes(self.model, x[:1], self.requires_gradients)
        # live tensors get half the budget; the other half is a margin for the allocator's
        # cached and fragmented memory, which peak RSS also counts
        return max(1, _budget_bytes(self.params.memory_budget_mb, device) // (2 * row))

    def _chunked(
        self, x: torch.Tensor, target: torch.Tensor, rows: int, prep: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        n = x.shape[0]
        if self.params.internal_batch_size is not None:
            chunk = n  # the user chose the batching: hand the whole batch to Captum
        else:
            chunk = max(1, rows // self._rows_per_example())
        if chunk >= n:
            return self._explain(x, target, rows, prep)
        log.debug("%s: %d examples in chunks of %d (%d rows per pass)", self.name, n, chunk, rows)
        outs = [
            self._explain(
                x[i : i + chunk],
                target[i : i + chunk],
                rows,
                {k: v[i : i + chunk] for k, v in prep.items()},
            )
            for i in range(0, n, chunk)
        ]
        attrs = torch.cat([o[0] for o in outs])
        delta = None if outs[0][1] is None else torch.cat([o[1] for o in outs])  # type: ignore[misc]
        return attrs, delta

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params})"


def _check_input(x: Any) -> torch.Tensor:
    return check_batch(x)


def _logits(model: Callable[..., Any], x: torch.Tensor) -> torch.Tensor:
    try:
        with torch.no_grad():
            out = model(x)
    except (RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ModelError(
            f"the model failed on a batch of shape {tuple(x.shape)}: {str(exc).splitlines()[0]}"
            " (is the input shape the one the model expects, with a batch dimension?)"
        ) from exc
    return check_logits(out, x.shape[0], min_classes=1)


# model -> {(input shape, dtype): number of classes}, so that an explicit target costs no
# forward pass after the first call
_NUM_CLASSES: weakref.WeakKeyDictionary[nn.Module, dict[tuple[Any, ...], int]] = (
    weakref.WeakKeyDictionary()
)


def _num_classes(model: Callable[..., Any], x: torch.Tensor) -> int:
    key = (tuple(x.shape[1:]), x.dtype, x.device)
    cache = _NUM_CLASSES.get(model) if isinstance(model, nn.Module) else None
    if cache is not None and key in cache:
        return cache[key]
    k = int(_logits(model, x[:1]).shape[1])
    if isinstance(model, nn.Module):
        _NUM_CLASSES.setdefault(model, {})[key] = k
    return k


def _resolve_targets(
    model: Callable[..., Any], x: torch.Tensor, target: TargetSpec
) -> torch.Tensor:
    """Targets as int64 on x's device: shape (N,) or (N, K)."""
    n = x.shape[0]
    if target is None:
        return _logits(model, x).argmax(1)
    num_classes = _num_classes(model, x)
    if isinstance(target, bool):
        raise ConfigError("target must be a class index, not a bool")
    if isinstance(target, int | np.integer):
        t = torch.full((n,), int(target), dtype=torch.long, device=x.device)
    else:
        try:
            t = torch.as_tensor(target, device=x.device)
        except (TypeError, ValueError) as exc:
            raise ConfigError(
                f"target must be an int, one int per example or an (N, K) table; got {target!r}"
            ) from exc
        if t.is_floating_point() or t.dtype == torch.bool:
            raise ConfigError(f"target must hold class indices (integers), got {t.dtype}")
        t = t.long()
        if t.ndim == 0:
            t = t.expand(n).clone()
        elif t.ndim > 2 or t.shape[0] != n:
            raise ConfigError(
                f"target of shape {tuple(t.shape)} does not fit a batch of {n}: give an int, "
                f"one class per example ({n},), or several per example ({n}, K)"
            )
    bad = (t < 0) | (t >= num_classes)
    if bad.any():
        raise ConfigError(
            f"target {int(t[bad][0])} is outside the model's {num_classes} classes "
            f"(0..{num_classes - 1})"
        )
    return t
