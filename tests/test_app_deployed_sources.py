# ruff: noqa: F811  (demo_cache is a fixture imported from app_support)
"""The dashboard's deployed-model sources: a TensorFlow Lite file (float and int8, by path),
an Open Inference Protocol (V2) endpoint and a SageMaker endpoint (real boto3, SigV4-signed,
against the local signing server), each picked in the sidebar and answering the black-box
page with the predictions the library gives for the same classifier."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("streamlit")
pytest.importorskip("onnxruntime")

from app_support import demo_cache, errors, metrics, new_app, no_exception  # noqa: F401

ROOT = Path(__file__).resolve().parents[1]


def _sidebar(at) -> str:
    return " ".join(c.value for c in at.sidebar.caption)


def _blackbox_page(at) -> int:
    """Open the black-box page; the queries it shows."""
    at.switch_page("app_pages/blackbox.py").run()
    no_exception(at)
    assert errors(at) == []
    return int(metrics(at)["Model queries behind this page"].replace(",", ""))


@pytest.fixture(scope="module")
def tflite_files(tmp_path_factory):
    """A Keras softmax regression on the 28x28 digits as float and int8 .tflite files."""
    pytest.importorskip("tensorflow")
    pytest.importorskip("ai_edge_litert")
    sys.path.insert(0, str(ROOT / "examples"))
    try:
        import keras_digits as kd
    finally:
        sys.path.pop(0)
    import keras

    from xrobust.data import as_tensors, load_dataset

    ds = load_dataset("digits")
    x, y = as_tensors(ds.train, limit=512)
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    model.compile(
        optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    model.fit(kd.to_nhwc(x), y.numpy(), epochs=5, batch_size=64, verbose=0)
    folder = tmp_path_factory.mktemp("tflite_app")
    return {
        "float": kd.to_tflite(model, folder / "model_float.tflite"),
        "int8": kd.to_tflite(model, folder / "model_int8.tflite", int8_rows=x[:100]),
        "ds": ds,
    }


def _pick_tflite(path) -> object:
    at = new_app().run()
    at.radio(key="m_source").set_value("TensorFlow Lite file").run()
    at.radio(key="m_tflite_how").set_value("Path").run()
    at.text_input(key="m_tflite_path").input(str(path)).run()
    no_exception(at)
    assert errors(at) == []
    return at


def test_tflite_float_and_int8_files_as_sources(demo_cache, tflite_files) -> None:
    from xrobust.data import as_tensors
    from xrobust.models import as_classifier

    for kind in ("float", "int8"):
        at = _pick_tflite(tflite_files[kind])
        side = _sidebar(at)
        assert "source: tflite" in side and "differentiable: no" in side, side
        assert ("quantized: int8 input" in side) == (kind == "int8"), side
        clf = at.session_state["_xr_model"].classifier
        x, _ = as_tensors(tflite_files["ds"].test, limit=64)
        direct = as_classifier(tflite_files[kind], spec=tflite_files["ds"].spec)
        assert np.array_equal(clf.predict(x).numpy(), direct.predict(x).numpy())
        assert _blackbox_page(at) > 0


def test_a_missing_tflite_path_is_a_message(demo_cache, tmp_path) -> None:
    at = new_app().run()
    at.radio(key="m_source").set_value("TensorFlow Lite file").run()
    if not any(r.key == "m_tflite_how" for r in at.radio):
        pytest.skip("ai_edge_litert is not installed (the page says how to install it)")
    at.radio(key="m_tflite_how").set_value("Path").run()
    at.text_input(key="m_tflite_path").input(str(tmp_path / "none.tflite")).run()
    no_exception(at)
    (msg,) = errors(at)
    assert "no such .tflite file" in msg


def test_v2_endpoint_protocol_is_guessed_from_the_url(demo_cache) -> None:
    import torch

    from xrobust.models import serving

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10)).eval()
    with serving.serve(net, protocol="v2") as server:
        at = new_app().run()
        at.radio(key="m_source").set_value("HTTP endpoint").run()
        at.text_input(key="m_url").input(server.url).run()
        no_exception(at)
        assert at.selectbox(key="m_protocol").value == "v2"
        assert errors(at) == [] and "source: endpoint" in _sidebar(at)
        shown = _blackbox_page(at)
        assert 0 < shown <= server.rows_received


def test_sagemaker_endpoint_signed_from_the_process_credentials(
    demo_cache, monkeypatch, tmp_path
) -> None:
    pytest.importorskip("boto3")
    from sagemaker_support import NAME, REGION, SECRET, linear_onnx, sealed_aws_env, start_server

    from xrobust.data import as_tensors, load_dataset

    ds = load_dataset("digits")
    x, y = as_tensors(ds.train, limit=400)
    onnx_path = linear_onnx(tmp_path / "linear.onnx", x.numpy(), y.numpy(), 10)
    sealed_aws_env(monkeypatch, tmp_path)
    with start_server(onnx_path) as server:
        at = new_app().run()
        at.radio(key="m_source").set_value("HTTP endpoint").run()
        at.text_input(key="m_url").input(f"sagemaker://{NAME}").run()
        assert at.text_input(key="m_aws_region").value == REGION  # from the environment
        assert not any(t.key == "m_headers" for t in at.text_area)  # signed, no headers
        at.text_input(key="m_aws_endpoint_url").input(server.url).run()
        no_exception(at)
        assert errors(at) == [], errors(at)
        assert _blackbox_page(at) > 0
        shown = "\n".join(str(e.value) for e in [*at.markdown, *at.caption, *at.sidebar.caption])
        assert SECRET not in shown
