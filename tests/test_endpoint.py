"""The HTTP endpoint source: a real server on 127.0.0.1 serving an exported ONNX model
(a tiny torch CNN on 1x8x8 digits, exported with torch.onnx, run by onnxruntime) over the
TF Serving JSON protocol; faults are injected with :class:`xrobust.models.serving.Reply`.

Every server and client is closed by the fixtures; every test bounds its time.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from xrobust.errors import ConfigError, DataError, ModelError, QueryBudgetExhausted
from xrobust.models import as_classifier, serving
from xrobust.models.endpoint import EndpointClassifier, parse_headers_env, safe_url

SHAPE = (1, 8, 8)
DECL = {"input_shape": SHAPE, "num_classes": 10, "bounds": (0.0, 1.0)}


class Digits8(nn.Module):
    """A tiny CNN for 1x8x8 digits (logits)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.fc = nn.Linear(8 * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.nn.functional.max_pool2d(torch.relu(self.conv(x)), 2).flatten(1))


@pytest.fixture(scope="module")
def net() -> nn.Module:
    torch.manual_seed(0)
    net = Digits8().eval()
    torch.testing.assert_close(net(torch.zeros(1, *SHAPE)), net(torch.zeros(1, *SHAPE)))  # warm
    return net


@pytest.fixture(scope="module")
def x() -> torch.Tensor:
    from sklearn.datasets import load_digits

    return torch.tensor(load_digits().images[:200], dtype=torch.float32).unsqueeze(1) / 16.0


@pytest.fixture(scope="module")
def onnx_predict(net: nn.Module, tmp_path_factory: pytest.TempPathFactory) -> Callable:
    """The model exported to ONNX (dynamic batch) and run by onnxruntime: NCHW in."""
    import onnxruntime as ort

    path = tmp_path_factory.mktemp("onnx") / "digits8.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            net,
            (torch.zeros(2, *SHAPE),),
            str(path),
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
            dynamo=False,
        )
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1  # its spinning pool is slow here
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    lock = threading.Lock()

    def predict(a: np.ndarray) -> np.ndarray:
        with lock:  # one session, many handler threads
            return sess.run(None, {"x": np.ascontiguousarray(a, dtype=np.float32)})[0]

    predict(np.zeros((2, *SHAPE), dtype=np.float32))  # warm the session
    return predict


def _clf(clients: list, url: str, **kw: Any) -> EndpointClassifier:
    opts = {**DECL, **kw}
    c = as_classifier(url, **opts)
    assert isinstance(c, EndpointClassifier)
    clients.append(c)
    return c


