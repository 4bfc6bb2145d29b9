"""ONNX models (TensorFlow, CNTK, scikit-learn, PyTorch exports) as xrobust classifiers.

:class:`OnnxClassifier` answers batches through onnxruntime. It reads what it needs from
the graph: the input's name, shape and dtype, whether the batch dimension is dynamic or
fixed, the layout (TensorFlow exports take channels last, NHWC), the output to read and its
kind (logits, probabilities or labels). xrobust's data is always channels first (NCHW); an
NHWC model gets its inputs permuted inside the classifier, so data, bounds and ``eps`` stay
in the model's input units and attack results are NCHW like the data.

Layout, for a rank-4 graph input ``[N, a, b, c]`` and a declared input shape ``(C, H, W)``:
``(a, b, c) == (C, H, W)`` is NCHW, ``(a, b, c) == (H, W, C)`` is NHWC; when both or neither
fit (a square single-channel graph with symbolic sizes, C == H == W, no declaration at
all), declare ``layout="NCHW"`` or ``"NHWC"``; the error says so.

A model that does not fit the data (another shape, another class count) is refused when the
classifier is made, naming both shapes, before any query is spent.

Several outputs (``[aux_logits, logits]``): the one to read is named with ``output_name``
(``--output-name``). Without it a choice is made only when one output is clearly the class
scores (the only float output, the only one of shape (N, C) for the declared C, or the only
one named ``logits`` / ``scores`` / ``probabilities``); the choice is logged and shown in
``describe()["output_choice"]``; anything else is refused, naming the outputs.

Files written by ``xrobust export`` carry a JSON record under ``metadata_props["xrobust"]``
(:func:`read_xrobust_metadata`): the run's dataset spec (``model_spec``), classes, bounds
and the preprocessing the graph embeds. A tabular export takes raw feature rows (its
standardisation is inside the graph); the classifier takes rows in the run's units
(standardised with the training statistics the file carries, as the checkpoint's model
does; ``input_units="model"``, the default) and maps them back to raw values before the
graph, so attacks, ``eps`` and bounds are the run's. ``input_units="graph"`` feeds rows to
the graph as they are. :func:`load_for_onnx` reads data for such a file as ``--model``
reads it for the run, and refuses a table it would have to standardise with its own
statistics.

A graph with a fixed batch too large to ever fill (1e10 rows) is refused when the
classifier is made, with what to re-export.

White box: :meth:`OnnxClassifier.to_torch` converts the graph with onnx2torch (when
installed) into a differentiable torch module, checked against onnxruntime.

Example:
    >>> from xrobust.models import as_classifier
    >>> clf = as_classifier("model.onnx", spec=ds.spec)      # doctest: +SKIP
    >>> clf.describe()["layout"], clf.output                  # doctest: +SKIP
    ('NHWC', 'logits')
    >>> clf.predict(x).eq(y).float().mean()                   # doctest: +SKIP
    >>> white = clf.to_torch(x[:64])                          # doctest: +SKIP
    >>> white.describe()["conversion_max_abs_diff"]           # doctest: +SKIP
    3.1e-06
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
import os
import sys
import types
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from xrobust.errors import ConfigError, DataError, ModelError
from xrobust.models.classifier import Classifier, TorchClassifier

__all__ = [
    "OnnxClassifier",
    "OnnxTorchClassifier",
    "OnnxTorchModule",
    "image_hw",
    "import_onnx2torch",
    "input_layout",
    "load_for_file",
    "load_for_onnx",
    "read_xrobust_metadata",
]

log = logging.getLogger(__name__)
_find_spec = importlib.util.find_spec  # (tests replace it to simulate a missing package)

LAYOUTS = ("NCHW", "NHWC")

_FLOAT_TYPES = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
}
_INT_TYPES = (
    "tensor(int64)", "tensor(int32)", "tensor(int16)", "tensor(int8)",
    "tensor(uint64)", "tensor(uint32)", "tensor(uint16)", "tensor(uint8)",
)  # fmt: skip
_INSTALL_ORT = "install onnxruntime (pip install 'xrobust[onnx]')"
#: Output names that say "these are the class scores" (compared lower-case, without a
#: TensorFlow ``:0`` suffix or a scope prefix).
_SCORE_NAMES = frozenset(
    {"logits", "scores", "class_scores", "probabilities", "probs", "probability",
     "output_probability", "softmax"}
)  # fmt: skip
#: The largest fixed-batch input (padded rows x row bytes) a graph may demand: 1 GiB.
MAX_FIXED_BATCH_BYTES = 1 << 30
_INPUT_UNITS = ("model", "graph")


def _canon(name: str) -> str:
    return name.lower().split(":")[0].rsplit("/", 1)[-1]


def read_xrobust_metadata(source: Any, label: str | None = None) -> dict[str, Any] | None:
    """The record ``xrobust export`` wrote into an ONNX file, checked; None when absent.

    Args:
        source: a path to an ``.onnx`` file, an ``onnx.ModelProto``, or the mapping of its
            ``metadata_props`` (as onnxruntime's ``custom_metadata_map``).
        label: the file's name in messages.

    Returns:
        The record (a dict: ``version``, ``class_names``, ``feature_names``, ``bounds``,
        ``preprocessing``, ``spec``, ...) with ``_spec`` (a DatasetSpec or None) and
        ``_standardize`` ((mean, std) embedded in the graph, or None) added.

    Raises:
        ConfigError: the record is of a newer version than this xrobust reads.
        ModelError: the record is not valid.
    """
    import json

    from xrobust.models.export import METADATA_KEY, METADATA_VERSION

    if isinstance(source, dict):
        props = source
        label = label or "the ONNX file"
    elif isinstance(source, str | os.PathLike):
        import onnx

        label = label or Path(source).name
        m = onnx.load(str(source), load_external_data=False)
        props = {p.key: p.value for p in m.metadata_props}
    else:
        props = {p.key: p.value for p in getattr(source, "metadata_props", [])}
        label = label or "the ONNX model"
    text = props.get(METADATA_KEY)
    if text is None:
        return None

    def bad(why: str) -> ModelError:
        return ModelError(
            f"{label}: its xrobust metadata (metadata_props[{METADATA_KEY!r}]) is not valid "
            f"({why}); re-export the model with `xrobust export`"
        )

    try:
        rec = json.loads(text) if len(text) < 64 * 2**20 else None
    except (ValueError, RecursionError) as exc:
        raise bad("not JSON") from exc
    if not isinstance(rec, dict) or rec.get("format") != "xrobust-onnx":
        raise bad("not an xrobust-onnx record")
    version = rec.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise bad(f"version {version!r}")
    if version > METADATA_VERSION:
        raise ConfigError(
            f"{label} was exported by a newer xrobust (metadata version {version}; this one "
            f"reads up to {METADATA_VERSION}): upgrade xrobust (pip install -U xrobust), or "
            "re-export the model with this one"
        )
    spec = None
    if rec.get("spec") is not None:
        from xrobust.data.spec import DatasetSpec

        try:
            spec = DatasetSpec.from_dict(rec["spec"])
        except (KeyError, TypeError, ValueError) as exc:
            raise bad(f"its dataset spec: {exc}") from exc
    pre = rec.get("preprocessing")
    if pre is not None and not (isinstance(pre, dict) and isinstance(pre.get("steps", []), list)):
        raise bad("'preprocessing' is not an object with a list of steps")
    stdz = None
    for step in (pre or {}).get("steps", []):
        if not isinstance(step, dict):
            raise bad("a preprocessing step is not an object")
        if step.get("op") == "standardize" and step.get("in_graph"):
            mean, std = step.get("mean"), step.get("std")
            nf = None if spec is None else int(np.prod(spec.input_shape))
            ok = (
                isinstance(mean, list)
                and isinstance(std, list)
                and len(mean) == len(std) > 0
                and (nf is None or len(mean) == nf)
                and all(
                    isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v)
                    for v in mean + std
                )
                and all(v > 0 for v in std)
            )
            if not ok:
                raise bad("its standardisation does not fit the features")
            stdz = (np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64))
    rec = dict(rec)
    rec["_spec"] = spec
    rec["_standardize"] = stdz
    return rec


def _import_ort() -> Any:
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise ConfigError(f"ONNX models need onnxruntime: {_INSTALL_ORT}") from exc
    return ort


def _dims(shape: Any) -> list[int | None]:
    """A graph shape with symbolic or unknown sizes as None."""
    if shape is None:
        return []
    out: list[int | None] = []
    for d in shape:
        out.append(int(d) if isinstance(d, int | np.integer) and int(d) > 0 else None)
    return out


def _show(dims: Sequence[int | None]) -> str:
    return "(" + ", ".join("?" if d is None else str(d) for d in dims) + ")"


def _fits(graph: Sequence[int | None], want: Sequence[int]) -> bool:
    return len(graph) == len(want) and all(g is None or g == w for g, w in zip(graph, want))


def input_layout(
    g: list[int | None],
    declared: tuple[int, ...] | None,
    layout: str | None,
    label: str,
) -> tuple[str | None, tuple[int, ...] | None]:
    """``(layout, input shape in xrobust's units)`` of a model whose input (without the
    batch) has dimensions ``g`` (None: symbolic), given the declared shape and layout.
    The layout is None for inputs that are not rank 4; a rank-4 input is NCHW or NHWC as
    the module docstring says (ONNX graphs and TensorFlow Lite models alike).

    Raises:
        ConfigError: the layout cannot be decided (declare it) or does not apply.
        DataError: the declared shape fits the input in no layout.
    """
    want = None if declared is None else tuple(int(s) for s in declared)
    graph = f"the model {label!r} takes inputs of shape {_show([None, *g])}"
    if len(g) != 3:  # no layout question: the shapes must agree as they are
        if layout == "NHWC":
            raise ConfigError(f"layout='NHWC' needs an image model (a rank-4 input); {graph}")
        if want is not None and not _fits(g, want):
            hint = ""
            if len(g) == 1 and g[0] == int(np.prod(want)) and len(want) > 1:
                hint = (
                    f" (it takes the inputs flattened: flatten the data and declare "
                    f"input_shape=({g[0]},), or wrap the model in a predict function)"
                )
            raise DataError(f"the data has inputs of shape {want} but {graph}{hint}")
        if want is None and all(d is not None for d in g):
            return None, tuple(int(d) for d in g)  # type: ignore[arg-type]
        return None, want
    a, b, c = g
    if want is not None:
        if len(want) != 3:
            raise DataError(f"the data has inputs of shape {want} but {graph}")
        cc, hh, ww = want
        nchw, nhwc = _fits(g, (cc, hh, ww)), _fits(g, (hh, ww, cc))
        if layout is None:
            if nchw and nhwc:
                raise ConfigError(
                    f"{graph}: both channels first and channels last fit the data's "
                    f"shape {want} (C, H, W), so the layout cannot be read from the graph; "
                    "declare layout='NCHW' or layout='NHWC'"
                )
            if not (nchw or nhwc):
                resize = ""
                if (a == cc and c not in (cc,)) or (c == cc and a not in (cc,)):
                    resize = (
                        "; give --resize to resize the images to the model's size "
                        "(Python: load_dataset(..., size=(H, W)))"
                    )
                raise DataError(
                    f"the data has inputs of shape {want} (C, H, W) but {graph}, which "
                    f"fits neither NCHW {_show([None, cc, hh, ww])} nor NHWC "
                    f"{_show([None, hh, ww, cc])}{resize}"
                )
            layout = "NCHW" if nchw else "NHWC"
        elif not (nchw if layout == "NCHW" else nhwc):
            exp = (cc, hh, ww) if layout == "NCHW" else (hh, ww, cc)
            raise DataError(
                f"the data has inputs of shape {want} (C, H, W), which is "
                f"{_show([None, *exp])} in {layout}, but {graph}"
            )
        return layout, want
    if layout is None:  # no declaration: only unambiguous channel counts decide
        chan = (1, 3, 4)
        first = a in chan and c not in chan and c is not None
        last = c in chan and a not in chan and a is not None
        if first == last:
            raise ConfigError(
                f"{graph}, and its layout (NCHW or NHWC) cannot be read from the graph "
                "alone; declare input_shape (C, H, W) (or spec=) or layout='NCHW'/'NHWC'"
            )
        layout = "NCHW" if first else "NHWC"
    chw = (a, b, c) if layout == "NCHW" else (c, a, b)
    if any(d is None for d in chw):
        return layout, None
    return layout, tuple(int(d) for d in chw)  # type: ignore[arg-type]


class OnnxClassifier(Classifier):
    """An ONNX model answering through onnxruntime.

    Args:
        path: the ``.onnx`` file.
        device: "cpu" (default), "cuda"/"cuda:N" (onnxruntime's CUDA provider first, the
            CPU one as fallback) or "auto" (CUDA when onnxruntime has it).
        input_shape: one input in xrobust's units, channels first for images (C, H, W);
            default: read from the graph (fixed sizes only).
        num_classes: classes C; default: read from the graph's output shape.
        bounds: the valid input range.
        output: "logits", "probabilities" or "labels"; default: inferred (an integer output
            is labels; a float output produced by Softmax, or from a scikit-learn export, is
            probabilities; any other float output is logits).
        batch_size: rows per onnxruntime call (default 256, or the graph's fixed batch).
        query_budget: total rows the classifier may be asked about.
        layout: "NCHW", "NHWC" or None (read from the graph, see the module docstring).
        providers: onnxruntime execution providers, overriding ``device``.
        output_name: the graph output to read (default: the only one; with several, the
            one that is clearly the class scores, else refused: see the module docstring).
        name: a short name for reports (default: the file name).
        input_units: for a file from ``xrobust export`` that embeds a tabular
            standardisation: "model" (default) takes rows standardised with the training
            statistics the file carries, as the run's model does, and maps them back to raw
            values before the graph; "graph" feeds rows to the graph as they are (raw
            feature rows). Files without an embedded standardisation get rows as they are.

    onnxruntime's thread count follows ``OMP_NUM_THREADS`` when it is set.

    Raises:
        ConfigError: onnxruntime missing, a bad option.
        ModelError: unreadable file, several inputs, unsupported input or output types.
        DataError: the graph's input or output does not fit the declared shape or classes.
    """

    source = "onnx"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        device: str | torch.device | None = None,
        input_shape: tuple[int, ...] | None = None,
        num_classes: int | None = None,
        bounds: tuple[float, float] | None = None,
        output: str | None = None,
        batch_size: int | None = None,
        query_budget: int | None = None,
        layout: str | None = None,
        providers: Sequence[str] | None = None,
        output_name: str | None = None,
        name: str | None = None,
        input_units: str | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ConfigError(
                f"option(s) {', '.join(sorted(unknown))} do not apply to an ONNX model; it "
                "takes layout, providers, output_name, input_units, name"
            )
        if input_units is not None and input_units not in _INPUT_UNITS:
            raise ConfigError(f"input_units must be 'model', 'graph' or None, got {input_units!r}")
        ort = _import_ort()
        self.path = Path(path)
        if not self.path.is_file():
            raise ModelError(
                f"ONNX file {str(self.path)!r} "
                + ("is a folder" if self.path.is_dir() else "does not exist")
            )
        if layout is not None:
            layout = str(layout).upper()
            if layout not in LAYOUTS:
                raise ConfigError(f"layout must be 'NCHW', 'NHWC' or None, got {layout!r}")
        self.providers = self._providers(ort, device, providers)
        so = ort.SessionOptions()
        threads = os.environ.get("OMP_NUM_THREADS", "")
        if threads.isdigit() and int(threads) > 0:
            so.intra_op_num_threads = int(threads)
            so.inter_op_num_threads = 1
        so.log_severity_level = 3
        # no busy-waiting between runs: spinning threads made each call about 2.5x slower
        # on a shared 2-core machine (the same effect as OpenMP's, see ENVIRONMENT.md)
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        try:
            self._sess = ort.InferenceSession(str(self.path), so, providers=self.providers)
        except Exception as exc:
            raise ModelError(
                f"onnxruntime cannot load {str(self.path)!r}: {type(exc).__name__}: "
                f"{str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
            ) from exc
        self._meta = self._read_meta()
        label = name or self.path.name
        self.metadata: dict[str, Any] | None = read_xrobust_metadata(
            dict(self._sess.get_modelmeta().custom_metadata_map or {}), label
        )
        #: the dataset spec of the run the file was exported from (None for other files)
        self.model_spec: Any = None if self.metadata is None else self.metadata["_spec"]
        stdz = None if self.metadata is None else self.metadata["_standardize"]
        self.input_units: str = input_units or ("model" if stdz is not None else "graph")
        self._affine: tuple[np.ndarray, np.ndarray] | None = (
            stdz if (stdz is not None and self.input_units == "model") else None
        )
        if (
            bounds is None
            and self.model_spec is not None
            and (stdz is None or self.input_units == "model")
        ):
            bounds = tuple(self.model_spec.bounds)

        # ---- the input
        inputs = self._sess.get_inputs()
        if len(inputs) != 1:
            raise ModelError(
                f"{label}: xrobust needs a graph with one input; this one has {len(inputs)} "
                f"({', '.join(i.name for i in inputs)})"
            )
        inp = inputs[0]
        self.input_name: str = inp.name
        self.input_type: str = inp.type
        if inp.type not in _FLOAT_TYPES:
            raise ModelError(
                f"{label}: its input {inp.name!r} is {inp.type}; xrobust feeds float inputs "
                "(float, double or float16): export the model with a float input"
            )
        self._in_dtype = _FLOAT_TYPES[inp.type]
        gdims = _dims(inp.shape)
        self.graph_input_shape: list[int | None] = gdims
        if len(gdims) < 2:
            raise ModelError(
                f"{label}: its input {inp.name!r} has shape {_show(gdims)}; expected a batch "
                "dimension and at least one feature dimension"
            )
        self.fixed_batch: int | None = gdims[0]
        self.layout: str | None = None
        shape = self._input_layout(gdims[1:], input_shape, layout, label)
        if self.fixed_batch is not None:
            self._check_fixed_batch(self.fixed_batch, gdims, shape, label)

        # ---- the output
        outs = self._sess.get_outputs()
        self.output_choice: str | None = None
        self._out_index, out_kind, graph_classes = self._pick_output(
            outs, output_name, label, num_classes
        )
        self.output_name: str = outs[self._out_index].name
        self.output_type: str = outs[self._out_index].type
        self.output_names = [o.name for o in outs]
        kind = output if output is not None else out_kind
        if kind == "labels" and self.output_type.startswith("seq("):
            raise ConfigError(
                f"{label}: output {self.output_name!r} is a map of scores, not labels"
            )
        if (
            num_classes is not None
            and graph_classes is not None
            and kind != "labels"
            and int(num_classes) != graph_classes
        ):
            raise DataError(
                f"the data has {int(num_classes)} classes but the model {label!r} answers "
                f"{graph_classes} scores per row (output {self.output_name!r} of shape "
                f"{_show(_dims(outs[self._out_index].shape))})"
            )
        classes = num_classes if num_classes is not None else (
            graph_classes if kind != "labels" else None
        )  # fmt: skip

        if batch_size is None:
            batch_size = self.fixed_batch or 256
        dev = torch.device("cuda") if (
            self.providers[0] == "CUDAExecutionProvider" and torch.cuda.is_available()
        ) else torch.device("cpu")  # fmt: skip
        super().__init__(
            name=label,
            input_shape=shape,
            num_classes=classes,
            bounds=bounds,
            output=kind,
            differentiable=False,
            device=dev,
            batch_size=batch_size,
            query_budget=query_budget,
        )

    # ------------------------------------------------------------------ setup
    @staticmethod
    def _providers(ort: Any, device: Any, providers: Sequence[str] | None) -> list[str]:
        available = list(ort.get_available_providers())
        if providers is not None:
            provs = [str(p) for p in providers]
            missing = [p for p in provs if p not in available]
            if not provs or missing:
                raise ConfigError(
                    f"onnxruntime provider(s) {', '.join(missing) or '(none given)'} not "
                    f"available here; available: {', '.join(available)}"
                )
            return provs
        name = "cpu" if device is None else str(device).strip().lower()
        cuda_ok = "CUDAExecutionProvider" in available
        if name == "auto":
            return ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda_ok else [
                "CPUExecutionProvider"
            ]  # fmt: skip
        try:
            dev = torch.device(name)
        except RuntimeError as exc:
            raise ConfigError(
                f"unknown device {device!r}; expected 'auto', 'cpu', 'cuda' or 'cuda:N'"
            ) from exc
        if dev.type == "cuda":
            if not cuda_ok:
                raise ConfigError(
                    f"device {device!r} asked for, but this onnxruntime has no CUDA provider "
                    f"(available: {', '.join(available)}); install onnxruntime-gpu or use 'cpu'"
                )
            return ["CUDAExecutionProvider", "CPUExecutionProvider"]
        if dev.type != "cpu":
            raise ConfigError(f"device {device!r}: ONNX models run on 'cpu' or 'cuda'")
        return ["CPUExecutionProvider"]

    def _read_meta(self) -> dict[str, Any]:
        meta = self._sess.get_modelmeta()
        out: dict[str, Any] = {"producer": meta.producer_name or None, "opset": None}
        try:
            import onnx

            m = onnx.load(str(self.path), load_external_data=False)
            out["opset"] = next(
                (int(o.version) for o in m.opset_import if o.domain in ("", "ai.onnx")), None
            )
            out["softmax_outputs"] = {
                o for n in m.graph.node if n.op_type == "Softmax" for o in n.output
            }
            self._onnx_model = m
        except Exception:  # onnx missing or unreadable: the facts stay unknown
            out["softmax_outputs"] = set()
            self._onnx_model = None
        return out

    def _input_layout(
        self,
        g: list[int | None],
        declared: tuple[int, ...] | None,
        layout: str | None,
        label: str,
    ) -> tuple[int, ...] | None:
        """The input shape in xrobust's units; sets :attr:`layout` (:func:`input_layout`)."""
        self.layout, shape = input_layout(g, declared, layout, label)
        return shape

    def _check_fixed_batch(
        self, b: int, gdims: list[int | None], shape: tuple[int, ...] | None, label: str
    ) -> None:
        """Refuse a fixed batch no call could ever fill (every call pads to ``b`` rows)."""
        row = shape if shape is not None else tuple(d or 1 for d in gdims[1:])
        need = int(b) * int(np.prod(row)) * np.dtype(self._in_dtype).itemsize
        if need <= MAX_FIXED_BATCH_BYTES:
            return
        most = max(1, MAX_FIXED_BATCH_BYTES // max(1, need // int(b)))
        raise ModelError(
            f"{label}: its input {self.input_name!r} has a fixed batch of {b} rows, so every "
            f"call would be padded to {b} rows ({need / 2**30:.3g} GiB of inputs alone), which "
            "no machine can run. Re-export the model with a dynamic batch dimension (`xrobust "
            "export` without --batch-size; torch.onnx.export(..., dynamic_shapes={'x': {0: "
            "torch.export.Dim('batch')}}); tf2onnx's default), or with a fixed batch of at most "
            f"{most} rows"
        )

    def _pick_output(
        self,
        outs: Sequence[Any],
        output_name: str | None,
        label: str,
        num_classes: int | None = None,
    ) -> tuple[int, str, int | None]:
        """(index, inferred kind, classes from the graph or None) of the output to read."""
        names = [o.name for o in outs]
        if output_name is not None:
            if output_name not in names:
                raise ConfigError(
                    f"{label} has no output {output_name!r}; its outputs: {', '.join(names)} "
                    "(choose one with --output-name NAME, Python: output_name=NAME)"
                )
            idx = names.index(output_name)
        elif len(outs) == 1:
            idx = 0
        else:
            idx, why, loud = self._scores_output(outs, label, num_classes)
            self.output_choice = f"{outs[idx].name!r}: {why}"
            (log.warning if loud else log.info)(
                "%s has %d outputs (%s); reading %r: %s (choose another with --output-name, "
                "Python: output_name=)",
                label, len(outs), ", ".join(names), outs[idx].name, why,
            )  # fmt: skip
        o = outs[idx]
        dims = _dims(o.shape)
        if o.type.startswith("seq(map("):
            return idx, "probabilities", None
        if o.type in _INT_TYPES or o.type == "tensor(bool)":
            return idx, "labels", None
        if o.type not in _FLOAT_TYPES:
            raise ModelError(f"{label}: output {o.name!r} is {o.type}; expected scores or labels")
        classes = dims[1] if len(dims) == 2 else None
        producer = (self._meta.get("producer") or "").lower()
        probs = (
            o.name in self._meta.get("softmax_outputs", set())
            or producer.startswith("skl2onnx")
            or "prob" in o.name.lower()
        )
        if len(dims) == 1 and not probs:
            return idx, "logits", 1
        return idx, ("probabilities" if probs else "logits"), classes

    @staticmethod
    def _scores_output(
        outs: Sequence[Any], label: str, num_classes: int | None
    ) -> tuple[int, str, bool]:
        """(index, why, several candidates?) of the output that is clearly the class scores."""
        names = [o.name for o in outs]
        listed = ", ".join(f"{o.name!r} {o.type} {_show(_dims(o.shape))}" for o in outs)
        scored = [
            i for i, o in enumerate(outs)
            if o.type in _FLOAT_TYPES or o.type.startswith("seq(map(")
        ]  # fmt: skip
        if not scored:
            ints = [i for i, o in enumerate(outs) if o.type in _INT_TYPES]
            if not ints:
                raise ModelError(
                    f"{label}: none of its outputs ({', '.join(names)}) holds scores or "
                    "labels; give output_name="
                )
            if len(ints) > 1:
                raise ConfigError(
                    f"{label} has {len(ints)} integer outputs that could be the labels "
                    f"({listed}); say which with --output-name NAME (Python: output_name=NAME)"
                )
            return ints[0], "the only output holding labels", False
        if len(scored) == 1:
            return (
                scored[0],
                "the only output holding scores (the others hold labels or other types)",
                False,
            )
        two_d = [i for i in scored if len(_dims(outs[i].shape)) == 2]
        if num_classes is not None:
            exact = [i for i in two_d if _dims(outs[i].shape)[1] == int(num_classes)]
            if len(exact) == 1:
                return exact[0], f"the only output of shape (N, {int(num_classes)})", True
            pool = [i for i in scored if i in exact or _dims(outs[i].shape)[-1:] == [None]]
        else:
            pool = scored
        named = [i for i in (pool or scored) if _canon(outs[i].name) in _SCORE_NAMES]
        if len(named) == 1:
            return named[0], f"named {outs[named[0]].name!r}", True
        raise ConfigError(
            f"{label} has {len(scored)} outputs that could be the class scores ({listed}), and "
            "none is clearly the one (the only one of shape (N, classes), or the only one named "
            "logits, scores or probabilities): say which with --output-name NAME (Python: "
            "output_name=NAME)"
        )

    # ------------------------------------------------------------------ what it is
    @property
    def opset(self) -> int | None:
        return self._meta.get("opset")

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            {
                "file": str(self.path),
                "producer": self._meta.get("producer"),
                "opset": self.opset,
                "layout": self.layout,
                "input_name": self.input_name,
                "input_type": self.input_type,
                "graph_input_shape": [d if d is not None else "?" for d in self.graph_input_shape],
                "fixed_batch": self.fixed_batch,
                "output_name": self.output_name,
                "output_names": list(self.output_names),
                "output_choice": self.output_choice,
                "providers": list(self.providers),
                "xrobust_metadata": None if self.metadata is None else self.metadata["version"],
                "preprocessing": self._preprocessing_facts(),
            }
        )
        return d

    def _preprocessing_facts(self) -> dict[str, Any] | None:
        if self.metadata is None:
            return None
        pre = self.metadata.get("preprocessing")
        steps = [] if not isinstance(pre, dict) else [s.get("op") for s in pre.get("steps", [])]
        return {
            "embedded": bool(isinstance(pre, dict) and pre.get("embedded")),
            "steps": steps,
            "input_units": self.input_units,
            "graph_takes": "raw feature rows"
            if self.metadata["_standardize"] is not None
            else "inputs as the data holds them",
        }

    # ------------------------------------------------------------------ answers
    def _to_graph(self, x: torch.Tensor) -> np.ndarray:
        t = x.detach().cpu()
        if self.layout == "NHWC":
            t = t.permute(0, 2, 3, 1)
        if self._affine is not None:  # rows in the run's units -> the graph's raw rows
            mean, std = self._affine
            a = t.numpy().astype(np.float64) * std + mean
            return np.ascontiguousarray(a.astype(self._in_dtype))
        return np.ascontiguousarray(t.numpy().astype(self._in_dtype, copy=False))

    def _run(self, arr: np.ndarray) -> Any:
        try:
            return self._sess.run([self.output_name], {self.input_name: arr})[0]
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelError(
                f"onnxruntime failed on {self.name!r} with a batch of shape {arr.shape} "
                f"({self.layout or 'as is'}): {type(exc).__name__}: {first}"
            ) from exc

    def _answer(self, x: torch.Tensor) -> Any:
        arr = self._to_graph(x)
        n = arr.shape[0]
        if self.fixed_batch is None:
            return self._unpack(self._run(arr))
        b = self.fixed_batch
        parts = []
        for i in range(0, n, b):
            piece = arr[i : i + b]
            k = piece.shape[0]
            if k < b:  # pad with copies of the first row (inside the bounds), drop afterwards
                piece = np.concatenate([piece, np.repeat(piece[:1], b - k, axis=0)])
            parts.append(np.asarray(self._unpack(self._run(piece)))[:k])
        return np.concatenate(parts) if parts else np.empty((0,))

    def _unpack(self, out: Any) -> Any:
        """ZipMap answers (a list of {class: probability} per row) become an (n, C) array."""
        if not isinstance(out, list):
            return out
        if not out:
            return np.empty((0, self.num_classes or 0), dtype=np.float32)
        if not all(isinstance(r, dict) for r in out):
            raise ModelError(f"{self.name!r} answered a list of {type(out[0]).__name__}")
        keys = list(out[0].keys())
        try:
            ints = sorted(int(k) for k in keys)
        except (TypeError, ValueError):
            ints = []
        if ints != list(range(len(keys))):
            raise ModelError(
                f"{self.name!r} answers a ZipMap of classes {keys[:10]}; xrobust needs "
                "probability columns for classes 0..C-1: train on labels 0..C-1, or export "
                "with skl2onnx's options={id(model): {'zipmap': False}} (columns in "
                "classes_ order)"
            )
        order = sorted(keys, key=int)
        return np.array([[r[k] for k in order] for r in out], dtype=np.float32)

    # ------------------------------------------------------------------ white box
    def to_torch(
        self,
        check_x: torch.Tensor,
        *,
        tol: float = 1e-4,
        device: str | torch.device | None = None,
        query_budget: int | None = None,
    ) -> OnnxTorchClassifier:
        """The same graph as a differentiable torch module (through onnx2torch), checked
        against onnxruntime on ``check_x`` (counted as queries of this classifier).

        Args:
            check_x: NCHW inputs (in the data's units) to compare the two on; use real data.
            tol: largest allowed absolute difference between the two outputs.
            device: where the torch module runs (default: cpu).
            query_budget: a budget for the returned classifier.

        Returns:
            An :class:`OnnxTorchClassifier` (a :class:`TorchClassifier` taking NCHW data,
            whatever the graph's layout) whose ``describe()`` has
            ``conversion_max_abs_diff`` and ``conversion_rows``.

        Raises:
            ConfigError: onnx2torch or onnx is not installed.
            ModelError: the graph cannot be converted, the output is labels (nothing to
                differentiate), or the outputs differ by more than ``tol``.
        """
        if self.output == "labels":
            raise ModelError(
                f"{self.name!r} answers labels: there are no scores to differentiate, so it "
                "cannot be used white-box"
            )
        if self.output_type not in _FLOAT_TYPES:
            raise ModelError(
                f"{self.name!r}: its output {self.output_name!r} is {self.output_type}, which "
                "onnx2torch does not convert to a tensor"
            )
        if not isinstance(check_x, torch.Tensor):
            check_x = torch.as_tensor(np.asarray(check_x, dtype=np.float32))
        if check_x.dim() < 2 or check_x.shape[0] < 1:
            raise DataError("to_torch needs a batch of at least one real input to check on")
        onnx2torch = import_onnx2torch()
        model = self._onnx_model
        if model is None:
            import onnx

            model = onnx.load(str(self.path))
        model = _for_onnx2torch(model)
        try:
            graph_module = onnx2torch.convert(model)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelError(
                f"onnx2torch cannot convert {self.name!r}: {type(exc).__name__}: {first}"
            ) from exc
        wrapped = OnnxTorchModule(
            graph_module,
            layout=self.layout,
            output_index=self._out_index,
            n_outputs=len(self.output_names),
            dtype=torch.float64 if self._in_dtype is np.float64 else torch.float32,
            affine=self._affine,
        )
        expected = self.scores(check_x).cpu().double()
        with torch.no_grad():
            try:
                got = wrapped(check_x.detach().cpu().float()).double()
            except Exception as exc:
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
                raise ModelError(
                    f"the onnx2torch conversion of {self.name!r} fails on a batch of shape "
                    f"{tuple(check_x.shape)}: {type(exc).__name__}: {first}"
                ) from exc
        if got.dim() == 1:
            got = got[:, None]
        if got.shape != expected.shape:
            raise ModelError(
                f"the onnx2torch conversion of {self.name!r} answers shape {tuple(got.shape)} "
                f"where onnxruntime answers {tuple(expected.shape)}"
            )
        diff = float((got - expected).abs().max()) if got.numel() else 0.0
        if not diff <= tol:
            raise ModelError(
                f"the onnx2torch conversion of {self.name!r} differs from onnxruntime by "
                f"{diff:.3g} (max abs output difference on {len(check_x)} rows), above "
                f"tol={tol:g}: refusing to use it white-box"
            )
        for p in wrapped.parameters():
            p.requires_grad_(False)
        wrapped.eval()
        return OnnxTorchClassifier(
            wrapped,
            source_file=str(self.path),
            max_abs_diff=diff,
            rows=int(check_x.shape[0]),
            tol=tol,
            layout=self.layout,
            device="cpu" if device is None else device,
            output=self.output,
            name=f"{self.name} (onnx2torch)",
            input_shape=self.input_shape,
            num_classes=self.num_classes,
            bounds=self.bounds,
            batch_size=self.batch_size,
            query_budget=query_budget,
        )


class OnnxTorchModule(nn.Module):
    """An onnx2torch module taking xrobust's NCHW data: permuted to NHWC first when the
    graph is channels last; the chosen output of a multi-output graph; rows in the run's
    units mapped back to raw values first when the graph embeds a standardisation."""

    def __init__(
        self,
        inner: nn.Module,
        *,
        layout: str | None,
        output_index: int = 0,
        n_outputs: int = 1,
        dtype: torch.dtype = torch.float32,
        affine: tuple[np.ndarray, np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.layout = layout
        self.output_index = output_index
        self.n_outputs = n_outputs
        self.dtype = dtype
        self.has_affine = affine is not None
        mean, std = affine if affine is not None else (np.zeros(1), np.ones(1))
        # rows in the run's (standardised) units -> the raw rows the graph standardises
        self.register_buffer("in_mean", torch.as_tensor(mean, dtype=torch.float64))
        self.register_buffer("in_std", torch.as_tensor(std, dtype=torch.float64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x
        if self.has_affine:
            z = z.to(torch.float64) * self.in_std + self.in_mean
        z = z.to(self.dtype)
        if self.layout == "NHWC":
            z = z.permute(0, 2, 3, 1)
        with warnings.catch_warnings():  # onnx2torch's Slice indexes with a list (harmless)
            warnings.filterwarnings(
                "ignore", message="Using a non-tuple sequence", category=UserWarning
            )
            out = self.inner(z)
        if isinstance(out, list | tuple):
            out = out[self.output_index]
        return out.to(x.dtype) if x.is_floating_point() else out


class OnnxTorchClassifier(TorchClassifier):
    """A :class:`TorchClassifier` converted from an ONNX file, with the check's result."""

    def __init__(
        self,
        module: nn.Module,
        *,
        source_file: str,
        max_abs_diff: float,
        rows: int,
        tol: float,
        layout: str | None,
        **kwargs: Any,
    ) -> None:
        super().__init__(module, **kwargs)
        self.source_file = source_file
        self.conversion_max_abs_diff = max_abs_diff
        self.conversion_rows = rows
        self.conversion_tol = tol
        self.layout = layout

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            {
                "converted_from": "onnx",
                "file": self.source_file,
                "layout": self.layout,
                "conversion": "onnx2torch",
                "conversion_max_abs_diff": self.conversion_max_abs_diff,
                "conversion_rows": self.conversion_rows,
                "conversion_tol": self.conversion_tol,
            }
        )
        return d


# ---------------------------------------------------------------------- onnx2torch
def _for_onnx2torch(model: Any) -> Any:
    """A copy of the graph that onnx2torch 1.5 converts: ``Reshape(allowzero=1)`` (which
    torch's exporter writes for every ``view``) becomes ``allowzero=0``. The two differ
    only where the target shape holds a 0, which a constant shape never does here (checked)
    and a computed one does only for zero-sized tensors; the numerical check that follows
    the conversion would catch any difference."""
    import onnx
    from onnx import numpy_helper

    consts: dict[str, np.ndarray] = {
        t.name: numpy_helper.to_array(t) for t in model.graph.initializer
    }
    for n in model.graph.node:
        if n.op_type == "Constant":
            for a in n.attribute:
                if a.name == "value":
                    consts[n.output[0]] = numpy_helper.to_array(a.t)
    todo = []
    for i, n in enumerate(model.graph.node):
        if n.op_type != "Reshape":
            continue
        for j, a in enumerate(n.attribute):
            if a.name == "allowzero" and a.i == 1:
                shape = consts.get(n.input[1]) if len(n.input) > 1 else None
                if shape is None or not bool((shape == 0).any()):
                    todo.append((i, j))
    if not todo:
        return model
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for i, j in todo:
        m.graph.node[i].attribute[j].i = 0
    return m


_TORCHVISION_OPS = ("nms", "batched_nms", "roi_align", "RoIAlign", "roi_pool", "box_iou")


def _torchvision_missing(why: str) -> types.ModuleType:
    """Stand-in ``torchvision`` / ``torchvision.ops`` whose functions raise a clear error:
    onnx2torch imports them only for its NonMaxSuppression and RoiAlign converters."""

    def missing(op: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise ModelError(
                f"this ONNX graph needs torchvision.ops.{op} (NonMaxSuppression / RoiAlign), "
                f"but torchvision is not usable here ({why}); install a torchvision that "
                "matches your torch to convert it"
            )

        fail.__name__ = op
        return fail

    class _Ops(types.ModuleType):
        def __getattr__(self, op: str) -> Any:
            if op.startswith("__"):
                raise AttributeError(op)
            return missing(op)

    tv = types.ModuleType("torchvision")
    ops = _Ops("torchvision.ops")
    tv.ops = ops  # type: ignore[attr-defined]
    tv.__path__ = []  # type: ignore[attr-defined]
    tv.__xrobust_stub__ = True  # type: ignore[attr-defined]
    return tv


@contextlib.contextmanager
def _without_torchvision(why: str) -> Iterator[None]:
    """Import with a stand-in torchvision, then remove it from ``sys.modules``."""
    saved = {
        k: v for k, v in sys.modules.items() if k == "torchvision" or k.startswith("torchvision.")
    }
    for k in saved:
        del sys.modules[k]
    tv = _torchvision_missing(why)
    sys.modules["torchvision"] = tv
    sys.modules["torchvision.ops"] = tv.ops  # type: ignore[attr-defined]
    try:
        yield
    finally:
        for k in [k for k in sys.modules if k == "torchvision" or k.startswith("torchvision.")]:
            if getattr(sys.modules[k], "__xrobust_stub__", False) or k == "torchvision.ops":
                del sys.modules[k]


def import_onnx2torch() -> Any:
    """``onnx2torch``, imported so that a missing or broken torchvision does not stop it.

    With a working torchvision it is imported normally. Otherwise (none installed, or a
    build that does not match torch, as the CUDA wheel against a CPU torch) its NMS and
    RoiAlign converters get stand-ins that raise a clear :class:`ModelError` if a graph
    uses them; every other converter works.

    Raises:
        ConfigError: onnx2torch (or onnx) is not installed.
    """
    if isinstance(sys.modules.get("onnx2torch"), types.ModuleType):
        return sys.modules["onnx2torch"]
    hint = (
        "white-box use of ONNX models needs onnx2torch: pip install onnx onnx2torch "
        "(pip install --no-deps onnx2torch keeps your torch and torchvision as they are)"
    )
    try:
        importlib.import_module("onnx")
    except ImportError as exc:
        raise ConfigError(hint) from exc
    if _find_spec("onnx2torch") is None:
        raise ConfigError(hint)
    why = ""
    try:
        importlib.import_module("torchvision.ops")
    except Exception as exc:  # absent, or compiled against another torch
        why = (
            f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        )
    if not why:
        return importlib.import_module("onnx2torch")
    log.debug("importing onnx2torch without torchvision (%s)", why)
    for k in [k for k in sys.modules if k == "onnx2torch" or k.startswith("onnx2torch.")]:
        del sys.modules[k]
    try:
        with _without_torchvision(why):
            mod = importlib.import_module("onnx2torch")
    except ImportError as exc:
        raise ConfigError(f"onnx2torch failed to import: {exc}; {hint}") from exc
    return mod


# ---------------------------------------------------------------------- data for a file
def _is_table_file(data: Any) -> bool:
    from xrobust.data._base import DATASETS

    if isinstance(data, str) and data in DATASETS:
        return False
    p = Path(os.fspath(data))
    return p.suffix.lower() in (".csv", ".tsv") and p.is_file()


def _graph_hw(path: Path) -> tuple[int, int] | None:
    """(H, W) of a rank-4 graph input with fixed sizes whose channel axis is clear."""
    try:
        import onnx

        m = onnx.load(str(path), load_external_data=False)
        init = {t.name for t in m.graph.initializer}
        inputs = [i for i in m.graph.input if i.name not in init]
        if len(inputs) != 1:
            return None
        dims = [d.dim_value if d.HasField("dim_value") else None
                for d in inputs[0].type.tensor_type.shape.dim]  # fmt: skip
    except Exception:  # unreadable here: the classifier says what is wrong
        return None
    return image_hw(dims)


def image_hw(dims: Sequence[int | None]) -> tuple[int, int] | None:
    """(H, W) of a rank-4 input shape ``[N, a, b, c]`` with fixed sizes whose channel axis
    (1, 3 or 4 channels, first or last) is clear; None otherwise."""
    if len(dims) != 4:
        return None
    a, b, c = dims[1:]
    chan = (1, 3, 4)
    if a in chan and c not in chan and b and c:
        return int(b), int(c)
    if c in chan and a not in chan and a and b:
        return int(a), int(b)
    return None


def load_for_onnx(
    path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    target: str | None = None,
    resize: bool = False,
    train_data: str | os.PathLike[str] | None = None,
    raw_features: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Load ``data`` as input to the ONNX model in ``path``, never standardising a table
    with its own statistics.

    - A file from ``xrobust export`` (it carries the run's dataset spec): the data is read
      as ``--model`` reads it for the run (:func:`~xrobust.data.schema.load_for_model`:
      columns by name, the training statistics the file carries, classes by name, the
      model's image size); the classifier maps the rows back to the raw values the graph
      takes.
    - Another file with a CSV table: ``train_data`` (the table the model was trained on)
      standardises it with that table's training-split statistics, as ``xrobust train``
      computes them; ``raw_features`` feeds the values as they are (a model that scales
      its own inputs, such as a scikit-learn pipeline); with neither it is refused.
    - Other data is loaded as it is (``load_dataset``); with ``resize`` images are resized
      to the graph's fixed input size, with a warning naming both shapes.

    Returns:
        ``(bundle, options)``: the data, and options for :class:`OnnxClassifier`.

    Raises:
        ConfigError: a table for a file that does not say how it takes features, or
            options that do not apply.
        DataError: the data does not fit.
    """
    from xrobust.data.schema import load_for_model

    p = Path(path)
    label = p.name
    rec = read_xrobust_metadata(p, label) if p.is_file() else None
    spec = None if rec is None else rec["_spec"]
    if spec is not None:
        if train_data is not None or raw_features:
            raise ConfigError(
                f"{label} was exported by xrobust and carries the preprocessing of its "
                "training data: leave out --train-data / --raw-features (Python: train_data=, "
                "raw_features=)"
            )
        return load_for_model(spec, data, target=target, resize=resize), {}
    hw = _graph_hw(p) if resize else None
    return load_for_file(
        label, data, target=target, resize_to=hw, train_data=train_data, raw_features=raw_features
    )


def load_for_file(
    label: str,
    data: str | os.PathLike[str],
    *,
    target: str | None = None,
    resize_to: tuple[int, int] | None = None,
    train_data: str | os.PathLike[str] | None = None,
    raw_features: bool = False,
) -> tuple[Any, dict[str, Any]]:
    """Load ``data`` for a model file ``label`` that records no preprocessing (an ONNX file
    not from ``xrobust export``, a TensorFlow Lite file), as :func:`load_for_onnx` says:
    a CSV table standardised with ``train_data``'s statistics or fed raw
    (``raw_features``), never with its own; images resized to ``resize_to`` (H, W) when
    given, with a warning."""
    from xrobust.data import load_dataset
    from xrobust.data.schema import load_for_model

    if train_data is not None and raw_features:
        raise ConfigError("give --train-data or --raw-features, not both")
    if _is_table_file(data):
        from xrobust.data.csv_file import load_csv

        if train_data is not None:
            tspec = load_dataset(train_data, target=target).spec
            if tspec.modality != "tabular" or not tspec.extra.get("standardized"):
                raise ConfigError(
                    f"--train-data {os.fspath(train_data)!r}: expected the CSV table the model "
                    "was trained on (its training split's statistics standardise --data)"
                )
            log.info("%s: standardised with the statistics of %s", data, train_data)
            return load_for_model(tspec, data, target=target), {"input_units": "graph"}
        if raw_features:
            return load_csv(data, target=target, standardize=False), {"input_units": "graph"}
        raise ConfigError(
            f"{label} does not say how it takes features (it carries no preprocessing record "
            f"from `xrobust export`), and xrobust will not standardise {os.fspath(data)!r} "
            "with that file's own statistics (the model was trained with others). Re-export "
            "the model with `xrobust export --model RUN` (the standardisation then travels "
            "inside the file), or give --train-data TRAIN.csv (standardise with the statistics "
            "of the table the model was trained on), or --raw-features if the model takes the "
            "values as they are (e.g. a scikit-learn pipeline with its own scaler)"
        )
    if train_data is not None or raw_features:
        raise ConfigError("--train-data and --raw-features apply to CSV data")
    bundle = load_dataset(data, target=target)
    hw = resize_to
    have = tuple(bundle.spec.input_shape)
    if hw is not None and bundle.spec.modality == "image" and len(have) == 3 and have[1:] != hw:
        want = (have[0], *hw)
        warnings.warn(
            f"{os.fspath(data)}: images of shape {have} resized to the model's input shape "
            f"{want} (resize); the figures are about the resized images",
            stacklevel=2,
        )
        bundle = load_dataset(data, size=hw)
    return bundle, {}
