"""The Open Inference Protocol ("V2": KServe, Triton, MLServer / Seldon, OpenVINO Model
Server) over REST, for :class:`~xrobust.models.endpoint.EndpointClassifier`'s
``protocol="v2"``: the URLs of a model, its metadata, and tensors in JSON.

A tensor is ``{"name", "shape", "datatype", "data"}`` with ``data`` in row-major order
(flat, as xrobust sends it; flat or nested in answers). The numeric datatypes of the spec are
read and written: BOOL, UINT8/16/32/64, INT8/16/32/64, FP16, FP32, FP64. BYTES (strings) are
refused with a clear message.

The binary tensor extension (``protocol="v2-binary"``; KServe and Triton speak it, MLServer
does not over REST): the request is a JSON header (its length in the
``Inference-Header-Content-Length`` header) followed by the input's raw little-endian bytes,
and the outputs are asked for as raw bytes too; an answer's tensors may come either way.

What is sent to an input of an integer or BOOL datatype must already hold whole numbers in
the datatype's range (0/1 for BOOL): they are refused otherwise, never rounded, so that the
input a model answered is the input an attack reports. An FP16 input is rounded to half
precision (the model computes in it anyway), which :meth:`V2Model.describe` says.

>>> m = V2Model.from_url_path("/v2/models/digits/versions/3", "")
>>> m.infer, m.model_ready, m.server_ready
('/v2/models/digits/versions/3/infer', '/v2/models/digits/versions/3/ready', '/v2/health/ready')
>>> import numpy as np
>>> m.body(np.array([[0.5, 1.0]], dtype=np.float32))
b'{"id":"1","inputs":[{"name":"input-0","shape":[1,2],"datatype":"FP32","data":[0.5,1]}]}'
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from xrobust._text import clean_for_terminal
from xrobust.errors import ConfigError, ModelError

__all__ = ["DATATYPES", "BinaryBody", "TensorInfo", "V2Model", "split_binary"]

#: the spec's numeric datatypes and the NumPy types their values are held in.
DATATYPES: dict[str, type] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
}
#: the input name sent when neither the user nor the model's metadata gives one.
DEFAULT_INPUT = "input-0"
_URL = re.compile(r"^(?P<prefix>.*?)/v2/models/(?P<name>[^/]+)(?:/versions/(?P<ver>[^/]+))?/?$")


def _show(text: Any, limit: int = 60) -> str:
    """A name or word from the server, safe to show (the caller blanks out secrets)."""
    return clean_for_terminal(str(text), limit)


@dataclass(frozen=True)
class TensorInfo:
    """One input or output in a model's metadata: its name, datatype and shape (-1: any)."""

    name: str
    datatype: str | None = None
    shape: tuple[int, ...] | None = None