def _ref(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return net(x)


# ---------------------------------------------------------------------- protocols
def test_row_form_scores_equal_torch_and_queries_equal_rows_received(
    net, x, onnx_predict, start, clients
) -> None:
    server = start(onnx_predict)
    clf = _clf(clients, server.url, batch_size=32)
    s = clf.scores(x[:100])
    assert s.dtype == torch.float32 and s.shape == (100, 10)
    torch.testing.assert_close(s, _ref(net, x[:100]), atol=1e-5, rtol=0)
    assert clf.predict(x[100:110]).tolist() == _ref(net, x[100:110]).argmax(1).tolist()
    assert clf.queries == server.rows_received == 110
    assert server.requests == 4 + 1 and clf.calls == 5
    assert list(server.last_body) == ["instances"]
    d = clf.describe()
    assert d["source"] == "endpoint" and d["protocol"] == "instances" and not d["differentiable"]
    assert d["url"] == server.url and d["batch_size"] == 32
    assert clf.scores(x[:0]).shape == (0, 10) and clf.queries == 110


def test_columnar_form_with_named_input_and_output(net, x, onnx_predict, start, clients) -> None:
    server = start(onnx_predict, output_name="logits")
    clf = _clf(
        clients,
        server.url,
        protocol="columnar",
        input_name="x",
        output_name="logits",
        signature_name="serving_default",
    )
    torch.testing.assert_close(clf.scores(x[:20]), _ref(net, x[:20]), atol=1e-5, rtol=0)
    body = server.last_body
    assert set(body) == {"inputs", "signature_name"} and list(body["inputs"]) == ["x"]
    assert body["signature_name"] == "serving_default"
    # row form with named rows and named outputs per row
    named_rows = start(onnx_predict, output_name="logits")
    c2 = _clf(clients, named_rows.url, input_name="x")
    torch.testing.assert_close(c2.scores(x[:5]), _ref(net, x[:5]), atol=1e-5, rtol=0)
    assert set(named_rows.last_body["instances"][0]) == {"x"}


def test_several_outputs_need_output_name(x, onnx_predict, start, clients) -> None:
    def both(a: np.ndarray) -> Any:
        out = onnx_predict(a)
        raise serving.Reply(200, {"outputs": {"logits": out.tolist(), "probs": out.tolist()}})

    server = start(both)
    with pytest.raises(ModelError, match=r"several outputs \['logits', 'probs'\].*output_name"):
        _clf(clients, server.url, protocol="inputs").scores(x[:3])
    clf = _clf(clients, server.url, protocol="inputs", output_name="probs")
    assert clf.scores(x[:3]).shape == (3, 10)
    with pytest.raises(ModelError, match="without 'nope'"):
        _clf(clients, server.url, protocol="inputs", output_name="nope").scores(x[:3])


def test_custom_json_mapping(net, x, onnx_predict, start, clients) -> None:
    server = start(onnx_predict, request_key="data.rows", response_key="result.scores")
    clf = _clf(
        clients,
        server.url,
        protocol="json",
        request_key="data.rows",
        response_key="result.scores",
        request_fields={"data": {"version": 2}, "k": "v"},
    )
    torch.testing.assert_close(clf.scores(x[:7]), _ref(net, x[:7]), atol=1e-5, rtol=0)
    assert server.last_body["k"] == "v" and server.last_body["data"]["version"] == 2
    assert clf.describe()["request_key"] == "data.rows"
    # integer path parts index lists
    idx = start(
        lambda a: (_ for _ in ()).throw(
            serving.Reply(200, {"outputs": [{"data": onnx_predict(a).tolist()}]})
        )
    )
    c2 = _clf(
        clients, idx.url, protocol="json", request_key="instances", response_key="outputs.0.data"
    )
    torch.testing.assert_close(c2.scores(x[:4]), _ref(net, x[:4]), atol=1e-5, rtol=0)


def test_vertex_extra_fields_are_ignored(net, x, onnx_predict, start, clients) -> None:
    vertex = {
        "deployedModelId": "4242",
        "model": "projects/p/locations/l/models/m",
        "modelDisplayName": "digits",
        "modelVersionId": "1",
    }
    server = start(onnx_predict, extra_fields=vertex)
    clf = _clf(clients, server.url, protocol="vertex")
    torch.testing.assert_close(clf.scores(x[:9]), _ref(net, x[:9]), atol=1e-5, rtol=0)


def test_nhwc_layout_sends_channels_last(net, x, onnx_predict, start, clients) -> None:
    seen: list[tuple] = []

    def nhwc(a: np.ndarray) -> np.ndarray:  # a TensorFlow-style model: (n, H, W, C)
        seen.append(a.shape)
        return onnx_predict(a.transpose(0, 3, 1, 2))

    server = start(nhwc)
    clf = _clf(clients, server.url, layout="NHWC")
    x3 = x[:6].repeat(1, 3, 1, 1) * torch.tensor([1.0, 0.5, 0.25])[None, :, None, None]
    # a 3-channel check of the transpose itself: channel c of the input lands in the last axis
    probe = start(lambda a: a[:, 0, 0, :])
    c3 = _clf(clients, probe.url, layout="NHWC", input_shape=(3, 8, 8), num_classes=3)
    torch.testing.assert_close(c3.scores(x3), x3[:, :, 0, 0], atol=1e-6, rtol=0)
    torch.testing.assert_close(clf.scores(x[:6]), _ref(net, x[:6]), atol=1e-5, rtol=0)
    assert seen == [(6, 8, 8, 1)]


def test_labels_and_probabilities_outputs(x, start, clients) -> None:
    server = start(lambda a: (a.reshape(len(a), -1).sum(1) > 20).astype(int))
    clf = _clf(clients, server.url, output="labels")
    s = clf.scores(x[:10])
    want = (x[:10].flatten(1).sum(1) > 20).long()
    assert s.shape == (10, 10) and s.argmax(1).tolist() == want.tolist()


# ---------------------------------------------------------------------- faults
def test_timeout_is_a_clear_error_in_bounded_time(x, start, clients) -> None:
    release = threading.Event()

    def slow(a: np.ndarray) -> np.ndarray:
        release.wait(5)
        return np.zeros((len(a), 10))

    server = start(slow)
    clf = _clf(clients, server.url, timeout=0.3, retries=1, backoff=0.0)
    t0 = time.monotonic()
    with pytest.raises(ModelError) as err:
        clf.scores(x[:4])
    took = time.monotonic() - t0
    release.set()
    assert took < 1.5, took  # 2 attempts x 0.3 s
    msg = str(err.value)
    assert server.url in msg and "timeout of 0.3 s" in msg and "after 2 attempts" in msg
    assert clf.queries == server.rows_received == 8 and clf.retried == 1


def test_trickling_server_is_bounded_by_the_deadline(x, clients) -> None:
    """Headers, then one byte every 0.1 s: each read is quick, the request is not."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.1", 0))
    lsock.listen(4)
    stop = threading.Event()

    def run() -> None:
        lsock.settimeout(5)
        try:
            conn, _ = lsock.accept()
        except OSError:
            return
        with conn:
            conn.recv(65536)
            conn.sendall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n"
            )
            while not stop.wait(0.1):
                try:
                    conn.sendall(b" ")
                except OSError:
                    return

    t = threading.Thread(target=run, daemon=True)
    t.start()
    clf = _clf(
        clients,
        f"http://127.0.0.1:{lsock.getsockname()[1]}/v1/models/m:predict",
        timeout=0.5,
        retries=0,
    )
    t0 = time.monotonic()
    try:
        with pytest.raises(ModelError, match=r"timeout of 0\.5 s"):
            clf.scores(x[:2])
        assert time.monotonic() - t0 < 1.5
    finally:
        stop.set()
        lsock.close()
        t.join(5)


def test_500_then_success_is_retried_and_counted(net, x, onnx_predict, start, clients) -> None:
    calls = []

    def flaky(a: np.ndarray) -> np.ndarray:
        calls.append(len(a))
        if len(calls) == 1:
            raise RuntimeError("warming up")
        return onnx_predict(a)

    server = start(flaky)
    clf = _clf(clients, server.url, retries=2, backoff=0.01)
    torch.testing.assert_close(clf.scores(x[:16]), _ref(net, x[:16]), atol=1e-5, rtol=0)
    assert calls == [16, 16] and clf.retried == 1
    assert clf.queries == server.rows_received == 32 and clf.calls == 2


def test_429_honours_retry_after(net, x, onnx_predict, start, clients) -> None:
    calls = []

    def busy(a: np.ndarray) -> np.ndarray:
        calls.append(1)
        if len(calls) == 1:
            raise serving.Reply(429, {"error": "slow down"}, {"Retry-After": "0.4"})
        return onnx_predict(a)

    server = start(busy)
    clf = _clf(clients, server.url, backoff=0.0)
    t0 = time.monotonic()
    torch.testing.assert_close(clf.scores(x[:8]), _ref(net, x[:8]), atol=1e-5, rtol=0)
    assert 0.4 <= time.monotonic() - t0 < 2.0
    assert clf.queries == server.rows_received == 16
    # a Retry-After beyond max_backoff waits max_backoff only
    calls.clear()
    busy_long = start(
        lambda a: (_ for _ in ()).throw(serving.Reply(429, b"", {"Retry-After": "3600"}))
    )
    c2 = _clf(clients, busy_long.url, retries=2, max_backoff=0.05)
    t0 = time.monotonic()
    with pytest.raises(ModelError, match=r"HTTP 429 .*\(empty body\) after 3 attempts"):
        c2.scores(x[:2])
    assert time.monotonic() - t0 < 1.0


def test_persistent_500_fails_after_every_attempt(x, start, clients) -> None:
    def broken(a: np.ndarray) -> np.ndarray:
        raise RuntimeError("tensor 'x' has the wrong dtype " + "y" * 500)

    server = start(broken)
    url = server.url + "?api_key=hunter2"
    clf = _clf(clients, url, retries=2, backoff=0.01)
    with pytest.raises(ModelError) as err:
        clf.scores(x[:5])
    msg = str(err.value)
    assert msg.startswith(f"the endpoint {server.url} answered HTTP 500")
    assert "after 3 attempts" in msg and "RuntimeError: tensor 'x' has the wrong dtype" in msg
    assert (
        "hunter2" not in msg
        and "hunter2" not in repr(clf)
        and "hunter2" not in str(clf.describe())
        and len(msg) < 500
    )
    assert server.requests == 3 and clf.queries == server.rows_received == 15


def test_4xx_is_not_retried(x, start, clients) -> None:
    server = start(
        lambda a: (_ for _ in ()).throw(
            serving.Reply(400, {"error": "Input to reshape is a tensor with 64 values"})
        )
    )
    clf = _clf(clients, server.url, retries=3)
    with pytest.raises(ModelError, match=r"HTTP 400 Bad Request: .*Input to reshape"):
        clf.scores(x[:4])
    assert server.requests == 1 and clf.queries == 4
    vertex = start(
        lambda a: (_ for _ in ()).throw(
            serving.Reply(
                400,
                {
                    "error": {
                        "code": 400,
                        "message": "Invalid JSON payload: instances[0]",
                        "status": "INVALID_ARGUMENT",
                    }
                },
            )
        )
    )
    with pytest.raises(
        ModelError, match=r"HTTP 400 Bad Request: 'Invalid JSON payload: instances\[0\]'$"
    ):
        _clf(clients, vertex.url).scores(x[:4])


def test_retry_after_forms() -> None:
    from email.utils import formatdate

    from xrobust.models.endpoint import _retry_after

    assert _retry_after("2") == 2.0 and _retry_after("0.5") == 0.5 and _retry_after(None) is None
    assert 25 < _retry_after(formatdate(time.time() + 30, usegmt=True)) <= 31
    assert _retry_after(formatdate(time.time() - 30, usegmt=True)) == 0.0
    assert _retry_after("soon") is None


def test_connection_refused_is_retried_then_clear_and_uncounted(x, clients) -> None:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nobody listens there now
    clf = _clf(clients, f"http://127.0.0.1:{port}/v1/models/m:predict", retries=1, backoff=0.01)
    with pytest.raises(ModelError, match=r"cannot reach the endpoint .*ConnectionRefused.*after 2"):
        clf.scores(x[:4])
    assert clf.queries == 0  # nothing left this machine


@pytest.mark.parametrize(
    ("answer", "match"),
    [
        (b"{not json", "malformed JSON: '{not json'"),
        (b"", r"malformed JSON: \(empty body\)"),
        ({"result": [1]}, r"without 'predictions' \(the answer has keys \['result'\]\)"),
        ({"error": "model not loaded"}, "without 'predictions'.*its error: 'model not loaded'"),
        ([1, 2], r"without 'predictions' \(the answer has a list\)"),
        ({"predictions": 3}, "as a int; expected a list of 4 rows"),
        ({"predictions": [[0.0] * 10] * 3}, "answered 3 rows for the 4 it was sent"),
        ({"predictions": [[0.0] * 10] * 3 + [[0.0] * 9]}, "rows of different lengths"),
        ({"predictions": [["a"] * 10] * 4}, r"not numbers \(JSON strings\)"),
        ({"predictions": [[None] * 10] * 4}, r"not numbers \(JSON null\)"),
        ({"predictions": [[True] * 10] * 4}, "not numbers"),
        ({"predictions": [[0.0] * 7] * 4}, "answered 7 scores per row; it was declared with 10"),
        ({"predictions": [[[0.0] * 10]] * 4}, r"answered shape \(4, 1, 10\)"),
    ],
)
def test_malformed_answers_are_clear_errors(answer, match, x, start, clients) -> None:
    server = start(lambda a: (_ for _ in ()).throw(serving.Reply(200, answer)))
    clf = _clf(clients, server.url, retries=3)
    with pytest.raises(ModelError, match=match):
        clf.scores(x[:4])
    assert server.requests == 1 and clf.queries == server.rows_received == 4  # not retried


def test_bad_inputs_and_options_are_refused_before_any_request(x, start, clients) -> None:
    server = start(lambda a: np.zeros((len(a), 10)))
    clf = _clf(clients, server.url)
    with pytest.raises(DataError, match=r"inputs of shape \(N, 1, 8, 8\), got \(2, 8, 8\)"):
        clf.scores(x[:2, 0])
    bad = x[:2].clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(DataError, match="NaN or inf"):
        clf.scores(bad)
    assert server.requests == 0 and clf.queries == 0
    for kw, match in [
        ({"protocol": "grpc"}, "unknown endpoint protocol 'grpc'"),
        ({"protocol": "json"}, "needs request_key"),
        ({"request_key": "data"}, "apply to protocol='json' only"),
        ({"layout": "NHWC", "input_shape": (64,)}, "applies to images"),
        ({"layout": "CHW"}, "layout must be"),
        ({"timeout": 0}, "timeout must be > 0"),
        ({"retries": -1}, "retries must be an integer >= 0"),
        ({"concurrency": 0}, "concurrency must be"),
        ({"headers_env": {"Authorization": "not a var"}}, "must name an environment variable"),
        ({"timout": 3}, "'timout' \\(did you mean 'timeout'\\?\\) do not apply to an endpoint"),
    ]:
        with pytest.raises(ConfigError, match=match):
            _clf(clients, server.url, **kw)
    with pytest.raises(ConfigError, match="must be http"):
        EndpointClassifier("ftp://host/x")


def test_stale_kept_alive_connection_is_reopened_without_double_counting(
    net, x, onnx_predict, start, clients
) -> None:
    server = start(onnx_predict, idle_timeout=0.2)
    clf = _clf(clients, server.url)
    clf.scores(x[:3])
    time.sleep(0.5)  # the server drops the idle connection
    torch.testing.assert_close(clf.scores(x[3:6]), _ref(net, x[3:6]), atol=1e-5, rtol=0)
    assert clf.queries == server.rows_received == 6 and clf.retried == 0


# ---------------------------------------------------------------------- concurrency
def test_slow_server_with_concurrency_is_bounded_and_right(
    net, x, onnx_predict, start, clients
) -> None:
    lock, state = threading.Lock(), {"now": 0, "max": 0}

    def slow(a: np.ndarray) -> np.ndarray:
        with lock:
            state["now"] += 1
            state["max"] = max(state["max"], state["now"])
        time.sleep(0.2)
        with lock:
            state["now"] -= 1
        return onnx_predict(a)

    server = start(slow)
    clf = _clf(clients, server.url, batch_size=16, concurrency=4)
    t0 = time.monotonic()
    s = clf.scores(x[:128])  # 8 requests of 0.2 s: 0.4 s four at a time, 1.6 s one at a time
    took = time.monotonic() - t0
    torch.testing.assert_close(s, _ref(net, x[:128]), atol=1e-5, rtol=0)
    assert took < 1.2, took
    assert 2 <= state["max"] <= 4
    assert clf.queries == server.rows_received == 128 and server.requests == 8


def test_a_failing_chunk_stops_the_rest_and_counts_only_what_was_sent(x, start, clients) -> None:
    def picky(a: np.ndarray) -> np.ndarray:
        if a[0, 0, 0, 0] == 0.5:  # the marker in the second chunk
            raise serving.Reply(400, {"error": "no"})
        time.sleep(0.05)
        return np.zeros((len(a), 10))

    server = start(picky)
    clf = _clf(clients, server.url, batch_size=10, concurrency=2)
    xb = x[:100].clone()
    xb[10, 0, 0, 0] = 0.5
    with pytest.raises(ModelError, match="HTTP 400"):
        clf.scores(xb)
    assert server.rows_received <= 40  # the failing chunk stops the rest at once
    assert clf.queries == server.rows_received


# ---------------------------------------------------------------------- budgets
def test_budget_stops_before_sending(x, onnx_predict, start, clients) -> None:
    server = start(onnx_predict)
    clf = _clf(clients, server.url, batch_size=32, query_budget=100)
    clf.scores(x[:64])
    with pytest.raises(QueryBudgetExhausted, match="64 of 100 queries used"):
        clf.scores(x[:64])
    assert clf.remaining == 36 and clf.queries == server.rows_received == 64


def test_retries_spend_the_budget_too(x, start, clients) -> None:
    server = start(lambda a: (_ for _ in ()).throw(RuntimeError("down")))
    clf = _clf(clients, server.url, batch_size=32, query_budget=40, retries=3, backoff=0.0)
    with pytest.raises(QueryBudgetExhausted, match="32 of 40 queries used"):
        clf.scores(x[:32])  # the retry would send 32 more rows: refused
    assert clf.queries == server.rows_received == 32 and server.requests == 1


# ---------------------------------------------------------------------- secrets
SECRET = "s3cr3t-T0ken-value-9f8e7d"


def test_secret_header_reaches_the_server_and_nothing_else(
    x, onnx_predict, start, clients, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("XR_TEST_TOKEN", SECRET)
    caplog.set_level(logging.DEBUG)
    box: list[serving.ServingHandle] = []
    calls = []

    def echo(a: np.ndarray) -> np.ndarray:
        calls.append(1)
        if len(calls) <= 2:  # a careless server that echoes the request's headers
            h = box[0].last_headers
            raise serving.Reply(503, {"error": f"denied {h['Authorization']}: {h}"})
        return onnx_predict(a)

    server = start(echo)
    box.append(server)
    clf = _clf(
        clients,
        server.url,
        headers_env={"Authorization": "Bearer $XR_TEST_TOKEN", "X-Api-Key": "XR_TEST_TOKEN"},
        headers={"X-Team": "audit"},
        retries=1,
        backoff=0.0,
    )
    with pytest.raises(ModelError) as err:
        clf.scores(x[:4])
    assert server.last_headers["Authorization"] == f"Bearer {SECRET}"
    assert server.last_headers["X-Api-Key"] == SECRET and server.last_headers["X-Team"] == "audit"
    assert "<redacted>" in str(err.value)
    assert clf.scores(x[:4]).shape == (4, 10)
    texts = [
        str(err.value),
        repr(err.value),
        "".join(traceback.format_exception(err.value)),
        repr(clf),
        str(clf),
        str(clf.describe()),
        caplog.text,
        repr(vars(clf)),
    ]
    for t in texts:
        assert SECRET not in t
    assert clf.describe()["headers_env"] == {
        "Authorization": ["XR_TEST_TOKEN"],
        "X-Api-Key": ["XR_TEST_TOKEN"],
    }
    # never cached: a changed variable is used at the next request
    monkeypatch.setenv("XR_TEST_TOKEN", "rotated-token")
    clf.scores(x[:1])
    assert server.last_headers["X-Api-Key"] == "rotated-token"


def test_missing_header_variable_names_the_variable(x, start, clients, monkeypatch) -> None:
    monkeypatch.delenv("XR_NOT_SET", raising=False)
    server = start(lambda a: np.zeros((len(a), 10)))
    with pytest.raises(ConfigError, match=r"environment variable XR_NOT_SET .*'Authorization'"):
        _clf(clients, server.url, headers_env={"Authorization": "XR_NOT_SET"})
    monkeypatch.setenv("XR_NOT_SET", SECRET)
    clf = _clf(clients, server.url, headers_env={"Authorization": "XR_NOT_SET"})
    monkeypatch.delenv("XR_NOT_SET")
    with pytest.raises(ConfigError, match=r"XR_NOT_SET .* is not set") as err:
        clf.scores(x[:1])
    assert SECRET not in str(err.value) and server.requests == 0 and clf.queries == 0
    monkeypatch.setenv("XR_NOT_SET", "two\nlines")
    with pytest.raises(ConfigError, match="line break") as err:
        clf.scores(x[:1])
    assert "two" not in str(err.value)


def test_safe_url_drops_user_info_and_query() -> None:
    assert safe_url("https://u:p@h.example:8443/v1/m:predict?key=K#f") == (
        "https://h.example:8443/v1/m:predict"
    )
    assert (
        safe_url("http://[::1]:8501/v1/models/m:predict") == "http://[::1]:8501/v1/models/m:predict"
    )
    clf = EndpointClassifier("http://127.0.0.1:1/p?token=abc", **DECL)
    assert "abc" not in repr(clf) and "abc" not in str(clf.describe())
    with pytest.raises(ConfigError, match="carries credentials") as err:
        EndpointClassifier("http://u:pw-secret@127.0.0.1:1/p", **DECL)
    assert "pw-secret" not in str(err.value)


# ---------------------------------------------------------------------- docs
def test_module_examples_run() -> None:
    import doctest

    from xrobust.models import endpoint

    for mod in (endpoint, serving):
        res = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
        assert res.attempted > 0 and res.failed == 0, mod.__name__


def test_parse_headers_env_for_the_command_line() -> None:
    assert parse_headers_env(["Authorization=Bearer ${XR_T}", " X-K = XR_K "]) == {
        "Authorization": "Bearer ${XR_T}",
        "X-K": "XR_K",
    }
    for bad, match in [
        ("Authorization", "NAME=VARIABLE"),
        ("=XR_T", "NAME=VARIABLE"),
        ("Bad Name=XR_T", "not a valid HTTP header name"),
        ("Authorization=Bearer abc.def-123", "not a literal value"),
    ]:
        with pytest.raises(ConfigError, match=match) as err:
            parse_headers_env([bad])
        assert "abc.def-123" not in str(err.value)


def test_serve_takes_a_torch_module(net, x, start, clients) -> None:
    server = start(net)
    clf = _clf(clients, server.url, batch_size=50, concurrency=4)
    torch.testing.assert_close(clf.scores(x), _ref(net, x), atol=1e-5, rtol=0)
    assert net.training is False and all(p.requires_grad for p in net.parameters())
    assert clf.queries == server.rows_received == 200


def test_https_verifies_the_certificate(
    net, x, onnx_predict, start, clients, tmp_path, monkeypatch
) -> None:
    import shutil
    import ssl
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a certificate")
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)
    server = start(onnx_predict, ssl_context=ctx)
    assert server.url.startswith("https://127.0.0.1:")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    untrusting = _clf(clients, server.url, retries=3, backoff=0.5)
    t0 = time.monotonic()
    with pytest.raises(ModelError, match="certificate that does not verify"):
        untrusting.scores(x[:4])
    assert time.monotonic() - t0 < 1.0 and untrusting.queries == 0  # not retried, not sent
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    clf = _clf(clients, server.url)
    torch.testing.assert_close(clf.scores(x[:40]), _ref(net, x[:40]), atol=1e-5, rtol=0)
    assert clf.queries == server.rows_received == 40


def test_ask_after_spend_as_the_attacks_do(net, x, onnx_predict, start, clients) -> None:
    server = start(onnx_predict)
    clf = _clf(clients, server.url, batch_size=16, concurrency=2, query_budget=100)
    clf.spend(40)  # an attack counts per example first, then asks
    torch.testing.assert_close(clf.ask(x[:40]), _ref(net, x[:40]), atol=1e-5, rtol=0)
    assert clf.queries == server.rows_received == 40
    bad = x[:8].clone()
    bad[0, 0, 0, 0] = float("inf")
    clf.spend(8)
    with pytest.raises(DataError, match="NaN or inf"):
        clf.ask(bad)
    assert clf.queries == server.rows_received == 40  # given back: nothing was sent
    with pytest.raises(QueryBudgetExhausted):
        clf.spend(61)
