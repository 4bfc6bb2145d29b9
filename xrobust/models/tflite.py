"""TensorFlow Lite models (``.tflite``: float, or quantized to int8 / uint8) as classifiers.

:class:`TFLiteClassifier` answers batches through Google's LiteRT interpreter
(``ai_edge_litert``, the ``tflite`` extra). It is a black box, like an ONNX file without
onnx2torch: queries only, each row counted. What it needs is read from the file:

* the input: its shape (``shape_signature``: ``-1`` is a dynamic size), its layout (a
  rank-4 input is NCHW or NHWC, decided as for ONNX graphs by
  :func:`xrobust.models.onnx.input_layout`: Keras models take channels last, and the
  classifier permutes xrobust's NCHW data), its dtype and quantization;
* the output to read and its kind (logits, probabilities after a ``SOFTMAX``, labels for an
  integer output without quantization);
* the signature: a file with several signatures (``serving_default``, ``train``, ...) is
  refused unless one is named (``signature=``).

A quantized model (int8, uint8 or int16 input / output tensors with a scale and zero
point, as the converter's full-integer quantization writes them) gets its inputs quantized
the way TensorFlow Lite's own ``QUANTIZE`` kernel does it,
``q = clip(round(x / scale) + zero_point)`` (rounding half away from zero, in float32), and
its outputs dequantized, ``(q - zero_point) * scale``; data, bounds and ``eps`` stay in the
float model's units. ``describe()["quantized"]`` says so, with each tensor's dtype, scale and
zero point.

A dynamic batch is resized with ``resize_tensor_input``: one interpreter per batch size, the
most recent :data:`MAX_INTERPRETERS` kept. A fixed batch is filled with copies of the
first row, dropped afterwards (as for ONNX graphs).

Example:
    >>> from xrobust.models import as_classifier
    >>> clf = as_classifier("model_int8.tflite", spec=ds.spec)   # doctest: +SKIP
    >>> clf.describe()["quantized"], clf.describe()["layout"]      # doctest: +SKIP
    (True, 'NHWC')
    >>> clf.describe()["input_tensor"]                                  # doctest: +SKIP
    {'name': 'serving_default_keras_tensor:0', 'dtype': 'int8', 'scale': 0.0039, 'zero_point': -128}
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from xrobust.errors import ConfigError, DataError, ModelError
from xrobust.models.classifier import Classifier
from xrobust.models.onnx import LAYOUTS, _show, image_hw, input_layout

__all__ = ["MAX_INTERPRETERS", "TFLiteClassifier", "TensorQuantization", "load_for_tflite"]

log = logging.getLogger(__name__)

_INSTALL = "install ai-edge-litert (pip install 'xrobust[tflite]')"
#: interpreters kept, one per batch size (the most recently used)
MAX_INTERPRETERS = 8
#: the FlatBuffer file identifier of a TensorFlow Lite model (bytes 4..8)
_IDENTIFIER = b"TFL3"
_OPTIONS = ("layout", "signature", "output_name", "num_threads", "name")
_FLOATS = (np.float32, np.float16, np.float64)
_QUANT_INTS = (np.int8, np.uint8, np.int16)


def _import_interpreter() -> Any:
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError as exc:
        raise ConfigError(f"TensorFlow Lite models need ai_edge_litert: {_INSTALL}") from exc
    return Interpreter


def _litert_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("ai-edge-litert")
    except Exception:  # not installed as a distribution
        return None


def _round_half_away(v: np.ndarray) -> np.ndarray:
    """Rounding as TensorFlow Lite's ``TfLiteRound`` (``std::round``): halves away from 0."""
    return np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))


