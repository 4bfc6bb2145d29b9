"""SageMaker endpoints (``sagemaker://NAME``) through real boto3 and real SigV4 signing.

The server is ``examples/sagemaker_local.py`` on 127.0.0.1: a SageMaker-runtime-compatible
endpoint that recomputes each request's signature with botocore's signer and the fake
credentials (so a wrong secret, region or service is refused), serves an ONNX model of ours
through onnxruntime in the TF-Serving container's JSON, and can be told to throttle or to
fail in the model container. The credentials come from the environment only (the user's
AWS files and instance metadata are sealed off: tests/sagemaker_support.py).
"""

from __future__ import annotations

import json
import logging

import pytest
import torch
from sagemaker_support import (
    CREDENTIALS,
    KEY_ID,
    NAME,
    REGION,
    SECRET,
    TOKEN,
    linear_onnx,
    sealed_aws_env,
    start_server,
)

from xrobust.attacks import get_attack
from xrobust.data import as_tensors, load_dataset
from xrobust.errors import ConfigError, ModelError
from xrobust.models import SageMakerClassifier, as_classifier

pytest.importorskip("boto3")


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def onnx_file(digits, tmp_path_factory):
    x, y = as_tensors(digits.train)
    return linear_onnx(tmp_path_factory.mktemp("sm") / "linear.onnx", x.numpy(), y.numpy(), 10)


@pytest.fixture(scope="module")
def test_rows(digits):
    return as_tensors(digits.test, limit=64)


@pytest.fixture
def aws(monkeypatch, tmp_path):
    return sealed_aws_env(monkeypatch, tmp_path)


@pytest.fixture
def server(onnx_file, aws):
    with start_server(onnx_file) as s:
        yield s


def _clf(server, digits, **kw):
    kw = {"region": REGION, "endpoint_url": server.url, "batch_size": 16, **kw}
    return as_classifier(f"sagemaker://{kw.pop('name', NAME)}", digits.spec, **kw)


def _no_secret(*texts: str) -> None:
    for text in texts:
        for value in CREDENTIALS:
            assert value not in text, "a credential leaked"


def test_same_scores_accuracy_and_count_as_the_onnx_file(server, digits, onnx_file, test_rows):
    x, y = test_rows
    local = as_classifier(str(onnx_file), digits.spec)
    with _clf(server, digits, concurrency=3) as clf:
        assert isinstance(clf, SageMakerClassifier) and clf.source == "sagemaker"
        scores = clf.scores(x)
        assert torch.equal(scores, local.scores(x))  # float32 round-trips JSON exactly
        acc = (clf.predict(x) == y).float().mean().item()
        assert acc == (local.predict(x) == y).float().mean().item() > 0.8
        assert clf.queries == server.rows_received == 2 * len(x)
        assert server.requests == 2 * len(x) // 16 and clf.calls == server.requests
    # every request arrived signed for this key, date, region and service (and the server
    # recomputed each signature with botocore's signer: a wrong one is refused, below)
    for auth in server.authorizations:
        assert auth.startswith(f"AWS4-HMAC-SHA256 Credential={KEY_ID}/")
        assert f"/{REGION}/sagemaker/aws4_request, SignedHeaders=" in auth
        assert "x-amz-date" in auth and "x-amz-security-token" in auth


def test_square_gives_the_figures_of_the_onnx_file(server, digits, onnx_file, test_rows):
    x, y = test_rows[0][:12], test_rows[1][:12]
    opts = {"eps": 0.1, "queries": 40, "seed": 0}
    local = as_classifier(str(onnx_file), digits.spec)
    ref = get_attack("square", local, **opts).run(x, y)
    with _clf(server, digits) as clf:
        res = get_attack("square", clf, **opts).run(x, y)
        assert clf.queries == server.rows_received == int(res.queries.sum())
    assert torch.equal(res.x_adv, ref.x_adv) and torch.equal(res.pred_adv, ref.pred_adv)
    assert torch.equal(res.queries, ref.queries)
    assert res.robust_accuracy == ref.robust_accuracy < 1.0


