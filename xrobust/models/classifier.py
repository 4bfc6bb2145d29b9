"""One classifier interface for every model source.

Attacks, explainers, the audit, the CLI and the dashboard analyse a :class:`Classifier`
made by :func:`as_classifier` from a ``torch.nn.Module``, a run directory, a Python
callable, an ONNX file or an HTTP prediction endpoint. A classifier declares what it
is (input shape, classes, bounds, output kind, whether it is differentiable, its
device), answers batches with scores of shape (N, C), and counts every row it is asked
about. An optional query budget makes it refuse, with :class:`QueryBudgetExhausted`,
any call that would go over; callers that know it (the attacks, the audit) stop there
and keep their results so far.

Output kinds:

* ``"logits"``: unnormalised scores (a torch module's usual output);
* ``"probabilities"``: rows summing to one (``predict_proba`` of scikit-learn);
* ``"labels"``: one class per row (a decision-only black box). :meth:`Classifier.scores`
  turns them into one-hot rows, so that ``argmax`` is the label.

Example:
    >>> import torch
    >>> from xrobust.models import as_classifier
    >>> net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> clf = as_classifier(net, input_shape=(4,), bounds=(0.0, 1.0))
    >>> clf.scores(torch.rand(5, 4)).shape, clf.queries
    (torch.Size([5, 3]), 5)
    >>> clf.differentiable, clf.output
    (True, 'logits')
"""

from __future__ import annotations

import contextlib
import copy
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from xrobust.errors import ConfigError, DataError, ModelError, QueryBudgetExhausted

__all__ = [
    "OUTPUT_KINDS",
    "CallableClassifier",
    "Classifier",
    "OutputKind",
    "QueryBudgetExhausted",
    "TorchClassifier",
    "as_classifier",
]

OutputKind = Literal["logits", "probabilities", "labels"]
OUTPUT_KINDS: tuple[str, ...] = ("logits", "probabilities", "labels")