@dataclass(frozen=True)
class TensorQuantization:
    """The dtype and affine quantization of one input or output tensor.

    Attributes:
        name: the tensor's name in the file.
        dtype: its NumPy dtype name ("float32", "int8", "uint8", ...).
        scale / zero_point: real value = (q - zero_point) * scale; scale 0 means not
            quantized.
    """

    name: str
    dtype: str
    scale: float
    zero_point: int

    @property
    def quantized(self) -> bool:
        """An integer tensor with a scale: its values stand for real numbers."""
        return self.scale > 0 and np.issubdtype(np.dtype(self.dtype), np.integer)

    def quantize(self, x: np.ndarray) -> np.ndarray:
        """Real values to this tensor's integers: ``clip(round(x / scale) + zero_point)``
        (what TensorFlow Lite's QUANTIZE kernel computes, in float32)."""
        info = np.iinfo(np.dtype(self.dtype))
        q = _round_half_away(x.astype(np.float32) / np.float32(self.scale)) + self.zero_point
        return np.clip(q, info.min, info.max).astype(self.dtype)

    def dequantize(self, q: np.ndarray) -> np.ndarray:
        """This tensor's integers as real values, ``(q - zero_point) * scale`` (float32)."""
        return (
            (q.astype(np.float32) - np.float32(self.zero_point)) * np.float32(self.scale)
        ).astype(np.float32)

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"name": self.name, "dtype": self.dtype}
        if self.quantized:
            d.update(scale=self.scale, zero_point=self.zero_point)
        return d


def _quantization(detail: dict[str, Any], what: str, label: str) -> TensorQuantization:
    """The tensor's quantization, refusing per-channel quantization of an input/output."""
    params = detail.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype=np.float64).ravel()
    zps = np.asarray(params.get("zero_points", []), dtype=np.int64).ravel()
    if scales.size > 1:
        raise ModelError(
            f"{label}: its {what} {detail['name']!r} is quantized per channel ({scales.size} "
            "scales); xrobust reads inputs and outputs quantized per tensor (one scale and zero "
            "point), as the TensorFlow Lite converter writes them"
        )
    scale, zp = detail.get("quantization", (0.0, 0))
    if scales.size == 1:
        scale, zp = float(scales[0]), int(zps[0]) if zps.size else 0
    return TensorQuantization(
        name=str(detail["name"]),
        dtype=np.dtype(detail["dtype"]).name,
        scale=float(scale),
        zero_point=int(zp),
    )


def _dims(detail: dict[str, Any]) -> list[int | None]:
    sig = detail.get("shape_signature")
    shape = detail["shape"] if sig is None or len(sig) == 0 else sig
    return [int(d) if int(d) > 0 else None for d in np.asarray(shape).tolist()]


