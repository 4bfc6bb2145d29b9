"""One ONNX model audited directly and through real model servers, started here on
127.0.0.1: KServe's ModelServer over V1 (TF Serving JSON) and V2 (the Open Inference
Protocol), and MLServer over V2, each serving the file through onnxruntime
(``examples/serve_kserve.py``, ``examples/serve_mlserver.py``). The same black-box audit
(JSON, and KServe's binary tensor extension too) gives the same clean accuracy and the same
query-only attack figures everywhere, and each
report's query count equals the rows the server's model saw (counted server-side).

The servers run under their own venvs (``scripts/setup.sh`` makes them; KServe and MLServer
pin protobuf 6 and their own FastAPI, which the main venv cannot share); without one, its
tests are skipped with the reason."""

from __future__ import annotations

import json

import pytest
import torch
from servers.launch import serve, server_python
from servers.onnx_model import export_nhwc
from torch import nn

pytest.importorskip("onnxruntime")

from xrobust.audit import AuditConfig, audit
from xrobust.data import as_tensors, load_dataset
from xrobust.models import as_classifier, build_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", size=8)  # 8x8: small requests, fast servers


@pytest.fixture(scope="module")
def onnx_file(digits, tmp_path_factory):
    torch.manual_seed(0)
    m = build_model("small_cnn", digits.spec)
    x, y = as_tensors(digits.train, limit=512)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    m.train()
    for _ in range(40):  # enough that its predictions are not all one class
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return export_nhwc(m, digits.spec, tmp_path_factory.mktemp("served") / "digits_nhwc.onnx")


def _server(kind, onnx_file, tmp_path_factory):
    python, why = server_python(kind)
    if python is None:
        pytest.skip(why)
    with serve(kind, python, onnx_file, tmp_path_factory.mktemp(kind)) as s:
        yield s


@pytest.fixture(scope="module")
def kserve(onnx_file, tmp_path_factory):
    yield from _server("kserve", onnx_file, tmp_path_factory)


@pytest.fixture(scope="module")
def mlserver(onnx_file, tmp_path_factory):
    yield from _server("mlserver", onnx_file, tmp_path_factory)


def _cfg() -> AuditConfig:
    return AuditConfig.from_dict(
        {
            "clean": {"n": 100},
            "adversarial": {
                "n": 12,
                "norms": ["linf"],
                "eps": {"linf": [0.05, 0.1]},
                "black_box_attacks": ["square"],
                "headline_only": [],
                "options": {"square": {"queries": 40}},
                "minimal_perturbation": False,
            },
            "corruption": {"enabled": False},
            "explanations": {"enabled": False},
            "sanity": {"enabled": False},
        }
    )


def _figures(rep) -> tuple:
    """Clean accuracy and the adversarial section's figures (timings left out)."""
    adv = json.loads(json.dumps(rep.sections["adversarial"].data))
    _drop_times(adv)
    return rep.sections["clean"].data["accuracy"], adv


def _drop_times(node) -> None:
    if isinstance(node, dict):
        for k in [k for k in node if "time" in k or k.endswith("_s") or k == "seconds"]:
            del node[k]
        for v in node.values():
            _drop_times(v)
    elif isinstance(node, list):
        for v in node:
            _drop_times(v)


@pytest.fixture(scope="module")
def direct(digits, onnx_file):
    clf = as_classifier(onnx_file, digits.spec, batch_size=64)
    assert clf.describe()["layout"] == "NHWC"
    rep = audit(clf, digits, _cfg())
    assert rep.sections["adversarial"].status == "ok"
    return _figures(rep)


def _audit_through(server, url, digits, **kw):
    server.reset()
    with as_classifier(url, digits.spec, layout="NHWC", batch_size=64, **kw) as clf:
        rep = audit(clf, digits, _cfg())
    assert rep.model["classifier"]["source"] == "endpoint"
    # every row the server's model answered is in the report, and no other
    assert rep.queries["total"] == server.rows() == clf.queries > 0
    assert sum(rep.queries["per_section"].values()) == server.rows()
    return rep


def test_kserve_v1_gives_the_onnx_figures(kserve, digits, direct) -> None:
    rep = _audit_through(kserve, kserve.v1_url, digits)
    assert _figures(rep) == direct


def test_kserve_v2_gives_the_onnx_figures(kserve, digits, direct) -> None:
    rep = _audit_through(kserve, kserve.v2_url, digits, protocol="v2")
    assert _figures(rep) == direct
    v2 = rep.model["classifier"]["v2"]
    assert (v2["input_name"], v2["datatype"]) == ("input", "FP32")  # from KServe's metadata


def test_kserve_v2_binary_gives_the_onnx_figures(kserve, digits, direct) -> None:
    rep = _audit_through(kserve, kserve.v2_url, digits, protocol="v2-binary", concurrency=2)
    assert _figures(rep) == direct
    assert rep.model["classifier"]["v2"]["binary"] is True


def test_mlserver_v2_gives_the_onnx_figures(mlserver, digits, direct) -> None:
    rep = _audit_through(mlserver, mlserver.v2_url, digits, protocol="v2", concurrency=2)
    assert _figures(rep) == direct


def test_real_servers_refuse_clearly(kserve, mlserver, digits) -> None:
    from xrobust.errors import ConfigError, ModelError

    for server in (kserve, mlserver):
        missing = server.v2_url.replace("/digits", "/nope")
        with pytest.raises(ModelError, match=r"model for .*/nope is not ready"):
            as_classifier(missing, digits.spec, protocol="v2", layout="NHWC", retries=0)
        # NCHW rows for the NHWC model: refused from the metadata, before any query
        with pytest.raises(ConfigError, match=r"\[-1, 8, 8, 1\].*layout='NHWC'"):
            as_classifier(server.v2_url, digits.spec, protocol="v2")
    # MLServer does not speak the binary tensor extension over REST: it says what to try
    clf = as_classifier(
        mlserver.v2_url, digits.spec, protocol="v2-binary", layout="NHWC", retries=0
    )
    x, _ = as_tensors(digits.test, limit=4)
    with pytest.raises(ModelError, match=r"HTTP 500.*try protocol 'v2'"):
        clf.scores(x)
