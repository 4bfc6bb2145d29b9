"""Endpoints that misbehave on purpose (issue 18, items 5, 8 and 9): servers on 127.0.0.1 that
echo credentials in encoded forms, put escape sequences and NULs in their errors, nest answers
100k deep, repeat JSON keys, answer several outputs or answers too large together; and the
CLI on them, which must print one clean line, no traceback and no secret.

Every server and client is closed by the fixtures; the memory test uses a 1 MiB limit.
"""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
import socket
import threading
import time
import traceback
import urllib.parse
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest
import torch

from xrobust.cli import main
from xrobust.errors import ConfigError, ModelError
from xrobust.models import as_classifier, endpoint, serving
from xrobust.models.endpoint import EndpointClassifier, safe_url

SHAPE = (1, 8, 8)
DECL = {"input_shape": SHAPE, "num_classes": 10, "bounds": (0.0, 1.0)}
W = np.random.default_rng(0).normal(size=(64, 10)).astype(np.float32)
SECRET = "sk_live_Q7w9Zp2xVb4N"  # the token a careless server echoes
USER, PASSWORD = "auditor", "pa55/w0rd+Kx9!"
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


def linear(a: np.ndarray) -> np.ndarray:
    """Scores from the first 64 values of each row (8x8 here, 28x28 digits on the CLI)."""
    return a.reshape(len(a), -1)[:, :64] @ W


def _clf(clients: list, url: str, **kw: Any) -> EndpointClassifier:
    c = as_classifier(url, **{**DECL, "retries": 0, **kw})
    assert isinstance(c, EndpointClassifier)
    clients.append(c)
    return c


def _replying(status: int, body: Any, headers: dict | None = None) -> Callable:
    def fn(a: np.ndarray) -> Any:
        raise serving.Reply(status, body, headers)

    return fn


@pytest.fixture
def raw_server() -> Iterator[Callable[[Callable[[bytes], bytes]], str]]:
    """A socket server that answers each request with ``respond(request_bytes)`` exactly as
    given (a forged status line, any bytes), then closes; returns its predict URL."""
    socks: list[socket.socket] = []
    stop = threading.Event()
    threads: list[threading.Thread] = []

    def _start(respond: Callable[[bytes], bytes]) -> str:
        lsock = socket.socket()
        lsock.bind(("127.0.0.1", 0))
        lsock.listen(8)
        lsock.settimeout(0.2)
        socks.append(lsock)

        def run() -> None:
            while not stop.is_set():
                try:
                    conn, _ = lsock.accept()
                except OSError:
                    continue
                with conn:
                    conn.settimeout(5)
                    req = b""
                    while b"\r\n\r\n" not in req:
                        req += conn.recv(65536)
                    head, _, body = req.partition(b"\r\n\r\n")
                    length = int(
                        next(
                            (ln.split(b":")[1] for ln in head.split(b"\r\n")
                             if ln.lower().startswith(b"content-length:")),
                            b"0",
                        )
                    )  # fmt: skip
                    while len(body) < length:
                        body += conn.recv(65536)
                    with contextlib.suppress(OSError):
                        conn.sendall(respond(body))

        t = threading.Thread(target=run, daemon=True)
        t.start()
        threads.append(t)
        return f"http://127.0.0.1:{lsock.getsockname()[1]}/v1/models/m:predict"

    yield _start
    stop.set()
    for t in threads:
        t.join(5)
    for s in socks:
        s.close()


def _http(status_line: bytes, body: bytes, ctype: bytes = b"application/json") -> bytes:
    return (
        status_line + b"\r\nContent-Type: " + ctype + b"\r\nContent-Length: "
        + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n" + body
    )  # fmt: skip


def _x(n: int = 4) -> torch.Tensor:
    return torch.rand(n, *SHAPE, generator=torch.Generator().manual_seed(n))


CLI_ATTACK = ["--data", "digits", "--attack", "square", "--queries", "5", "--eps", "0.05",
              "--limit", "4", "--no-progress"]  # fmt: skip


