"""A small TensorFlow-Serving-compatible HTTP server, for tests and local demos.

It serves any Python predict function over the TF Serving REST JSON protocol (or the Open
Inference Protocol, V2), so that ``--endpoint`` and
:class:`~xrobust.models.endpoint.EndpointClassifier` can be tried without a real serving
stack, with nothing to install. Real servers (KServe, MLServer) are tested too
(``tests/test_real_servers.py``); this one stays for what they cannot do: serve any Python
function or torch module in-process, count rows exactly, and misbehave on demand
(:class:`Reply`), which is how the client's error handling is tested. **It is a local test/demo server, not a production one**: it
binds 127.0.0.1 by default, has no authentication or TLS, and runs each request in a thread
(the standard library's ``ThreadingHTTPServer``).

What it speaks:

* ``POST <anything>`` (its :attr:`ServingHandle.url` is ``/v1/models/<name>:predict``) with
  ``{"instances": [...]}`` answers ``{"predictions": [...]}`` and ``{"inputs": ...}``
  answers ``{"outputs": ...}``, as TF Serving does; named inputs (``{"x": row}`` rows, or
  ``{"inputs": {"x": batch}}``) with one name are accepted; ``signature_name`` is ignored.
* ``request_key`` / ``response_key`` (dotted paths) make it speak a custom JSON mapping
  instead, and ``extra_fields`` adds fields to every answer (e.g. Vertex AI's
  ``deployedModelId``); ``output_name`` answers a named output.
* ``GET`` answers a TF Serving model status (``{"model_version_status": [...]}``).
* ``protocol="v2"``: the Open Inference Protocol over REST instead (the paths of KServe,
  Triton and MLServer: ``GET /v2/health/ready``, ``GET /v2/models/NAME[/ready]``, ``POST
  /v2/models/NAME/infer`` with tensors ``{"name", "shape", "datatype", "data"}``); its
  :attr:`ServingHandle.url` is ``/v2/models/<name>``. ``metadata`` replaces the model's
  metadata answer and ``ready=False`` makes the model answer "not ready" (HTTP 503).
* A failing ``predict_fn`` gives HTTP 500 with ``{"error": "..."}``; a ``predict_fn`` may
  raise :class:`Reply` to answer anything at all (a 429 with ``Retry-After``, malformed
  JSON, ...): that is how the tests exercise a client's error handling.

Counters (:attr:`ServingHandle.rows_received`, :attr:`ServingHandle.requests`,
:attr:`ServingHandle.request_rows`) count the rows and requests whose whole JSON body
arrived, before ``predict_fn`` runs.

``latency`` (seconds) delays every predict answer by that much, in the request's own
thread, as a network round trip would: requests in flight together wait together. The
benchmarks use it to measure how many round trips an attack costs
(``benchmarks/bench_requests.py``).

Example:
    >>> import numpy as np
    >>> from xrobust.models import serving
    >>> import json, urllib.request
    >>> with serving.serve(lambda a: a.reshape(len(a), -1).sum(1, keepdims=True)) as s:
    ...     req = urllib.request.Request(s.url, data=b'{"instances": [[1, 2], [3, 4]]}')
    ...     json.load(urllib.request.urlopen(req, timeout=10)), s.rows_received
    ({'predictions': [[3.0], [7.0]]}, 2)
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np

from xrobust._text import clean_for_terminal
from xrobust.models._oip import DATATYPES

__all__ = ["Reply", "ServingHandle", "serve"]

logger = logging.getLogger(__name__)

_MAX_BODY = 64 * 1024 * 1024


class Reply(Exception):
    """Raised by a ``predict_fn`` to make the server answer exactly this.

    Args:
        status: the HTTP status.
        body: the body: bytes as they are, anything else as JSON.
        headers: extra headers (e.g. ``{"Retry-After": "1"}``).
    """

    def __init__(self, status: int, body: Any = b"", headers: Mapping[str, str] | None = None):
        super().__init__(f"HTTP {status}")
        self.status, self.body, self.headers = int(status), body, dict(headers or {})


class ServingHandle:
    """A running server: its :attr:`url`, counters, and :meth:`close` (or ``with``)."""

    def __init__(
        self,
        server: ThreadingHTTPServer,
        thread: threading.Thread,
        model_name: str,
        https: bool = False,
        v2: bool = False,
    ):
        self._server, self._thread = server, thread
        host, port = server.server_address[:2]
        self.host, self.port = str(host), int(port)
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.base_url = f"{'https' if https else 'http'}://{shown}:{self.port}"
        #: the predict URL, ``http://HOST:PORT/v1/models/<model_name>:predict`` (V2: the
        #: model's URL, ``http://HOST:PORT/v2/models/<model_name>``).
        self.url = (
            f"{self.base_url}/v2/models/{model_name}"
            if v2
            else f"{self.base_url}/v1/models/{model_name}:predict"
        )
        self._lock = threading.Lock()
        self.rows_received = 0
        self.requests = 0
        #: the rows of each predict request, in the order their bodies arrived.
        self.request_rows: list[int] = []
        #: the headers of the last predict request (for tests: check what arrived).
        self.last_headers: dict[str, str] = {}
        #: the parsed JSON body of the last predict request.
        self.last_body: Any = None

    def _count(self, rows: int, headers: dict[str, str], doc: Any) -> None:
        with self._lock:
            self.rows_received += rows
            self.requests += 1
            self.request_rows.append(rows)
            self.last_headers, self.last_body = headers, doc

    def reset(self) -> None:
        """Set the counters back to zero."""
        with self._lock:
            self.rows_received = self.requests = 0
            self.request_rows = []

    def close(self) -> None:
        """Stop serving and free the port (waits for the serving thread)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    def __enter__(self) -> ServingHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"ServingHandle({self.url!r}, requests={self.requests}, rows={self.rows_received})"