@dataclass
class V2Model:
    """The URLs of one model and how its tensors are written (set from its metadata)."""

    base: str  # /prefix/v2/models/NAME[/versions/V]
    prefix: str
    model: str
    query: str = ""
    input_name: str | None = None
    datatype: str | None = None
    output_name: str | None = None
    inputs: tuple[TensorInfo, ...] = ()
    outputs: tuple[TensorInfo, ...] = ()
    platform: str | None = None
    binary: bool = False
    _ids: Any = field(default_factory=lambda: itertools.count(1), repr=False)

    # ------------------------------------------------------------------ URLs
    @classmethod
    def from_url_path(
        cls,
        path: str,
        query: str,
        *,
        input_name: str | None = None,
        datatype: str | None = None,
        output_name: str | None = None,
        binary: bool = False,
    ) -> V2Model:
        """The model of ``http://host/[prefix/]v2/models/NAME[/versions/V][/infer]``.

        Raises:
            ConfigError: the path names no V2 model, or ``datatype`` is not a numeric one.
        """
        path = path[: -len("/infer")] if path.endswith("/infer") else path
        m = _URL.match(path)
        if m is None:
            raise ConfigError(
                "an Open Inference Protocol (V2) URL names a model: "
                "http://host:port/v2/models/NAME (or .../versions/V, or .../infer); got the "
                f"path {_show(path, 120)!r}"
            )
        dt = None if datatype is None else _datatype(datatype, "datatype")
        return cls(
            base=path.rstrip("/"),
            prefix=m.group("prefix"),
            model=m.group("name"),
            query=f"?{query}" if query else "",
            input_name=input_name,
            datatype=dt,
            output_name=output_name,
            binary=binary,
        )

    @property
    def infer(self) -> str:
        return f"{self.base}/infer{self.query}"

    @property
    def model_ready(self) -> str:
        return f"{self.base}/ready{self.query}"

    @property
    def metadata(self) -> str:
        return f"{self.base}{self.query}"

    @property
    def server_ready(self) -> str:
        return f"{self.prefix}/v2/health/ready{self.query}"

    # ------------------------------------------------------------------ metadata
    def configure(self, doc: Any, sent_shape: tuple[int, ...] | None) -> None:
        """Take input and output names, the input datatype and shapes from the metadata
        answer ``doc`` (``GET /v2/models/NAME``); what the user gave wins, and must exist.

        Raises:
            ModelError: the metadata is malformed.
            ConfigError: a given name is not the model's, several inputs and none chosen,
                a datatype xrobust cannot send, or an input shape that does not fit.
        """
        if not isinstance(doc, dict):
            raise ModelError(f"its metadata is a {type(doc).__name__}, not a JSON object")
        self.inputs = _tensor_list(doc.get("inputs"), "inputs")
        self.outputs = _tensor_list(doc.get("outputs"), "outputs")
        self.platform = _show(doc["platform"]) if isinstance(doc.get("platform"), str) else None
        chosen = self._input()
        self.input_name = self.input_name or (chosen.name if chosen else DEFAULT_INPUT)
        if self.datatype is None:
            self.datatype = (
                _datatype(chosen.datatype, "input") if chosen and chosen.datatype else "FP32"
            )
        if chosen is not None and chosen.shape is not None and sent_shape is not None:
            _check_shape(chosen, sent_shape)
        names = [o.name for o in self.outputs]
        if self.output_name is not None and names and self.output_name not in names:
            raise ConfigError(
                f"the model has no output {_show(self.output_name)!r}; its outputs: "
                f"{', '.join(map(_show, names))} (output_name= / --output-name)"
            )

    def _input(self) -> TensorInfo | None:
        if not self.inputs:
            return None
        if self.input_name is not None:
            for t in self.inputs:
                if t.name == self.input_name:
                    return t
            raise ConfigError(
                f"the model has no input {_show(self.input_name)!r}; its inputs: "
                f"{', '.join(_show(t.name) for t in self.inputs)} (input_name=)"
            )
        if len(self.inputs) > 1:
            raise ConfigError(
                f"the model takes several inputs ({', '.join(_show(t.name) for t in self.inputs)}); "
                "xrobust sends one tensor: name it with input_name="
            )
        return self.inputs[0]

    def not_ready(self, what: str, url: str, detail: str) -> str:
        """The error for a ``what`` ("server" or "model") that is not ready."""
        where = f"{self.prefix}/v2/health/ready" if what == "server" else f"{self.base}/ready"
        return (
            f"the Open Inference Protocol {what} for {url} is not ready (GET "
            f"{_show(where, 120)}): {detail}; wait until it has loaded the model, and "
            "check the URL names it (http://host:port/v2/models/NAME)"
        )

    def describe(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "model": _show(self.model),
            "input_name": self.input_name,
            "datatype": self.datatype,
        }
        if self.platform:
            d["platform"] = self.platform
        if self.binary:
            d["binary"] = True
        if self.datatype == "FP16":
            d["note"] = "inputs are rounded to half precision (the model's FP16 input)"
        return d

    # ------------------------------------------------------------------ tensors
    def body(self, arr: np.ndarray) -> bytes:
        """The infer request for ``arr`` (n, ...), as JSON bytes.

        Raises:
            DataError: values an integer / BOOL input cannot hold (not whole, out of range).
        """
        dt = self.datatype or "FP32"
        head = (
            f'{{"name":{json.dumps(self.input_name or DEFAULT_INPUT)},'
            f'"shape":[{",".join(map(str, arr.shape))}],"datatype":"{dt}",'
        )
        flat = _checked(arr.ravel(), dt)
        if self.binary:
            raw = flat.astype(np.dtype(DATATYPES[dt]).newbyteorder("<")).tobytes()
            tensor = f'{head}"parameters":{{"binary_data_size":{len(raw)}}}}}'
        else:
            tensor = f'{head}"data":[{_data_json(flat, dt)}]}}'
        extra, want = "", ',"parameters":{"binary_data":true}' if self.binary else ""
        if self.output_name is not None:
            extra = f',"outputs":[{{"name":{json.dumps(self.output_name)}{want}}}]'
        if self.binary:
            extra += ',"parameters":{"binary_data_output":true}'
        text = f'{{"id":"{next(self._ids)}","inputs":[{tensor}]{extra}}}'.encode()
        if not self.binary:
            return text
        return BinaryBody(text + raw, len(text))

    def outputs_of(self, doc: Any, m: int, raw: bytes = b"") -> dict[str, list[Any]]:
        """The output tensors of an infer answer, each as ``m`` rows (nested lists);
        ``raw``: the bytes after the JSON header of a binary answer.

        Raises:
            ModelError: an ``{"error": ...}`` answer, or outputs that are malformed, of
                another row count, of a datatype that is not numeric, or binary data that
                was not asked for or does not add up.
        """
        if isinstance(doc, dict) and "error" in doc and "outputs" not in doc:
            err = doc["error"]
            text = err if isinstance(err, str) else json.dumps(err)
            raise ModelError(f"answered an error: {_show(text, 300)!r}")
        if not isinstance(doc, dict) or not isinstance(doc.get("outputs"), list):
            have = f"keys {sorted(map(_show, doc))[:10]}" if isinstance(doc, dict) else "no object"
            raise ModelError(f'answered without a list of "outputs" ({have})')
        if not doc["outputs"]:
            raise ModelError('answered an empty list of "outputs"')
        out: dict[str, list[Any]] = {}
        at = 0
        for i, t in enumerate(doc["outputs"]):
            name, arr, at = _decode(t, i, m, raw if self.binary else None, at)
            if name in out:
                raise ModelError(f"answered the output {name!r} twice")
            out[name] = arr.tolist()
        if at != len(raw) and (at or raw.strip()):  # a JSON answer may end in white space
            raise ModelError(f"answered {len(raw) - at} bytes of binary data that no output claims")
        return out