class TFLiteClassifier(Classifier):
    """A TensorFlow Lite model answering through ``ai_edge_litert``.

    Args:
        path: the ``.tflite`` file.
        input_shape: one input in xrobust's units, channels first for images (C, H, W);
            default: read from the file (fixed sizes only).
        num_classes: classes C; default: read from the output's shape.
        bounds: the valid input range.
        output: "logits", "probabilities" or "labels"; default: inferred (an integer
            output without quantization is labels, an output made by SOFTMAX is
            probabilities, any other is logits).
        batch_size: rows per interpreter call (default 256, or the file's fixed batch).
        query_budget: total rows the classifier may be asked about.
        layout: "NCHW", "NHWC" or None (read from the input, as for ONNX graphs).
        signature: the signature to run, required when the file has several.
        output_name: the output to read when there are several (the signature's output
            key, or the tensor name); default: the only one, or the only one of shape
            (N, num_classes); else refused, naming them.
        num_threads: interpreter threads (default: ``OMP_NUM_THREADS`` when set, else the
            interpreter's own choice).
        name: a short name for reports (default: the file name).

    Raises:
        ConfigError: ai_edge_litert missing, an unknown option or value, several
            signatures and none named, several outputs and none clearly the scores.
        ModelError: no such file, not a TensorFlow Lite file, unreadable, several inputs,
            an input it cannot feed or an output that is not class scores or labels.
        DataError: the model's input or output does not fit the declared shape or classes.
    """

    source = "tflite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        input_shape: tuple[int, ...] | None = None,
        num_classes: int | None = None,
        bounds: tuple[float, float] | None = None,
        output: str | None = None,
        batch_size: int | None = None,
        query_budget: int | None = None,
        layout: str | None = None,
        signature: str | None = None,
        output_name: str | None = None,
        num_threads: int | None = None,
        name: str | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ConfigError(
                f"option(s) {', '.join(sorted(unknown))} do not apply to a TensorFlow Lite "
                f"model; it takes {', '.join(_OPTIONS)}"
            )
        if layout is not None and str(layout).upper() not in LAYOUTS:
            raise ConfigError(f"layout must be 'NCHW', 'NHWC' or None, got {layout!r}")
        self._Interpreter = _import_interpreter()
        self.path = Path(path)
        label = name or self.path.name
        self._content = _read_model(self.path)
        self.num_threads = _threads(num_threads)
        first = self._new_interpreter(label)
        self.signatures: list[str] = sorted(first.get_signature_list() or {})
        self.signature = _pick_signature(self.signatures, signature, label)
        ins, outs = self._io_details(first)
        shape = self._read_input(ins, input_shape, layout, label)
        kind, classes = self._read_output(first, outs, output_name, num_classes, label)
        kind = output if output is not None else kind
        if (
            num_classes is not None
            and classes is not None
            and kind != "labels"
            and (int(num_classes) != classes)
        ):
            raise DataError(
                f"the data has {int(num_classes)} classes but the model {label!r} answers "
                f"{classes} scores per row (output {self.output_key!r} of shape "
                f"{_show(_dims(outs[self.output_key]))})"
            )
        if num_classes is None and kind != "labels":
            num_classes = classes
        self._pool: collections.OrderedDict[int, Any] = collections.OrderedDict()
        self._pool_lock = threading.Lock()
        self._spare = first  # the first interpreter serves the first batch size
        self._invoked: set[int] = set()  # interpreters that have run once
        super().__init__(
            name=label,
            input_shape=shape,
            num_classes=num_classes,
            bounds=bounds,
            output=kind,
            differentiable=False,
            device="cpu",
            batch_size=batch_size if batch_size is not None else (self.fixed_batch or 256),
            query_budget=query_budget,
        )

    # ------------------------------------------------------------------ setup
    def _new_interpreter(self, label: str | None = None) -> Any:
        try:
            interp = self._Interpreter(model_content=self._content, num_threads=self.num_threads)
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelError(
                f"TensorFlow Lite cannot load {str(self.path)!r}: {type(exc).__name__}: {first}"
            ) from exc
        return interp

    def _io_details(self, interp: Any) -> tuple[dict[str, Any], dict[str, Any]]:
        """Input and output details by name: the signature's keys, else tensor names."""
        if self.signature is not None:
            runner = interp.get_signature_runner(self.signature)
            return dict(runner.get_input_details()), dict(runner.get_output_details())
        ins = {str(d["name"]): d for d in interp.get_input_details()}
        return ins, {str(d["name"]): d for d in interp.get_output_details()}

    def _read_input(
        self, ins: dict[str, Any], input_shape: Any, layout: str | None, label: str
    ) -> tuple[int, ...] | None:
        """Reads the one input (name, index, quantization, shape, layout); returns the
        input shape in xrobust's units."""
        if len(ins) != 1:
            raise ModelError(
                f"{label}: xrobust needs a model with one input; this one has {len(ins)} "
                f"({', '.join(ins)})"
            )
        self.input_key, detail = next(iter(ins.items()))
        self._in_index = int(detail["index"])
        self.input_quantization = _quantization(detail, "input", label)
        _check_input_dtype(self.input_quantization, label)
        dims = _dims(detail)
        self.model_input_shape: list[int | None] = dims
        if len(dims) < 2:
            raise ModelError(
                f"{label}: its input {self.input_quantization.name!r} has shape {_show(dims)}; "
                "expected a batch dimension and at least one feature dimension"
            )
        self.fixed_batch: int | None = dims[0]
        self.layout, shape = input_layout(
            dims[1:], input_shape, None if layout is None else str(layout).upper(), label
        )
        return shape

    def _read_output(
        self,
        interp: Any,
        outs: dict[str, Any],
        output_name: str | None,
        num_classes: int | None,
        label: str,
    ) -> tuple[str, int | None]:
        """Reads the output to answer with; returns (inferred kind, classes or None)."""
        self.output_key = _pick_output(outs, output_name, num_classes, label)
        detail = outs[self.output_key]
        self.output_names = list(outs)
        self._out_index = int(detail["index"])
        self.output_quantization = _quantization(detail, "output", label)
        return self._output_kind(interp, detail, label)

    def _output_kind(
        self, interp: Any, detail: dict[str, Any], label: str
    ) -> tuple[str, int | None]:
        """(inferred output kind, classes from the output's shape or None)."""
        dims = _dims(detail)
        q = self.output_quantization
        if len(dims) not in (1, 2):
            raise ModelError(
                f"{label}: its output {self.output_key!r} has shape {_show(dims)}; a classifier "
                "answers class scores (N, C) or labels (N,): name the scores with output_name "
                "(--output-name), or convert the model with its classification head"
            )
        dtype = np.dtype(q.dtype)
        if np.issubdtype(dtype, np.integer) and not q.quantized:
            return "labels", None
        if not (q.quantized or dtype.type in _FLOATS):
            raise ModelError(
                f"{label}: its output {self.output_key!r} is {q.dtype}; expected float or "
                "quantized scores, or integer labels"
            )
        classes = dims[1] if len(dims) == 2 else 1
        kind = "probabilities" if _made_by_softmax(interp, self._out_index) else "logits"
        return kind, classes

    # ------------------------------------------------------------------ what it is
    @property
    def quantized(self) -> bool:
        """Whether the input or the output is a quantized integer tensor."""
        return self.input_quantization.quantized or self.output_quantization.quantized

    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            {
                "file": str(self.path),
                "format": "tflite",
                "interpreter": f"ai_edge_litert {_litert_version() or '?'}",
                "file_bytes": len(self._content),
                "signature": self.signature,
                "signatures": list(self.signatures),
                "layout": self.layout,
                "model_input_shape": [v if v is not None else "?" for v in self.model_input_shape],
                "fixed_batch": self.fixed_batch,
                "quantized": self.quantized,
                "input_tensor": self.input_quantization.to_dict(),
                "output_tensor": self.output_quantization.to_dict(),
                "output_name": self.output_key,
                "output_names": list(self.output_names),
            }
        )
        return d

    # ------------------------------------------------------------------ answers
    def _interpreter(self, n: int) -> Any:
        """The interpreter sized for ``n`` rows (made and kept on first use)."""
        with self._pool_lock, _without_delegate_banner():
            if n in self._pool:
                self._pool.move_to_end(n)
                return self._pool[n]
            interp = self._spare if self._spare is not None else self._new_interpreter()
            self._spare = None
            if self.signature is None:
                shape = [n, *(int(d) for d in self.model_input_shape_for(n)[1:])]
                try:
                    interp.resize_tensor_input(self._in_index, shape, strict=False)
                    interp.allocate_tensors()
                except Exception as exc:
                    raise ModelError(
                        f"TensorFlow Lite cannot run {self.name!r} on a batch of {n} rows: "
                        f"{type(exc).__name__}: {exc}"
                    ) from exc
            runner = None
            if self.signature is not None:  # the runner resizes to each call's batch
                runner = interp.get_signature_runner(self.signature)
            self._pool[n] = (interp, runner, threading.Lock())
            while len(self._pool) > MAX_INTERPRETERS:
                _, (gone, _, _) = self._pool.popitem(last=False)
                self._invoked.discard(id(gone))
            return self._pool[n]

    def model_input_shape_for(self, n: int) -> list[int]:
        """The model's input shape for a batch of ``n`` rows."""
        rest = self.model_input_shape[1:]
        if any(d is None for d in rest):
            if self.input_shape is None:
                raise DataError(f"{self.name!r} has symbolic input sizes; declare input_shape")
            chw = self.input_shape
            rest = list(chw) if self.layout != "NHWC" else [chw[1], chw[2], chw[0]]
        return [n, *(int(d) for d in rest)]  # type: ignore[arg-type]

    def _invoke(self, arr: np.ndarray) -> np.ndarray:
        interp, runner, lock = self._interpreter(int(arr.shape[0]))
        first = id(interp) not in self._invoked  # LiteRT prints its banner on a first run
        try:
            with lock, _without_delegate_banner() if first else contextlib.nullcontext():
                self._invoked.add(id(interp))
                if runner is not None:
                    return np.array(runner(**{self.input_key: arr})[self.output_key])
                interp.set_tensor(self._in_index, arr)
                interp.invoke()
                return np.array(interp.get_tensor(self._out_index))
        except Exception as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ModelError(
                f"TensorFlow Lite failed on {self.name!r} with a batch of shape {arr.shape} "
                f"({self.layout or 'as is'}): {type(exc).__name__}: {first}"
            ) from exc

    def to_model_input(self, x: torch.Tensor) -> np.ndarray:
        """A batch of xrobust's (NCHW, float) rows as the model's input tensor: permuted to
        NHWC when the model is channels last, quantized when its input is."""
        t = x.detach().cpu().float()
        if self.layout == "NHWC":
            t = t.permute(0, 2, 3, 1)
        a = np.ascontiguousarray(t.numpy())
        q = self.input_quantization
        return q.quantize(a) if q.quantized else a.astype(q.dtype, copy=False)

    def _answer(self, x: torch.Tensor) -> Any:
        arr = self.to_model_input(x)
        n = arr.shape[0]
        if n == 0:
            return np.empty((0, self.num_classes or 0), dtype=np.float32)
        b = self.fixed_batch
        if b is None:
            out = self._invoke(arr)
        else:
            parts = []
            for i in range(0, n, b):
                piece = arr[i : i + b]
                k = piece.shape[0]
                if k < b:  # pad with copies of the first row, dropped afterwards
                    piece = np.concatenate([piece, np.repeat(piece[:1], b - k, axis=0)])
                parts.append(self._invoke(piece)[:k])
            out = np.concatenate(parts)
        q = self.output_quantization
        if q.quantized:
            return q.dequantize(out)
        return out.astype(np.float32) if out.dtype == np.float16 else out