def _cli(capsys, argv: list[str]) -> tuple[int, str]:
    rc = main(argv)
    got = capsys.readouterr()
    return rc, got.out + got.err


def _assert_clean_one_line(text: str) -> None:
    assert "Traceback" not in text
    for bad in ("\x1b", "\x00", "\x07", "\r", "\x9b"):
        assert bad not in text, repr(text)
    errors = [ln for ln in text.splitlines() if "error:" in ln]
    assert len(errors) == 1 and errors[0].startswith("xrobust attack: error: "), text


# ---------------------------------------------------------------------- --header
@pytest.mark.parametrize(
    "item",
    [
        "X-Api-Key=sk-live-abc.123/xyz",  # a pasted token (not a variable name)
        "Authorization=Bearer sk_live_abc123",  # a pasted header value
        "Authorization: Bearer sk_live_abc123",  # no '=' at all
        "Bad Header sk_live_abc123=XR_TOKEN",  # not a header name before '='
        "X-Api-Key=",  # nothing after '='
    ],
)
def test_header_takes_only_a_variable_name_and_never_echoes_the_rest(capsys, item) -> None:
    from xrobust.cli._common import _headers

    with pytest.raises(ConfigError) as err:
        _headers([item])
    msg = str(err.value)
    assert "sk_live" not in msg and "sk-live" not in msg
    assert "abc" not in msg and "Bearer" not in msg
    assert "XR_API_KEY" in msg and "export XR_API_KEY=" in msg and "NAME of an environment" in msg
    rc, text = _cli(capsys, ["attack", "--endpoint", "http://127.0.0.1:9/v1/models/m:predict",
                             "--header", item, *CLI_ATTACK])  # fmt: skip
    assert rc == 2 and "abc" not in text and "Bearer" not in text
    _assert_clean_one_line(text)


def test_a_pasted_secret_that_looks_like_a_name_is_not_echoed(capsys, monkeypatch) -> None:
    monkeypatch.delenv("sk_live_abc123", raising=False)
    monkeypatch.delenv("XR_HOSTILE_UNSET", raising=False)
    url = "http://127.0.0.1:9/v1/models/m:predict"
    rc, text = _cli(capsys, ["attack", "--endpoint", url, "--header", "X-Api-Key=sk_live_abc123",
                             *CLI_ATTACK])  # fmt: skip
    assert rc == 2 and "sk_live_abc123" not in text and "abc123" not in text
    assert "'X-Api-Key'" in text and "X-Api-Key=XR_API_KEY" in text and "not set" in text
    _assert_clean_one_line(text)
    # a conventional name is named, with what to do
    rc, text = _cli(capsys, ["attack", "--endpoint", url, "--header",
                             "X-Api-Key=XR_HOSTILE_UNSET", *CLI_ATTACK])  # fmt: skip
    assert rc == 2 and "environment variable XR_HOSTILE_UNSET" in text
    assert "export XR_HOSTILE_UNSET=" in text
    _assert_clean_one_line(text)
    help_text = _cli(capsys, ["attack", "--help"])[1]
    assert "NAME=ENV_VAR" in help_text and "never the secret" in " ".join(help_text.split())


