"""``xrobust train`` end to end through ``xrobust.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from xrobust.cli import main
from xrobust.models import load_run


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def test_train_cli_writes_a_loadable_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "digits"
    args = ["train", "--data", "digits", "--size", "8", "--model", "small_cnn", "--epochs", "2"]
    args += ["--out", str(out), "--device", "cpu", "--seed", "1", "--no-progress"]
    args += ["--model-arg", "channels=[8,16]", "--model-arg", "hidden=32", "--lr", "0.005"]
    assert main(args) == 0
    text = capsys.readouterr().out
    assert "test accuracy" in text and str(out) in text
    run = load_run(out)
    meta = run.metadata
    assert meta["architecture"] == "small_cnn"
    assert meta["arch_kwargs"] == {"channels": [8, 16], "hidden": 32}
    assert meta["train_config"]["epochs"] == 2 and meta["train_config"]["lr"] == 0.005
    assert run.spec.name == "digits" and run.spec.input_shape == (1, 8, 8)
    # the reported test accuracy is the checkpoint's own accuracy on the test split
    from xrobust.data import load_dataset

    test = load_dataset("digits", size=8).test
    x, y = test.tensors
    with torch.no_grad():
        acc = (run.model(x).argmax(1) == y).float().mean().item()
    assert meta["metrics"]["test_acc"] == pytest.approx(acc)
    assert f"test accuracy {acc:.4f}" in text
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 2

    # --resume on a finished run keeps the weights and says where it resumed from
    before = (out / "model.safetensors").read_bytes()
    assert main([*args, "--resume"]) == 0
    assert "resumed from epoch 2" in capsys.readouterr().out
    assert (out / "model.safetensors").read_bytes() == before


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--model", "small_cn"], "did you mean 'small_cnn'"),
        (["--model", "mlp", "--model-arg", "hiden=[3]"], "hiden"),
        (["--model", "mlp", "--patience", "2"], "--val-fraction"),
        (["--model", "mlp", "--eps", "-1", "--adversarial", "pgd"], "--eps"),
        (["--model", "mlp", "--data", "no_such_file.npz"], "no_such_file"),
    ],
)
def test_train_cli_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture, extra: list[str], needle: str
) -> None:
    args = ["train", "--data", "breast_cancer", "--epochs", "1", "--out", str(tmp_path / "r")]
    args += ["--device", "cpu", "--no-progress", *extra]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("xrobust train: error:") and err.count("\n") == 1
    assert needle.lower() in err.lower()
    assert "Traceback" not in err


def test_train_cli_tabular_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bc"
    rc = main(
        [
            "train",
            "--data",
            "breast_cancer",
            "--model",
            "mlp",
            "--epochs",
            "3",
            "--out",
            str(out),
            "--device",
            "cpu",
            "--no-progress",
            "--optimizer",
            "sgd",
            "--schedule",
            "cosine",
            "--label-smoothing",
            "0.1",
            "--val-fraction",
            "0.2",
            "--patience",
            "5",
        ]
    )
    assert rc == 0
    meta = json.loads((out / "model.json").read_text())
    cfg = meta["train_config"]
    assert (cfg["optimizer"], cfg["schedule"], cfg["label_smoothing"]) == ("sgd", "cosine", 0.1)
    assert meta["dataset"]["feature_names"][0] == "mean radius"
    assert "val_acc" in meta["metrics"] and meta["metrics"]["test_acc"] > 0.5