# ---------------------------------------------------------------------- helpers
def _read_model(path: Path) -> bytes:
    if not path.is_file():
        raise ModelError(
            f"TensorFlow Lite file {str(path)!r} "
            + ("is a folder" if path.is_dir() else "does not exist")
        )
    try:
        content = path.read_bytes()
    except OSError as exc:
        raise ModelError(f"{str(path)!r} cannot be read ({exc.strerror or exc})") from exc
    if len(content) < 8 or content[4:8] != _IDENTIFIER:
        raise ModelError(
            f"{str(path)!r} is not a TensorFlow Lite model (no {_IDENTIFIER.decode()} "
            f"FlatBuffer identifier in its {len(content)} bytes): expected a .tflite file from "
            "tf.lite.TFLiteConverter"
        )
    return content


def _threads(num_threads: int | None) -> int | None:
    if num_threads is not None:
        if isinstance(num_threads, bool) or not isinstance(num_threads, int) or num_threads < 1:
            raise ConfigError(f"num_threads must be a positive integer, got {num_threads!r}")
        return num_threads
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else None


def _pick_signature(signatures: list[str], wanted: str | None, label: str) -> str | None:
    if wanted is not None:
        if wanted not in signatures:
            have = ", ".join(signatures) if signatures else "none"
            raise ConfigError(f"{label} has no signature {wanted!r}; its signatures: {have}")
        return wanted
    if len(signatures) > 1:
        raise ConfigError(
            f"{label} has {len(signatures)} signatures ({', '.join(signatures)}); say which one "
            "answers the class scores with signature=NAME (--tflite-signature NAME)"
        )
    return signatures[0] if signatures else None