# ---------------------------------------------------------------------- redaction
def _forms() -> dict[str, str]:
    b = SECRET.encode()
    wrapped = b"Authorization: Bearer " + b + b"\r\nHost: x"  # the secret mid-way in base64
    return {
        "literal": SECRET,
        "base64": base64.b64encode(b).decode(),
        "base64 no padding": base64.b64encode(b).decode().rstrip("="),
        "urlsafe base64": base64.urlsafe_b64encode(b"\xfb\xff" + b).decode(),
        "base64 inside a longer text": base64.b64encode(wrapped).decode(),
        "base64 inside, offset 1": base64.b64encode(b"x" + wrapped).decode(),
        "base64 inside, offset 2": base64.urlsafe_b64encode(b"xy" + wrapped).decode().rstrip("="),
        "base64 of the whole header": base64.b64encode(b"Bearer " + b).decode(),
        "quote": urllib.parse.quote("Bearer " + SECRET + "/"),
        "quote_plus": urllib.parse.quote_plus(f"token={SECRET}&x=/"),
        "quote lower-case hex": re.sub(
            "%[0-9A-F]{2}", lambda m: m.group().lower(), urllib.parse.quote(SECRET + "/!", safe="")
        ),
        "json-escaped": json.dumps({"h": f"Bearer {SECRET}"}),
        "basic user:password": f"{USER}:{PASSWORD}",
        "basic password": f"password={PASSWORD}",
        "basic password base64": base64.b64encode(PASSWORD.encode()).decode(),
        "basic password urlencoded": urllib.parse.quote_plus(PASSWORD),
        "basic header": BASIC,
    }


