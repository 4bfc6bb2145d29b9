# ruff: noqa: F811  (demo_cache is a fixture imported from app_support)
"""Bad uploads and bad sources show st.error saying what to do, never a traceback; good
data uploads reach the pages."""

from __future__ import annotations

import io
import pickle

import numpy as np
import pytest

pytest.importorskip("streamlit")

from app_support import demo_cache, errors, metrics, new_app, no_exception  # noqa: F401


def _checkpoint(demo_cache):
    d = demo_cache / "demo" / "digits-small_cnn"
    return (d / "model.safetensors").read_bytes(), (d / "model.json").read_bytes()


def _upload_model(files):
    at = new_app().run()
    at.radio(key="m_source").set_value("Upload checkpoint").run()
    at.file_uploader(key="m_upload").set_value(files).run()
    no_exception(at)
    return at


def test_pickle_renamed_safetensors_is_refused(demo_cache) -> None:
    _, meta = _checkpoint(demo_cache)
    evil = pickle.dumps({"weight": [1.0, 2.0]})
    at = _upload_model(
        [
            ("model.safetensors", evil, "application/octet-stream"),
            ("model.json", meta, "application/json"),
        ]
    )
    (msg,) = errors(at)
    assert "pickle" in msg and "safetensors.torch.save_file" in msg
    assert at.session_state["_xr_model"] is None


def test_torch_save_zip_renamed_is_refused(demo_cache) -> None:
    import torch

    buf = io.BytesIO()
    torch.save({"w": torch.zeros(2)}, buf)
    _, meta = _checkpoint(demo_cache)
    at = _upload_model(
        [
            ("model.safetensors", buf.getvalue(), "application/octet-stream"),
            ("model.json", meta, "application/json"),
        ]
    )
    assert "pickle" in errors(at)[0]


def test_weights_not_matching_their_hash_are_refused(demo_cache) -> None:
    weights, meta = _checkpoint(demo_cache)
    tampered = weights[:-4] + b"\x00\x00\x80\x3f"
    at = _upload_model(
        [
            ("model.safetensors", tampered, "application/octet-stream"),
            ("model.json", meta, "application/json"),
        ]
    )
    (msg,) = errors(at)
    assert "SHA-256" in msg and "refused" in msg


def test_one_file_only_asks_for_both(demo_cache) -> None:
    weights, _ = _checkpoint(demo_cache)
    at = _upload_model([("model.safetensors", weights, "application/octet-stream")])
    assert "exactly one .safetensors file and one .json file" in errors(at)[0]


def test_oversized_upload_is_refused(demo_cache, monkeypatch) -> None:
    monkeypatch.setenv("XROBUST_APP_MAX_UPLOAD_MB", "0.001")  # about 1 kB
    weights, meta = _checkpoint(demo_cache)
    at = _upload_model(
        [
            ("model.safetensors", weights, "application/octet-stream"),
            ("model.json", meta, "application/json"),
        ]
    )
    (msg,) = errors(at)
    assert "accepts files up to" in msg and "--max-upload-mb" in msg


def _upload_data(name, blob, target=None):
    at = new_app().run()
    at.radio(key="d_source").set_value("Upload").run()
    at.file_uploader(key="d_data_upload").set_value((name, blob, "application/octet-stream")).run()
    if target is not None:
        at.text_input(key="d_target").input(target).run()
    no_exception(at)
    return at


def test_csv_with_a_wrong_target_column(demo_cache) -> None:
    rows = ["a,b,label"] + [f"{i},{i % 3},{i % 2}" for i in range(20)]
    blob = "\n".join(rows).encode()
    at = _upload_data("table.csv", blob, target="species")
    (msg,) = errors(at)
    assert "no column named 'species'" in msg and "Target column" in msg
    at = _upload_data("nolabel.csv", "\n".join(["a,b,c", "1,2,3", "4,5,6"]).encode())
    assert "no 'target' or 'label' column" in errors(at)[0]


def test_npz_of_another_shape_and_a_pickled_npz(demo_cache) -> None:
    buf = io.BytesIO()
    rng = np.random.default_rng(0)
    np.savez(buf, x=rng.random((20, 5)).astype(np.float32), y=np.arange(20) % 2)
    at = _upload_data("small.npz", buf.getvalue())
    (msg,) = errors(at)
    assert "does not fit the model" in msg
    assert any("fewer than 20 examples" in w.value for w in at.sidebar.warning)
    buf = io.BytesIO()
    np.savez(buf, x=np.array([object(), 1], dtype=object), y=np.arange(2))
    at = _upload_data("objects.npz", buf.getvalue())
    assert "not loaded for safety" in errors(at)[0]


def test_uploaded_npz_of_digits_feeds_the_pages(demo_cache) -> None:
    from xrobust.data import as_tensors, load_dataset

    ds = load_dataset("digits", size=28)
    x, y = as_tensors(ds.test)
    buf = io.BytesIO()
    np.savez(
        buf,
        x_train=x[:40].numpy(),
        y_train=y[:40].numpy(),
        x_test=x.numpy(),
        y_test=y.numpy(),
        class_names=np.asarray(ds.spec.class_names),
    )
    at = _upload_data("digits_test.npz", buf.getvalue())
    assert errors(at) == []
    want = metrics(new_app().run())["Clean accuracy"]  # same test examples, built in
    assert metrics(at)["Clean accuracy"] == want


def test_bad_run_folder(demo_cache, tmp_path) -> None:
    at = new_app().run()
    at.radio(key="m_source").set_value("Run folder").run()
    at.text_input(key="m_run").input(str(tmp_path)).run()
    no_exception(at)
    (msg,) = errors(at)
    assert "is missing" in msg and "xrobust train --out DIR" in msg