def _check_input_dtype(q: TensorQuantization, label: str) -> None:
    dtype = np.dtype(q.dtype)
    if dtype.type in _FLOATS or (q.quantized and dtype.type in _QUANT_INTS):
        return
    raise ModelError(
        f"{label}: its input {q.name!r} is {q.dtype}"
        + (" without quantization parameters" if np.issubdtype(dtype, np.integer) else "")
        + "; xrobust feeds float inputs or quantized int8/uint8/int16 inputs with a scale and "
        "zero point (convert with inference_input_type tf.float32, tf.int8 or tf.uint8)"
    )


def _pick_output(
    outs: dict[str, Any], output_name: str | None, num_classes: int | None, label: str
) -> str:
    """The key of the output holding the class scores."""
    names = list(outs)
    by_tensor = {str(d["name"]): k for k, d in outs.items()}
    if output_name is not None:
        if output_name in outs:
            return output_name
        if output_name in by_tensor:
            return by_tensor[output_name]
        raise ConfigError(
            f"{label} has no output {output_name!r}; its outputs: {', '.join(names)} "
            "(choose one with --output-name NAME, Python: output_name=NAME)"
        )
    if len(outs) == 1:
        return names[0]
    two_d = [k for k, d in outs.items() if len(_dims(d)) == 2]
    fit = [k for k in two_d if num_classes is not None and _dims(outs[k])[1] == int(num_classes)]
    pick = fit if len(fit) == 1 else (two_d if num_classes is None and len(two_d) == 1 else [])
    if pick:
        log.info("%s has %d outputs (%s); reading %r, the only one of shape (N, C)",
                 label, len(outs), ", ".join(names), pick[0])  # fmt: skip
        return pick[0]
    listed = ", ".join(f"{k!r} {_show(_dims(d))}" for k, d in outs.items())
    raise ConfigError(
        f"{label} has {len(outs)} outputs ({listed}) and none is clearly the class scores "
        "(the only one of shape (N, classes)): say which with --output-name NAME (Python: "
        "output_name=NAME)"
    )