@pytest.mark.parametrize("form", list(_forms()))
def test_echoed_credentials_are_redacted_in_every_form(
    form, start, clients, monkeypatch, caplog
) -> None:
    monkeypatch.setenv("XR_HOSTILE_TOKEN", SECRET)
    monkeypatch.setenv("XR_HOSTILE_BASIC", BASIC)
    echoed = _forms()[form]
    server = start(_replying(503, {"error": f"denied ({echoed}) for this client"}))
    clf = _clf(
        clients,
        server.url,
        headers_env={"Authorization": "Bearer $XR_HOSTILE_TOKEN", "X-Basic": "XR_HOSTILE_BASIC"},
        retries=1,
        backoff=0.0,
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(ModelError) as err:
        clf.scores(_x())
    assert server.last_headers["Authorization"] == f"Bearer {SECRET}"  # it was sent
    texts = [str(err.value), "".join(traceback.format_exception(err.value)), caplog.text]
    assert "<redacted>" in texts[0] and "for this client" in texts[0]
    for text in texts:
        for leak in {SECRET, PASSWORD, echoed} | (
            {echoed[8:]} if form == "basic header" else set()
        ):
            assert leak not in text, (form, text)
        assert base64.b64encode(SECRET.encode()).decode()[:16] not in text


def test_redaction_leaves_other_text_alone(start, clients, monkeypatch) -> None:
    monkeypatch.setenv("XR_HOSTILE_TOKEN", SECRET)
    server = start(_replying(400, {"error": "Input to reshape is a tensor with 64 values"}))
    clf = _clf(clients, server.url, headers_env={"Authorization": "XR_HOSTILE_TOKEN"})
    with pytest.raises(ModelError) as err:
        clf.scores(_x())
    assert str(err.value).endswith("'Input to reshape is a tensor with 64 values'")


# ---------------------------------------------------------------------- terminal safety
FORGED = "\x1b[2K\r\x1b[1A\x1b[32maudit passed\x1b[0m\x00\x07 \x1b]0;owned\x07\x9b31m done\u202e"


def test_escapes_and_nuls_in_error_bodies_are_removed(start, clients, raw_server) -> None:
    server = start(_replying(400, {"error": FORGED + " tail"}))
    with pytest.raises(ModelError) as err:
        _clf(clients, server.url).scores(_x())
    msg = str(err.value)
    assert msg.endswith("'audit passed done tail'"), repr(msg)
    # the same in a body that is not JSON, and in the reason phrase of the status line
    url = raw_server(
        lambda req: _http(b"HTTP/1.1 502 Bad\x1b[2J\x1b[HGateway", FORGED.encode(), b"text/plain")
    )
    with pytest.raises(ModelError) as err:
        _clf(clients, url).scores(_x())
    msg = str(err.value)
    assert "HTTP 502 BadGateway: 'audit passed done'" in msg, repr(msg)
    for bad in ("\x1b", "\x00", "\x07", "\r", "\x9b", "\u202e"):
        assert bad not in msg


def test_long_and_binary_bodies_are_cut_or_summarised(start, clients) -> None:
    server = start(_replying(500, {"error": "x" * 5000}))
    with pytest.raises(ModelError) as err:
        _clf(clients, server.url).scores(_x())
    msg = str(err.value)
    assert "… (4700 more characters)" in msg and len(msg) < 500
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4
    server = start(_replying(500, png, {"Content-Type": "image/png"}))
    with pytest.raises(ModelError) as err:
        _clf(clients, server.url).scores(_x())
    assert str(err.value).endswith(f"<binary, {len(png)} bytes, image/png>")
    server = start(_replying(200, b"\x00\x01\x02\x03" * 100, {"Content-Type": "application/x"}))
    with pytest.raises(ModelError, match=r"malformed JSON: <binary, 400 bytes, application/x>$"):
        _clf(clients, server.url).scores(_x())


def test_cli_prints_one_clean_line_for_a_forged_error(start, capsys) -> None:
    server = start(_replying(400, {"error": FORGED}))
    rc, text = _cli(capsys, ["attack", "--endpoint", server.url, *CLI_ATTACK])
    assert rc == 2 and "audit passed done" in text
    _assert_clean_one_line(text)


def test_cli_error_printer_cleans_any_message(capsys, monkeypatch) -> None:
    """Whatever an error quotes (a file's text, a path), the final line is cleaned."""
    import xrobust.cli.attack as attack_cli

    def forged(args: Any) -> int:
        raise ModelError("bad file: " + FORGED + "\n\x1b[32maudit passed\x1b[0m")

    monkeypatch.setattr(attack_cli, "run", forged)
    rc, text = _cli(capsys, ["attack", "--eps", "0.1"])
    assert rc == 2 and text == "xrobust attack: error: bad file: audit passed done audit passed\n"


# ---------------------------------------------------------------------- no tracebacks
def _deep(n: int) -> bytes:
    return b'{"predictions": ' + b"[" * n + b"]" * n + b"}"


@pytest.mark.parametrize("depth", [100_000, 500])
def test_deeply_nested_answers_are_a_model_error(depth, start, clients) -> None:
    server = start(_replying(200, _deep(depth)))
    with pytest.raises(ModelError, match="nested deeper than 64 levels"):
        _clf(clients, server.url).scores(_x())
    # an error body nested as deep is shown as text, not a traceback
    server = start(_replying(400, b'{"error": ' + b"[" * depth + b"]" * depth + b"}"))
    with pytest.raises(ModelError, match=r"HTTP 400 Bad Request: '\{\"error\": \[\[\["):
        _clf(clients, server.url).scores(_x())


def test_deep_answer_on_the_cli(start, capsys) -> None:
    server = start(_replying(200, _deep(100_000)))
    rc, text = _cli(capsys, ["attack", "--endpoint", server.url, *CLI_ATTACK])
    assert rc == 2 and "nested deeper than 64 levels" in text
    _assert_clean_one_line(text)


def test_non_latin1_header_values_are_config_errors(start, clients, monkeypatch, capsys) -> None:
    server = start(linear)
    monkeypatch.setenv("XR_HOSTILE_TOKEN", "tok\u2019en-secret")
    with pytest.raises(ConfigError, match="not Latin-1") as err:
        _clf(clients, server.url, headers_env={"Authorization": "Bearer $XR_HOSTILE_TOKEN"})
    assert "secret" not in str(err.value) and "\u2019" not in str(err.value)
    with pytest.raises(ConfigError, match="not Latin-1") as err:
        _clf(clients, server.url, headers={"X-Team": "caf\u00e9 \u2603 team"})
    assert "team" not in str(err.value).replace("X-Team", "")
    # a variable changed after construction: refused at the next request, nothing sent
    monkeypatch.setenv("XR_HOSTILE_TOKEN", "fine-token")
    clf = _clf(clients, server.url, headers_env={"Authorization": "XR_HOSTILE_TOKEN"})
    monkeypatch.setenv("XR_HOSTILE_TOKEN", "tok\u2603en-secret")
    with pytest.raises(ConfigError, match="ASCII or Latin-1") as err:
        clf.scores(_x())
    assert "secret" not in str(err.value) and server.requests == 0 and clf.queries == 0
    rc, text = _cli(capsys, ["attack", "--endpoint", server.url, "--header",
                             "Authorization=XR_HOSTILE_TOKEN", *CLI_ATTACK])  # fmt: skip
    assert rc == 2 and "not Latin-1" in text and "secret" not in text
    _assert_clean_one_line(text)
    # were the check skipped, http.client's UnicodeEncodeError (which holds the value) is
    # still a ConfigError that does not echo it
    monkeypatch.setattr(endpoint, "_check_header_value", lambda value, what: None)
    with pytest.raises(ConfigError, match="could not be sent: header values") as err:
        _clf(clients, server.url, headers_env={"Authorization": "XR_HOSTILE_TOKEN"}).scores(_x())
    assert "secret" not in str(err.value) and err.value.__cause__ is None


@pytest.mark.parametrize(
    ("url", "words"),
    [
        ("http://127.0.0.1:99999/v1/models/m:predict", "has port 99999"),
        ("http://127.0.0.1:0/v1/models/m:predict", "has port 0"),
        ("http://127.0.0.1:ab/v1/models/m:predict", "a port that is not a number"),
        ("http://[::1/v1/models/m:predict", "not readable"),
        ("http://127.0.0.1:8501/v1/\x1b[2Jmodels/m:predict", "control characters"),
        ("http://127.0.0.1:8501/v1/models/caf\u00e9:predict", "not ASCII"),
    ],
)
def test_bad_ports_and_urls_are_config_errors(url, words, capsys) -> None:
    assert isinstance(safe_url(url), str)  # never raises
    with pytest.raises(ConfigError, match=words):
        EndpointClassifier(url, **DECL)
    rc, text = _cli(capsys, ["attack", "--endpoint", url, *CLI_ATTACK])
    assert rc == 2 and words in text
    _assert_clean_one_line(text)


@pytest.mark.parametrize(
    ("body", "key"),
    [
        (b'{"predictions": [[1,2,3,4,5,6,7,8,9,0]], "predictions": %s}', "predictions"),
        (b'{"predictions": %s, "meta": {"a": 1, "b": {"c": 1, "c": 2}}}', "c"),
        (b'{"predictions": [{"logits": [0,0,0,0,0,0,0,0,0,0], "logits": [1,1,1,1,1,1,1,1,1,1]}]}',
         "logits"),
    ],
)  # fmt: skip
def test_duplicate_keys_anywhere_are_refused(body, key, raw_server, clients) -> None:
    rows = json.dumps([[float(i)] * 10 for i in range(1)]).encode()
    payload = body.replace(b"%s", rows) if b"%s" in body else body
    url = raw_server(lambda req: _http(b"HTTP/1.1 200 OK", payload))
    with pytest.raises(ModelError, match=f"key '{key}' more than once"):
        _clf(clients, url).scores(_x(1))


# ---------------------------------------------------------------------- several outputs
def _two(names: tuple[str, str], widths: tuple[int, int] = (10, 10)) -> Callable:
    def fn(a: np.ndarray) -> Any:
        s = linear(a)
        outs = {
            names[0]: (s[:, : widths[0]] * 0 - 1).tolist(),  # -1 everywhere: never the scores
            names[1]: np.resize(s, (len(a), widths[1])).tolist(),
        }
        raise serving.Reply(200, {"outputs": outs})

    return fn


def test_the_clear_class_scores_are_read_and_the_choice_stated(start, clients, caplog) -> None:
    server = start(_two(("aux_logits", "logits")))
    clf = _clf(clients, server.url, protocol="inputs")
    caplog.set_level(logging.WARNING, logger="xrobust.models.endpoint")
    x = _x(6)
    s = clf.scores(x)
    torch.testing.assert_close(s, torch.from_numpy(linear(x.numpy())), atol=1e-5, rtol=0)
    assert "reading 'logits' as the class scores" in caplog.text and "aux_logits" in caplog.text
    d = clf.describe()
    assert d["output_name"] == "logits" and d["output_name_chosen"] == "automatically"
    clf.scores(x)
    assert caplog.text.count("reading 'logits'") == 1  # stated once


@pytest.mark.parametrize(
    ("names", "widths"),
    [
        (("logits", "probabilities"), (10, 10)),  # two class scores: ambiguous
        (("a", "b"), (10, 10)),  # no name says which
        (("embedding", "logits"), (10, 7)),  # the named one has the wrong width
    ],
)
def test_ambiguous_outputs_need_an_explicit_choice(names, widths, start, clients) -> None:
    server = start(_two(names, widths))
    with pytest.raises(ModelError, match=r"several outputs .*output_name=.*--output-name"):
        _clf(clients, server.url, protocol="inputs").scores(_x())
    clf = _clf(clients, server.url, protocol="inputs", output_name=names[0])
    assert (clf.scores(_x()) == -1).all()  # the one asked for
    assert clf.describe()["output_name_chosen"] == "given"


def test_kserve_v2_tensors_are_a_clear_error(start, clients) -> None:
    def v2(a: np.ndarray) -> Any:
        t = {"shape": [len(a), 10], "datatype": "FP32", "data": linear(a).ravel().tolist()}
        raise serving.Reply(200, {"outputs": [{"name": "logits", **t}, {"name": "aux", **t}]})

    with pytest.raises(ModelError, match=r"Open Inference Protocol .*protocol=\"v2\".*v2/models/NAME"):
        _clf(clients, start(v2).url, protocol="inputs").scores(_x())


def test_output_name_on_the_cli_reaches_the_endpoint(start, capsys) -> None:
    server = start(_two(("aux", "scores_b")))
    common = ["attack", "--endpoint", server.url, "--endpoint-protocol", "inputs", *CLI_ATTACK]
    rc, text = _cli(capsys, common)
    assert rc == 2 and "several outputs ['aux', 'scores_b']" in text and "--output-name" in text
    _assert_clean_one_line(text)
    rc, text = _cli(capsys, [*common, "--output-name", "scores_b", "--json"])
    assert rc == 0, text
    assert "Traceback" not in text and server.requests >= 2


# ---------------------------------------------------------------------- memory
class _Handler(BaseHTTPRequestHandler):
    """Answers ~400 KB per request: headers and half the body, a pause, then the rest, so
    that concurrent answers are all in flight together. ``barrier`` holds the answers until
    every request of a batch has arrived."""

    protocol_version = "HTTP/1.1"
    barrier: threading.Barrier | None = None
    pad = 400_000
    seen: list[int] = []

    def log_message(self, *a: Any) -> None:
        pass

    def do_POST(self) -> None:
        doc = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        n = len(doc["instances"])
        type(self).seen.append(n)
        if self.barrier is not None:
            with contextlib.suppress(threading.BrokenBarrierError):
                self.barrier.wait(2)
        body = json.dumps({"predictions": [[0.0] * 10] * n, "pad": "x" * self.pad}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(0.3)
            self.wfile.write(body[len(body) // 2 :])
        except OSError:
            pass


@pytest.fixture
def big_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"barrier": None, "seen": []})
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, args=(0.05,), daemon=True)
    t.start()
    yield f"http://127.0.0.1:{srv.server_address[1]}/v1/models/m:predict", handler
    srv.shutdown()
    srv.server_close()
    t.join(5)


def test_concurrent_answers_share_one_memory_limit(big_server, clients, monkeypatch) -> None:
    url, handler = big_server
    monkeypatch.setattr(endpoint, "_MAX_ANSWER", 1 << 20)  # 1 MiB: 4 answers of 400 KB exceed it
    peak = {"used": 0}
    take = endpoint._ByteBudget.take

    def watched(self: Any, n: int) -> bool:
        ok = take(self, n)
        peak["used"] = max(peak["used"], self.used)
        return ok

    monkeypatch.setattr(endpoint._ByteBudget, "take", watched)
    # one at a time: every answer fits
    one = _clf(clients, url, batch_size=4, concurrency=1)
    assert one.scores(_x(16)).shape == (16, 10) and one._in_flight.used == 0
    # four at once: together they would hold 1.6 MB
    handler.barrier = threading.Barrier(4)
    four = _clf(clients, url, batch_size=4, concurrency=4)
    with pytest.raises(ModelError) as err:
        four.scores(_x(16))
    msg = str(err.value)
    assert "in flight would hold more than 1 MiB together" in msg
    assert (
        "concurrency=" in msg and "--endpoint-concurrency" in msg and "--endpoint-batch-size" in msg
    )
    assert peak["used"] <= 1 << 20 and four._in_flight.used == 0  # nothing kept after the error
    # one answer over the limit alone: the advice is fewer rows per request
    handler.barrier = None
    monkeypatch.setattr(endpoint, "_MAX_ANSWER", 300_000)
    alone = _clf(clients, url, batch_size=4, concurrency=2)
    with pytest.raises(
        ModelError, match=r"more than .* for one request of up to 4 rows.*batch_size="
    ):
        alone.scores(_x(4))
    assert alone._in_flight.used == 0


@pytest.mark.filterwarnings("ignore:model outputs look like probabilities")
def test_endpoint_batch_size_and_concurrency_on_the_cli(big_server, capsys, monkeypatch) -> None:
    url, handler = big_server
    monkeypatch.setattr(endpoint, "_MAX_ANSWER", 300_000)
    rc, text = _cli(capsys, ["attack", "--endpoint", url, *CLI_ATTACK])
    assert rc == 2 and "--endpoint-batch-size" in text
    _assert_clean_one_line(text)
    monkeypatch.setattr(endpoint, "_MAX_ANSWER", 1 << 20)
    handler.seen.clear()
    rc, text = _cli(capsys, ["attack", "--endpoint", url, "--endpoint-batch-size", "3",
                             "--endpoint-concurrency", "1", *CLI_ATTACK])  # fmt: skip
    assert rc == 0, text
    assert handler.seen and max(handler.seen) == 3
    rc, text = _cli(capsys, ["attack", "--model", "nowhere", "--endpoint-concurrency", "2",
                             *CLI_ATTACK])  # fmt: skip
    assert rc == 2 and "--endpoint-concurrency applies to --onnx / --endpoint" in text


# ---------------------------------------------------------------------- the sanitiser
def test_clean_for_terminal() -> None:
    import doctest

    from xrobust import _text
    from xrobust._text import clean_for_terminal as clean

    res = doctest.testmod(_text)
    assert res.attempted > 0 and res.failed == 0
    assert clean("a\x1b]8;;http://evil\x1b\\link\x1b]8;;\x1b\\ b\x1bPq#0;2\x1b\\ c") == "alink b c"
    assert clean("one\r\n\x1b[1Atwo\tthree", oneline=False) == "one\ntwo three"
    assert clean("\u202eevil\u2066x\ud800y\x7f\x85z") == "evilxyz"
    assert (
        clean("x" * 10, 10) == "x" * 10 and clean("x" * 11, 10) == "x" * 10 + "… (1 more character)"
    )
    assert clean(b"caf\xc3\xa9 \x1b[31mred") == "café red"
    assert (
        clean(b"\xff\xfe\x00", content_type="text/\x1b[2Jplain") == "<binary, 3 bytes, text/plain>"
    )
    assert clean("ok", None) == "ok" and clean("") == ""
