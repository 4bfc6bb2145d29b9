"""Checkpoints: exact round trip, metadata, and refusal of tampered, missing or broken files."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from torch import nn

from xrobust.data.spec import DatasetSpec
from xrobust.errors import CheckpointError
from xrobust.models import build_model, load_model, load_run, read_metadata, save_checkpoint
from xrobust.models.checkpoint import _seal

IMG = DatasetSpec(
    "img",
    "image",
    (3, 12, 12),
    4,
    ("a", "b", "c", "d"),
    (0.0, 1.0),
    (0.4, 0.5, 0.6),
    (0.2, 0.25, 0.3),
)
TAB = DatasetSpec(
    "tab", "tabular", (6,), 3, ("x", "y", "z"), (-4.0, 4.0), feature_names=tuple("abcdef")
)


def _trained_resnet() -> nn.Module:
    torch.manual_seed(0)
    model = build_model("resnet", IMG, width=4)
    model.train()
    for _ in range(3):  # move BatchNorm running statistics away from their init
        model(torch.rand(8, 3, 12, 12))
    return model.eval()


@pytest.mark.parametrize(
    ("make", "spec"),
    [
        (lambda: _trained_resnet(), IMG),
        (lambda: build_model("small_cnn", IMG, channels=[4, 8]), IMG),
        (lambda: build_model("mlp", TAB, hidden=[8, 8]), TAB),
    ],
)
def test_round_trip_gives_identical_outputs(tmp_path: Path, make, spec: DatasetSpec) -> None:
    torch.manual_seed(1)
    model = make().eval()
    save_checkpoint(model, tmp_path, spec=spec, metrics={"acc": 0.5})
    x = torch.rand(5, *spec.input_shape) * 2 - 0.5
    for path in (tmp_path, tmp_path / "model.json", tmp_path / "model.safetensors"):
        loaded = load_model(path)
        assert not loaded.training
        assert type(loaded) is type(model)
        assert torch.equal(loaded(x), model(x))
        for (k1, v1), (k2, v2) in zip(model.state_dict().items(), loaded.state_dict().items()):
            assert k1 == k2 and torch.equal(v1, v2)


def test_metadata_is_complete_and_spec_round_trips(tmp_path: Path) -> None:
    model = build_model("small_cnn", IMG, hidden=16)
    save_checkpoint(
        model, tmp_path, spec=IMG, train_config={"epochs": 3}, metrics={"test_acc": 0.9}
    )
    meta = json.loads((tmp_path / "model.json").read_text())
    weights = (tmp_path / "model.safetensors").read_bytes()
    assert meta["weights"]["sha256"] == hashlib.sha256(weights).hexdigest()
    assert meta["architecture"] == "small_cnn" and meta["arch_kwargs"] == {"hidden": 16}
    assert meta["class_names"] == ["a", "b", "c", "d"]
    assert meta["normalization"] == {"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.25, 0.3]}
    assert meta["train_config"] == {"epochs": 3} and meta["metrics"] == {"test_acc": 0.9}
    assert meta["versions"]["torch"] == torch.__version__ and "xrobust" in meta["versions"]
    run = load_run(tmp_path)
    assert run.spec == IMG and run.bounds == (0.0, 1.0) and run.class_names == IMG.class_names
    assert run.metadata["metrics"]["test_acc"] == 0.9
    assert not weights.startswith(b"\x80")  # not a pickle stream


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    save_checkpoint(build_model("mlp", TAB, hidden=[8]), tmp_path, spec=TAB)
    return tmp_path


def test_bit_flip_in_weights_is_refused(run_dir: Path) -> None:
    w = run_dir / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0x01  # one bit of one weight
    w.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_model(run_dir)


def _write(d: Path, meta: dict, *, seal: bool) -> None:
    (d / "model.json").write_text(json.dumps(_seal(meta) if seal else meta))


@pytest.mark.parametrize(
    "edit",
    [
        lambda m: m.update(class_names=list(reversed(m["class_names"]))),
        lambda m: m["dataset"].update(class_names=list(reversed(m["dataset"]["class_names"]))),
        lambda m: m["dataset"].update(bounds=[-10.0, 10.0]),
        lambda m: m["dataset"].update(mean=[0.5] * 6, std=[2.0] * 6),
        lambda m: m.update(normalization={"mean": [0.5] * 6, "std": [2.0] * 6}),
        lambda m: m["dataset"].update(feature_names=[f"g{i}" for i in range(6)]),
        lambda m: m["dataset"]["extra"].update(raw_mean=[1.0] * 6),
        lambda m: m.update(arch_kwargs={"hidden": [16]}),
        lambda m: m["metrics"].update(test_acc=1.0),
        lambda m: m["training"].update(completed=True, epoch=99),
        lambda m: m.update(train_config={"label_smoothing": 0.0}),
    ],
    ids=[
        "class_names",
        "dataset.class_names",
        "bounds",
        "dataset.mean/std",
        "normalization",
        "feature_names",
        "raw_mean",
        "arch_kwargs",
        "metrics",
        "completed",
        "train_config",
    ],
)
def test_every_metadata_field_is_covered_by_the_checksum(run_dir: Path, edit) -> None:
    meta = json.loads((run_dir / "model.json").read_text())
    meta.setdefault("metrics", {})
    meta["dataset"].setdefault("extra", {})
    edit(meta)
    _write(run_dir, meta, seal=False)
    with pytest.raises(
        CheckpointError, match=r"does not match its recorded SHA-256 \('integrity'\)"
    ):
        load_model(run_dir)


def test_resealed_edits_still_meet_the_structural_checks(run_dir: Path) -> None:
    """Someone who recomputes the checksum still cannot load inconsistent metadata."""
    meta_path = run_dir / "model.json"
    orig = json.loads(meta_path.read_text())

    def edited(**changes: object) -> dict:
        m = json.loads(json.dumps(orig))
        m.update(changes)
        return m

    # a different architecture option: the weights no longer fit
    _write(run_dir, edited(arch_kwargs={"hidden": [16]}), seal=True)
    with pytest.raises(CheckpointError, match="do not fit"):
        load_model(run_dir)
    # a forged weights hash
    m = edited()
    m["weights"]["sha256"] = "0" * 64
    _write(run_dir, m, seal=True)
    with pytest.raises(CheckpointError, match="SHA-256"):
        load_model(run_dir)
    _write(run_dir, edited(architecture="transformer9000"), seal=True)
    with pytest.raises(CheckpointError, match="not registered"):
        load_model(run_dir)
    # the copies of class names / normalisation must agree with the dataset spec
    _write(run_dir, edited(class_names=list(reversed(orig["class_names"]))), seal=True)
    with pytest.raises(CheckpointError, match="'class_names' differs"):
        load_model(run_dir)
    m = edited()
    m["dataset"]["bounds"] = [1.0, -1.0]
    _write(run_dir, m, seal=True)
    with pytest.raises(CheckpointError, match="not an interval"):
        load_model(run_dir)
    m = edited()
    m["dataset"]["input_shape"] = [10**9]
    _write(run_dir, m, seal=True)
    with pytest.raises(CheckpointError, match=r"malformed dataset spec|input_shape"):
        load_model(run_dir)
    _write(run_dir, orig, seal=False)
    assert load_model(run_dir) is not None


def test_incomplete_run_is_refused_unless_asked(run_dir: Path) -> None:
    m = json.loads((run_dir / "model.json").read_text())
    m["training"] = {"completed": False, "epoch": 7, "epochs": 15}
    _write(run_dir, m, seal=True)
    with pytest.raises(CheckpointError, match=r"did not finish \(saved after epoch 7 of 15\)"):
        load_model(run_dir)
    with pytest.warns(UserWarning, match="did not finish"):
        assert load_model(run_dir, allow_incomplete=True) is not None


@pytest.mark.parametrize(
    ("damage", "match"),
    [
        (lambda d: (d / "model.json").unlink(), "missing"),
        (lambda d: (d / "model.safetensors").unlink(), "missing"),
        (lambda d: (d / "model.json").write_text("{not json"), "not valid JSON"),
        (lambda d: (d / "model.json").write_text("[1, 2]"), "not a JSON object"),
        (
            lambda d: (d / "model.json").write_text('{"format": "xrobust-checkpoint"}'),
            "lacks field",
        ),
        (
            lambda d: _edit(d, weights={"file": "../../etc/passwd", "sha256": "0"}),
            "plain file name",
        ),
        (lambda d: _edit(d, format_version=99), "format version"),
        (lambda d: _edit(d, dataset={"name": "x"}), "malformed dataset spec"),
        (lambda d: _edit(d, integrity="x"), "malformed 'integrity'"),
        (lambda d: _edit(d, seal=False, metrics={"a": 1}), "integrity"),
    ],
)
def test_missing_or_malformed_files_are_refused(run_dir: Path, damage, match: str) -> None:
    damage(run_dir)
    with pytest.raises(CheckpointError, match=match):
        load_model(run_dir)


def _edit(d: Path, seal: bool = True, **changes: object) -> None:
    meta = json.loads((d / "model.json").read_text())
    meta.update(changes)
    if seal and "integrity" not in changes:
        meta = _seal(meta)
    (d / "model.json").write_text(json.dumps(meta))


def test_valid_weights_of_another_model_are_refused(run_dir: Path, tmp_path_factory) -> None:
    other = tmp_path_factory.mktemp("other")
    save_checkpoint(build_model("mlp", TAB, hidden=[32]), other, spec=TAB)
    data = (other / "model.safetensors").read_bytes()
    (run_dir / "model.safetensors").write_bytes(data)
    _edit(
        run_dir, weights={"file": "model.safetensors", "sha256": hashlib.sha256(data).hexdigest()}
    )
    with pytest.raises(CheckpointError, match=r"size mismatch|do not fit"):
        load_model(run_dir)


def test_not_a_checkpoint_path(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="not found"):
        load_model(tmp_path / "nope.pt")
    (tmp_path / "weights.pt").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a checkpoint"):
        load_model(tmp_path / "weights.pt")
    with pytest.raises(CheckpointError, match="missing"):
        load_model(tmp_path)


def test_custom_module_is_saved_but_cannot_be_rebuilt_by_name(tmp_path: Path) -> None:
    model = nn.Sequential(nn.Linear(6, 3))
    save_checkpoint(model, tmp_path, spec=TAB)
    assert read_metadata(tmp_path)["architecture"] is None
    with pytest.raises(CheckpointError, match="custom model"):
        load_model(tmp_path)
