"""A local SageMaker-runtime-compatible server for an ONNX model, checking SigV4 signatures.

A stand-in for a SageMaker real-time endpoint with the TensorFlow Serving container, to try
xrobust's ``sagemaker://NAME`` source (and its tests) without AWS: it answers
``POST /endpoints/NAME/invocations`` with ``{"instances": ...}`` (or ``{"inputs": ...}``)
in and ``{"predictions": ...}`` (``{"outputs": ...}``) out, through onnxruntime, and only
for requests signed (AWS Signature Version 4, service ``sagemaker``, its region) with the
credentials of its own environment (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_SESSION_TOKEN``). Use made-up credentials, the same in the client's shell: it is a
local test/demo server on 127.0.0.1, not a production one. Errors are SageMaker's:
``ValidationError`` (an unknown endpoint), ``ThrottlingException``, ``ModelError`` (with
the container's ``OriginalStatusCode``), ``UnrecognizedClientException`` /
``InvalidSignatureException`` (credentials).

Usage:
    python examples/sagemaker_local.py --onnx model.onnx --name digits-endpoint \\
        --url-file sagemaker_url.txt &        # serves until stopped (kill: SIGTERM)
    python examples/sagemaker_local.py --wait sagemaker_url.txt    # prints the URL when up

From Python (the tests): ``with LocalSageMaker(onnx_predict("model.onnx"), name="digits",
region="eu-west-1", access_key=..., secret_key=...) as server: server.url``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import hmac
import json
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np

from xrobust.models.serving import ServingHandle, _Server

_ACCOUNT = "123456789012"
_MAX_BODY = 6 * 1024 * 1024  # SageMaker's real-time payload limit
_AUTH = re.compile(
    r"AWS4-HMAC-SHA256 Credential=(?P<key>[^/,\s]+)/(?P<date>\d{8})/(?P<region>[^/,\s]+)/"
    r"(?P<service>[^/,\s]+)/aws4_request, ?SignedHeaders=(?P<signed>[a-z0-9;-]+), ?"
    r"Signature=(?P<sig>[0-9a-f]{64})"
)
_PATH = re.compile(r"/endpoints/(?P<name>[^/?]+)/invocations")


class Refusal(Exception):
    """What the server answers instead of predictions: HTTP status, AWS error code, body."""

    def __init__(self, status: int, code: str, message: str, **fields: Any) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fields = status, code, message, fields


def onnx_predict(path: str | os.PathLike[str]) -> Callable[[np.ndarray], np.ndarray]:
    """The scores of an ONNX model with one input (onnxruntime, on the CPU)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda a: session.run(None, {name: a.astype(np.float32)})[0]


def check_sigv4(
    method: str,
    path: str,
    headers: Any,
    body: bytes,
    *,
    access_key: str,
    secret_key: str,
    token: str | None,
    region: str,
    service: str = "sagemaker",
    max_skew: float = 300.0,
) -> None:
    """Raise :class:`Refusal` unless the request carries a valid SigV4 signature made with
    these credentials for ``region`` and ``service`` (recomputed with botocore's signer)."""
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    m = _AUTH.fullmatch(str(headers.get("Authorization", "")).strip())
    if m is None:
        raise Refusal(403, "MissingAuthenticationToken", "Missing Authentication Token")
    if not hmac.compare_digest(m["key"], access_key):
        raise Refusal(403, "UnrecognizedClientException", "The security token included in "
                      "the request is invalid.")  # fmt: skip
    if m["region"] != region or m["service"] != service:
        raise Refusal(403, "InvalidSignatureException", f"Credential should be scoped to a "
                      f"valid region and to the service {service!r}.")  # fmt: skip
    stamp = str(headers.get("X-Amz-Date", ""))
    try:
        when = dt.datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise Refusal(400, "IncompleteSignature", "X-Amz-Date is missing or malformed") from None
    if stamp[:8] != m["date"] or abs(time.time() - when.timestamp()) > max_skew:
        raise Refusal(403, "InvalidSignatureException", "Signature expired or dated wrongly")
    if token is not None and not hmac.compare_digest(
        str(headers.get("X-Amz-Security-Token", "")), token
    ):
        raise Refusal(403, "UnrecognizedClientException", "The security token included in "
                      "the request is invalid.")  # fmt: skip
    signed = m["signed"].split(";")
    if "host" not in signed or any(headers.get(h) is None for h in signed):
        raise Refusal(403, "InvalidSignatureException", "A signed header is missing")
    request = AWSRequest(
        method=method,
        url=f"http://{headers['Host']}{path}",
        data=body,
        headers={h: headers[h] for h in signed},
    )
    request.context["timestamp"] = stamp
    signer = SigV4Auth(Credentials(access_key, secret_key, token), service, region)
    expected = signer.signature(
        signer.string_to_sign(request, signer.canonical_request(request)), request
    )
    declared = headers.get("X-Amz-Content-SHA256")
    if not hmac.compare_digest(expected, m["sig"]) or (
        declared is not None and declared != hashlib.sha256(body).hexdigest()
    ):
        raise Refusal(403, "InvalidSignatureException", "The request signature we calculated "
                      "does not match the signature you provided.")  # fmt: skip