def test_throttling_is_retried_by_botocore_and_counted_once(server, digits, test_rows):
    x = test_rows[0][:10]
    with _clf(server, digits, retries=3) as clf:
        server.throttle(2)  # two ThrottlingException answers, then the model answers
        clf.scores(x)
        assert clf.retried == 2 and server.refused == 2
        assert clf.queries == server.rows_received == 10  # not 30: retries are not rows
    with _clf(server, digits, retries=1, query_budget=15) as clf:
        server.throttle(5)
        with pytest.raises(ModelError, match=r"ThrottlingException.*2 attempt\(s\).*concurrency"):
            clf.scores(x)
        assert clf.queries == 0 and clf.remaining == 15  # refused before the model: refunded
        server.throttle(0)
        clf.scores(x)
        assert clf.queries == 10


def test_model_error_names_the_containers_status_and_message(server, digits, test_rows):
    x = test_rows[0][:5]
    with _clf(server, digits) as clf:
        server.fail(400, "input tensor has the wrong shape")
        with pytest.raises(ModelError, match=r"container .* failed with HTTP 400: .*wrong shape"):
            clf.scores(x)
        assert clf.queries == server.rows_received == 5  # the model saw them
        assert clf.retried == 0  # a model error is not retried


def test_missing_endpoint_wrong_secret_and_missing_credentials(
    server, digits, test_rows, monkeypatch, tmp_path
):
    x = test_rows[0][:4]
    with _clf(server, digits, name="no-such-endpoint") as clf:
        with pytest.raises(ConfigError, match=r"not found.*describe-endpoint --endpoint-name no-"):
            clf.scores(x)
        assert clf.queries == 0
    with (  # signed for another region
        _clf(server, digits, region="us-east-2") as clf,
        pytest.raises(ConfigError, match=r"refused the credentials.*InvalidSignature"),
    ):
        clf.scores(x)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-the-server-knows")
    with _clf(server, digits) as clf:
        with pytest.raises(ConfigError, match=r"InvalidSignatureException.*does not match"):
            clf.scores(x)
        assert clf.queries == 0 and server.rows_received == 0
    closed = server.url.rsplit(":", 1)[0] + ":9"  # the discard port: nothing listens
    with (
        as_classifier(f"sagemaker://{NAME}", digits.spec, endpoint_url=closed, retries=0) as clf,
        pytest.raises(ModelError, match=r"cannot reach the SageMaker endpoint"),
    ):
        clf.scores(x)
    assert clf.queries == 0  # never sent: given back
    sealed_aws_env(monkeypatch, tmp_path, credentials=False)
    with pytest.raises(ConfigError, match=r"no AWS credentials.*AWS_ACCESS_KEY_ID.*aws sso login"):
        _clf(server, digits)
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    with pytest.raises(ConfigError, match=r"no AWS region.*--aws-region"):
        as_classifier(f"sagemaker://{NAME}", digits.spec)


def test_no_credential_in_describe_errors_logs_or_the_report(
    server, digits, test_rows, tmp_path, caplog
):
    from xrobust.audit import AuditConfig, audit

    caplog.set_level(logging.DEBUG)  # botocore logs the signed headers (the token) at DEBUG
    x = test_rows[0][:4]
    with _clf(server, digits) as clf:
        texts = [repr(clf), json.dumps(clf.describe())]
        server.fail(500, f"cannot use token {TOKEN} with key {KEY_ID} / {SECRET}")
        with pytest.raises(ModelError) as err:
            clf.scores(x)
        assert "<redacted>" in str(err.value)
        texts.append(str(err.value))
        cfg = AuditConfig.from_dict(
            {
                "clean": {"n": 32},
                "adversarial": {
                    "n": 4, "norms": ["linf"], "eps": {"linf": [0.1]},
                    "options": {"square": {"queries": 20}}, "minimal_perturbation": False,
                },
                "corruption": {"enabled": False}, "explanations": {"enabled": False},
                "sanity": {"enabled": False},
            }
        )  # fmt: skip
        report = audit(clf, digits, cfg)
        paths = report.save(tmp_path / "report")
    texts += [p.read_text(errors="replace") for p in tmp_path.joinpath("report").rglob("*")
              if p.is_file()]  # fmt: skip
    assert "Authorization" in caplog.text or "aws4_request" in caplog.text  # it did log
    _no_secret(caplog.text, *texts)
    assert paths and json.loads((tmp_path / "report" / "report.json").read_text())