def _made_by_softmax(interp: Any, index: int) -> bool:
    """Whether the op producing tensor ``index`` is SOFTMAX (through (de)quantize ops)."""
    try:
        ops = interp._get_ops_details()
    except Exception:  # an interpreter without op details: the kind stays "logits"
        return False
    producer = {int(o): op for op in ops for o in np.asarray(op.get("outputs", [])).tolist()}
    for _ in range(4):
        op = producer.get(index)
        if op is None:
            return False
        name = str(op.get("op_name", "")).upper()
        if name == "SOFTMAX":
            return True
        if name not in ("QUANTIZE", "DEQUANTIZE") or not len(op.get("inputs", [])):
            return False
        index = int(np.asarray(op["inputs"]).tolist()[0])
    return False


# ---------------------------------------------------------------------- data for a file
def _model_hw(path: Path, signature: str | None) -> tuple[int, int] | None:
    """(H, W) of a rank-4 input with fixed sizes whose channel axis is clear, else None."""
    try:
        interp = _import_interpreter()(model_content=_read_model(path))
        sigs = sorted(interp.get_signature_list() or {})
        sig = _pick_signature(sigs, signature, path.name)
        if sig is not None:
            details = list(interp.get_signature_runner(sig).get_input_details().values())
        else:
            details = interp.get_input_details()
    except Exception:  # unreadable here: the classifier says what is wrong
        return None
    return image_hw(_dims(details[0])) if len(details) == 1 else None


def load_for_tflite(
    path: str | os.PathLike[str],
    data: str | os.PathLike[str],
    *,
    target: str | None = None,
    resize: bool = False,
    train_data: str | os.PathLike[str] | None = None,
    raw_features: bool = False,
    signature: str | None = None,
) -> Any:
    """Load ``data`` as input to the TensorFlow Lite model in ``path`` (what ``--tflite``
    does): a CSV table standardised with the statistics of ``train_data`` (the table the
    model was trained on) or fed as it is (``raw_features``), never with its own; images
    resized to the model's fixed input size with ``resize`` (a warning names both shapes).

    Raises:
        ConfigError: a CSV table with neither ``train_data`` nor ``raw_features``.
        DataError: the data does not fit.
    """
    from xrobust.models.onnx import load_for_file

    p = Path(path)
    hw = _model_hw(p, signature) if resize else None
    bundle, _ = load_for_file(
        p.name, data, target=target, resize_to=hw, train_data=train_data,
        raw_features=raw_features,
    )  # fmt: skip
    return bundle


#: what LiteRT's C++ runtime prints to stderr (not through Python's logging, whatever
#: TF_CPP_MIN_LOG_LEVEL says) when it first allocates an interpreter's tensors
_BANNER = "INFO: Created TensorFlow Lite XNNPACK delegate"


@contextlib.contextmanager
def _without_delegate_banner():
    """Hold back LiteRT's XNNPACK banner from stderr (everything else written meanwhile,
    by any thread, is passed on once the block ends); shown at DEBUG level (``-v``)."""
    if log.isEnabledFor(logging.DEBUG):
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (an embedded or redirected interpreter)
        yield
        return
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            yield
        finally:
            with contextlib.suppress(OSError, ValueError):
                sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            held.seek(0)
            kept = [
                ln for ln in held.read().splitlines(True) if not ln.startswith(_BANNER.encode())
            ]
            if kept:
                os.write(2, b"".join(kept))
