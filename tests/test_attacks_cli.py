"""End to end: ``xrobust attack`` through ``xrobust.cli.main``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from xrobust.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> str:
    from xrobust.trainer import TrainConfig, train

    out = tmp_path_factory.mktemp("runs") / "digits"
    train("digits", "small_cnn", TrainConfig(epochs=2, device="cpu"), out, progress=False)
    return str(out)


def test_attack_cli_end_to_end(run_dir, tmp_path, capsys) -> None:
    out = tmp_path / "adv.npz"
    rc = main(
        [
            "attack",
            "--model",
            run_dir,
            "--data",
            "digits",
            "--attack",
            "pgd",
            "--norm",
            "linf",
            "--eps",
            "0.1",
            "--steps",
            "10",
            "--limit",
            "64",
            "--out",
            str(out),
        ]
    )
    assert rc == 0
    text = capsys.readouterr().out
    assert "clean accuracy" in text and "robust accuracy" in text
    z = np.load(out)
    assert set(z.files) >= {"x_adv", "y", "pred_clean", "pred_adv"}
    assert z["x_adv"].shape == (64, 1, 28, 28)
    from xrobust.data import as_tensors, load_dataset
    from xrobust.models import load_model

    x, y = as_tensors(load_dataset("digits").test, limit=64)
    assert np.abs(z["x_adv"] - x.numpy()).max() <= 0.1 + 1e-6
    assert np.array_equal(z["y"], y.numpy())
    with torch.no_grad():
        pred = load_model(run_dir)(torch.from_numpy(z["x_adv"])).argmax(1).numpy()
    assert np.array_equal(pred, z["pred_adv"])
    robust = float((z["pred_adv"] == z["y"]).mean())
    assert f"robust accuracy {robust:.4f}" in text


def test_attack_cli_json_targeted_and_fixed_budget(run_dir, capsys) -> None:
    rc = main(
        [
            "attack",
            "--model",
            run_dir,
            "--data",
            "digits",
            "--attack",
            "fgsm",
            "--eps",
            "0.2",
            "--limit",
            "32",
            "--target-class",
            "3",
            "--fixed-budget",
            "--json",
        ]
    )
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["targeted"] and d["n"] == 32 and d["config"]["early_stop"] is False


def test_attack_cli_random_start(run_dir, capsys) -> None:
    args = ["attack", "--model", run_dir, "--data", "digits", "--eps", "0.1", "--steps", "3"]
    assert main([*args, "--limit", "16", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["random_start"] is None
    assert main([*args, "--limit", "16", "--json", "--random-start"]) == 0
    assert json.loads(capsys.readouterr().out)["config"]["random_start"] is True


@pytest.mark.parametrize(
    "extra,msg",
    [
        (["--eps", "-0.1"], "eps"),
        (["--eps", "0.1", "--norm", "l3"], "unknown norm"),
        (["--eps", "0.1", "--steps", "0"], "steps"),
        (["--eps", "1.5"], "larger than the bounds allow"),
        (["--eps", "0.1", "--attack", "pgdd"], "Did you mean"),
        (["--eps", "0.1", "--out", "adv.txt"], ".npz"),
        (["--eps", "0.1", "--attack", "fgsm", "--random-start"], "no option(s) random_start"),
    ],
)
def test_attack_cli_bad_options(run_dir, capsys, extra, msg) -> None:
    rc = main(["attack", "--model", run_dir, "--data", "digits", "--limit", "4", *extra])
    assert rc == 2
    err = capsys.readouterr().err
    assert msg in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
