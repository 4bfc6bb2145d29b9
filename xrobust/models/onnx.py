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

__all__ = ["OnnxClassifier", "OnnxTorchClassifier", "OnnxTorchModule", "import_onnx2torch"]

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
            float probabilities/scores output, e.g. skl2onnx's ``probabilities``).
        name: a short name for reports (default: the file name).

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
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ConfigError(
                f"option(s) {', '.join(sorted(unknown))} do not apply to an ONNX model; it "
                "takes layout, providers, output_name, name"
            )
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

        # ---- the output
        outs = self._sess.get_outputs()
        self._out_index, out_kind, graph_classes = self._pick_output(outs, output_name, label)
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
        """The input shape in xrobust's units; sets :attr:`layout` for rank-4 graphs."""
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
                return tuple(int(d) for d in g)  # type: ignore[arg-type]
            return want
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
                    raise DataError(
                        f"the data has inputs of shape {want} (C, H, W) but {graph}, which "
                        f"fits neither NCHW {_show([None, cc, hh, ww])} nor NHWC "
                        f"{_show([None, hh, ww, cc])}"
                    )
                layout = "NCHW" if nchw else "NHWC"
            elif not (nchw if layout == "NCHW" else nhwc):
                exp = (cc, hh, ww) if layout == "NCHW" else (hh, ww, cc)
                raise DataError(
                    f"the data has inputs of shape {want} (C, H, W), which is "
                    f"{_show([None, *exp])} in {layout}, but {graph}"
                )
            self.layout = layout
            return want
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
        self.layout = layout
        chw = (a, b, c) if layout == "NCHW" else (c, a, b)
        if any(d is None for d in chw):
            return None
        return tuple(int(d) for d in chw)  # type: ignore[arg-type]

    def _pick_output(
        self, outs: Sequence[Any], output_name: str | None, label: str
    ) -> tuple[int, str, int | None]:
        """(index, inferred kind, classes from the graph or None) of the output to read."""
        names = [o.name for o in outs]
        if output_name is not None:
            if output_name not in names:
                raise ConfigError(
                    f"{label} has no output {output_name!r}; its outputs: {', '.join(names)}"
                )
            idx = names.index(output_name)
        elif len(outs) == 1:
            idx = 0
        else:
            scored = [
                i for i, o in enumerate(outs)
                if o.type in _FLOAT_TYPES or o.type.startswith("seq(map(")
            ]  # fmt: skip
            prob = [i for i in scored if "prob" in outs[i].name.lower()]
            if prob or scored:
                idx = (prob or scored)[0]
            else:
                ints = [i for i, o in enumerate(outs) if o.type in _INT_TYPES]
                if not ints:
                    raise ModelError(
                        f"{label}: none of its outputs ({', '.join(names)}) holds scores or "
                        "labels; give output_name="
                    )
                idx = ints[0]
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
                "providers": list(self.providers),
            }
        )
        return d

    # ------------------------------------------------------------------ answers
    def _to_graph(self, x: torch.Tensor) -> np.ndarray:
        t = x.detach().cpu()
        if self.layout == "NHWC":
            t = t.permute(0, 2, 3, 1)
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
    graph is channels last; the chosen output of a multi-output graph."""

    def __init__(
        self,
        inner: nn.Module,
        *,
        layout: str | None,
        output_index: int = 0,
        n_outputs: int = 1,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        super().__init__()
        self.inner = inner
        self.layout = layout
        self.output_index = output_index
        self.n_outputs = n_outputs
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = x.to(self.dtype)
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
