"""The Open Inference Protocol (V2) client against xrobust's own V2 test server
(``serving.serve(protocol="v2")``): tensors and datatypes as sent and read, metadata,
readiness, server errors, retries, budgets and query counts. The same client against real
KServe and MLServer servers is in ``tests/test_real_servers.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from xrobust.errors import ConfigError, DataError, ModelError, QueryBudgetExhausted
from xrobust.models import as_classifier, serving
from xrobust.models._oip import DATATYPES
from xrobust.models.endpoint import URL_PROTOCOLS

W = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)


def linear(a: np.ndarray) -> np.ndarray:
    return a.reshape(len(a), -1).astype(np.float32) @ W


def _x(n: int = 5, seed: int = 1) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).random((n, 1, 4, 4)).astype(np.float32))


def _clf(clients, url, **kw):
    kw = {"protocol": "v2", "input_shape": (1, 4, 4), "num_classes": 3, "retries": 0, **kw}
    c = as_classifier(url, **kw)
    clients.append(c)
    return c


def test_scores_batches_and_counts_match_the_server(start, clients) -> None:
    server = start(linear, protocol="v2", model_name="digits")
    assert server.url.endswith("/v2/models/digits")
    clf = _clf(clients, server.url, batch_size=3, concurrency=2)
    x = _x(10)
    assert np.allclose(clf.scores(x).numpy(), linear(x.numpy()), atol=1e-6)
    assert clf.queries == server.rows_received == 10 and server.requests == 4
    t = server.last_body["inputs"][0]
    assert (t["name"], t["datatype"], t["shape"][1:]) == ("input-0", "FP32", [1, 4, 4])
    assert len(t["data"]) == int(np.prod(t["shape"]))  # flat, row-major
    d = clf.describe()
    assert d["protocol"] == "v2" and d["v2"]["datatype"] == "FP32"
    assert d["v2"]["platform"] == "xrobust-serving"
    # the .../infer URL, and a version, name the same model
    assert _clf(clients, server.url + "/infer").scores(x[:2]).shape == (2, 3)


def test_float32_values_arrive_exactly(start, clients) -> None:
    server = start(linear, protocol="v2")
    x = _x(4) * 1e-3 + 1 / 3
    _clf(clients, server.url).scores(x)
    sent = np.asarray(server.last_body["inputs"][0]["data"], dtype=np.float32)
    assert np.array_equal(sent, x.numpy().ravel())


def _meta(dt: str, shape: list[int], name: str = "images") -> dict:
    return {
        "name": "model",
        "platform": "onnxruntime",
        "inputs": [{"name": name, "datatype": dt, "shape": shape}],
        "outputs": [{"name": "logits", "datatype": "FP32", "shape": [-1, 3]}],
    }


@pytest.mark.parametrize("dt", sorted(DATATYPES))
def test_each_input_datatype_from_the_metadata(dt, start, clients) -> None:
    got: list[np.ndarray] = []

    def fn(a: np.ndarray) -> np.ndarray:
        got.append(a)
        return linear(a.astype(np.float32))

    server = start(fn, protocol="v2", output_name="logits", metadata=_meta(dt, [-1, 1, 4, 4]))
    clf = _clf(clients, server.url, bounds=(0.0, 1.0) if dt == "BOOL" else None)
    # whole numbers in every type's range (0/1 for BOOL), fractions for the floats
    x = _x(6) if dt.startswith("FP") else torch.round(_x(6))
    s = clf.scores(x)
    assert server.last_body["inputs"][0]["datatype"] == dt
    assert server.last_body["inputs"][0]["name"] == "images"
    want = x.numpy().astype(DATATYPES[dt])
    assert got[-1].dtype == want.dtype and np.array_equal(got[-1], want)
    assert np.allclose(s.numpy(), linear(want.astype(np.float32)), atol=1e-5)
    if dt == "FP16":
        assert "half precision" in clf.describe()["v2"]["note"]


@pytest.mark.parametrize("dt", ["UINT8", "INT8", "BOOL"])
def test_values_an_integer_input_cannot_hold_are_refused_not_rounded(dt, start, clients) -> None:
    server = start(linear, protocol="v2", metadata=_meta(dt, [-1, 1, 4, 4]))
    clf = _clf(clients, server.url)
    with pytest.raises(DataError, match=rf"input is {dt}: it takes whole numbers.*not round"):
        clf.scores(_x(3))  # fractions
    with pytest.raises(DataError, match="whole numbers"):
        clf.scores(_x(3) * 0 + 300)  # out of range
    assert clf.queries == 0 and server.requests == 0  # nothing sent, nothing counted


@pytest.mark.parametrize(
    ("out", "dt", "output", "want"),
    [
        ([[1.5, -2.0, 0.25]], "FP64", "logits", [[1.5, -2.0, 0.25]]),
        ([[1.5, -2.0, 0.25]], "FP16", "logits", [[1.5, -2.0, 0.25]]),
        ([2], "INT64", "labels", [[0, 0, 1]]),
        ([1], "UINT8", "labels", [[0, 1, 0]]),
        ([True], "BOOL", "labels", [[0, 1, 0]]),
    ],
)
def test_output_datatypes_are_read(out, dt, output, want, start, clients) -> None:
    shape = [1, 3] if output == "logits" else [1]
    body = {"outputs": [{"name": "y", "shape": shape, "datatype": dt, "data": out}]}
    server = start(lambda a: (_ for _ in ()).throw(serving.Reply(200, body)), protocol="v2")
    s = _clf(clients, server.url, output=output).scores(_x(1))
    assert s.tolist() == want


@pytest.mark.parametrize(
    ("tensor", "match"),
    [
        ({"name": "y", "shape": [1, 3], "datatype": "BYTES", "data": ["a", "b", "c"]}, "BYTES"),
        ({"name": "y", "shape": [2, 3], "datatype": "FP32", "data": [0] * 6}, "2 rows .* 1 it"),
        ({"name": "y", "shape": [1, 3], "datatype": "FP32", "data": [0, 1]}, "2 values"),
        ({"name": "y", "shape": [1, 3], "datatype": "FP32", "data": ["a", "b", "c"]}, "not FP32"),
        ({"name": "y", "shape": [1, 3], "datatype": "INT64", "data": [0.5, 1, 2]}, "not INT64"),
        (
            {
                "name": "y",
                "shape": [1, 3],
                "datatype": "FP32",
                "parameters": {"binary_data_size": 12},
            },
            "binary",
        ),
        ({"name": "y", "datatype": "FP32", "data": [0, 1, 2]}, "without a valid shape"),
    ],
)
def test_malformed_output_tensors_are_refused(tensor, match, start, clients) -> None:
    body = {"outputs": [tensor]}
    server = start(lambda a: (_ for _ in ()).throw(serving.Reply(200, body)), protocol="v2")
    with pytest.raises(ModelError, match=match):
        _clf(clients, server.url).scores(_x(1))


def test_several_outputs_read_by_name_or_when_clearly_the_scores(start, clients) -> None:
    def two(a: np.ndarray) -> None:
        n = len(a)
        emb = {"name": "embedding", "shape": [n, 2], "datatype": "FP32", "data": [0.0] * 2 * n}
        log = {"name": "logits", "shape": [n, 3], "datatype": "FP32",
               "data": linear(a).ravel().tolist()}  # fmt: skip
        raise serving.Reply(200, {"outputs": [emb, log]})

    server = start(two, protocol="v2")
    x = _x(3)
    assert np.allclose(_clf(clients, server.url).scores(x).numpy(), linear(x.numpy()), atol=1e-6)
    clf = _clf(clients, server.url, output_name="embedding", num_classes=2)
    assert (clf.scores(x) == 0).all()
    assert server.last_body["outputs"] == [{"name": "embedding"}]  # asked for by name


def test_not_ready_missing_and_unreachable_models_are_clear_errors(start, clients) -> None:
    server = start(linear, protocol="v2", ready=False, model_name="digits")
    with pytest.raises(ModelError, match=r"model for .* is not ready .*digits/ready.*503"):
        _clf(clients, server.url)
    ok = start(linear, protocol="v2", model_name="digits")
    with pytest.raises(ModelError, match=r"not ready.*404"):
        _clf(clients, ok.url.replace("digits", "digitz"))
    port = ok.port
    ok.close()
    with pytest.raises(ModelError, match=r"server for .* is not ready.*cannot reach"):
        _clf(clients, f"http://127.0.0.1:{port}/v2/models/digits")


def test_server_errors_are_shown_with_secrets_blanked(start, clients, monkeypatch) -> None:
    monkeypatch.setenv("XR_V2_TOKEN", "s3cr3t-token-value")

    def fail(a: np.ndarray) -> None:
        raise serving.Reply(400, {"error": "bad input for token s3cr3t-token-value"})

    server = start(fail, protocol="v2")
    clf = _clf(clients, server.url, headers_env={"Authorization": "Bearer $XR_V2_TOKEN"})
    with pytest.raises(ModelError, match="HTTP 400") as err:
        clf.scores(_x(2))
    assert "bad input for token <redacted>" in str(err.value)
    assert "s3cr3t" not in str(err.value) + repr(clf.describe())
    assert server.last_headers["Authorization"] == "Bearer s3cr3t-token-value"
    # a 200 answer holding only an error
    server2 = start(lambda a: (_ for _ in ()).throw(serving.Reply(200, {"error": "oom"})),
                    protocol="v2")  # fmt: skip
    with pytest.raises(ModelError, match="answered an error: 'oom'"):
        _clf(clients, server2.url).scores(_x(2))


def test_retries_and_budgets_count_rows_sent(start, clients) -> None:
    calls = {"n": 0}

    def flaky(a: np.ndarray) -> np.ndarray:
        calls["n"] += 1
        if calls["n"] == 1:
            raise serving.Reply(503, {"error": "warming up"})
        return linear(a)

    server = start(flaky, protocol="v2")
    clf = _clf(clients, server.url, retries=2, backoff=0.01)
    clf.scores(_x(4))
    assert clf.retried == 1 and clf.queries == server.rows_received == 8
    capped = _clf(clients, server.url, query_budget=6)
    capped.scores(_x(4))
    with pytest.raises(QueryBudgetExhausted):
        capped.scores(_x(4))
    assert capped.queries == 4 and server.rows_received == 12


def test_nhwc_layout_and_the_metadata_shape(start, clients) -> None:
    got: list[np.ndarray] = []
    server = start(lambda a: got.append(a) or linear(a), protocol="v2",
                   metadata=_meta("FP32", [-1, 4, 4, 1]))  # fmt: skip
    x = _x(2)
    _clf(clients, server.url, layout="NHWC").scores(x)
    assert np.array_equal(got[-1], x.numpy().transpose(0, 2, 3, 1))
    with pytest.raises(ConfigError, match=r"shape \[-1, 4, 4, 1\].*layout='NHWC'"):
        _clf(clients, server.url)  # NCHW rows for an NHWC model


@pytest.mark.parametrize(
    ("url_path", "kw", "error", "match"),
    [
        ("/v1/models/m:predict", {}, ConfigError, r"V2\) URL names a model"),
        ("/v2/models/model", {"signature_name": "s"}, ConfigError, "signature_name"),
        ("/v2/models/model", {"datatype": "BYTES"}, ConfigError, "BYTES"),
        ("/v2/models/model", {"datatype": "FP8"}, ConfigError, "unknown datatype"),
        ("/v2/models/model", {"input_name": "x"}, ConfigError, "no input 'x'.*images"),
        ("/v2/models/model", {"output_name": "z"}, ConfigError, "no output 'z'.*logits"),
    ],
)
def test_bad_options_are_refused(url_path, kw, error, match, start, clients) -> None:
    server = start(linear, protocol="v2", metadata=_meta("FP32", [-1, 1, 4, 4]))
    with pytest.raises(error, match=match):
        _clf(clients, server.base_url + url_path, **kw)


def test_several_inputs_need_a_name_and_v1_options_stay_v1(start, clients) -> None:
    meta = _meta("FP32", [-1, 1, 4, 4])
    meta["inputs"].append({"name": "mask", "datatype": "BOOL", "shape": [-1, 16]})
    server = start(linear, protocol="v2", metadata=meta)
    with pytest.raises(ConfigError, match=r"several inputs .*input_name="):
        _clf(clients, server.url)
    assert _clf(clients, server.url, input_name="images").scores(_x(1)).shape == (1, 3)
    with pytest.raises(ConfigError, match="datatype= applies to protocol='v2'"):
        as_classifier("http://127.0.0.1:1/v1/models/m:predict", datatype="FP32")


def test_the_cli_offers_the_library_protocols() -> None:
    from xrobust.cli import build_parser

    audit = build_parser()._subparsers._group_actions[0].choices["audit"]
    (action,) = [a for a in audit._actions if "--endpoint-protocol" in a.option_strings]
    assert tuple(action.choices) == URL_PROTOCOLS


# --------------------------------------------------------------- the binary tensor extension
@pytest.mark.parametrize("dt", ["FP32", "INT8", "FP64"])
def test_binary_extension_sends_and_reads_raw_bytes(dt, start, clients) -> None:
    got: list[np.ndarray] = []
    server = start(lambda a: got.append(a) or linear(a.astype(np.float32)), protocol="v2",
                   metadata=_meta(dt, [-1, 1, 4, 4]))  # fmt: skip
    clf = _clf(clients, server.url, protocol="v2-binary", batch_size=3, concurrency=2)
    x = _x(10) if dt.startswith("FP") else torch.round(_x(10) * 100)
    s = clf.scores(x)
    assert np.allclose(s.numpy(), linear(x.numpy()), atol=1e-4)
    assert clf.queries == server.rows_received == 10 and server.requests == 4
    sent = np.sort(np.concatenate(got).ravel())  # requests in flight together: any order
    assert sent.dtype == DATATYPES[dt]
    assert np.array_equal(sent, np.sort(x.numpy().astype(DATATYPES[dt]).ravel()))
    assert server.last_headers["Content-Type"] == "application/octet-stream"
    head = int(server.last_headers["Inference-Header-Content-Length"])
    t = server.last_body["inputs"][0]
    rows = t["shape"][0]  # the last to arrive: 3 rows or the last 1
    assert t["parameters"]["binary_data_size"] == rows * 16 * np.dtype(DATATYPES[dt]).itemsize
    assert "data" not in t and server.last_body["parameters"] == {"binary_data_output": True}
    assert head > 0 and clf.describe()["v2"]["binary"] is True


def _binary_answer(tensor: dict, data: bytes) -> bytes:
    import json

    return json.dumps({"outputs": [tensor]}).encode() + data


@pytest.mark.parametrize(
    ("size", "data", "protocol", "match"),
    [
        (12, np.zeros(3, "<f4").tobytes(), "v2-binary", None),  # the good one
        (8, np.zeros(3, "<f4").tobytes(), "v2-binary", "binary_data_size 8; it takes 12"),
        (12, np.zeros(2, "<f4").tobytes(), "v2-binary", "less binary data"),
        (12, np.zeros(4, "<f4").tobytes(), "v2-binary", "4 bytes .* no output claims"),
        (12, np.zeros(3, "<f4").tobytes(), "v2", "binary data .*not asked for"),
        (None, b"\n", "v2", None),  # a JSON answer with a line break after it
        (None, b" \n", "v2-binary", None),
    ],
)
def test_binary_answers_are_checked(size, data, protocol, match, start, clients) -> None:
    t = {"name": "y", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": size}}
    if size is None:
        t = {"name": "y", "shape": [1, 3], "datatype": "FP32", "data": [0, 0, 0]}
    body = _binary_answer(t, data)
    server = start(lambda a: (_ for _ in ()).throw(serving.Reply(200, body)), protocol="v2")
    clf = _clf(clients, server.url, protocol=protocol)
    if match is None:
        assert clf.scores(_x(1)).tolist() == [[0.0, 0.0, 0.0]]
        return
    with pytest.raises(ModelError, match=match):
        clf.scores(_x(1))


def test_a_server_without_the_binary_extension_says_what_to_try(start, clients) -> None:
    server = start(lambda a: (_ for _ in ()).throw(serving.Reply(500, b"Internal Server Error")),
                   protocol="v2")  # fmt: skip
    with pytest.raises(ModelError, match=r"HTTP 500.*binary tensor extension.*try protocol 'v2'"):
        _clf(clients, server.url, protocol="v2-binary").scores(_x(1))


@pytest.mark.parametrize("protocol", ["v2", "v2-binary"])
def test_the_cli_attacks_a_v2_endpoint_and_reports_not_ready_in_one_line(
    protocol, start, capsys
) -> None:
    from xrobust.cli import main

    w = np.random.default_rng(0).normal(size=(784, 10)).astype(np.float32)
    server = start(lambda a: a.reshape(len(a), -1) @ w, protocol="v2", model_name="digits")
    args = ["attack", "--endpoint", server.url, "--endpoint-protocol", protocol, "--data",
            "digits", "--attack", "square", "--queries", "5", "--eps", "0.05", "--limit", "4",
            "--no-progress", "--json"]  # fmt: skip
    assert main(args) == 0
    out = capsys.readouterr()
    assert "Traceback" not in out.err and server.rows_received >= 4
    down = start(lambda a: a, protocol="v2", model_name="digits", ready=False)
    assert main([*args[:2], down.url, *args[3:]]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "is not ready" in err and len(err.strip().splitlines()) == 1