def serve(
    predict_fn: Callable[[np.ndarray], Any] | Any,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    model_name: str = "model",
    request_key: str | None = None,
    response_key: str | None = None,
    output_name: str | None = None,
    extra_fields: Mapping[str, Any] | None = None,
    idle_timeout: float = 60.0,
    ssl_context: Any = None,
    protocol: str = "v1",
    metadata: Mapping[str, Any] | None = None,
    ready: bool = True,
    latency: float = 0.0,
) -> ServingHandle:
    """Serve ``predict_fn`` over the TF Serving REST protocol, in a background thread.

    Args:
        predict_fn: takes a float32 array (n, ...) of the rows sent (as sent: channels last
            if the client sends NHWC) and returns (n, C) scores or (n,) labels; or a torch
            module or an xrobust classifier, whose scores it serves (one batch at a time).
        host: the address to bind (127.0.0.1: this machine only).
        port: the port (0: a free one; see :attr:`ServingHandle.url`).
        model_name: the model name in the URL.
        request_key, response_key: a custom JSON mapping (dotted paths) instead of TF
            Serving's; both or neither.
        output_name: answer ``{name: ...}`` per row (row form) or for the batch (columnar).
        extra_fields: constant fields added to every answer (e.g. Vertex AI's
            ``{"deployedModelId": "123", "model": "projects/..."}``).
        idle_timeout: seconds a kept-alive connection may stay idle before the server
            closes it.
        ssl_context: an ``ssl.SSLContext`` (server side, with a certificate loaded) to
            serve HTTPS; :attr:`ServingHandle.url` then starts with ``https://``.
        protocol: "v1" (TF Serving JSON, default) or "v2" (the Open Inference Protocol).
        metadata: V2 only: the model's metadata answer (default: name, platform, and no
            declared inputs or outputs, as a KServe custom model answers).
        ready: V2 only: whether the model says it is ready.
        latency: seconds each predict request waits before it is answered (in its own
            thread, so requests in flight together overlap), to stand for a network
            round trip; 0 (default): none.

    Returns:
        A :class:`ServingHandle`; close it (or use ``with``) to stop the server.
    """
    if (request_key is None) != (response_key is None):
        raise ValueError("give both request_key and response_key, or neither")
    if protocol not in ("v1", "v2"):
        raise ValueError(f"protocol must be 'v1' or 'v2', got {protocol!r}")
    number = isinstance(latency, (int, float)) and not isinstance(latency, bool)
    if not number or not 0 <= latency < 3600:
        raise ValueError(f"latency must be a number of seconds from 0 to 3600, got {latency!r}")
    v2 = _V2(model_name, output_name, metadata, ready) if protocol == "v2" else None
    extra = dict(extra_fields or {})
    predict_fn = _as_predict_fn(predict_fn)
    handle_box: list[ServingHandle] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive
        disable_nagle_algorithm = True  # or keep-alive clients stall ~40 ms on delayed ACKs
        timeout = idle_timeout  # an idle kept-alive connection is dropped after this
        server_version = "xrobust-serving/1"

        def log_message(self, format: str, *args: Any) -> None:
            logger.debug("serving: " + format, *args)  # request lines only, never headers

        def _send(self, status: int, body: Any, headers: Mapping[str, str] | None = None) -> None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            ctype = "application/json"
            for k, v in (headers or {}).items():
                if k.lower() == "content-type":
                    ctype = v
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            for k, v in (headers or {}).items():
                if k.lower() != "content-type":
                    self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self) -> None:
            if v2 is not None:
                self._send(*v2.get(self.path.partition("?")[0]))
                return
            self._send(
                200,
                {
                    "model_version_status": [
                        {
                            "version": "1",
                            "state": "AVAILABLE",
                            "status": {"error_code": "OK", "error_message": ""},
                        }
                    ]
                },
            )

        def do_POST(self) -> None:
            length = self.headers.get("Content-Length")
            if length is None or not length.isdigit():
                self.close_connection = True
                self._send(411, {"error": "Content-Length required"})
                return
            if int(length) > _MAX_BODY:
                self.close_connection = True
                self._send(413, {"error": f"request body over {_MAX_BODY} bytes"})
                return
            raw = self.rfile.read(int(length))
            if latency:
                time.sleep(latency)  # the round trip, overlapping with other requests'
            if v2 is not None:
                self._send(
                    *v2.post(self.path.partition("?")[0], raw, handle_box[0], self, predict_fn)
                )
                return
            try:
                doc = json.loads(raw)
                batch, rows_form = _take(doc, request_key)
                arr = np.asarray(batch, dtype=np.float32)
                if arr.ndim < 1:
                    raise ValueError("a batch needs a batch dimension")
            except RecursionError:  # a body nested too deep for the JSON reader
                self._send(400, {"error": "bad request: JSON nested too deep"})
                return
            except (ValueError, TypeError, KeyError) as exc:
                self._send(400, {"error": f"bad request: {clean_for_terminal(str(exc))}"})
                return
            handle_box[0]._count(len(arr), dict(self.headers.items()), doc)
            try:
                out = predict_fn(arr)
                out = np.asarray(out).tolist()
            except Reply as r:
                self._send(r.status, r.body, r.headers)
                return
            except Exception as exc:
                text = clean_for_terminal(str(exc), 2000)
                self._send(500, {"error": f"{type(exc).__name__}: {text}"})
                return
            if output_name is not None:
                out = [{output_name: r} for r in out] if rows_form else {output_name: out}
            if response_key is not None:
                answer: dict[str, Any] = dict(extra)
                node = answer
                keys = response_key.split(".")
                for k in keys[:-1]:
                    node = node.setdefault(k, {})
                node[keys[-1]] = out
            else:
                answer = {**extra, ("predictions" if rows_form else "outputs"): out}
            self._send(200, answer)

    server = _Server((host, port), Handler)
    if ssl_context is not None:
        # the handshake happens in the request's thread (under its timeout), not in accept
        server.socket = ssl_context.wrap_socket(
            server.socket, server_side=True, do_handshake_on_connect=False
        )
    thread = threading.Thread(
        target=server.serve_forever, args=(0.05,), name="xrobust-serving", daemon=True
    )
    handle = ServingHandle(
        server, thread, model_name, https=ssl_context is not None, v2=v2 is not None
    )
    handle_box.append(handle)
    thread.start()
    return handle


