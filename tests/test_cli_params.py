"""`xrobust attack --param key=value`: any option of the attack's config, checked against
it (did-you-mean on unknown keys, the expected type on bad values)."""

from __future__ import annotations

import json

import pytest
import torch
import torch.nn.functional as F

from xrobust.cli import main


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> str:
    from xrobust.data import as_tensors, load_dataset
    from xrobust.models import build_model, save_checkpoint

    ds = load_dataset("breast_cancer")
    torch.manual_seed(0)
    model = build_model("mlp", ds.spec)
    x, y = as_tensors(ds.train)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(20):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    out = tmp_path_factory.mktemp("run")
    save_checkpoint(model, out, spec=ds.spec)
    return str(out)


def _attack(run_dir: str, *extra: str) -> list[str]:
    base = ["attack", "--model", run_dir, "--data", "breast_cancer", "--eps", "0.2"]
    return [*base, "--limit", "16", "--no-progress", "--json", *extra]


def test_param_reaches_the_attack_config(run_dir, capsys) -> None:
    rc = main(
        _attack(
            run_dir,
            "--attack",
            "pgd",
            "--steps",
            "3",
            "--param",
            "steps=4",
            "--param",
            "random_start=true",
        )
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    cfg = json.loads(out)["config"]
    assert cfg["steps"] == 4 and cfg["random_start"] is True  # --param wins over --steps


@pytest.mark.parametrize(
    ("param", "message"),
    [
        ("stepz=4", "Did you mean 'steps'"),
        ("steps=many", "option 'steps' of attack 'pgd' must be"),
        ("steps", "key=value"),
    ],
)
def test_bad_param_is_one_clear_error(run_dir, capsys, param, message) -> None:
    assert main(_attack(run_dir, "--attack", "pgd", "--param", param)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
