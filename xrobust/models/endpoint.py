"""A classifier behind an HTTP prediction endpoint (TensorFlow Serving, Vertex AI,
SageMaker's TF-Serving container, or any JSON server), with the standard library only.

Protocols (``protocol=``):

* ``"instances"`` (the default; aliases ``"rows"``, ``"tf-serving"``, ``"vertex"``): the
  TensorFlow Serving / Vertex AI REST row form, ``{"instances": [row, ...]}`` in and
  ``{"predictions": [row, ...]}`` out. Other fields of the answer (Vertex's
  ``deployedModelId``, ``model``, ``modelVersionId``, ...) are ignored.
* ``"inputs"`` (alias ``"columnar"``): the columnar form, ``{"inputs": batch}`` in and
  ``{"outputs": batch}`` out.
* ``"v2"`` (aliases ``"oip"``, ``"kserve-v2"``): the Open Inference Protocol over REST
  (KServe, Triton, MLServer / Seldon, OpenVINO Model Server): the URL names the model,
  ``http://host:port/v2/models/NAME`` (or ``.../versions/V``); the batch goes to ``.../infer``
  as a tensor ``{"name", "shape", "datatype", "data"}``. At construction the server and the
  model must be ready (``GET /v2/health/ready``, ``GET /v2/models/NAME/ready``), else a
  :class:`~xrobust.errors.ModelError` says which is not; the input's name and datatype come
  from the model's metadata (``GET /v2/models/NAME``) unless ``input_name`` / ``datatype``
  are given (see :mod:`xrobust.models._oip` for the datatypes), and an ``{"error": ...}``
  answer is shown as the server's error. ``"v2-binary"``: the same with the protocol's binary
  tensor extension (raw bytes instead of JSON numbers; KServe and Triton, not MLServer).
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
Without it, such an answer is read only when exactly one output is clearly the class scores
(named logits, scores, probabilities, probs, predictions or output_0, with the declared
number of values per row): the choice is logged as a warning and shown by :meth:`describe`
(``output_name``, ``output_name_chosen``); otherwise the answer is refused, naming the
outputs.

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

Answers: every answer is checked before it is used. JSON with a key repeated in any object,
or nested deeper than 64 levels, is refused (:class:`~xrobust.errors.ModelError`). The bytes
of answers one classifier holds at once (read or being parsed), all its requests in flight
together, are limited to 256 MiB: an answer that would go beyond it is refused, not read,
with what to lower (``batch_size``, ``concurrency``). Text of the server's shown in an error
(a body, a reason phrase, a key) has escape sequences and control characters removed, is
cut to 300 characters, and binary bodies are shown as their size and content type.

Secrets: ``headers_env`` maps header names to environment variables (``{"Authorization":
"XR_TOKEN"}``) or to templates with ``$VAR`` / ``${VAR}`` (``{"Authorization": "Bearer
$XR_TOKEN"}``). Values are read from the environment for each request and never stored,
logged, put in :meth:`describe`, ``repr`` or an error message: any text taken from the
server's answer has them blanked out, as they are, in base64 (both alphabets, padded or
not, also inside a longer base64 text), percent-encoded and JSON-escaped, and so has the
credential of a ``Bearer``/``Basic`` value (for Basic also the decoded ``user:password`` and
the password alone). A missing variable is a :class:`~xrobust.errors.ConfigError` naming the
variable (unless its name looks like a pasted secret rather than a variable name); a value
with a line break or a character that is not Latin-1 is one too, never echoed.

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

import base64
import contextlib
import functools
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

from xrobust._text import as_text, binary_summary, clean_for_terminal
from xrobust.errors import ConfigError, DataError, ModelError
from xrobust.models import _oip
from xrobust.models.classifier import Classifier

__all__ = ["PROTOCOLS", "URL_PROTOCOLS", "EndpointClassifier", "parse_headers_env", "safe_url"]

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
#: the Open Inference Protocol's names (``protocol="v2"``).
V2_PROTOCOLS = ("v2", "oip", "kserve-v2", "v2-binary")
#: the protocols for which a URL is enough (the CLI's --endpoint-protocol, the dashboard).
URL_PROTOCOLS = ("instances", "inputs", "v2", "v2-binary")
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_EXCERPT = 300
#: bytes of answers one classifier holds at once (read or being parsed), all its requests in
#: flight together: an answer that would go beyond it is refused, not read into memory.
_MAX_ANSWER = 256 * 1024 * 1024
#: the deepest JSON nesting an answer may have (scores need 2-4 levels; numpy's limit is 64).
_MAX_DEPTH = 64
_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
#: output names that are clearly the class scores (with the right width), so that an answer
#: with several outputs may be read without ``output_name`` (the choice is logged).
#: Two such outputs (logits and probabilities, say) are ambiguous: the answer is refused.
_SCORE_NAMES = ("logits", "scores", "probabilities", "probs", "predictions", "output_0")


def safe_url(url: str) -> str:
    """``url`` without user info, query string or fragment (where secrets may hide).

    >>> safe_url("https://user:pw@host:8443/v1/models/m:predict?key=SECRET#x")
    'https://host:8443/v1/models/m:predict'
    """
    try:
        p = urllib.parse.urlsplit(str(url))
    except ValueError:  # an unbalanced [IPv6] bracket
        return "(an unreadable URL)"
    host = p.hostname or ""
    if ":" in host:  # IPv6
        host = f"[{host}]"
    port = _port_text(p.netloc)  # as written: .port raises on an out-of-range port
    netloc = host + (f":{port}" if port and port.isdigit() else ":(invalid port)" if port else "")
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "", ""))


def _port_text(netloc: str) -> str:
    """The port part of ``netloc`` as written ('' when none), user info left out."""
    hostport = netloc.rpartition("@")[2]
    if hostport.startswith("["):
        _, _, rest = hostport.partition("]")
        return rest[1:] if rest.startswith(":") else ""
    return hostport.partition(":")[2]


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
        _check_header(name, "", "an endpoint header name")  # not echoed: it may hold a secret
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
        self,
        message: str,
        *,
        retry: bool,
        sent: bool,
        retry_after: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.message, self.retry, self.sent, self.retry_after = message, retry, sent, retry_after
        self.status = status  # the HTTP status of an answer that was not 2xx


class EndpointClassifier(Classifier):
    """A model behind an HTTP JSON prediction endpoint (see the module docstring).

    Args:
        url: the predict URL, e.g. ``http://host:8501/v1/models/NAME:predict`` (TF Serving)
            or ``https://REGION-aiplatform.googleapis.com/v1/projects/P/locations/REGION/
            endpoints/E:predict`` (Vertex AI).
        protocol: "instances" (row form, default), "inputs" (columnar), "v2" (the Open
            Inference Protocol) or "json" (custom).
        request_key, response_key, request_fields: the custom mapping (``protocol="json"``).
        signature_name: TF Serving's ``signature_name`` field, sent when given.
        input_name: send the input by this name (``{name: row}`` / ``{name: batch}``; the
            V2 tensor's name).
        datatype: the V2 input tensor's datatype (default: from the model's metadata, else
            FP32).
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
        datatype: str | None = None,
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
        if re.search(r"[\x00-\x20\x7f-\x9f]", url):
            raise ConfigError(
                "an endpoint URL may not hold spaces or control characters (write a space "
                "in a path as %20); this one does"
            )
        try:
            parts = urllib.parse.urlsplit(url)
            parts.hostname  # noqa: B018  (validates an [IPv6] host)
        except ValueError:
            raise ConfigError(
                "an endpoint URL must be http(s)://host[:port]/path; this one is not readable "
                "(an unbalanced [ ] around an IPv6 address?)"
            ) from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(
                f"an endpoint URL must be http(s)://host[:port]/path, got {safe_url(url)!r}"
            )
        port = _port_text(parts.netloc)
        try:
            parts.port  # noqa: B018  (validates the port)
            bad_port = port != "" and not (port.isdigit() and 0 < int(port) < 65536)
        except ValueError:
            bad_port = True
        if bad_port:
            shown = (
                f"port {port}"
                if port.isdigit() and len(port) < 12
                else "a port that is not a number"
            )
            raise ConfigError(
                f"the endpoint URL {safe_url(url)!r} has {shown}; a port is a number from 1 "
                "to 65535 (http://host:8501/...), or none for the scheme's default"
            )
        if parts.username is not None or parts.password is not None:
            raise ConfigError(
                f"the endpoint URL {safe_url(url)!r} carries credentials (user:password@): "
                "pass them in a header from the environment instead, e.g. "
                "headers_env={'Authorization': 'Basic $XR_BASIC_AUTH'}"
            )
        self.url = safe_url(url)  # what is shown; the query string stays in _target only
        self._scheme, self._host, self._port = parts.scheme, parts.hostname, parts.port
        self._target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        if not self._target.isascii():
            raise ConfigError(
                f"the endpoint URL {safe_url(url)!r} has characters that are not ASCII in its "
                "path or query; percent-encode them (urllib.parse.quote)"
            )

        self._set_protocol(
            protocol, request_key, response_key, request_fields, parts, datatype=datatype,
            names=(signature_name, input_name, output_name),
        )  # fmt: skip
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
            _check_header(k, v, "a header name")
            _check_header_value(v, f"the value of the header {k!r}")
        self.headers_env = {str(k): str(v) for k, v in (headers_env or {}).items()}
        for k, spec in self.headers_env.items():
            _check_header(k, "", "a headers_env name")
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
        #: bytes of answers held at once, all requests in flight together (see _MAX_ANSWER).
        self._in_flight = _ByteBudget(_MAX_ANSWER)
        self._auto_output: str | None = None  # the output read when the answer has several
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
        if self._v2 is not None:
            self._v2_probe()

    def _set_protocol(
        self,
        protocol: str,
        request_key: str | None,
        response_key: str | None,
        request_fields: Mapping[str, Any] | None,
        parts: urllib.parse.SplitResult,
        *,
        datatype: str | None,
        names: tuple[str | None, str | None, str | None],
    ) -> None:
        """The protocol's request and response keys (or its V2 model), checked."""
        proto = str(protocol).lower()
        self._v2: _oip.V2Model | None = None
        if proto not in PROTOCOLS and proto not in V2_PROTOCOLS:
            raise ConfigError(
                f"unknown endpoint protocol {protocol!r}; expected one of "
                "instances (TF Serving / Vertex row form), inputs (columnar), v2 (the Open "
                "Inference Protocol: KServe, Triton, MLServer), json (custom)"
            )
        if datatype is not None and proto not in V2_PROTOCOLS:
            raise ConfigError("datatype= applies to protocol='v2' (a V2 tensor's datatype)")
        pair = PROTOCOLS.get(proto, ("inputs", "outputs"))
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
        if proto in V2_PROTOCOLS:
            if names[0] is not None:
                raise ConfigError("signature_name applies to TF Serving, not to protocol='v2'")
            self._v2 = _oip.V2Model.from_url_path(
                parts.path, parts.query, input_name=names[1], datatype=datatype,
                output_name=names[2], binary=proto == "v2-binary",
            )  # fmt: skip
            self._target = self._v2.infer
            self.protocol = "v2"
        else:
            self.protocol = "json" if pair is None or proto == "json" else (
                "inputs" if pair[0] == "inputs" else "instances"
            )  # fmt: skip
        self._rows_form = self.protocol == "instances"
        self.request_key, self.response_key = pair
        self._request_path = _path(self.request_key, "request_key", allow_index=False)
        self._response_path = _path(self.response_key, "response_key", allow_index=True)
        self.request_fields = dict(request_fields or {})
        try:
            json.dumps(self.request_fields)
        except (TypeError, ValueError) as exc:
            raise ConfigError(f"request_fields must be JSON values: {exc}") from None

    def _v2_probe(self) -> None:
        """Readiness of the server and the model, then the model's metadata (V2)."""
        v2 = self._v2
        assert v2 is not None
        for target, what in ((v2.server_ready, "server"), (v2.model_ready, "model")):
            try:
                data = self._get(target)
            except _Attempt as fail:
                raise ModelError(self._scrub(v2.not_ready(what, self.url, fail.message))) from None
            if _oip.says_not_ready(data):
                raise ModelError(self._scrub(v2.not_ready(what, self.url, "ready: false")))
        try:
            doc = self._load(self._get(v2.metadata))
            shape = self.input_shape
            if shape is not None and self.layout == "NHWC" and len(shape) == 3:
                shape = (shape[1], shape[2], shape[0])
            v2.configure(doc, shape)
        except _Attempt as fail:
            raise ModelError(self._scrub(f"the V2 model's metadata: {fail.message}")) from None
        except (ModelError, ConfigError) as exc:
            raise type(exc)(
                self._scrub(f"the V2 model {_oip._show(v2.model)!r} at {self.url}: {exc}")
            ) from None

    def _binary_hint(self, fail: _Attempt) -> str:
        """What to try when a V2 binary request fails with an HTTP error."""
        if self._v2 is None or not self._v2.binary or fail.status is None:
            return ""
        return _oip.BINARY_HINT

    def _get(self, target: str) -> bytes:
        """GET ``target`` (a V2 readiness or metadata path): the body of a 2xx answer, or
        :class:`_Attempt`. Failed connections are retried as requests are; HTTP errors not."""
        for k in range(self.retries + 1):
            try:
                data, held, _ = self._exchange("GET", target, None)
                self._in_flight.give(held)
                return data
            except _Attempt as fail:
                if fail.status is not None or not fail.retry or k == self.retries:
                    raise
                time.sleep(self._wait(k, fail.retry_after))
        raise AssertionError("unreachable")  # pragma: no cover

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
        if self._v2 is not None:
            d["v2"] = self._v2.describe()
        if self.output_name is not None or self._auto_output is not None:
            d["output_name"] = self.output_name or self._auto_output
            d["output_name_chosen"] = "given" if self.output_name is not None else "automatically"
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
        try:
            body = self._body(arr)
        except BaseException:  # values the V2 datatype cannot carry: nothing is sent
            self._refund(m)
            raise
        attempts = self.retries + 1
        for k in range(attempts):
            if k:
                self.spend(m)  # a retry sends the rows again (budget-checked)
            try:
                data, held, ctype = self._request(body)
                try:
                    return self._parse(data, m, ctype)
                finally:
                    del data  # the bytes go before the budget they held is given back
                    self._in_flight.give(held)
            except ConfigError:  # a header variable is gone: nothing was sent
                self._refund(m)
                raise
            except ModelError as exc:  # about the answer: its server text is cleaned already
                raise ModelError(self._scrub(str(exc))) from None
            except _Attempt as fail:
                if not fail.sent:
                    self._refund(m)
                if not fail.retry or k == attempts - 1:
                    tries = f" after {k + 1} attempts" if k else ""
                    raise ModelError(
                        self._scrub(f"{fail.message}{tries}{self._binary_hint(fail)}")
                    ) from None
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
        if self._v2 is not None:
            return self._v2.body(arr)
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

    def _request(self, body: bytes) -> tuple[bytes, int, str | None]:
        """POST ``body`` once: the answer's body, the bytes of :attr:`_in_flight` it holds
        (the caller gives them back once the body is parsed) and its Content-Type; or :class:`_Attempt` on a
        failure (holding nothing). The transport's override point (SageMaker)."""
        return self._exchange("POST", self._target, body)

    def _exchange(
        self, method: str, target: str, body: bytes | None
    ) -> tuple[bytes, int, str | None]:
        """One HTTP exchange (``_request``'s, or a V2 GET), with the same answer."""
        headers = {
            **({"Content-Type": "application/json"} if body is not None else {}),
            "Accept": "application/json",
            **getattr(body, "headers", {}),  # a V2 binary request's
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
                try:
                    conn.request(method, target, body=body, headers=headers)
                except (UnicodeError, ValueError):  # a header http.client cannot send
                    raise ConfigError(  # (checked before; its text may hold the value)
                        f"the request to the endpoint {self.url} could not be sent: header values "
                        "must be Latin-1 (or ASCII) text without line breaks"
                    ) from None
                sent = True
                _set_timeout(conn, deadline)
                resp = conn.getresponse()
                data, held = _read(resp, conn, deadline, self._in_flight)
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
                raise _Attempt(self._too_large(exc.alone), retry=False, sent=True) from None
            except ssl.SSLCertVerificationError as exc:
                conn.close()
                raise _Attempt(  # retrying cannot help
                    f"the endpoint {self.url} has a certificate that does not verify: "
                    f"{self._clean(str(exc.verify_message or exc))} (a private CA: set "
                    "SSL_CERT_FILE)",
                    retry=False,
                    sent=False,
                ) from None
            except (OSError, http.client.HTTPException) as exc:
                conn.close()
                detail = f"{type(exc).__name__}: {self._clean(str(exc))}"
                raise _Attempt(
                    f"the connection to the endpoint {self.url} failed: {detail}"
                    if sent
                    else f"cannot reach the endpoint {self.url}: {detail}",
                    retry=True,
                    sent=sent,
                ) from None
            except BaseException:
                conn.close()
                raise
            try:
                with self._lock:
                    self.calls += 1
                if resp.will_close:
                    conn.close()
                else:
                    self._pool.put(conn)
                status = resp.status
                logger.debug("endpoint %s: HTTP %d, %d bytes", self.url, status, len(data))
                if 200 <= status < 300:
                    return data, held, resp.getheader("Content-Type")
                retry_after = _retry_after(resp.getheader("Retry-After"))
                reason = self._clean(str(resp.reason or ""), 80)
                excerpt = self._excerpt(
                    data, error_field=True, content_type=resp.getheader("Content-Type")
                )
            except BaseException:
                self._in_flight.give(held)
                raise
            self._in_flight.give(held)
            raise _Attempt(
                f"the endpoint {self.url} answered HTTP {status}{' ' + reason if reason else ''}: "
                f"{excerpt}",
                retry=status in _RETRY_STATUS or (500 <= status < 600 and status not in (501, 505)),
                sent=True,
                retry_after=retry_after,
                status=status,
            )
        raise _Attempt(f"the endpoint {self.url} keeps closing connections", retry=True, sent=False)

    def _too_large(self, alone: bool) -> str:
        cap = _size(self._in_flight.cap)
        if alone or self.concurrency == 1:
            return (
                f"the endpoint {self.url} answered more than {cap} for one request of up to "
                f"{self.batch_size} rows (the most an answer may hold); send fewer rows per "
                "request: a smaller batch_size= (--endpoint-batch-size on the command line)"
            )
        return (
            f"the answers of the endpoint {self.url} in flight would hold more than {cap} "
            f"together ({self.concurrency} requests of up to {self.batch_size} rows at once; "
            "one limit for all of them); lower concurrency= or batch_size= "
            "(--endpoint-concurrency or --endpoint-batch-size on the command line)"
        )

    # ------------------------------------------------------------------ the answer
    def _parse(self, data: bytes, m: int, content_type: str | None = None) -> np.ndarray:
        data, raw = _oip.split_binary(data) if self._v2 is not None else (data, b"")
        doc = self._load(data, content_type)
        if self._v2 is not None:
            try:
                node: Any = self._v2.outputs_of(doc, m, raw)
            except ModelError as exc:
                raise ModelError(f"the endpoint {self.url} {exc}") from None
        else:
            node = self._walk(doc)
        return self._rows(self._pick_output(node, m), m)

    def _load(self, data: bytes, content_type: str | None = None) -> Any:
        """An answer's JSON, refused when a key repeats, it nests too deep or is malformed."""
        try:
            doc = json.loads(data, object_pairs_hook=_unique_keys)
        except _DuplicateKey as dup:
            raise ModelError(
                f"the endpoint {self.url} answered a JSON object with the key "
                f"'{self._clean(dup.key, 60)}' more than once: which one holds the answer is "
                "ambiguous (JSON readers differ), so the answer is refused; fix the server"
            ) from None
        except RecursionError:
            raise ModelError(self._too_deep()) from None
        except (UnicodeDecodeError, ValueError):
            raise ModelError(
                f"the endpoint {self.url} answered malformed JSON: "
                f"{self._excerpt(data, content_type=content_type)}"
            ) from None
        if _deeper_than(doc, _MAX_DEPTH):
            raise ModelError(self._too_deep())
        return doc

    def _walk(self, doc: Any) -> Any:
        """What ``response_key`` names in the answer, or a ModelError saying what is there."""
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
                    f"keys {self._names(node)}"
                    if isinstance(node, dict)
                    else f"a {type(node).__name__}"
                )
                err = doc.get("error") if isinstance(doc, dict) else None
                if err is None:
                    note = ""
                else:
                    text = err if isinstance(err, str) else json.dumps(err)
                    note = f"; its error: {self._excerpt(text.encode())}"
                raise ModelError(
                    f"the endpoint {self.url} answered without {self.response_key!r} "
                    f"({where} has {have}){note}"
                )
        return node

    def _rows(self, node: Any, m: int) -> np.ndarray:
        """The answer's ``m`` rows of scores or labels as an array, checked."""
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

    def _too_deep(self) -> str:
        return (
            f"the endpoint {self.url} answered JSON nested deeper than {_MAX_DEPTH} levels "
            "(scores need two to four); the answer is refused; check what the server returns"
        )

    def _names(self, d: dict[str, Any]) -> str:
        """Keys of an answer, as an error shows them (cleaned, secrets blanked out)."""
        names = sorted(map(str, d))
        shown = ", ".join(f"'{self._clean(k, 40)}'" for k in names[:10])
        return f"[{shown}{', ...' if len(names) > 10 else ''}]"

    def _pick_output(self, node: Any, m: int) -> Any:
        """One output from named outputs: ``{name: batch}`` or rows ``[{name: row}, ...]``.

        With several outputs and no ``output_name``, the one that is clearly the class scores
        (named as in :data:`_SCORE_NAMES`, with the right width, and only one such) is read, and the choice is logged once and shown by
        :meth:`describe`; otherwise the answer is refused, naming the outputs."""
        rows = isinstance(node, list) and bool(node) and all(isinstance(r, dict) for r in node)
        if not isinstance(node, dict) and not rows:
            return node
        if rows and all({"name", "data"} <= set(r) for r in node):
            raise ModelError(
                f"the endpoint {self.url} answered Open Inference Protocol (KServe V2) output "
                'tensors ({"name", "shape", "data"}): give protocol="v2" (--endpoint-protocol '
                "v2) with the model's V2 URL, http://host:port/v2/models/NAME"
            )
        dicts: list[dict[str, Any]] = node if rows else [node]
        names = sorted(set().union(*dicts))
        chosen = self.output_name or self._auto_output
        if chosen is None:
            if len(names) == 1:
                chosen = names[0]
            else:
                chosen = self._clear_scores(dicts, names, rows, m)
        for d in dicts:
            if chosen not in d:
                how = "" if self.output_name is not None else " (read before, automatically)"
                raise ModelError(
                    f"the endpoint {self.url} answered outputs {self._names(d)}, without "
                    f"{self._clean(chosen, 60)!r}{how}; choose one with output_name= "
                    "(--output-name on the command line)"
                )
        return [d[chosen] for d in dicts] if rows else dicts[0][chosen]

    def _clear_scores(
        self, dicts: list[dict[str, Any]], names: list[str], rows: bool, m: int
    ) -> str:
        """The output that is clearly the class scores, or a ModelError naming them all."""
        c = self.num_classes

        def fits(name: str) -> bool:
            values = [d.get(name) for d in dicts] if rows else dicts[0].get(name)
            if not isinstance(values, list) or len(values) != m:
                return False
            if self.output == "labels":
                return all(
                    isinstance(v, int | float) or (isinstance(v, list) and len(v) == 1)
                    for v in values
                )
            return c is not None and all(isinstance(v, list) and len(v) == c for v in values)

        candidates = [n for n in names if n.lower() in _SCORE_NAMES and fits(n)]
        if len(candidates) != 1:
            raise ModelError(
                f"the endpoint {self.url} answered several outputs {self._names(dicts[0])}; "
                "choose one with output_name= (--output-name on the command line)"
                + (
                    f" (none or more than one is clearly the class scores: named "
                    f"{'/'.join(_SCORE_NAMES)}, with {c} values per row)"
                    if c is not None and self.output != "labels"
                    else ""
                )
            )
        name = candidates[0]
        with self._lock:
            first = self._auto_output is None
            self._auto_output = name
        if first:
            logger.warning(
                "the endpoint %s answered several outputs %s; reading %r as the class scores "
                "(%s per row); choose another with output_name= (--output-name)",
                self.url,
                self._names(dicts[0]),
                name,
                f"{c} values" if self.output != "labels" else "one label",
            )
        return name

    # ------------------------------------------------------------------ secrets
    def _secret_headers(self) -> dict[str, str]:
        """Header values from the environment, read now (never stored)."""
        out = {}
        for header, spec in self.headers_env.items():
            names = _env_names(spec)
            missing = [v for v in names if v not in os.environ]
            if missing:
                raise ConfigError(_missing_variable(missing[0], header))
            if _VAR.match(spec):
                value = os.environ[spec]
            else:
                value = string.Template(spec).substitute(os.environ)
            shown = ", ".join(_shown_name(v) for v in names)
            if not value or any(c in value for c in "\r\n\0"):
                raise ConfigError(
                    f"the environment variable(s) {shown} for the endpoint header "
                    f"{header!r} give an empty value or one with a line break"
                )
            _check_header_value(
                value, f"the value of the endpoint header {header!r} (from {shown})"
            )
            out[header] = value
        return out

    def _excerpt(
        self, data: bytes, error_field: bool = False, content_type: str | None = None
    ) -> str:
        """A short, one-line, quoted excerpt of an answer: escape sequences and control
        characters removed, then secrets blanked out (so that neither an escape inside a
        secret nor the cut can let part of one through), then cut to ``_EXCERPT`` characters.
        Binary data is shown as its size and type. With ``error_field``, the text of a JSON
        ``{"error": ...}`` (TF Serving's, Vertex's) stands for the whole body."""
        text = as_text(data[:65536], cut=len(data) > 65536)
        if text is None:
            return binary_summary(len(data), content_type)
        if error_field:
            try:
                doc = json.loads(text)
            except (ValueError, RecursionError):
                doc = None
            if isinstance(doc, dict) and isinstance(doc.get("error"), str | dict):
                err = doc["error"]  # TF Serving: a string; Vertex / Google: {code, message, status}
                if isinstance(err, dict) and isinstance(err.get("message"), str):
                    text = err["message"]
                elif isinstance(err, str):
                    text = err
                else:
                    with contextlib.suppress(ValueError, RecursionError):
                        text = json.dumps(err)
        text = clean_for_terminal(self._scrub(clean_for_terminal(text, None)), _EXCERPT)
        if not text:
            return "(empty body)"
        return f"'{text}'"

    def _clean(self, text: str, limit: int | None = _EXCERPT) -> str:
        """Text that came from the server (a reason phrase, an error, a key), made safe to
        show: cleaned for a terminal, secrets blanked out, cut to ``limit``."""
        return clean_for_terminal(self._scrub(clean_for_terminal(text, None)), limit)

    def _scrub(self, text: str) -> str:
        """``text`` with every current secret blanked out, in every form it is likely to be
        echoed in (see :func:`_secret_pattern`)."""
        pattern = _secret_pattern(self._secret_values())
        return text if pattern is None else pattern.sub("<redacted>", text)

    def _secret_values(self) -> list[str]:
        """The current secrets: each variable's value and each whole header value."""
        values: list[str] = []
        for spec in self.headers_env.values():
            names = _env_names(spec)
            values.extend(os.environ.get(var, "") for var in names)
            if not _VAR.match(spec) and all(var in os.environ for var in names):
                with contextlib.suppress(KeyError, ValueError):
                    values.append(string.Template(spec).substitute(os.environ))
        return values


