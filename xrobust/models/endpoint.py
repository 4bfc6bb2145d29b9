"""A classifier behind an HTTP prediction endpoint (TensorFlow Serving, Vertex AI,
SageMaker's TF-Serving container, or any JSON server), with the standard library only.

Protocols (``protocol=``):

* ``"instances"`` (the default; aliases ``"rows"``, ``"tf-serving"``, ``"vertex"``): the
  TensorFlow Serving / Vertex AI REST row form, ``{"instances": [row, ...]}`` in and
  ``{"predictions": [row, ...]}`` out. Other fields of the answer (Vertex's
  ``deployedModelId``, ``model``, ``modelVersionId``, ...) are ignored.
* ``"inputs"`` (alias ``"columnar"``): the columnar form, ``{"inputs": batch}`` in and
  ``{"outputs": batch}`` out.
* ``"json"``: any other JSON server, described by ``request_key`` (where the batch goes,
  a dotted path: ``"data"`` gives ``{"data": batch}``, ``"payload.x"`` gives
  ``{"payload": {"x": batch}}``) and ``response_key`` (where the scores are in the answer,
  a dotted path whose integer parts index lists: ``"result.scores"``, ``"outputs.0"``),
  plus constant ``request_fields`` merged into every request body (Vertex AI's
  ``parameters``, for example: ``protocol="json", request_key="instances",
  response_key="predictions", request_fields={"parameters": {...}}``).

With every protocol: ``signature_name`` adds ``"signature_name": ...`` to the body (TF
Serving); ``input_name`` sends a named input (rows as ``{name: row}``, a batch as
``{name: batch}``); ``output_name`` picks one named output from an answer that has several.

Inputs are xrobust's NCHW tensors; ``layout="NHWC"`` sends image batches channels last
(what TensorFlow models take), so that shapes, bounds and eps stay in xrobust's units. Values
are sent as JSON numbers that round-trip float32 exactly.

Requests carry ``batch_size`` rows each; up to ``concurrency`` are in flight at once
(kept-alive connections, one per request in flight). Every socket operation has a timeout
and each request has a deadline of ``timeout`` seconds. A request that fails with HTTP 429,
a 5xx status, a timeout or a connection error is retried up to ``retries`` times with
exponential backoff (``backoff`` * 2**k seconds, at most ``max_backoff``; a ``Retry-After``
header is honoured up to ``max_backoff``), then :class:`~xrobust.errors.ModelError` names the
URL (without its query string or user info), the status and an excerpt of the answer. The
whole call is bounded by about ``(retries + 1) * (timeout + max_backoff)`` seconds per chunk
(chunks run ``concurrency`` at a time).

Queries: :attr:`~xrobust.models.classifier.Classifier.queries` counts the rows the server
was sent: a retried request counts its rows again, and rows that never left (a refused
connection, a chunk not started because another one failed) are not counted. Retries spend
the query budget too; nothing is sent beyond it.

Secrets: ``headers_env`` maps header names to environment variables (``{"Authorization":
"XR_TOKEN"}``) or to templates with ``$VAR`` / ``${VAR}`` (``{"Authorization": "Bearer
$XR_TOKEN"}``). Values are read from the environment for each request and never stored,
logged, put in :meth:`describe`, ``repr`` or an error message (any text taken from the
server's answer has them blanked out too). A missing variable is a
:class:`~xrobust.errors.ConfigError` naming the variable.

Example:
    >>> import numpy as np
    >>> from xrobust.models import as_classifier, serving
    >>> w = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    >>> with serving.serve(lambda a: a.reshape(len(a), -1) @ w) as server:
    ...     with as_classifier(server.url, input_shape=(1, 4, 4), num_classes=3) as clf:
    ...         s = clf.scores(np.ones((5, 1, 4, 4), dtype=np.float32))
    ...     (tuple(s.shape), clf.queries, server.rows_received)
    ((5, 3), 5, 5)
"""

from __future__ import annotations

import http.client
import json
import logging
import math
import os
import queue
import random
import re
import socket
import ssl
import string
import threading
import time
import urllib.parse
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import torch

from xrobust.errors import ConfigError, DataError, ModelError
from xrobust.models.classifier import Classifier

__all__ = ["PROTOCOLS", "EndpointClassifier", "parse_headers_env", "safe_url"]

