"""The CLI on black-box sources: ``--onnx`` and ``--endpoint`` in place of ``--model`` on
``xrobust attack``, ``explain`` and ``audit``, with clear errors for what does not fit."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("onnxruntime")

from xrobust.cli import main


@pytest.fixture(scope="module")
def run_and_onnx(tmp_path_factory):
    from xrobust.models.export import export_onnx
    from xrobust.trainer import TrainConfig, train

    root = tmp_path_factory.mktemp("src")
    run = root / "digits"
    train("digits", "small_cnn", TrainConfig(epochs=2, device="cpu"), run, progress=False)
    onnx = root / "m.onnx"
    export_onnx(str(run), onnx)
    return str(run), str(onnx)


def _json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--onnx", "{onnx}"], "needs --data"),
        (["--onnx", "{onnx}", "--model", "{run}", "--data", "digits"], "give one model"),
        (["--model", "{run}", "--query-budget", "5"], "--query-budget applies to --onnx"),
        (["--model", "{run}", "--white-box"], "--white-box applies to --onnx"),
        (
            ["--onnx", "{onnx}", "--data", "digits", "--header", "A=B"],
            "--header applies to --endpoint",
        ),
        (
            ["--endpoint", "http://127.0.0.1:9/x", "--data", "digits", "--header", "nope"],
            "NAME=ENV_VAR",
        ),
        (["--onnx", "{onnx}", "--data", "breast_cancer"], "shape"),
        ([], "nothing to analyse"),
    ],
)
def test_source_flag_errors(run_and_onnx, capsys, argv, words) -> None:
    run, onnx = run_and_onnx
    argv = [a.format(run=run, onnx=onnx) for a in argv]
    rc = main(["attack", *argv, "--attack", "pgd", "--eps", "0.1", "--limit", "8"])
    err = capsys.readouterr().err
    assert rc != 0 and words in err and "Traceback" not in err


def test_gradient_attack_on_onnx_names_query_only_attacks(run_and_onnx, capsys) -> None:
    _, onnx = run_and_onnx
    rc = main(["attack", "--onnx", onnx, "--data", "digits", "--attack", "pgd", "--eps", "0.1"])
    err = capsys.readouterr().err
    assert rc != 0 and "needs input gradients" in err and "need only queries" in err


def test_white_box_onnx_equals_the_run(run_and_onnx, capsys) -> None:
    from xrobust.errors import ConfigError
    from xrobust.models.onnx import import_onnx2torch

    try:
        import_onnx2torch()  # imports it without torchvision, as the library does
    except ConfigError:
        pytest.skip("onnx2torch is not installed")
    run, onnx = run_and_onnx
    common = ["--data", "digits", "--attack", "pgd", "--eps", "0.1", "--limit", "64", "--json"]
    assert main(["attack", "--model", run, *common]) == 0
    a = _json(capsys)
    assert main(["attack", "--onnx", onnx, "--white-box", *common]) == 0
    b = _json(capsys)
    assert (
        a["robust_accuracy"] == b["robust_accuracy"] and a["clean_accuracy"] == b["clean_accuracy"]
    )


def test_explain_and_audit_on_an_endpoint(run_and_onnx, tmp_path, capsys, monkeypatch) -> None:
    from xrobust.data import load_dataset
    from xrobust.models import as_classifier, serving

    _, onnx = run_and_onnx
    spec = load_dataset("digits").spec
    monkeypatch.setenv("XR_TEST_TOKEN", "s3cret-value")
    with serving.serve(as_classifier(onnx, spec)) as server:
        npz = tmp_path / "occ.npz"
        rc = main(
            ["explain", "--endpoint", server.url, "--data", "digits", "--method", "occlusion",
             "--samples", "0:2", "--save-npz", str(npz), "--header", "Authorization=XR_TOKEN_MISSING"]
        )  # fmt: skip
        err = capsys.readouterr().err
        assert rc != 0 and "XR_TOKEN_MISSING" in err  # names the variable, not a value
        rc = main(
            ["explain", "--endpoint", server.url, "--data", "digits", "--method", "occlusion",
             "--samples", "0:2", "--save-npz", str(npz), "--header", "Authorization=XR_TEST_TOKEN"]
        )  # fmt: skip
        assert rc == 0 and npz.is_file()
        assert server.last_headers.get("Authorization") == "s3cret-value"
        server.reset()
        cfg = tmp_path / "a.toml"
        cfg.write_text(
            "[adversarial]\nn = 8\nnorms = ['linf']\n[adversarial.options.square]\nqueries = 200\n"
            "[adversarial.options.hop_skip_jump]\nqueries = 200\n"
            "[corruption]\nn = 32\nseverities = [2]\n"
            "[explanations]\nn = 1\nn_metrics = 1\nmethods = ['occlusion']\n"
            "black_box_methods = []\nrandomisation = false\nstability = false\n"
            "deletion_insertion = false\n[sanity]\nenabled = false\n"
            "[requirements]\nmin_clean_accuracy = 0.5\nsanity_checks_pass = false\n"
        )
        out = tmp_path / "rep"
        rc = main(
            ["audit", "--endpoint", server.url, "--data", "digits", "--config", str(cfg),
             "--out", str(out), "--no-progress", "--header", "Authorization=XR_TEST_TOKEN"]
        )  # fmt: skip
        text = capsys.readouterr().out
        assert rc == 0, text
        rep = json.loads((out / "report.json").read_text())
        assert rep["queries"]["total"] == server.rows_received
        assert f"queries: {server.rows_received:,}" in text
    for f in out.iterdir():
        assert "s3cret-value" not in f.read_text(errors="replace")


def test_audit_query_budget_on_the_cli(run_and_onnx, tmp_path, capsys) -> None:
    _, onnx = run_and_onnx
    cfg = tmp_path / "a.toml"
    cfg.write_text(
        "[adversarial]\nenabled = false\n[corruption]\nn = 64\n[sanity]\nenabled = false\n"
    )
    out = tmp_path / "rep"
    rc = main(
        ["audit", "--onnx", onnx, "--data", "digits", "--config", str(cfg), "--out", str(out),
         "--no-progress", "--query-budget", "700"]
    )  # fmt: skip
    text = capsys.readouterr().out
    # the budget ran out in the corruption section: the audit is incomplete, not passed
    assert rc == 3, text
    assert "audit INCOMPLETE" in text and "corruption: partial" in text
    assert "queries: " in text and "of a budget of 700" in text
    assert "corruption: partial" in text
    rep = json.loads((out / "report.json").read_text())
    assert rep["queries"]["exhausted"] and rep["queries"]["total"] <= 700


def test_endpoint_answering_probabilities_partial_audit_is_incomplete(
    run_and_onnx, tmp_path, capsys
) -> None:
    """The issue's case on a real server: with the full budget the sanity checks run and
    fail (the server answers softmax probabilities, exit 1); with a budget that runs out
    before them the audit used to print "audit passed" and exit 0. Now: exit 3, INCOMPLETE."""
    import numpy as np

    from xrobust.data import load_dataset
    from xrobust.models import as_classifier, serving

    _, onnx = run_and_onnx
    clf = as_classifier(onnx, load_dataset("digits").spec)

    def softmax(x: np.ndarray) -> np.ndarray:
        z = clf.scores(x).numpy().astype(np.float64)
        e = np.exp(z - z.max(1, keepdims=True))
        return (e / e.sum(1, keepdims=True)).astype(np.float32)

    cfg = tmp_path / "a.toml"
    cfg.write_text(
        "[adversarial]\nn = 8\nnorms = ['linf']\nminimal_perturbation = false\n"
        "[adversarial.options.square]\nqueries = 40\n"
        "[corruption]\nn = 16\nseverities = [1]\ncorruptions = ['gaussian_noise']\n"
        "[explanations]\nenabled = false\n[sanity]\nn = 8\n"
    )
    with serving.serve(softmax) as server:
        base = ["audit", "--endpoint", server.url, "--data", "digits", "--config", str(cfg),
                "--no-progress"]  # fmt: skip
        rc = main([*base, "--out", str(tmp_path / "full")])
        out = capsys.readouterr().out
        assert rc == 1 and "FAILED sanity_checks_pass" in out and "logits_not_probabilities" in out
        rc = main([*base, "--out", str(tmp_path / "cut"), "--query-budget", "450"])
        out = capsys.readouterr().out
    assert rc == 3, out
    assert "audit INCOMPLETE" in out and "audit passed" not in out
    assert "NOT EVALUATED sanity_checks_pass" in out
    rep = json.loads((tmp_path / "cut" / "report.json").read_text())
    assert rep["verdict"] == "incomplete" and rep["passed"] is False and rep["missing"]


def test_attack_stopped_by_the_budget_exits_3(run_and_onnx, capsys) -> None:
    _, onnx = run_and_onnx
    rc = main(["attack", "--onnx", onnx, "--data", "digits", "--attack", "square", "--eps", "0.1",
               "--limit", "16", "--query-budget", "500", "--no-progress"])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 3 and "PARTIAL" in out and "robust accuracy at most" in out


def test_minimal_perturbation_cut_by_the_budget_makes_the_audit_incomplete(run_and_onnx, tmp_path) -> None:
    """The black-box minimal perturbation (HopSkipJump) stopped by the query budget used to
    leave the section "ok" (and the median "> 0.3"); now the section is partial and the
    verdict incomplete."""
    from xrobust.audit import AuditConfig, audit
    from xrobust.data import load_dataset
    from xrobust.models import as_classifier

    _, onnx = run_and_onnx
    ds = load_dataset("digits")
    cfg = AuditConfig.from_dict(
        {"adversarial": {"n": 8, "norms": ["linf"], "options": {"square": {"queries": 20},
                                                               "hop_skip_jump": {"queries": 400}}},
         "corruption": {"enabled": False}, "explanations": {"enabled": False},
         "sanity": {"enabled": False}, "requirements": {"sanity_checks_pass": False,
                                                        "min_clean_accuracy": 0.5}}
    )  # fmt: skip
    full = audit(as_classifier(onnx, ds.spec), ds, cfg)
    assert full.verdict == "passed"
    used = full.queries["total"]
    rep = audit(as_classifier(onnx, ds.spec, query_budget=used - 600), ds, cfg)
    adv = rep.sections["adversarial"]
    assert adv.status == "partial" and "minimal perturbation" in adv.reason
    assert rep.verdict == "incomplete" and rep.exit_code == 3