#: an auth scheme before a credential ("Bearer <token>", "Basic <base64 user:pass>").
_AUTH_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9._~+-]*) +(\S.*)", re.S)
_MIN_SECRET = 4  # shorter values are not blanked out (they would blank ordinary words)


def _secret_pattern(values: list[str]) -> re.Pattern[str] | None:
    """One regular expression matching every secret of ``values`` in the forms a careless
    server may echo: as is; the credential after an auth scheme (``Bearer <token>``); for
    ``Basic``, the decoded ``user:password`` and the password alone; and each of those in
    base64 (standard and URL-safe alphabets, padded or not, and at every alignment inside a
    longer base64 text), percent-encoded (``quote``, ``quote(safe='')``, ``quote_plus``;
    hex digits in either case) and JSON-escaped. Longest forms first."""
    cores: set[str] = set()
    for value in values:
        if not value:
            continue
        cores.add(value)
        m = _AUTH_SCHEME.fullmatch(value.strip())
        if m:
            credential = m.group(2).strip()
            cores.add(credential)
            if m.group(1).lower() == "basic":
                try:
                    pair = base64.b64decode(
                        credential + "=" * (-len(credential) % 4), validate=True
                    )
                    text = pair.decode("utf-8")
                except (ValueError, UnicodeDecodeError):
                    text = ""
                if text:
                    cores.add(text)
                    if ":" in text:
                        cores.add(text.partition(":")[2])
    forms: set[str] = set()
    for core in cores:
        if len(core) < _MIN_SECRET:
            continue
        forms.add(core)
        forms.add(json.dumps(core)[1:-1])
        forms.add(json.dumps(core)[1:-1].replace("/", "\\/"))
        for raw in {core.encode("utf-8"), core.encode("latin-1", "replace")}:
            forms.update(_base64_forms(raw))
        for enc in (
            urllib.parse.quote(core),
            urllib.parse.quote(core, safe=""),
            urllib.parse.quote_plus(core),
            urllib.parse.quote_plus(core, safe=""),
        ):
            forms.add(enc)
    if not forms:
        return None
    parts = []
    for form in sorted(forms, key=len, reverse=True):
        piece = re.escape(form)
        if "%" in form:  # percent-encoding: hex digits in either case
            piece = re.sub(
                r"%([0-9A-F])([0-9A-F])",
                lambda h: (
                    "%" + "".join(f"[{c}{c.lower()}]" if c.isalpha() else c for c in h.groups())
                ),
                piece,
            )
        parts.append(piece)
    return re.compile("|".join(parts))


