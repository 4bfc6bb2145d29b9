"""TensorFlow Lite models as a source, and the deployed model audited beside its source.

A tiny Keras CNN is trained once (session fixture) and converted to ONNX, a float32 and a
full-int8 ``.tflite`` (examples/keras_digits.py). The classifier is checked against Keras
and against the interpreter driven by hand (quantization with the file's scale and zero
point); the "deployed" section's figures are recomputed here from the classifiers, with
the seeds and options it records.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

tf = pytest.importorskip("tensorflow", reason="TensorFlow is not installed (xrobust[tensorflow])")
pytest.importorskip("ai_edge_litert", reason="ai_edge_litert is not installed (xrobust[tflite])")
pytest.importorskip("tf2onnx", reason="tf2onnx is not installed (xrobust[tensorflow])")

from xrobust.audit import AuditConfig, compare_deployed  # noqa: E402
from xrobust.audit._runtime import chunk_seed  # noqa: E402
from xrobust.audit.sections.deployed import Comparison, compare, findings  # noqa: E402
from xrobust.data import as_tensors, load_dataset  # noqa: E402
from xrobust.errors import ConfigError, DataError, ModelError, QueryBudgetExhausted  # noqa: E402
from xrobust.models import as_classifier  # noqa: E402
from xrobust.models.tflite import MAX_INTERPRETERS, TensorQuantization  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))
import keras_digits as kd  # noqa: E402

keras = tf.keras


@pytest.fixture(scope="session")
def art(tmp_path_factory):
    """The digits data (8x8) and one Keras CNN as Keras, ONNX, float and int8 TFLite."""
    folder = tmp_path_factory.mktemp("tflite")
    ds = load_dataset("digits", size=8)
    x_train, y_train = as_tensors(ds.train)
    x, y = as_tensors(ds.test, limit=96)
    model = kd.train_cnn(x_train, y_train, epochs=3, filters=8)
    return {
        "ds": ds, "x": x, "y": y, "keras": model,
        "onnx": kd.to_onnx(model, folder / "model.onnx"),
        "float": kd.to_tflite(model, folder / "model_float.tflite"),
        "int8": kd.to_tflite(model, folder / "model_int8.tflite", int8_rows=x_train[:100]),
        "folder": folder,
    }  # fmt: skip


def _interpreter(path):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_path=str(path))


def _by_hand(path, x_nchw: torch.Tensor) -> np.ndarray:
    """The interpreter driven directly: NHWC, quantized input, dequantized output."""
    it = _interpreter(path)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    a = x_nchw.permute(0, 2, 3, 1).numpy().astype(np.float32)
    if inp["dtype"] in (np.int8, np.uint8):
        scale, zp = inp["quantization"]
        v = a / np.float32(scale)
        q = np.sign(v) * np.floor(np.abs(v) + 0.5) + zp  # TfLiteRound: halves away from zero
        info = np.iinfo(inp["dtype"])
        a = np.clip(q, info.min, info.max).astype(inp["dtype"])
    it.resize_tensor_input(inp["index"], list(a.shape))
    it.allocate_tensors()
    it.set_tensor(inp["index"], a)
    it.invoke()
    o = it.get_tensor(out["index"])
    if out["dtype"] in (np.int8, np.uint8):
        scale, zp = out["quantization"]
        o = (o.astype(np.float32) - zp) * np.float32(scale)
    return o


# ---------------------------------------------------------------------- the classifier
def test_float_model_answers_as_keras(art) -> None:
    clf = as_classifier(art["float"], spec=art["ds"].spec)
    got = clf.scores(art["x"]).numpy()
    want = art["keras"].predict(kd.to_nhwc(art["x"]), verbose=0)
    assert np.abs(got - want).max() < 1e-4
    d = clf.describe()
    assert (d["source"], d["layout"], d["quantized"], d["output"]) == (
        "tflite",
        "NHWC",
        False,
        "logits",
    )
    assert d["input_tensor"]["dtype"] == "float32" and "scale" not in d["input_tensor"]
    assert clf.queries == len(art["x"]) and not clf.differentiable


def test_int8_model_quantizes_with_the_files_scale_and_zero_point(art) -> None:
    clf = as_classifier(art["int8"], spec=art["ds"].spec)
    np.testing.assert_array_equal(clf.scores(art["x"]).numpy(), _by_hand(art["int8"], art["x"]))
    it = _interpreter(art["int8"])
    (s_in, z_in), (s_out, z_out) = (
        it.get_input_details()[0]["quantization"], it.get_output_details()[0]["quantization"]
    )  # fmt: skip
    d = clf.describe()
    assert d["quantized"] is True
    assert d["input_tensor"] == {"name": d["input_tensor"]["name"], "dtype": "int8",
                                 "scale": pytest.approx(s_in), "zero_point": z_in}  # fmt: skip
    assert d["output_tensor"]["dtype"] == "int8" and d["output_tensor"]["zero_point"] == z_out
    assert d["output_tensor"]["scale"] == pytest.approx(s_out)
    # quantization changes few decisions of this model
    same = clf.predict(art["x"]) == as_classifier(art["float"], spec=art["ds"].spec).predict(
        art["x"]
    )
    assert float(same.float().mean()) >= 0.9


def test_quantize_round_trip_by_hand() -> None:
    q = TensorQuantization("t", "int8", 0.5, -3)
    x = np.array([-100.0, -0.25, 0.25, 0.75, 1.0, 100.0], dtype=np.float32)
    # x / 0.5 = -200, -0.5, 0.5, 1.5, 2, 200 -> round half away: -200, -1, 1, 2, 2, 200 -> +zp, clip
    np.testing.assert_array_equal(q.quantize(x), np.array([-128, -4, -2, -1, -1, 127], np.int8))
    np.testing.assert_allclose(q.dequantize(q.quantize(x)), [-62.5, -0.5, 0.5, 1.0, 1.0, 65.0])
    u = TensorQuantization("u", "uint8", 1 / 255, 0)
    assert u.quantize(np.array([0.0, 1.0, 2.0], np.float32)).tolist() == [0, 255, 255]
    assert not TensorQuantization("f", "float32", 0.0, 0).quantized


def test_dynamic_batch_one_interpreter_per_size(art) -> None:
    clf = as_classifier(art["int8"], spec=art["ds"].spec, batch_size=32)
    x = art["x"][:40]
    full = clf.scores(x)  # chunks of 32 and 8
    parts = torch.cat([clf.scores(x[:1]), clf.scores(x[1:6]), clf.scores(x[6:40])])
    torch.testing.assert_close(parts, full, rtol=0, atol=0)
    assert clf.describe()["fixed_batch"] is None
    assert sorted(clf._pool) == [1, 2, 5, 8, 32] and len(clf._pool) <= MAX_INTERPRETERS
    for n in range(3, 3 + MAX_INTERPRETERS):
        clf.scores(x[:n])
    assert len(clf._pool) == MAX_INTERPRETERS
    assert clf.queries == 80 + sum(range(3, 3 + MAX_INTERPRETERS))
    with clf.budget(10), pytest.raises(QueryBudgetExhausted):
        clf.scores(x[:11])


def test_fixed_batch_and_signatures(art, tmp_path) -> None:
    keras.utils.set_random_seed(0)
    fixed = keras.Sequential([keras.Input((8, 8, 1), batch_size=4), keras.layers.Flatten(),
                              keras.layers.Dense(10)])  # fmt: skip
    path = kd.to_tflite(fixed, tmp_path / "fixed.tflite")
    clf = as_classifier(path, spec=art["ds"].spec)
    assert clf.fixed_batch == 4
    want = fixed.predict(kd.to_nhwc(art["x"][:4]), verbose=0)
    np.testing.assert_allclose(clf.scores(art["x"][:3]).numpy(), want[:3], atol=1e-5)
    assert clf.scores(art["x"][:10]).shape == (10, 10)

    class Two(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="x")])
        def scores(self, x):
            return {"logits": tf.reshape(x, [-1, 64])[:, :10] * 2.0}

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="x")])
        def other(self, x):
            return {"logits": tf.reshape(x, [-1, 64])[:, 10:20]}

    m = Two()
    conv = tf.lite.TFLiteConverter.from_concrete_functions(
        [m.scores.get_concrete_function(), m.other.get_concrete_function()], m
    )
    two = tmp_path / "two.tflite"
    two.write_bytes(conv.convert())
    with pytest.raises(ConfigError, match=r"2 signatures \(other, scores\).*signature=NAME"):
        as_classifier(two, spec=art["ds"].spec)
    with pytest.raises(ConfigError, match="no signature 'nope'"):
        as_classifier(two, spec=art["ds"].spec, signature="nope")
    clf = as_classifier(two, spec=art["ds"].spec, signature="scores")
    want = kd.to_nhwc(art["x"][:5]).reshape(5, 64)[:, :10] * 2.0
    np.testing.assert_allclose(clf.scores(art["x"][:5]).numpy(), want, atol=1e-6)
    assert clf.describe()["signatures"] == ["other", "scores"]


def test_uint8_softmax_and_several_outputs(art, tmp_path) -> None:
    spec = art["ds"].spec
    conv = tf.lite.TFLiteConverter.from_keras_model(art["keras"])
    rows = kd.to_nhwc(art["x"][:50]).astype(np.float32)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([rows[i : i + 1]] for i in range(len(rows)))
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.uint8
    u8 = tmp_path / "u8.tflite"
    u8.write_bytes(conv.convert())
    clf = as_classifier(u8, spec=spec)
    assert clf.describe()["input_tensor"]["dtype"] == "uint8" and clf.quantized
    np.testing.assert_array_equal(clf.scores(art["x"][:20]).numpy(), _by_hand(u8, art["x"][:20]))

    inp = keras.Input((8, 8, 1))
    flat = keras.layers.Flatten()(inp)
    probs = keras.layers.Dense(10, activation="softmax")(flat)
    aux = keras.layers.Dense(3)(flat)
    soft = kd.to_tflite(keras.Model(inp, probs), tmp_path / "soft.tflite")
    assert as_classifier(soft, spec=spec).output == "probabilities"
    two = kd.to_tflite(keras.Model(inp, [aux, probs]), tmp_path / "two_out.tflite")
    clf = as_classifier(two, spec=spec)  # the only output of shape (N, 10)
    assert clf.scores(art["x"][:3]).shape == (3, 10) and len(clf.output_names) == 2
    with pytest.raises(ConfigError, match="none is clearly the class scores"):
        as_classifier(two, input_shape=(1, 8, 8))
    other = next(k for k in clf.output_names if k != clf.output_key)
    with pytest.raises(DataError, match="10 classes but the model"):
        as_classifier(two, spec=spec, output_name=other)


def test_bad_files_shapes_and_outputs(art, tmp_path) -> None:
    spec = art["ds"].spec
    with pytest.raises(ModelError, match="does not exist"):
        as_classifier(tmp_path / "none.tflite", spec=spec)
    (tmp_path / "dir.tflite").mkdir()
    with pytest.raises(ModelError, match="is a folder"):
        as_classifier(tmp_path / "dir.tflite", spec=spec)
    junk = tmp_path / "junk.tflite"
    junk.write_bytes(b"not a model at all, just text")
    with pytest.raises(ModelError, match="not a TensorFlow Lite model"):
        as_classifier(junk, spec=spec)
    cut = tmp_path / "cut.tflite"
    cut.write_bytes(Path(art["float"]).read_bytes()[:400])
    with pytest.raises(ModelError, match="TensorFlow Lite cannot load"):
        as_classifier(cut, spec=spec)
    with pytest.raises(DataError, match=r"\(1, 28, 28\).*fits neither NCHW"):
        as_classifier(art["float"], spec=load_dataset("digits").spec)
    with pytest.raises(ConfigError, match="do not apply to a TensorFlow Lite model"):
        as_classifier(art["float"], spec=spec, providers=["CPUExecutionProvider"])
    feat = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(2, 3, padding="same")])
    with pytest.raises(ModelError, match=r"output .* has shape \(\?, 8, 8, 2\); a classifier"):
        as_classifier(kd.to_tflite(feat, tmp_path / "feat.tflite"), spec=spec)
    with pytest.raises(DataError, match="3 classes but the model"):
        as_classifier(art["float"], input_shape=(1, 8, 8), num_classes=3)


# ---------------------------------------------------------------------- deployed section
def test_findings_follow_the_stated_thresholds() -> None:
    n = 100
    same = Comparison(n, 0.90, 0.90, 0, 0)
    assert same.threshold == pytest.approx(0.01) and not same.significant
    worse = Comparison(n, 0.80, 0.90, 0, 10)  # 10 examples only the source gets right
    se = math.sqrt(10 - 100 / n) / n
    assert worse.standard_error == pytest.approx(se) and worse.threshold == pytest.approx(2 * se)
    assert worse.significant
    _, text = findings(worse, same)
    assert text.startswith("Quantization (or conversion) made the model less accurate")
    grads = Comparison(n, 0.40, 0.60, 0, 20)
    stated, text = findings(same, same, grads, Comparison(n, 0.40, 0.40, 0, 0))
    assert "only harder to attack with gradients" in text
    assert [f["finding"] for f in stated] == ["as", "as", "gradients", "no"]
    _, text = findings(same, same)
    assert text.startswith("No measurable change")
    c = compare(torch.tensor([1, 1, 0, 0]), torch.tensor([1, 0, 1, 1]))
    assert (c.a, c.b, c.only_a, c.only_b) == (0.5, 0.75, 1, 2)


def _attack_by_hand(name, clf, eps, x, y, seed, options):
    from xrobust.attacks import get_attack

    opts = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    return get_attack(name, clf, eps=eps, seed=seed, **opts).run(x, y)


def test_deployed_section_matches_a_direct_computation(art, tmp_path) -> None:
    from xrobust.models.onnx import import_onnx2torch

    try:
        import_onnx2torch()
    except ConfigError as exc:
        pytest.skip(f"the transfer part needs onnx2torch: {exc}")
    cfg = AuditConfig.from_dict(
        {"batch_size": 32, "deployed": {"n": 48, "queries": 40, "eps": 0.1},
         "sanity": {"enabled": False}}
    )  # fmt: skip
    report = compare_deployed(art["int8"], art["onnx"], art["ds"], cfg)
    sec = report.sections["deployed"]
    assert sec.status == "ok" and report.verdict == "incomplete"  # evidence, not a requirement
    d = sec.data
    x_all, y_all = as_tensors(art["ds"].test)
    idx = torch.tensor(d["indices"])
    x, y = x_all[idx], y_all[idx]
    dep = as_classifier(art["int8"], spec=art["ds"].spec)
    src = as_classifier(art["onnx"], spec=art["ds"].spec)
    white = src.to_torch(x_all[:64])
    dp, sp = dep.predict(x), src.predict(x)
    assert d["clean"]["deployed"] == pytest.approx(float((dp == y).double().mean()))
    assert d["clean"]["source"] == pytest.approx(float((sp == y).double().mean()))
    assert d["clean"]["agreement"] == pytest.approx(float((dp == sp).double().mean()))
    rows = {k: [] for k in ("dep", "src", "white", "transfer", "fooled")}
    for i, c in enumerate(torch.arange(len(idx)).split(32)):
        torch.manual_seed(chunk_seed(cfg.seed, "deployed beside its source", i))
        seed, wseed = d["robust"]["seeds"][i], d["white_box"]["seeds"][i]
        a = _attack_by_hand("square", dep, 0.1, x[c], y[c], seed, d["robust"]["options"])
        b = _attack_by_hand("square", src, 0.1, x[c], y[c], seed, d["robust"]["options"])
        w = _attack_by_hand("apgd", white, 0.1, x[c], y[c], wseed, d["white_box"]["options"])
        rows["dep"].append(a.pred_adv == y[c])
        rows["src"].append(b.pred_adv == y[c])
        rows["white"].append(w.pred_adv == y[c])
        rows["transfer"].append(dep.predict(w.x_adv) == y[c])
        rows["fooled"].append((w.pred_adv != y[c]) & (w.pred_clean == y[c]))
    r = {k: torch.cat(v) for k, v in rows.items()}
    assert d["robust"]["deployed"] == pytest.approx(float(r["dep"].double().mean()))
    assert d["robust"]["source"] == pytest.approx(float(r["src"].double().mean()))
    assert d["white_box"]["source"] == pytest.approx(float(r["white"].double().mean()))
    t = d["transfer"]
    assert t["deployed"] == pytest.approx(float(r["transfer"].double().mean()))
    k = int(r["fooled"].sum())
    assert t["source_fooled"] == k
    assert t["also_fool_deployed"] == int((r["fooled"] & ~r["transfer"]).sum())
    # the paired threshold of the clean comparison, by hand
    b_, c_ = int(((dp == y) & (sp != y)).sum()), int(((sp == y) & (dp != y)).sum())
    se = math.sqrt(b_ + c_ - (b_ - c_) ** 2 / len(y)) / len(y)
    assert d["clean"]["threshold"] == pytest.approx(max(1 / len(y), 2 * se), abs=1e-6)
    assert d["robust"]["bound"] == "upper" and d["white_box"]["bound"] == "measured"
    assert d["summary"] and len(d["findings"]) == 4
    folder = report.save(tmp_path / "rep")
    assert "7. Deployed model beside its source" in folder["html"].read_text()
    assert "Deployed vs source" in folder["md"].read_text()


def test_cli_audits_the_tflite_beside_its_source_from_toml(art, tmp_path, capsys) -> None:
    from xrobust.audit import load_report
    from xrobust.cli import main

    toml = tmp_path / "audit.toml"
    toml.write_text(
        f"[deployed]\nsource = {json.dumps(str(art['onnx']))}\nn = 16\nqueries = 20\n"
        "[adversarial]\nenabled = false\n[corruption]\nenabled = false\n"
        "[explanations]\nenabled = false\n[sanity]\nenabled = false\n"
        "[requirements]\nsanity_checks_pass = false\nmin_clean_accuracy = 0.5\n"
    )
    out = tmp_path / "rep"
    code = main(["audit", "--tflite", str(art["int8"]), "--data", "digits", "--resize",
                 "--config", str(toml), "--out", str(out), "--no-progress"])  # fmt: skip
    text = capsys.readouterr().out
    assert code == 0, text
    assert "Deployed vs source, clean accuracy" in text and "audit passed" in text
    rep = load_report(out)  # schema and consistency checked
    d = rep.sections["deployed"].data
    assert d["deployed"]["quantized"] is True and d["source"]["source"] == "onnx"
    assert rep.model["classifier"]["source"] == "tflite"
    assert main(["audit", "--tflite", str(art["int8"]), "--data", "digits", "--white-box"]) == 2
    assert "a TensorFlow Lite model is a black box" in capsys.readouterr().err
    missing = str(tmp_path / "missing.onnx")
    args = ["audit", "--tflite", str(art["int8"]), "--data", "digits", "--resize", "--source"]
    assert main([*args, missing, "--out", str(tmp_path / "r2"), "--no-progress"]) == 2
    assert f"the source model {missing!r} (deployed.source, --source) does not exist" in (
        capsys.readouterr().err
    )


def test_litert_delegate_banner_is_kept_out_of_stderr(art) -> None:
    """LiteRT's C++ runtime prints "INFO: Created TensorFlow Lite XNNPACK delegate" on the
    process's stderr when an interpreter first runs, whatever TF_CPP_MIN_LOG_LEVEL says: the
    classifier holds it back, and passes on what else was written meanwhile."""
    import subprocess
    import sys

    script = (
        "import os, sys\n"
        "from xrobust.data import as_tensors, load_dataset\n"
        "from xrobust.models import as_classifier\n"
        "from xrobust.models.tflite import _without_delegate_banner\n"
        "if sys.argv[2] == 'bare':  # LiteRT alone, as the control: it prints once a process\n"
        "    from ai_edge_litert.interpreter import Interpreter\n"
        "    raw = Interpreter(model_path=sys.argv[1]); raw.allocate_tensors(); raw.invoke()\n"
        "ds = load_dataset('digits', size=8)\n"
        "x, _ = as_tensors(ds.test, limit=5)\n"
        "clf = as_classifier(sys.argv[1], spec=ds.spec)\n"
        "clf.scores(x); clf.scores(x[:3])\n"
        "with _without_delegate_banner():\n"
        "    os.write(2, b'kept line\\n')\n"
    )
    for path in (art["float"], art["int8"]):
        for how, banners in (("bare", 1), ("xrobust", 0)):
            r = subprocess.run(
                [sys.executable, "-c", script, str(path), how],
                capture_output=True, text=True, timeout=120,
            )  # fmt: skip
            assert r.returncode == 0, r.stderr[-2000:]
            assert "kept line" in r.stderr
            assert r.stderr.count("XNNPACK delegate") == banners, (how, r.stderr)