# ---------------------------------------------------------------------- helpers
BINARY_HINT = (
    "; protocol 'v2-binary' sends the binary tensor extension, which this server may not "
    "speak (MLServer does not over REST): try protocol 'v2' (--endpoint-protocol v2)"
)


def says_not_ready(data: bytes) -> bool:
    """Whether a 2xx readiness answer still says ``{"ready": false}`` (some servers do)."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError):
        return False  # an empty or plain-text 200 means ready (Triton answers no body)
    return isinstance(doc, dict) and doc.get("ready") is False


def _datatype(value: Any, what: str) -> str:
    dt = str(value).upper()
    if dt in DATATYPES:
        return dt
    if dt == "BYTES":
        raise ConfigError(
            f"the {what} datatype is BYTES (strings): xrobust sends numbers; serve the model "
            "with a numeric input (FP32, INT64, ...)"
        )
    raise ConfigError(
        f"unknown {what} datatype {_show(value)!r}; the Open Inference Protocol's numeric "
        f"ones are {', '.join(DATATYPES)}"
    )


def _tensor_list(value: Any, what: str) -> tuple[TensorInfo, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise ModelError(f'its metadata\'s "{what}" is not a list of tensor descriptions')
    out = []
    for t in value:
        shape = t.get("shape")
        ok = isinstance(shape, list) and all(
            isinstance(s, int) and not isinstance(s, bool) for s in shape
        )
        out.append(
            TensorInfo(
                name=str(t.get("name", "")),
                datatype=t.get("datatype") if isinstance(t.get("datatype"), str) else None,
                shape=tuple(shape) if ok else None,
            )
        )
    return tuple(out)


def _check_shape(t: TensorInfo, sent: tuple[int, ...]) -> None:
    """The metadata's input shape (with or without the batch dimension) against one row."""
    shape = t.shape or ()
    for want in (shape[1:], shape):  # with a batch dimension (usual), or without (Triton)
        if len(want) == len(sent) and all(w < 0 or w == s for w, s in zip(want, sent)):
            return
    hint = ""
    if len(sent) == 3 and (sent[1], sent[2], sent[0]) in (tuple(shape[1:]), tuple(shape)):
        hint = " (the model takes channels last: layout='NHWC', --layout NHWC)"
    elif len(sent) == 3 and (sent[2], sent[0], sent[1]) in (tuple(shape[1:]), tuple(shape)):
        hint = " (the model takes channels first: layout='NCHW')"
    raise ConfigError(
        f"the model's input {_show(t.name)!r} has shape {list(shape)} but xrobust would send "
        f"rows of shape {list(sent)}{hint}"
    )


def _data_json(flat: np.ndarray, dt: str) -> str:
    """The values of ``flat`` (checked by :func:`_checked`) as JSON text for datatype ``dt``."""
    if dt.startswith("FP"):
        vals = flat.astype(DATATYPES[dt]) if dt != "FP32" else flat
        return ",".join(map("{:.17g}".format if dt == "FP64" else "{:.9g}".format, vals.tolist()))
    if dt == "BOOL":
        return ",".join("true" if v else "false" for v in flat.tolist())
    return ",".join(map(str, flat.astype(np.int64).tolist()))