def _as_predict_fn(obj: Any) -> Callable[[np.ndarray], Any]:
    """A predict function for a torch module or a classifier (serialised by a lock: a torch
    classifier switches its module's mode around each call)."""
    import torch

    from xrobust.models.classifier import Classifier, TorchClassifier

    if isinstance(obj, torch.nn.Module):
        obj = TorchClassifier(obj)
    if not isinstance(obj, Classifier):
        if not callable(obj):
            raise TypeError(f"serve() needs a predict function, got {type(obj).__name__}")
        return obj
    clf, lock = obj, threading.Lock()

    def predict(a: np.ndarray) -> np.ndarray:
        with lock:
            return clf.scores(torch.from_numpy(np.ascontiguousarray(a))).cpu().numpy()

    return predict


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that went away (timed out, closed) is routine here: log, don't print."""
        import sys

        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError | TimeoutError):
            logger.debug("serving: client %s went away (%s)", client_address, type(exc).__name__)
        else:
            logger.warning("serving: error on a request from %s", client_address, exc_info=True)


def _take(doc: Any, request_key: str | None) -> tuple[Any, bool]:
    """The batch of a request and whether it came in the row form."""
    if not isinstance(doc, dict):
        raise ValueError("the body must be a JSON object")
    if request_key is not None:
        node = doc
        for k in request_key.split("."):
            node = node[k]
        return _unname(node), False
    if "instances" in doc:
        rows = doc["instances"]
        if isinstance(rows, list) and rows and all(isinstance(r, dict) for r in rows):
            rows = [_unname(r) for r in rows]
        return rows, True
    if "inputs" in doc:
        return _unname(doc["inputs"]), False
    raise ValueError('the body needs "instances" (row form) or "inputs" (columnar form)')