def _base64_forms(raw: bytes) -> set[str]:
    """``raw`` in base64 (both alphabets): whole (padded and not), and the characters that
    only ``raw`` determines when it starts at byte 0, 1 or 2 of a group inside longer data."""
    out: set[str] = set()
    n = len(raw)
    for k in range(3):
        enc = base64.b64encode(b"\0" * k + raw + b"\0\0").decode()
        start, end = -(-8 * k // 6), 8 * (k + n) // 6
        core = enc[start:end]
        if len(core) >= _MIN_SECRET:
            out.add(core)
            out.add(core.replace("+", "-").replace("/", "_"))
    whole = base64.b64encode(raw).decode()
    for form in (whole, whole.rstrip("=")):
        out.add(form)
        out.add(form.replace("+", "-").replace("/", "_"))
    return out


class _Skipped(Exception):
    """A chunk not started because another one failed."""


class _TooLarge(Exception):
    """An answer over the limit: alone, or with the other answers in flight."""

    def __init__(self, alone: bool) -> None:
        super().__init__("too large")
        self.alone = alone


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
    """Each row of ``arr`` (n, ...) as JSON text (nested lists of numbers, each written
    ``%.9g``). A row is one ``%`` of a template made once per shape: the formatting runs
    in C, about 3x faster than one ``format`` call per value, and holds the GIL that much
    less while other requests are in flight."""
    n = arr.shape[0]
    if arr.size == 0 or arr.ndim == 1:
        return [json.dumps(r) if arr.ndim > 1 else f"{r:.9g}" for r in arr.tolist()]
    template = _row_template(tuple(arr.shape[1:]))
    return [template % tuple(r) for r in arr.reshape(n, -1).tolist()]


@functools.lru_cache(maxsize=64)
def _row_template(shape: tuple[int, ...]) -> str:
    """The JSON of one row of ``shape`` with ``%.9g`` in place of every value."""
    items = ["%.9g"] * math.prod(shape)
    for size in reversed(shape):  # innermost axis first: group into lists
        items = ["[" + ",".join(items[i : i + size]) + "]" for i in range(0, len(items), size)]
    assert len(items) == 1
    return items[0]


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


def _looks_like_variable(name: str) -> bool:
    """A conventional variable name (XR_TOKEN, API_KEY_2), as opposed to something that may be
    a pasted secret (sk_live_4eC39Hq..., ghp_...): upper case, and not mostly digits."""
    return (
        re.fullmatch(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*", name) is not None
        and len(name) <= 40
        and sum(c.isdigit() for c in name) * 3 <= len(name)
    )


def _shown_name(name: str) -> str:
    """A variable's name as an error may show it (never what may be a pasted secret)."""
    return name if _looks_like_variable(name) else "(a variable whose name is not shown)"


def _missing_variable(name: str, header: str) -> str:
    if _looks_like_variable(name):
        return (
            f"the environment variable {name} (for the endpoint header {header!r}) is not set; "
            f"export {name}=... with the secret, then run again"
        )
    return (
        f"the endpoint header {header!r} names an environment variable that is not set (its "
        "name is not shown: it does not look like a variable name, and may be the secret "
        "itself); give the NAME of an environment variable that holds the secret, e.g. "
        f"{header}=XR_API_KEY after export XR_API_KEY=..."
    )


def _check_header(name: str, value: str, what: str) -> None:
    """A valid header name (``what`` says which, without echoing it: it may hold a pasted
    secret) and a value without line breaks."""
    if not re.fullmatch(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+", name):
        raise ConfigError(
            f"{what} is not a valid HTTP header name (letters, digits and !#$%&'*+-.^_`|~ "
            "only, e.g. Authorization or X-Api-Key)"
        )
    _check_header_value(value, f"the value of the header {name!r}")


def _check_header_value(value: str, what: str) -> None:
    """A value http.client can send: Latin-1 text without line breaks (never echoed)."""
    if any(c in value for c in "\r\n\0"):
        raise ConfigError(f"{what} has a line break or NUL in it")
    try:
        value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ConfigError(
            f"{what} has a character that is not Latin-1 (character {exc.start + 1}); header values must be ASCII or Latin-1 text (a token pasted with "
            "a typographic quote, a dash or a non-breaking space?)"
        ) from None


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
    resp: http.client.HTTPResponse,
    conn: http.client.HTTPConnection,
    deadline: float,
    budget: _ByteBudget,
) -> tuple[bytes, int]:
    """The answer's body, read in pieces so that the deadline holds for a trickling server,
    and the bytes of ``budget`` it holds (the caller gives them back). A declared length is
    taken from the budget before reading, an undeclared one piece by piece; an answer that
    does not fit raises :class:`_TooLarge` (holding nothing)."""
    held = 0
    try:
        length = resp.getheader("Content-Length")
        if length is not None and length.strip().isdigit():
            want = int(length)
            if want > budget.cap:
                raise _TooLarge(alone=True)
            if not budget.take(want):
                raise _TooLarge(alone=False)
            held = want
        pieces, total = [], 0
        while resp.length is None or resp.length > 0:
            _set_timeout(conn, deadline)
            piece = resp.read1(1 << 16)  # what has arrived: one bounded wait per piece
            if not piece:
                break
            pieces.append(piece)
            total += len(piece)
            if total > budget.cap:
                raise _TooLarge(alone=True)
            if total > held:  # an undeclared length: take each piece as it comes
                if not budget.take(total - held):
                    raise _TooLarge(alone=False)
                held = total
        data = b"".join(pieces)
        if resp.length:  # the server closed before the end of the body
            raise http.client.IncompleteRead(data, resp.length)
    except BaseException:
        budget.give(held)
        raise
    resp.close()  # the whole body is read: the connection can carry the next request
    return data, held


class _ByteBudget:
    """Bytes of answers held at once by the requests of one classifier (read, or being
    parsed), so that concurrent answers share one limit instead of one each."""

    def __init__(self, cap: int) -> None:
        self.cap, self.used = int(cap), 0
        self._lock = threading.Lock()

    def take(self, n: int) -> bool:
        with self._lock:
            if self.used + n > self.cap:
                return False
            self.used += n
            return True

    def give(self, n: int) -> None:
        if n:
            with self._lock:
                self.used -= n


def _size(n: int) -> str:
    if n >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20} MiB"
    return f"{n / (1 << 20):.1f} MiB" if n >= 1 << 20 else f"{n} bytes"


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


class _DuplicateKey(Exception):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``json.loads``' object_pairs_hook: an object, refused when a key repeats."""
    d = dict(pairs)
    if len(d) != len(pairs):
        seen: set[str] = set()
        for k, _ in pairs:
            if k in seen:
                raise _DuplicateKey(k)
            seen.add(k)
    return d


def _deeper_than(doc: Any, limit: int) -> bool:
    """Whether JSON ``doc`` nests lists / objects more than ``limit`` levels (no recursion)."""
    stack = [(doc, 1)] if isinstance(doc, list | dict) else []
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        for v in node.values() if isinstance(node, dict) else node:
            if isinstance(v, list | dict):
                stack.append((v, depth + 1))
    return False


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