class LocalSageMaker(ServingHandle):
    """A running local endpoint: :attr:`url`, counters, and ways to make it misbehave
    (:meth:`close` or ``with`` stops it, as :class:`xrobust.models.serving.ServingHandle`).

    Attributes:
        url: the ``endpoint_url`` to give the client (``http://127.0.0.1:PORT``).
        rows_received: rows that reached the model (answered, or failed by it).
        requests: requests that reached the model. refused: requests refused before it.
        authorizations: the Authorization headers seen (what the tests check).
    """

    def __init__(
        self,
        predict: Callable[[np.ndarray], Any],
        *,
        name: str,
        region: str,
        access_key: str,
        secret_key: str,
        token: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        server = _Server((host, port), _handler(self))
        thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
        super().__init__(server, thread, name)
        self.url = self.base_url  # SageMaker's path is /endpoints/NAME/invocations
        self.predict, self.name, self.region = predict, name, region
        self._creds = {"access_key": access_key, "secret_key": secret_key, "token": token}
        self.refused = 0
        self.authorizations: list[str] = []
        self._throttle, self._failures = 0, []  # type: ignore[var-annotated]
        thread.start()

    def throttle(self, n: int) -> None:
        """Answer the next ``n`` requests with SageMaker's ThrottlingException (HTTP 400)."""
        with self._lock:
            self._throttle = int(n)

    def fail(self, status: int, message: str, n: int = 1) -> None:
        """Make the model container fail the next ``n`` requests (a ModelError, HTTP 424)."""
        with self._lock:
            self._failures = [(int(status), str(message))] * int(n)

    def _answer(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, Any]]:
        """(status, JSON answer) of one request, or :class:`Refusal`."""
        m = _PATH.fullmatch(path)
        if m is None:
            raise Refusal(404, "UnknownOperationException", "Unknown operation")
        with self._lock:
            self.authorizations.append(str(headers.get("Authorization", "")))
        check_sigv4("POST", path, headers, body, region=self.region, **self._creds)
        if m["name"] != self.name:
            raise Refusal(400, "ValidationError", f"Endpoint {m['name']} of account {_ACCOUNT} "
                          "not found.")  # fmt: skip
        with self._lock:
            if self._throttle > 0:
                self._throttle -= 1
                raise Refusal(400, "ThrottlingException", "Rate exceeded")
        ctype = str(headers.get("Content-Type", "")).partition(";")[0].strip()
        if not ctype.endswith("json"):
            raise _model_error(415, f"Unsupported Media Type: {ctype}", self.name)
        doc = json.loads(body)
        rows_form = "instances" in doc
        arr = np.asarray(doc["instances"] if rows_form else doc["inputs"], dtype=np.float32)
        with self._lock:
            self.requests += 1
            self.rows_received += len(arr)
            failure = self._failures.pop(0) if self._failures else None
        if failure is not None:
            raise _model_error(*failure, self.name)
        out = np.asarray(self.predict(arr)).tolist()
        return 200, {("predictions" if rows_form else "outputs"): out}