logger = logging.getLogger(__name__)

#: protocol name -> (request key, response key); aliases map to the same pair.
PROTOCOLS: dict[str, tuple[str, str] | None] = {
    "instances": ("instances", "predictions"),
    "rows": ("instances", "predictions"),
    "tf-serving": ("instances", "predictions"),
    "vertex": ("instances", "predictions"),
    "inputs": ("inputs", "outputs"),
    "columnar": ("inputs", "outputs"),
    "json": None,
}
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_EXCERPT = 200
_MAX_ANSWER = 256 * 1024 * 1024  # bytes: a larger answer is refused, not read into memory
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def safe_url(url: str) -> str:
    """``url`` without user info, query string or fragment (where secrets may hide).

    >>> safe_url("https://user:pw@host:8443/v1/models/m:predict?key=SECRET#x")
    'https://host:8443/v1/models/m:predict'
    """
    p = urllib.parse.urlsplit(url)
    host = p.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    netloc = host + (f":{p.port}" if p.port else "")
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "", ""))


def parse_headers_env(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``headers_env`` from command-line items ``NAME=VARIABLE`` or ``NAME=TEMPLATE``
    (``--endpoint-header Authorization='Bearer $XR_TOKEN'``). A value that names no
    variable is refused without being echoed (it may be a pasted secret).

    >>> parse_headers_env(["Authorization=Bearer $XR_TOKEN", "X-Api-Key=XR_KEY"])
    {'Authorization': 'Bearer $XR_TOKEN', 'X-Api-Key': 'XR_KEY'}
    """
    out: dict[str, str] = {}
    for item in items:
        name, sep, spec = str(item).partition("=")
        name, spec = name.strip(), spec.strip()
        if not sep or not name:
            raise ConfigError(
                "an endpoint header is NAME=VARIABLE (e.g. Authorization=XR_TOKEN, or "
                "'Authorization=Bearer $XR_TOKEN'); the value is read from the environment"
            )
        _check_header(name, "", f"header {name!r}")
        if not _env_names(spec):
            raise ConfigError(
                f"the endpoint header {name!r} must name an environment variable (e.g. "
                f"{name}=XR_TOKEN) or a $VAR template, not a literal value: secrets are read "
                "from the environment, never from the command line"
            )
        out[name] = spec
    return out


class _Attempt(Exception):
    """One failed attempt: whether it may be retried, and what to say."""

    def __init__(
        self, message: str, *, retry: bool, sent: bool, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.message, self.retry, self.sent, self.retry_after = message, retry, sent, retry_after


class EndpointClassifier(Classifier):
    """A model behind an HTTP JSON prediction endpoint (see the module docstring).

    Args:
        url: the predict URL, e.g. ``http://host:8501/v1/models/NAME:predict`` (TF Serving)
            or ``https://REGION-aiplatform.googleapis.com/v1/projects/P/locations/REGION/
            endpoints/E:predict`` (Vertex AI).
        protocol: "instances" (row form, default), "inputs" (columnar) or "json" (custom).
        request_key, response_key, request_fields: the custom mapping (``protocol="json"``).
        signature_name: TF Serving's ``signature_name`` field, sent when given.
        input_name: send the input by this name (``{name: row}`` / ``{name: batch}``).
        output_name: the named output to read when the answer has several.
        layout: "NCHW" (as xrobust holds images, default) or "NHWC" (sent channels last).
        headers: plain, non-secret headers (names appear in :meth:`describe`, values do not).
        headers_env: header name -> environment variable name or ``$VAR`` template.
        timeout: seconds each request may take (connect, send, answer), > 0.
        retries: further attempts after a failed one (429, 5xx, timeout, connection error).
        backoff: first wait between attempts, seconds; doubled each time.
        max_backoff: the longest wait between attempts (also caps ``Retry-After``).
        concurrency: requests in flight at once.
        output, name, input_shape, num_classes, bounds, batch_size, query_budget: as for
            every :class:`~xrobust.models.classifier.Classifier` (``batch_size`` defaults to
            64 rows per request).

    Raises:
        ConfigError: a bad option, or a variable of ``headers_env`` that is not set.
    """

    source = "endpoint"

    def __init__(
        self,
        url: str,
        *,
        protocol: str = "instances",
        request_key: str | None = None,
        response_key: str | None = None,
        request_fields: Mapping[str, Any] | None = None,
        signature_name: str | None = None,
        input_name: str | None = None,
        output_name: str | None = None,
        layout: str = "NCHW",
        headers: Mapping[str, str] | None = None,
        headers_env: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 10.0,
        concurrency: int = 4,
        output: str = "logits",
        name: str | None = None,
        input_shape: tuple[int, ...] | None = None,
        num_classes: int | None = None,
        bounds: tuple[float, float] | None = None,
        batch_size: int = 64,
        query_budget: int | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ConfigError(_unknown_options(unknown))
        if not isinstance(url, str):
            raise ConfigError(f"an endpoint URL must be a string, got {type(url).__name__}")
        parts = urllib.parse.urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"an endpoint URL must be http(s)://host[:port]/path, got {safe_url(url)!r}"
            )
        try:
            parts.port  # noqa: B018  (validates the port)
        except ValueError:
            raise ConfigError(f"the endpoint URL {safe_url(url)!r} has an invalid port") from None
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                f"the endpoint URL {safe_url(url)!r} carries credentials (user:password@): "
                "pass them in a header from the environment instead, e.g. "
                "headers_env={'Authorization': 'Basic $XR_BASIC_AUTH'}"
            )
        self.url = safe_url(url)  # what is shown; the query string stays in _target only
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")

        proto = str(protocol).lower()
        if proto not in PROTOCOLS:
            raise ConfigError(
                f"unknown endpoint protocol {protocol!r}; expected one of "
                "instances (TF Serving / Vertex row form), inputs (columnar), json (custom)"
            )
        pair = PROTOCOLS[proto]
        if pair is None:
            if not request_key or not response_key:
                raise ConfigError(
                    "protocol 'json' needs request_key (where the batch goes, e.g. 'data') "
                    "and response_key (where the scores are, e.g. 'result.scores')"
                )
            pair = (str(request_key), str(response_key))
        elif request_key is not None or response_key is not None or request_fields:
            raise ConfigError(
                "request_key, response_key and request_fields apply to protocol='json' only; "
                f"protocol {protocol!r} uses {pair[0]!r} -> {pair[1]!r}"
            )
        self.protocol = (
            "json"
            if pair is None or proto == "json"
            else ("inputs" if pair[0] == "inputs" else "instances")
        )
        self._rows_form = self.protocol == "instances"
        self.request_key, self.response_key = pair
        self._request_path = _path(self.request_key, "request_key", allow_index=False)
        self._response_path = _path(self.response_key, "response_key", allow_index=True)
        self.request_fields = dict(request_fields or {})
        try:
            json.dumps(self.request_fields)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"request_fields must be JSON values: {exc}") from None
        self.signature_name = signature_name
        self.input_name = input_name
        self.output_name = output_name

        lay = str(layout).upper()
        if lay not in ("NCHW", "NHWC"):
            raise ConfigError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
        if lay == "NHWC" and input_shape is not None and len(tuple(input_shape)) != 3:
            raise ConfigError(
                f"layout='NHWC' applies to images (C, H, W); the input shape is {tuple(input_shape)}"
            )
        self.layout = lay

        self._headers = {str(k): str(v) for k, v in (headers or {}).items()}
        for k, v in self._headers.items():
            _check_header(k, v, f"header {k!r}")
        self.headers_env = {str(k): str(v) for k, v in (headers_env or {}).items()}
        for k, spec in self.headers_env.items():
            _check_header(k, "", f"header {k!r}")
            if not _env_names(spec):
                raise ConfigError(
                    f"headers_env[{k!r}] must name an environment variable (e.g. 'XR_TOKEN') "
                    "or be a template with $VAR (e.g. 'Bearer $XR_TOKEN')"
                )
        self._secret_headers()  # a missing variable is an error now, not at the first query

        self.timeout = _positive(timeout, "timeout")
        self.retries = _count(retries, "retries", minimum=0)
        self.backoff = _positive(backoff, "backoff", zero=True)
        self.max_backoff = _positive(max_backoff, "max_backoff", zero=True)
        self.concurrency = _count(concurrency, "concurrency", minimum=1)
        #: attempts that failed and were retried (``calls`` counts the HTTP answers received).
        self.retried = 0
        self._pool: queue.SimpleQueue[http.client.HTTPConnection] = queue.SimpleQueue()
        self._ssl: ssl.SSLContext | None = None

        super().__init__(
            name=name or self.url,
            input_shape=input_shape,
            num_classes=num_classes,
            bounds=bounds,
            output=output,
            differentiable=False,
            device="cpu",
            batch_size=batch_size,
            query_budget=query_budget,
        )

    # ------------------------------------------------------------------ what it is
    def describe(self) -> dict[str, Any]:
        d = super().describe()
        d.update(
            url=self.url,
            protocol=self.protocol,
            request_key=self.request_key,
            response_key=self.response_key,
            layout=self.layout,
            batch_size=self.batch_size,
            concurrency=self.concurrency,
            timeout=self.timeout,
            retries=self.retries,
            headers=sorted(self._headers),
            headers_env={k: sorted(_env_names(v)) for k, v in self.headers_env.items()},
        )
        if self.signature_name is not None:
            d["signature_name"] = self.signature_name
        return d

    def close(self) -> None:
        """Close the kept-alive connections (a later query opens new ones)."""
        while True:
            try:
                self._pool.get_nowait().close()
            except queue.Empty:
                return

    def __enter__(self) -> EndpointClassifier:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ answers
    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """Scores (N, C), as :meth:`Classifier.scores`, with requests of ``batch_size``
        rows sent ``concurrency`` at a time.

        Raises:
            QueryBudgetExhausted: the batch (or a retry) would exceed the budget; nothing
                beyond the budget is sent.
            DataError: ``x`` does not have the declared shape, or holds NaN / inf.
            ConfigError: a variable of ``headers_env`` is not set (nothing is sent).
            ModelError: the endpoint failed (after the retries) or answered malformed JSON,
                missing keys, wrong shapes or row counts, or non-numbers.
        """
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        arr = self._prepare(x)
        self._secret_headers()  # a missing variable stops the call before anything is counted
        self.spend(len(arr))  # the first attempt of every chunk; unsent rows are refunded
        return self._send_all(arr, x.dtype)


    def ask(self, x: torch.Tensor) -> torch.Tensor:
        """:meth:`scores` for rows already counted with :meth:`spend` (as the attacks do).
        Rows that are never sent (a bad batch, a missing header variable, chunks not started
        after another failed) are given back, so :attr:`queries` stays the rows sent."""
        if not isinstance(x, torch.Tensor):
            x = torch.as_tensor(np.asarray(x, dtype=np.float32))
        try:
            arr = self._prepare(x)
            self._secret_headers()
        except BaseException:
            self._refund(int(x.shape[0]) if x.dim() else 0)
            raise
        return self._send_all(arr, x.dtype)

    def _prepare(self, x: torch.Tensor) -> np.ndarray:
        """The batch as the server takes it (float32, channels last if asked), checked."""
        self._check_input(x)
        arr = x.detach().cpu().float().numpy()
        if not np.isfinite(arr).all():
            raise DataError("the batch holds NaN or inf values, which JSON cannot carry")
        if self.layout == "NHWC":
            if arr.ndim != 4:
                raise DataError(
                    f"layout='NHWC' needs a batch of images (N, C, H, W), got {arr.shape}"
                )
            arr = np.ascontiguousarray(arr.transpose(0, 2, 3, 1))
        return arr

    def _send_all(self, arr: np.ndarray, dtype: torch.dtype) -> torch.Tensor:
        """Answer ``arr`` (its first attempts already counted) chunk by chunk."""
        n = len(arr)
        if n == 0:
            return torch.empty(0, self.num_classes or 0, dtype=torch.float32)
        chunks = [arr[i : i + self.batch_size] for i in range(0, n, self.batch_size)]
        if len(chunks) == 1 or self.concurrency == 1:
            parts: list[np.ndarray] = []
            try:
                for c in chunks:
                    parts.append(self._chunk(c))
            except BaseException:
                self._refund(sum(len(c) for c in chunks[len(parts) + 1 :]))  # never sent
                raise
        else:
            parts = self._concurrent(chunks)
        out = torch.cat([self._format(p, len(c)) for p, c in zip(parts, chunks)])
        return out.double() if dtype == torch.float64 else out

    def _concurrent(self, chunks: list[np.ndarray]) -> list[np.ndarray]:
        started = [False] * len(chunks)
        stop = threading.Event()

        def run(i: int) -> np.ndarray:
            if stop.is_set():
                raise _Skipped
            started[i] = True
            try:
                return self._chunk(chunks[i])
            except BaseException:
                stop.set()  # chunks not yet started stay unsent
                raise

        with ThreadPoolExecutor(min(self.concurrency, len(chunks)), "xrobust-endpoint") as ex:
            futures = [ex.submit(run, i) for i in range(len(chunks))]
            error: BaseException | None = None
            parts: list[np.ndarray] = []
            for f in futures:
                try:
                    parts.append(f.result())
                except BaseException as exc:
                    if error is None or isinstance(error, _Skipped):
                        error = exc
                    stop.set()
                    for g in futures:
                        g.cancel()
        if error is not None:
            self._refund(sum(len(c) for c, s in zip(chunks, started) if not s))
            raise error
        return parts

    def _answer(self, x: torch.Tensor) -> Any:  # the base's path (unused: scores is ours)
        return self._chunk(x.detach().cpu().float().numpy())

    def _refund(self, rows: int) -> None:
        if rows:
            with self._lock:
                self.queries -= rows

    def _chunk(self, arr: np.ndarray) -> np.ndarray:
        """Send one chunk (its first attempt is already counted), retrying as configured."""
        m = len(arr)
        body = self._body(arr)
        attempts = self.retries + 1
        for k in range(attempts):
            if k:
                self.spend(m)  # a retry sends the rows again (budget-checked)
            try:
                return self._parse(self._request(body), m)
            except ConfigError:  # a header variable is gone: nothing was sent
                self._refund(m)
                raise
            except _Attempt as fail:
                if not fail.sent:
                    self._refund(m)
                if not fail.retry or k == attempts - 1:
                    tries = f" after {k + 1} attempts" if k else ""
                    raise ModelError(self._scrub(f"{fail.message}{tries}")) from None
                wait = self._wait(k, fail.retry_after)
                with self._lock:
                    self.retried += 1
                logger.info(
                    "endpoint %s: %s; retrying in %.2f s (attempt %d of %d)",
                    self.url,
                    self._scrub(fail.message),
                    wait,
                    k + 2,
                    attempts,
                )
                time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def _wait(self, k: int, retry_after: float | None) -> float:
        if retry_after is not None:
            return min(self.max_backoff, max(0.0, retry_after))
        base = min(self.max_backoff, self.backoff * 2**k)
        return base * (0.5 + 0.5 * random.random())  # jitter: concurrent retries spread out

    # ------------------------------------------------------------------ the wire
    def _body(self, arr: np.ndarray) -> bytes:
        """The request's JSON: values written with 9 significant digits (enough for every
        float32 to come back exactly; half the size and time of ``json.dumps``)."""
        rows = _rows_json(arr)
        name = None if self.input_name is None else json.dumps(self.input_name)
        if name is not None and self._rows_form:
            rows = [f"{{{name}:{r}}}" for r in rows]
        batch = "[" + ",".join(rows) + "]"
        if name is not None and not self._rows_form:
            batch = f"{{{name}:{batch}}}"
        doc: dict[str, Any] = json.loads(json.dumps(self.request_fields))  # a deep copy
        if self.signature_name is not None:
            doc["signature_name"] = self.signature_name
        node = doc
        for key in self._request_path[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"request_fields conflict with request_key {self.request_key!r}")
        node[self._request_path[-1]] = _PLACEHOLDER
        text = json.dumps(doc, allow_nan=False, separators=(",", ":"))
        return text.replace(json.dumps(_PLACEHOLDER), batch, 1).encode()

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        try:
            return self._pool.get_nowait(), True
        except queue.Empty:
            pass
        if self._scheme == "https":
            if self._ssl is None:
                self._ssl = ssl.create_default_context()  # system CAs (or $SSL_CERT_FILE)
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self._host, self._port, timeout=self.timeout, context=self._ssl
            )
        else:
            conn = http.client.HTTPConnection(self._host, self._port, timeout=self.timeout)
        return conn, False

    def _request(self, body: bytes) -> bytes:
        """POST ``body`` once; the answer's body, or :class:`_Attempt` on a failure."""
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            **self._headers,
            **self._secret_headers(),
        }
        for _ in range(2):  # a second go only when a kept-alive connection was stale
            conn, reused = self._connection()
            deadline = time.monotonic() + self.timeout
            sent = False
            try:
                if conn.sock is None:
                    conn.connect()
                    conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                _set_timeout(conn, deadline)  # sendall: the whole body within the deadline
                conn.request("POST", self._target, body=body, headers=headers)
                sent = True
                _set_timeout(conn, deadline)
                resp = conn.getresponse()
                data = _read(resp, conn, deadline)
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as exc:
                conn.close()
                if reused:
                    # the server had closed the idle connection before reading the request:
                    # drop the other idle ones too (likely as old) and try a fresh one
                    self.close()
                    continue
                raise _Attempt(
                    f"the endpoint {self.url} closed the connection ({type(exc).__name__})",
                    retry=True,
                    sent=sent,
                ) from None
            except TimeoutError:
                conn.close()
                raise _Attempt(
                    f"the endpoint {self.url} did not answer within the timeout of "
                    f"{self.timeout:g} s",
                    retry=True,
                    sent=sent,
                ) from None
            except _TooLarge as exc:
                conn.close()
                raise _Attempt(
                    f"the endpoint {self.url} answered more than {exc.args[0]} bytes",
                    retry=False,
                    sent=True,
                ) from None
            except ssl.SSLCertVerificationError as exc:
                conn.close()
                raise _Attempt(  # retrying cannot help
                    f"the endpoint {self.url} has a certificate that does not verify: "
                    f"{_oneline(str(exc.verify_message or exc))} (a private CA: set SSL_CERT_FILE)",
                    retry=False,
                    sent=False,
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                what = "the connection to" if sent else "cannot reach"
                raise _Attempt(
                    f"{what} the endpoint {self.url} failed: {type(exc).__name__}: "
                    f"{_oneline(str(exc))}"
                    if sent
                    else f"{what} the endpoint {self.url}: {type(exc).__name__}: {_oneline(str(exc))}",
                    retry=True,
                    sent=sent,
                ) from None
            except BaseException:
                conn.close()
                raise
            with self._lock:
                self.calls += 1
            if resp.will_close:
                conn.close()
            else:
                self._pool.put(conn)
            status = resp.status
            logger.debug("endpoint %s: HTTP %d, %d bytes", self.url, status, len(data))
            if 200 <= status < 300:
                return data
            retry_after = _retry_after(resp.getheader("Retry-After"))
            raise _Attempt(
                f"the endpoint {self.url} answered HTTP {status} {resp.reason}: "
                f"{self._excerpt(data, error_field=True)}",
                retry=status in _RETRY_STATUS or (500 <= status < 600 and status not in (501, 505)),
                sent=True,
                retry_after=retry_after,
            )
        raise _Attempt(f"the endpoint {self.url} keeps closing connections", retry=True, sent=False)

    # ------------------------------------------------------------------ the answer
    def _parse(self, data: bytes, m: int) -> np.ndarray:
        try:
            doc = json.loads(data)
        except (UnicodeDecodeError, ValueError):
            raise ModelError(
                self._scrub(
                    f"the endpoint {self.url} answered malformed JSON: {self._excerpt(data)}"
                )
            ) from None
        node: Any = doc
        for i, key in enumerate(self._response_path):
            where = ".".join(map(str, self._response_path[:i])) or "the answer"
            if isinstance(node, dict) and not isinstance(key, int) and key in node:
                node = node[key]
            elif isinstance(node, dict) and isinstance(key, int) and str(key) in node:
                node = node[str(key)]
            elif isinstance(node, list) and isinstance(key, int) and -len(node) <= key < len(node):
                node = node[key]
            else:
                have = (
                    f"keys {sorted(map(str, node))[:10]}"
                    if isinstance(node, dict)
                    else f"a {type(node).__name__}"
                )
                err = doc.get("error") if isinstance(doc, dict) else None
                note = f"; its error: {self._excerpt(str(err).encode())}" if err is not None else ""
                raise ModelError(
                    self._scrub(
                        f"the endpoint {self.url} answered without {self.response_key!r} "
                        f"({where} has {have}){note}"
                    )
                )
        node = self._pick_output(node)
        if not isinstance(node, list):
            raise ModelError(
                f"the endpoint {self.url} answered {self.response_key!r} as a "
                f"{type(node).__name__}; expected a list of {m} rows"
            )
        if len(node) != m:
            raise ModelError(
                f"the endpoint {self.url} answered {len(node)} rows for the {m} it was sent"
            )
        try:
            arr = np.asarray(node)
        except ValueError:
            raise ModelError(
                f"the endpoint {self.url} answered rows of different lengths or shapes"
            ) from None
        if arr.dtype == bool or arr.dtype.kind not in "iuf":
            raise ModelError(
                f"the endpoint {self.url} answered values that are not numbers "
                f"(JSON {_json_kind(arr)}); expected scores or labels"
            )
        return arr.astype(np.int64) if arr.dtype.kind in "iu" else arr.astype(np.float32)

    def _pick_output(self, node: Any) -> Any:
        """One output from named outputs: ``{name: batch}`` or rows ``[{name: row}, ...]``."""

        def pick(d: dict[str, Any]) -> Any:
            if self.output_name is not None:
                if self.output_name not in d:
                    raise ModelError(
                        f"the endpoint {self.url} answered outputs {sorted(d)[:10]}, "
                        f"without {self.output_name!r}"
                    )
                return d[self.output_name]
            if len(d) == 1:
                return next(iter(d.values()))
            raise ModelError(
                f"the endpoint {self.url} answered several outputs {sorted(d)[:10]}; "
                "choose one with output_name="
            )

        if isinstance(node, dict):
            return pick(node)
        if isinstance(node, list) and node and all(isinstance(r, dict) for r in node):
            return [pick(r) for r in node]
        return node

    # ------------------------------------------------------------------ secrets
    def _secret_headers(self) -> dict[str, str]:
        """Header values from the environment, read now (never stored)."""
        out = {}
        for header, spec in self.headers_env.items():
            names = _env_names(spec)
            missing = [v for v in names if v not in os.environ]
            if missing:
                raise ConfigError(
                    f"the environment variable {missing[0]} (for the endpoint header "
                    f"{header!r}) is not set"
                )
            if _VAR.match(spec):
                value = os.environ[spec]
            else:
                value = string.Template(spec).substitute(os.environ)
            if not value or any(c in value for c in "\r\n\0"):
                raise ConfigError(
                    f"the environment variable(s) {', '.join(names)} for the endpoint header "
                    f"{header!r} give an empty value or one with a line break"
                )
            out[header] = value
        return out

    def _excerpt(self, data: bytes, error_field: bool = False) -> str:
        """A short, one-line, quoted excerpt of an answer, secrets blanked out first (so
        that no part of one can show at the cut). With ``error_field``, the text of a JSON
        ``{"error": ...}`` (TF Serving's, Vertex's) stands for the whole body."""
        text = data[:65536].decode("utf-8", "replace")
        if error_field:
            try:
                doc = json.loads(text)
            except ValueError:
                doc = None
            if isinstance(doc, dict) and isinstance(doc.get("error"), str | dict):
                err = doc["error"]  # TF Serving: a string; Vertex / Google: {code, message, status}
                if isinstance(err, dict) and isinstance(err.get("message"), str):
                    text = err["message"]
                else:
                    text = err if isinstance(err, str) else json.dumps(err)
        text = _oneline(self._scrub(text))
        if not text:
            return "(empty body)"
        return "'" + text[:_EXCERPT] + ("...'" if len(text) > _EXCERPT else "'")

    def _scrub(self, text: str) -> str:
        """``text`` with every current secret value (of 4 characters or more) blanked out."""
        for spec in self.headers_env.values():
            for var in _env_names(spec):
                value = os.environ.get(var, "")
                if len(value) >= 4:
                    text = text.replace(value, "<redacted>")
        return text


class _Skipped(Exception):
    """A chunk not started because another one failed."""


class _TooLarge(Exception):
    pass


def _unknown_options(unknown: dict[str, Any]) -> str:
    import difflib
    import inspect

    known = [
        p
        for p in inspect.signature(EndpointClassifier.__init__).parameters
        if p not in ("self", "url", "unknown")
    ]
    parts = []
    for k in sorted(unknown):
        close = difflib.get_close_matches(k, known, n=1)
        parts.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
    return f"option(s) {', '.join(parts)} do not apply to an endpoint; it takes {', '.join(known)}"


_PLACEHOLDER = "\x00xrobust-batch\x00"


def _rows_json(arr: np.ndarray) -> list[str]:
    """Each row of ``arr`` (n, ...) as JSON text (nested lists of numbers)."""
    n = arr.shape[0]
    if arr.size == 0 or arr.ndim == 1:
        return [json.dumps(r) if arr.ndim > 1 else f"{r:.9g}" for r in arr.tolist()]
    items = list(map("{:.9g}".format, arr.ravel().tolist()))
    for size in reversed(arr.shape[1:]):  # innermost axis first: group into lists
        items = ["[" + ",".join(items[i : i + size]) + "]" for i in range(0, len(items), size)]
    assert len(items) == n
    return items


def _path(key: str, what: str, *, allow_index: bool) -> list[str | int]:
    parts = str(key).split(".")
    if not key or any(p == "" for p in parts):
        raise ConfigError(
            f"{what} must be a key or a dotted path such as 'result.scores', got {key!r}"
        )
    out: list[str | int] = []
    for p in parts:
        out.append(int(p) if allow_index and p.lstrip("-").isdigit() else p)
    return out


def _env_names(spec: str) -> list[str]:
    if _VAR.match(spec):
        return [spec]
    names = []
    for m in string.Template.pattern.finditer(spec):
        name = m.group("named") or m.group("braced")
        if name:
            names.append(name)
    return names


def _check_header(name: str, value: str, what: str) -> None:
    if not re.match(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$", name):
        raise ConfigError(f"{what} is not a valid HTTP header name")
    if any(c in value for c in "\r\n\0"):
        raise ConfigError(f"{what} has a line break in its value")


def _positive(v: Any, what: str, zero: bool = False) -> float:
    try:
        f = float(v)
    except (TypeError, ValueError):
        raise ConfigError(f"{what} must be a number of seconds, got {v!r}") from None
    if not math.isfinite(f) or f < 0 or (f == 0 and not zero):
        raise ConfigError(f"{what} must be {'>= 0' if zero else '> 0'} seconds, got {v!r}")
    return f


def _count(v: Any, what: str, minimum: int) -> int:
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < minimum:
        raise ConfigError(f"{what} must be an integer >= {minimum}, got {v!r}")
    return int(v)


def _set_timeout(conn: http.client.HTTPConnection, deadline: float) -> None:
    left = deadline - time.monotonic()
    if left <= 0:
        raise TimeoutError
    if conn.sock is not None:
        conn.sock.settimeout(left)


def _read(
    resp: http.client.HTTPResponse, conn: http.client.HTTPConnection, deadline: float
) -> bytes:
    """The answer's body, read in pieces so that the deadline holds for a trickling server."""
    length = resp.getheader("Content-Length")
    if length is not None and length.isdigit() and int(length) > _MAX_ANSWER:
        raise _TooLarge(_MAX_ANSWER)
    pieces, total = [], 0
    while resp.length is None or resp.length > 0:
        _set_timeout(conn, deadline)
        piece = resp.read1(1 << 16)  # what has arrived: one bounded wait per piece
        if not piece:
            break
        pieces.append(piece)
        total += len(piece)
        if total > _MAX_ANSWER:
            raise _TooLarge(_MAX_ANSWER)
    data = b"".join(pieces)
    if resp.length:  # the server closed before the end of the body
        raise http.client.IncompleteRead(data, resp.length)
    resp.close()  # the whole body is read: the connection can carry the next request
    return data


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _oneline(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def _json_kind(arr: np.ndarray) -> str:
    """What JSON values stand where numbers should: for the error message."""
    names = {
        bool: "true/false",
        str: "strings",
        type(None): "null",
        dict: "objects",
        list: "nested lists of uneven depth",
    }
    found = sorted(
        {
            names.get(type(v), type(v).__name__)
            for v in arr.ravel().tolist()
            if isinstance(v, bool) or not isinstance(v, int | float)
        }
    )
    return ", ".join(found) or "mixed"