def test_bad_options_are_clear(aws, digits) -> None:
    for text, match in [
        ("sagemaker://", "sagemaker://NAME"),
        ("sagemaker://bad_name!", "letters, digits and hyphens"),
        ("sagemaker://a/b", "letters, digits and hyphens"),
    ]:
        with pytest.raises(ConfigError, match=match):
            as_classifier(text, digits.spec, region=REGION)
    with pytest.raises(ConfigError, match="JSON media type"):
        as_classifier(f"sagemaker://{NAME}", digits.spec, region=REGION, content_type="text/csv")
    with pytest.raises(ConfigError, match="signed with AWS credentials"):
        as_classifier(f"sagemaker://{NAME}", digits.spec, headers_env={"X-Key": "XR_KEY"})
    with pytest.raises(ConfigError, match=r"'regoin' \(did you mean 'region'\?\)"):
        as_classifier(f"sagemaker://{NAME}", digits.spec, regoin=REGION)
    with pytest.raises(ConfigError, match="'eu west' is not an AWS region name"):
        as_classifier(f"sagemaker://{NAME}", digits.spec, region="eu west")
    for v2 in ("v2", "v2-binary"):
        with pytest.raises(ConfigError, match=f"protocol '{v2}' .* is not offered for SageMaker"):
            as_classifier(f"sagemaker://{NAME}", digits.spec, protocol=v2)
    with pytest.raises(ConfigError, match="profile 'nobody' is not in the AWS config"):
        as_classifier(f"sagemaker://{NAME}", digits.spec, profile="nobody")
    clf = as_classifier(
        f"sagemaker://{NAME}", digits.spec, content_type="application/json; charset=utf-8"
    )
    d = clf.describe()
    assert d["region"] == REGION and d["endpoint_name"] == NAME and "headers_env" not in d
    assert (
        d["url"] == f"https://runtime.sagemaker.{REGION}.amazonaws.com/endpoints/{NAME}/invocations"
    )


def test_cli_attack_through_sagemaker(server, digits, capsys) -> None:
    from xrobust.cli import main

    base = ["attack", "--data", "digits", "--attack", "square", "--eps", "0.1", "--limit", "8",
            "--queries", "20", "--seed", "0", "--no-progress"]  # fmt: skip
    sm = ["--endpoint", f"sagemaker://{NAME}", "--endpoint-url", server.url,
          "--aws-region", REGION]  # fmt: skip
    assert main([*base, *sm, "--endpoint-batch-size", "8"]) == 0
    out = capsys.readouterr()
    assert "robust" in (out.out + out.err).lower() and server.rows_received > 8
    assert main([*base, "--endpoint", "sagemaker://missing-one", "--endpoint-url", server.url]) == 2
    err = capsys.readouterr().err
    assert "not found" in err and "describe-endpoint" in err
    http = "http://127.0.0.1:9/v1/models/m:predict"
    assert main([*base, "--endpoint", http, "--endpoint-url", server.url]) == 2
    assert "--endpoint-url applies to --endpoint sagemaker://NAME" in capsys.readouterr().err
    assert main([*base, *sm, "--header", "X-Key=XR_KEY"]) == 2
    err = capsys.readouterr().err
    assert "--header does not apply to a sagemaker:// endpoint" in err
    _no_secret(out.out, out.err, err)
    assert "Traceback" not in out.out + out.err + err


def test_the_example_server_runs_in_the_background_as_the_readme_does(
    onnx_file, aws, digits, test_rows, tmp_path
) -> None:
    import os
    import signal
    import subprocess
    import sys

    from sagemaker_support import ROOT

    script, url_file = str(ROOT / "examples" / "sagemaker_local.py"), tmp_path / "url.txt"
    proc = subprocess.Popen(
        [sys.executable, script, "--onnx", str(onnx_file), "--name", NAME, "--url-file",
         str(url_file)], env=dict(os.environ), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        wait = subprocess.run(
            [sys.executable, script, "--wait", str(url_file)], capture_output=True, text=True,
            timeout=90,
        )  # fmt: skip
        assert wait.returncode == 0, wait.stderr
        url = wait.stdout.strip()
        with as_classifier(f"sagemaker://{NAME}", digits.spec, endpoint_url=url) as clf:
            assert clf.predict(test_rows[0][:8]).shape == (8,)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0 and f"at {url}" in out and "Traceback" not in err
    assert not url_file.exists()  # removed when it stops
    _no_secret(out, err)


def test_module_examples_run() -> None:
    import doctest

    from xrobust.models import sagemaker

    res = doctest.testmod(sagemaker, optionflags=doctest.ELLIPSIS)
    assert res.attempted > 0 and res.failed == 0