def _model_error(status: int, message: str, name: str) -> Refusal:
    log = f"arn:aws:logs:local:{_ACCOUNT}:log-group:/aws/sagemaker/Endpoints/{name}"
    return Refusal(
        424,
        "ModelError",
        f'Received client error ({status}) from primary with message "{message}". See {log} '
        f"in account {_ACCOUNT} for more information.",
        ErrorCode="CLIENT_ERROR_FROM_MODEL" if status < 500 else "SERVER_ERROR_FROM_MODEL",
        OriginalStatusCode=status,
        OriginalMessage=message,
        LogStreamArn=log,
    )


def _handler(server: LocalSageMaker) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True
        server_version = "xrobust-sagemaker-local/1"

        def log_message(self, format: str, *args: Any) -> None:  # request lines only
            pass

        def do_POST(self) -> None:
            length = self.headers.get("Content-Length", "")
            if not length.isdigit() or int(length) > _MAX_BODY:
                self.close_connection = True
                self._send(413, {"message": "Request payload size exceeded"}, "ValidationError")
                return
            body = self.rfile.read(int(length))
            try:
                status, answer = server._answer(self.path, self.headers, body)
            except Refusal as r:
                if r.code != "ModelError":
                    with server._lock:
                        server.refused += 1
                self._send(r.status, {"message": r.message, **r.fields}, r.code)
                return
            except (ValueError, KeyError, TypeError) as exc:  # the container's own error
                r = _model_error(
                    400, f"bad request: {type(exc).__name__}: {exc}"[:300], server.name
                )
                self._send(r.status, {"message": r.message, **r.fields}, r.code)
                return
            self._send(status, answer, None)

        def _send(self, status: int, doc: dict[str, Any], code: str | None) -> None:
            data = json.dumps(doc).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("x-amzn-RequestId", os.urandom(8).hex())
            if code is not None:
                self.send_header("x-amzn-ErrorType", f"{code}:http://internal.amazon.com/coral/")
            self.end_headers()
            self.wfile.write(data)

    return Handler


def _wait(path: str, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        p = Path(path)
        if p.is_file() and p.read_text().strip():
            print(p.read_text().strip())
            return 0
        time.sleep(0.1)
    print(f"sagemaker_local: no server wrote {path} within {timeout:g} s", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--onnx", help="the ONNX model to serve")
    p.add_argument("--name", default="digits-endpoint", help="the endpoint's name")
    p.add_argument("--region", default=os.environ.get("AWS_DEFAULT_REGION", "eu-west-1"))
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: a free one)")
    p.add_argument("--url-file", help="write the server's URL to this file once it is up")
    p.add_argument("--wait", metavar="URL_FILE", help="print the URL of a starting server")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds --wait waits")
    args = p.parse_args(argv)
    if args.wait:
        return _wait(args.wait, args.timeout)
    key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if not args.onnx or not key or not secret:
        p.error("give --onnx, and set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (made up)")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    with LocalSageMaker(
        onnx_predict(args.onnx), name=args.name, region=args.region, access_key=key,
        secret_key=secret, token=os.environ.get("AWS_SESSION_TOKEN"), port=args.port,
    ) as server:  # fmt: skip
        if args.url_file:
            tmp = Path(f"{args.url_file}.tmp")
            tmp.write_text(server.url + "\n")
            tmp.replace(args.url_file)  # whole or absent: --wait never reads half a URL
        print(f"serving sagemaker://{args.name} ({args.region}) at {server.url}", flush=True)
        stop.wait()
    if args.url_file:
        Path(args.url_file).unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