class Classifier:
    """A model that answers batches of inputs, with what it declares about itself.

    Subclasses implement :meth:`_answer` (the source's own call on one chunk of at most
    ``batch_size`` rows) and set the attributes below in ``__init__``.

    Attributes:
        source: "torch", "callable", "onnx" or "endpoint".
        name: a short description for reports (never a secret: no header, no token).
        input_shape: shape of one input (without the batch dimension), or None if unknown.
        num_classes: number of outputs C, or None until the first answer.
        bounds: valid input range ``(low, high)``, or None if unknown.
        output: the output kind, one of :data:`OUTPUT_KINDS`.
        differentiable: whether input gradients are available (:attr:`module` is a torch
            module to differentiate through).
        device: where the scores it returns live.
        batch_size: rows per call to the source.
        query_budget: at most this many rows may be asked about in total (None: no limit).
        queries: rows asked about so far. calls: calls made to the source so far.
    """

    source: str = "classifier"

    def __init__(
        self,
        *,
        name: str,
        input_shape: tuple[int, ...] | None = None,
        num_classes: int | None = None,
        bounds: tuple[float, float] | None = None,
        output: str = "logits",
        differentiable: bool = False,
        device: torch.device | str = "cpu",
        batch_size: int = 256,
        query_budget: int | None = None,
    ) -> None:
        if output not in OUTPUT_KINDS:
            raise ConfigError(
                f"unknown output kind {output!r}; expected one of {', '.join(OUTPUT_KINDS)}"
            )
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.name = name
        self.input_shape = None if input_shape is None else tuple(int(s) for s in input_shape)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.bounds = None if bounds is None else (float(bounds[0]), float(bounds[1]))
        self.output: str = output
        self.differentiable = bool(differentiable)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.query_budget = _check_budget(query_budget)
        self.queries = 0
        self.calls = 0
        self._budget_base = 0
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ what it is
    @property
    def module(self) -> nn.Module | None:
        """The torch module to differentiate through (white-box), or None."""
        return None

    def runner(self, x: torch.Tensor | None = None) -> nn.Module | None:
        """The module to evaluate now (:attr:`module`, or a faster stand-in for it with
        the same weights; ``x`` is a batch about to be evaluated)."""
        return self.module

    def describe(self) -> dict[str, Any]:
        """JSON-ready facts for reports (no secrets)."""
        return {
            "source": self.source,
            "name": self.name,
            "input_shape": None if self.input_shape is None else list(self.input_shape),
            "num_classes": self.num_classes,
            "bounds": None if self.bounds is None else list(self.bounds),
            "output": self.output,
            "differentiable": self.differentiable,
            "device": str(self.device),
            "query_budget": self.query_budget,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, output={self.output!r})"

    # ------------------------------------------------------------------ budget
    @property
    def remaining(self) -> int | None:
        """Rows that may still be asked about (None: no budget)."""
        if self.query_budget is None:
            return None
        return max(0, self.query_budget - self.queries)

    def set_budget(self, query_budget: int | None) -> None:
        """A new total budget (counted from zero queries: counters are reset)."""
        self.query_budget = _check_budget(query_budget)
        self.reset_queries()

    def reset_queries(self) -> None:
        """Set the query and call counters back to zero."""
        with self._lock:
            self.queries = 0
            self.calls = 0
            self._budget_base = 0

    @contextlib.contextmanager
    def budget(self, query_budget: int | None) -> Iterator[Classifier]:
        """A budget of ``query_budget`` more rows for the ``with`` block; the previous
        budget (minus what the block used) applies afterwards."""
        before, base = self.query_budget, self._budget_base
        self.query_budget = None if query_budget is None else self.queries + int(query_budget)
        self._budget_base = self.queries
        try:
            yield self
        finally:
            self.query_budget, self._budget_base = before, base

    def spend(self, n: int) -> None:
        """Count ``n`` rows, refusing with :class:`QueryBudgetExhausted` (and counting
        nothing) when they would exceed the budget. Sources call it before asking."""
        with self._lock:
            if self.query_budget is not None and self.queries + n > self.query_budget:
                b = self._budget_base  # a budget() block counts from its start
                raise QueryBudgetExhausted(self.query_budget - b, self.queries - b, n)
            self.queries += n

    # ------------------------------------------------------------------ answers
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Scores (N, C) of a batch: logits, probabilities, or one-hot labels, as
        declared by :attr:`output`. float32 (float64 if ``x`` is), on :attr:`device`.

        Raises:
            QueryBudgetExhausted: the batch would exceed the budget (nothing is asked).
            DataError: ``x`` does not have the declared input shape.
            ModelError: the source's answer is malformed.
        """
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        self._check_input(x)
        self.spend(int(x.shape[0]))
        return self.ask(x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`scores` (so that a classifier is a forward function for Captum)."""
        return self.scores(x)

    def ask(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`scores` for rows already counted with :meth:`spend` (the attacks count
        per example first, then ask)."""
        self._check_input(x)
        n = int(x.shape[0])
        parts = []
        for i in range(0, n, self.batch_size):
            chunk = x[i : i + self.batch_size]
            with self._lock:
                self.calls += 1
            parts.append(self._format(self._answer(chunk), chunk.shape[0]))
        if not parts:
            c = self.num_classes or 0
            return torch.empty(0, c, device=self.device)
        out = torch.cat(parts).to(self.device)
        return out.double() if x.dtype == torch.float64 else out.float()

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Predicted classes (N,) (counted like :meth:`scores`)."""
        return self.scores(x).argmax(1)

    def _answer(self, x: torch.Tensor) -> Any:
        """The source's answer for one chunk: (n, C) scores or (n,) labels."""
        raise NotImplementedError

    # ------------------------------------------------------------------ checks
    def check_data(
        self,
        input_shape: tuple[int, ...] | None,
        num_classes: int | None,
        what: str = "data",
        *,
        spec: Any = None,
    ) -> None:
        """Refuse data that does not fit what this classifier declares, before any query.

        Args:
            input_shape / num_classes: the data's.
            what: the data's name in messages.
            spec: the data's :class:`~xrobust.data.spec.DatasetSpec`, when known. A model
                that records the schema it was trained with (``model_spec``: ONNX files
                from ``xrobust export``) is then checked against it: the class names in
                order, and for a table the standardisation the model expects (its training
                statistics, not the data's own).

        Raises:
            DataError: the input shapes, the class counts or (with ``spec``) the classes or
                the standardisation differ (both are named).
        """
        if (
            input_shape is not None
            and self.input_shape is not None
            and tuple(input_shape) != self.input_shape
        ):
            have, want = tuple(input_shape), self.input_shape
            resize = ""
            if len(have) == len(want) == 3 and have[0] == want[0]:
                resize = (
                    "; give --resize to resize the images to the model's size (Python: "
                    "load_dataset(..., size=(H, W)))"
                )
            raise DataError(
                f"the {what} has inputs of shape {have} but the model "
                f"{self.name!r} takes inputs of shape {want}"
                f"{_layout_hint(have, want)}{resize}"
            )
        if (
            num_classes is not None
            and self.num_classes is not None
            and int(num_classes) != self.num_classes
        ):
            raise DataError(
                f"the {what} has {num_classes} classes but the model {self.name!r} "
                f"answers {self.num_classes}"
            )
        model_spec = getattr(self, "model_spec", None)
        if spec is None or model_spec is None:
            return
        have_c = tuple(getattr(spec, "class_names", ()) or ())
        want_c = tuple(getattr(model_spec, "class_names", ()) or ())
        if (
            have_c
            and want_c
            and have_c != want_c
            and have_c != tuple(str(i) for i in range(len(have_c)))
        ):
            raise DataError(
                f"the {what} has classes {list(have_c)[:10]} but the model {self.name!r} was "
                f"trained on {list(want_c)[:10]} (in this order): read the data for the model "
                "(xrobust.data.schema.load_for_model(clf.model_spec, data); `--onnx` does)"
            )
        if getattr(model_spec, "modality", None) != "tabular":
            return
        wx, hx = (
            dict(getattr(model_spec, "extra", {}) or {}),
            dict(getattr(spec, "extra", {}) or {}),
        )
        units = getattr(self, "input_units", "graph")
        expected = (wx.get("raw_mean"), wx.get("raw_std")) if wx.get("standardized") else None
        given = (hx.get("raw_mean"), hx.get("raw_std")) if hx.get("standardized") else None
        if expected is None or units != "model":
            if given is not None:
                raise DataError(
                    f"the {what} is standardised, but the model {self.name!r} takes its feature "
                    "values as they are: load the table unstandardised (load_csv(..., "
                    "standardize=False); `--onnx FILE --data file.csv --raw-features`)"
                )
            return
        same = given is not None and all(
            isinstance(a, list) and isinstance(b, list) and len(a) == len(b)
            and all(abs(float(u) - float(v)) <= 1e-9 * max(1.0, abs(float(v))) for u, v in zip(a, b))
            for a, b in zip(given, expected)
        )  # fmt: skip
        if not same:
            how = "standardised with other statistics (its own?)" if given else "not standardised"
            raise DataError(
                f"the {what} is {how}, but the model {self.name!r} takes rows standardised with "
                "the statistics of its training data, which its file carries: read the data "
                "for the model (xrobust.data.schema.load_for_model(clf.model_spec, data); "
                "`--onnx FILE --data file.csv` does)"
            )

    def _check_input(self, x: torch.Tensor) -> None:
        if x.dim() < 1:
            raise DataError("a batch needs a batch dimension: got a scalar")
        if self.input_shape is not None and tuple(x.shape[1:]) != self.input_shape:
            raise DataError(
                f"the model {self.name!r} takes inputs of shape (N, "
                f"{', '.join(map(str, self.input_shape))}), got {tuple(x.shape)}"
                f"{_layout_hint(tuple(x.shape[1:]), self.input_shape)}"
            )

    def _format(self, out: Any, n: int) -> torch.Tensor:
        """The source's answer as a float (n, C) tensor; labels become one-hot rows."""
        t = _as_tensor(out, self.name)
        if self.output == "labels":
            if t.dim() == 2 and t.shape[1] == 1:
                t = t[:, 0]
            if t.dim() != 1 or t.shape[0] != n:
                raise ModelError(
                    f"the model {self.name!r} was declared to answer labels (N,) but gave "
                    f"shape {tuple(t.shape)} for {n} rows"
                )
            if t.is_floating_point() and not bool((t == t.round()).all()):
                raise ModelError(
                    f"the model {self.name!r} was declared to answer labels but gave "
                    "non-integer values; declare output='logits' or 'probabilities'"
                )
            labels = t.long()
            c = self.num_classes
            if c is None:
                raise ModelError(
                    f"a label-only model ({self.name!r}) needs num_classes declared "
                    "(give spec= or num_classes=)"
                )
            if bool(((labels < 0) | (labels >= c)).any()):
                raise ModelError(
                    f"the model {self.name!r} answered labels outside 0..{c - 1}: "
                    f"{sorted(set(labels.tolist()))[:10]}"
                )
            return torch.nn.functional.one_hot(labels.cpu(), c).float()
        if t.dim() == 1 and self.num_classes in (None, 1):
            t = t[:, None]
        if t.dim() != 2 or t.shape[0] != n:
            raise ModelError(
                f"the model {self.name!r} answered shape {tuple(t.shape)} for {n} rows; "
                f"expected scores of shape ({n}, num_classes)"
            )
        if self.num_classes is None:
            self.num_classes = int(t.shape[1])
        elif t.shape[1] != self.num_classes:
            raise ModelError(
                f"the model {self.name!r} answered {t.shape[1]} scores per row; it was "
                f"declared with {self.num_classes} classes"
            )
        t = t.float() if t.dtype != torch.float64 else t
        if not bool(torch.isfinite(t).all()):
            raise ModelError(f"the model {self.name!r} answered non-finite scores (NaN or inf)")
        return t


class TorchClassifier(Classifier):
    """A torch module returning logits (or probabilities, if declared).

    The caller's module is never moved or changed: on another device than its own, a copy
    is made once; evaluation runs in eval mode with frozen parameters, restored after each
    call. Autocast (AMP) applies on CUDA when ``amp`` asks for it.

    ``channels_last``: evaluate through a private channels_last copy of the module, kept in
    step with its weights (:mod:`xrobust.models._layout`; about twice as fast for CNNs on
    the CPU). None (default) uses it for CPU modules made of ``torch.nn`` layers and
    xrobust's models that contain a ``Conv2d``; True asks for it on any module (it still
    falls back to the module itself if the copy's first output differs); False never.
    """

    source = "torch"

    def __init__(
        self,
        module: nn.Module,
        *,
        device: str | torch.device | None = None,
        amp: bool | str | None = None,
        output: str = "logits",
        name: str | None = None,
        input_shape: tuple[int, ...] | None = None,
        num_classes: int | None = None,
        bounds: tuple[float, float] | None = None,
        batch_size: int = 256,
        query_budget: int | None = None,
        channels_last: bool | None = None,
    ) -> None:
        from xrobust.device import amp_dtype, model_device, resolve_device
        from xrobust.models._layout import ChannelsLastCopy, auto_channels_last

        if not isinstance(module, nn.Module):
            raise ModelError(
                f"TorchClassifier needs a torch.nn.Module, got {type(module).__name__}"
            )
        if output == "labels":
            raise ConfigError(
                "a torch module answers scores; declare output='logits' or 'probabilities'"
            )
        own = model_device(module)
        dev = own if device is None else resolve_device(device)
        self._module = module if dev == own else copy.deepcopy(module).to(dev)
        self.amp = amp_dtype(dev, amp)
        if channels_last not in (None, True, False):
            raise ConfigError(f"channels_last must be True, False or None, got {channels_last!r}")
        fast = auto_channels_last(self._module, dev) if channels_last is None else channels_last
        self._fast = ChannelsLastCopy(self._module) if fast else None
        super().__init__(
            name=name or type(module).__name__,
            input_shape=input_shape,
            num_classes=num_classes,
            bounds=bounds,
            output=output,
            differentiable=True,
            device=dev,
            batch_size=batch_size,
            query_budget=query_budget,
        )

    @property
    def module(self) -> nn.Module:
        return self._module

    def runner(self, x: torch.Tensor | None = None) -> nn.Module:
        """The module to evaluate right now: :attr:`module` itself, or its channels_last
        copy brought in step with it (``x``, a batch about to be evaluated, serves the
        copy's first-use check). Gradients through either are the module's. Run it in
        eval mode with frozen parameters (the copy always is)."""
        return self._module if self._fast is None else self._fast.get(x)

    def _answer(self, x: torch.Tensor) -> torch.Tensor:
        from xrobust._modelstate import frozen_eval
        from xrobust.device import autocast

        x = x.to(self.device)
        with frozen_eval(self._module), torch.no_grad(), autocast(self.device, self.amp):
            out = self.runner(x)(x)
        if not isinstance(out, torch.Tensor):
            raise ModelError(
                f"the model returned {type(out).__name__}; expected a tensor of logits (N, C)"
            )
        return out.float() if out.dtype in (torch.float16, torch.bfloat16) else out

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d["parameters"] = int(sum(p.numel() for p in self._module.parameters()))
        d["channels_last"] = self._fast is not None and not self._fast.disabled
        return d


class CallableClassifier(Classifier):
    """Any Python predict function: NumPy (``array="numpy"``, the default, as
    scikit-learn's ``predict_proba``) or torch (``array="torch"``) in; logits,
    probabilities or labels out, as declared by ``output``.

    The function gets float32 inputs of shape (n, *input_shape), at most ``batch_size``
    rows at a time, on the CPU. Nothing is differentiable.
    """

    source = "callable"

    def __init__(
        self,
        fn: Callable[[Any], Any],
        *,
        output: str = "logits",
        array: str = "numpy",
        name: str | None = None,
        input_shape: tuple[int, ...] | None = None,
        num_classes: int | None = None,
        bounds: tuple[float, float] | None = None,
        batch_size: int = 256,
        query_budget: int | None = None,
    ) -> None:
        if not callable(fn):
            raise ModelError(f"expected a callable predict function, got {type(fn).__name__}")
        if array not in ("numpy", "torch"):
            raise ConfigError(f"array must be 'numpy' or 'torch', got {array!r}")
        self._fn, self.array = fn, array
        super().__init__(
            name=name or getattr(fn, "__qualname__", type(fn).__name__),
            input_shape=input_shape,
            num_classes=num_classes,
            bounds=bounds,
            output=output,
            differentiable=False,
            device="cpu",
            batch_size=batch_size,
            query_budget=query_budget,
        )

    def _answer(self, x: torch.Tensor) -> Any:
        xin = x.detach().cpu().float()
        arg = xin.numpy() if self.array == "numpy" else xin
        try:
            return self._fn(arg)
        except QueryBudgetExhausted:
            raise
        except Exception as exc:
            raise ModelError(
                f"the predict function {self.name!r} failed on a batch of shape "
                f"{tuple(x.shape)}: {type(exc).__name__}: {exc}"
            ) from exc


# ---------------------------------------------------------------------- as_classifier
def as_classifier(
    obj: Any,
    spec: Any = None,
    *,
    output: str | None = None,
    input_shape: tuple[int, ...] | None = None,
    num_classes: int | None = None,
    bounds: tuple[float, float] | None = None,
    device: str | torch.device | None = None,
    query_budget: int | None = None,
    batch_size: int | None = None,
    **options: Any,
) -> Classifier:
    """The classifier for ``obj``.

    Args:
        obj: a :class:`Classifier` (returned as is, with ``query_budget`` applied if
            given), a ``torch.nn.Module``, a run directory (``xrobust train``'s output), a
            ``.onnx`` file, an ``http(s)://`` prediction endpoint URL, a SageMaker endpoint
            ``sagemaker://NAME`` (options ``region``, ``profile``, ``endpoint_url``,
            ``content_type``: :mod:`xrobust.models.sagemaker`), or a callable.
        spec: a :class:`~xrobust.data.spec.DatasetSpec` (or a dataset bundle) giving the
            input shape, classes and bounds; the keywords below override it.
        output: "logits", "probabilities" or "labels" (default: "logits"; ONNX and
            endpoints may infer it).
        device: where a torch model runs (default: where it is).
        query_budget: total rows the classifier may be asked about.
        batch_size: rows per call to the source.
        **options: source options: ``amp`` (torch); ``array`` (callable: "numpy" or
            "torch"); ``layout``, ``providers`` (ONNX); ``layout``, ``signature``,
            ``output_name``, ``num_threads`` (TensorFlow Lite); ``protocol``, ``headers_env``,
            ``timeout``, ``retries``, ``concurrency`` (endpoint).

    Raises:
        ModelError: ``obj`` is none of these.
        ConfigError: an option does not apply to the source or has a bad value.

    Example:
        >>> import numpy as np
        >>> from xrobust.models import as_classifier
        >>> clf = as_classifier(lambda a: np.eye(3)[a.reshape(len(a), -1).argmax(1) % 3],
        ...                     output="probabilities", input_shape=(4,), num_classes=3)
        >>> clf.predict(np.eye(4, dtype=np.float32)).tolist(), clf.queries
        ([0, 1, 2, 0], 4)
    """
    spec = getattr(spec, "spec", spec)  # a DatasetBundle carries its spec
    decl: dict[str, Any] = {
        "input_shape": input_shape if input_shape is not None else _spec_attr(spec, "input_shape"),
        "num_classes": num_classes if num_classes is not None else _spec_attr(spec, "num_classes"),
        "bounds": bounds if bounds is not None else _spec_attr(spec, "bounds"),
    }
    common: dict[str, Any] = {"query_budget": query_budget}
    if batch_size is not None:
        common["batch_size"] = batch_size
    if output is not None:
        common["output"] = output

    if isinstance(obj, Classifier):
        _no_options(options, "an existing classifier")
        if query_budget is not None:
            obj.set_budget(query_budget)
        return obj
    if isinstance(obj, nn.Module):
        _only(options, ("amp", "channels_last"), "a torch module")
        return TorchClassifier(obj, device=device, **decl, **common, **options)
    if isinstance(obj, str | os.PathLike):
        text = os.fspath(obj)
        if text.startswith("sagemaker://"):
            from xrobust.models.sagemaker import SageMakerClassifier

            return SageMakerClassifier(text, **decl, **common, **options)
        if text.startswith(("http://", "https://")):
            from xrobust.models.endpoint import EndpointClassifier

            return EndpointClassifier(text, **decl, **common, **options)
        path = Path(text)
        if path.suffix.lower() == ".onnx":
            from xrobust.models.onnx import OnnxClassifier

            return OnnxClassifier(path, device=device, **decl, **common, **options)
        if path.suffix.lower() == ".tflite":
            from xrobust.models.tflite import TFLiteClassifier

            if device is not None and torch.device(device).type != "cpu":
                raise ConfigError(f"a TensorFlow Lite model runs on the CPU, not {device!r}")
            return TFLiteClassifier(path, **decl, **common, **options)
        if path.is_dir() or path.name in ("model.json", "model.safetensors"):
            return _from_run(path, spec, decl, common, device, options)
        raise ModelError(
            f"cannot make a classifier from {text!r}: expected a run directory, a .onnx or "
            ".tflite file or an http(s):// endpoint URL"
            + ("" if path.exists() else " (no such file or directory)")
        )
    if callable(obj):
        _only(options, ("array",), "a predict function")
        return CallableClassifier(obj, **decl, **common, **options)
    raise ModelError(
        f"cannot make a classifier from a {type(obj).__name__}: expected a torch.nn.Module, "
        "a run directory, a .onnx file, an http(s):// endpoint URL or a predict function"
    )


def _from_run(
    path: Path,
    spec: Any,
    decl: dict[str, Any],
    common: dict[str, Any],
    device: str | torch.device | None,
    options: dict[str, Any],
) -> TorchClassifier:
    from xrobust.models.checkpoint import load_run

    _only(options, ("amp",), "a run directory")
    run = load_run(path, device="cpu" if device is None else device)
    rs = run.spec
    merged = {
        "input_shape": decl["input_shape"] if decl["input_shape"] is not None else rs.input_shape,
        "num_classes": decl["num_classes"] if decl["num_classes"] is not None else rs.num_classes,
        "bounds": decl["bounds"] if decl["bounds"] is not None else rs.bounds,
    }
    clf = TorchClassifier(run.model, name=f"{run.metadata.get('model', {}).get('name', 'model')} "
                          f"({path})", **merged, **common, **options)  # fmt: skip
    clf.run = run  # type: ignore[attr-defined]
    return clf


def _spec_attr(spec: Any, name: str) -> Any:
    if spec is None:
        return None
    v = getattr(spec, name, None)
    return tuple(v) if isinstance(v, list | tuple) else v


def _only(options: dict[str, Any], allowed: tuple[str, ...], what: str) -> None:
    bad = sorted(set(options) - set(allowed))
    if bad:
        raise ConfigError(
            f"option(s) {', '.join(bad)} do not apply to {what}"
            + (f"; it takes {', '.join(allowed)}" if allowed else "")
        )


def _no_options(options: dict[str, Any], what: str) -> None:
    _only(options, (), what)


def _check_budget(budget: int | None) -> int | None:
    if budget is None:
        return None
    if isinstance(budget, bool) or not isinstance(budget, int | np.integer) or budget < 0:
        raise ConfigError(f"query_budget must be a non-negative integer or None, got {budget!r}")
    return int(budget)


def _as_tensor(out: Any, name: str) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out.detach().cpu() if out.device.type != "cpu" else out.detach()
    try:
        arr = np.asarray(out)
    except Exception as exc:
        raise ModelError(
            f"the model {name!r} answered a {type(out).__name__}, which is not an array"
        ) from exc
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise ModelError(
            f"the model {name!r} answered values of type {arr.dtype}; expected numbers"
        )
    return torch.from_numpy(np.ascontiguousarray(arr))


def _layout_hint(got: tuple[int, ...], want: tuple[int, ...]) -> str:
    """A hint when the shapes are the same up to channels first/last."""
    if len(got) == 3 and len(want) == 3:
        if (got[1], got[2], got[0]) == want:
            return " (the model takes channels last, NHWC: declare layout='NHWC')"
        if (got[2], got[0], got[1]) == want:
            return " (the model takes channels first, NCHW: declare layout='NCHW')"
    return ""