def _checked(flat: np.ndarray, dt: str) -> np.ndarray:
    """``flat``, refused when an integer / BOOL datatype cannot hold its values exactly."""
    if dt.startswith("FP"):
        return flat
    info = (0, 1) if dt == "BOOL" else (np.iinfo(DATATYPES[dt]).min, np.iinfo(DATATYPES[dt]).max)
    if flat.size and (
        not bool((flat == np.round(flat)).all()) or flat.min() < info[0] or flat.max() > info[1]
    ):
        from xrobust.errors import DataError

        raise DataError(
            f"the model's input is {dt}: it takes whole numbers from {info[0]} to {info[1]}, "
            f"but the batch holds other values (from {float(flat.min()):g} to "
            f"{float(flat.max()):g}); xrobust does not round them (an attack's input would "
            "not be what the model saw): give data and eps in the model's units, or serve a "
            "float input"
        )
    return flat


def _decode(t: Any, i: int, m: int, raw: bytes | None, at: int) -> tuple[str, np.ndarray, int]:
    """One output tensor as (name, array of shape ``shape``, where the next binary output
    starts in ``raw``), checked. ``raw`` None: binary data was not asked for."""
    if not isinstance(t, dict) or not isinstance(t.get("name"), str):
        raise ModelError(f"answered output {i} without a name")
    name = _show(t["name"])
    shape, dt, data = t.get("shape"), str(t.get("datatype", "")).upper(), t.get("data")
    params = t.get("parameters")
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None and raw is None:
        raise ModelError(
            f"answered the output {name!r} as binary data (the binary tensor extension), "
            "which was not asked for (protocol='v2-binary' asks for it)"
        )
    if not (
        isinstance(shape, list)
        and shape
        and all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in shape)
    ):
        raise ModelError(f"answered the output {name!r} without a valid shape")
    if shape[0] != m:
        raise ModelError(f"answered {shape[0]} rows in the output {name!r} for the {m} it was sent")
    if dt not in DATATYPES:
        what = "strings (BYTES)" if dt == "BYTES" else f"datatype {_show(dt)!r}"
        raise ModelError(f"answered the output {name!r} as {what}; expected numbers")
    if size is not None:
        arr, at = _from_bytes(raw or b"", at, size, name, dt, shape)
        return name, _as_scores(arr, dt), at
    try:
        arr = np.asarray(data)
    except ValueError:
        arr = np.asarray([], dtype=object)
    kinds = "b" if dt == "BOOL" else "iuf" if dt.startswith("FP") else "iu"
    if arr.dtype.kind not in kinds or not isinstance(data, list):
        raise ModelError(f"answered the output {name!r} ({dt}) with data that are not {dt} numbers")
    if arr.size != int(np.prod(shape)):
        raise ModelError(
            f"answered the output {name!r} with {arr.size} values for its shape {shape}"
        )
    return name, _as_scores(arr.reshape(shape), dt), at


def _from_bytes(
    raw: bytes, at: int, size: Any, name: str, dt: str, shape: list[int]
) -> tuple[np.ndarray, int]:
    """A binary output's values: ``size`` bytes of ``raw`` from ``at``, checked."""
    dtype = np.dtype(DATATYPES[dt]).newbyteorder("<")
    want = int(np.prod(shape)) * dtype.itemsize
    if not isinstance(size, int) or isinstance(size, bool) or size != want:
        raise ModelError(
            f"answered the output {name!r} ({dt}, shape {shape}) with binary_data_size "
            f"{_show(size)}; it takes {want} bytes"
        )
    if at + size > len(raw):
        raise ModelError(f"answered less binary data than the output {name!r} declares")
    return np.frombuffer(raw, dtype=dtype, count=int(np.prod(shape)), offset=at).reshape(
        shape
    ), at + size


def _as_scores(arr: np.ndarray, dt: str) -> np.ndarray:
    if dt == "BOOL" or dt[0] in "UI":
        return arr.astype(np.int64)
    return arr.astype(np.float32)


class BinaryBody(bytes):
    """A binary-extension request: the bytes, and the headers that say where the JSON ends."""

    headers: dict[str, str]

    def __new__(cls, data: bytes, json_length: int) -> BinaryBody:
        body = super().__new__(cls, data)
        body.headers = {
            "Content-Type": "application/octet-stream",
            "Inference-Header-Content-Length": str(json_length),
        }
        return body


def split_binary(data: bytes) -> tuple[bytes, bytes]:
    """A binary-extension answer as (its JSON header, the bytes after it); an answer that is
    JSON alone gives (data, b""). The header's end is found by reading the JSON (so the
    answer's ``Inference-Header-Content-Length`` is not needed)."""
    try:
        _, end = json.JSONDecoder().raw_decode(data.decode("latin-1"))
    except (ValueError, RecursionError):
        return data, b""  # malformed: the caller's JSON reader says so
    return data[:end], data[end:]