def _unname(node: Any) -> Any:
    if isinstance(node, dict):
        if len(node) != 1:
            raise ValueError(f"expected one named input, got {sorted(node)}")
        return next(iter(node.values()))
    return node


class _V2:
    """The Open Inference Protocol's REST paths for one model (``serve(protocol="v2")``)."""

    def __init__(
        self, name: str, output_name: str | None, metadata: Mapping[str, Any] | None, ready: bool
    ) -> None:
        self.base, self.name, self.ready = f"/v2/models/{name}", name, ready
        self.output_name = output_name or "output-0"
        self.metadata = dict(metadata) if metadata is not None else {
            "name": name, "versions": ["1"], "platform": "xrobust-serving",
            "inputs": [], "outputs": [],
        }  # fmt: skip

    def get(self, path: str) -> tuple[int, Any]:
        if path in ("/v2/health/ready", "/v2/health/live"):
            return 200, {"ready": True} if path.endswith("ready") else {"live": True}
        if path == f"{self.base}/ready":
            if not self.ready:
                return 503, {"error": f"Model with name {self.name} is not ready."}
            return 200, {"name": self.name, "ready": True}
        if path == self.base:
            return 200, self.metadata
        return 404, {"error": f"no such path: {clean_for_terminal(path, 80)}"}

    def post(
        self, path: str, raw: bytes, handle: ServingHandle, req: Any, fn: Callable[..., Any]
    ) -> tuple[int, Any] | tuple[int, Any, Mapping[str, str]]:
        if path != f"{self.base}/infer":
            return 404, {"error": f"no such path: {clean_for_terminal(path, 80)}"}
        if not self.ready:
            return 503, {"error": f"Model with name {self.name} is not ready."}
        try:
            doc, arr = _v2_input(raw, req.headers.get("Inference-Header-Content-Length"))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            return 400, {"error": f"bad request: {clean_for_terminal(str(exc))}"}
        handle._count(len(arr), dict(req.headers.items()), doc)
        try:
            out = np.asarray(fn(arr))
        except Reply as r:
            return r.status, r.body, r.headers
        except Exception as exc:
            return 500, {"error": f"{type(exc).__name__}: {clean_for_terminal(str(exc), 2000)}"}
        dt = "INT64" if out.dtype.kind in "iu" else "BOOL" if out.dtype == bool else "FP32"
        tensor = {"name": self.output_name, "shape": list(out.shape), "datatype": dt}
        answer = {"model_name": self.name, "id": doc.get("id", ""), "outputs": [tensor]}
        if not (doc.get("parameters") or {}).get("binary_data_output"):
            tensor["data"] = out.ravel().tolist()
            return 200, answer
        data = np.ascontiguousarray(out, dtype=np.dtype(DATATYPES[dt]).newbyteorder("<")).tobytes()
        tensor["parameters"] = {"binary_data_size": len(data)}
        head = json.dumps(answer).encode()
        return 200, head + data, {"Content-Type": "application/octet-stream",
                                  "Inference-Header-Content-Length": str(len(head))}  # fmt: skip


def _v2_input(raw: bytes, json_length: str | None) -> tuple[Any, np.ndarray]:
    """A V2 infer request's JSON and its first input (JSON data, or binary after the header)."""
    head = len(raw) if json_length is None else int(json_length)
    doc = json.loads(raw[:head])
    t = doc["inputs"][0]
    dtype = np.dtype(DATATYPES[t["datatype"]]).newbyteorder("<")
    if (t.get("parameters") or {}).get("binary_data_size") is not None:
        values = np.frombuffer(raw[head:], dtype=dtype, count=int(np.prod(t["shape"])))
    else:
        values = np.asarray(t["data"], dtype=dtype)
    return doc, values.reshape(t["shape"])
