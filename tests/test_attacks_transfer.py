"""The transfer attack: equal to the white-box attack when the surrogate is the target,
one query per attacked example on a black-box target, the transfer rate, run-directory
surrogates, and its options."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from xrobust.attacks import Transfer, get_attack
from xrobust.errors import ConfigError, ModelError
from xrobust.models import as_classifier


@pytest.fixture(scope="module")
def batch(digits28):
    return digits28["x_test"][:48].clone(), digits28["y_test"][:48].clone()


@pytest.mark.parametrize("early_stop", [True, False])
def test_surrogate_equal_to_target_matches_the_white_box_attack(
    digits_cnn, batch, early_stop
) -> None:
    x, y = batch
    kw = dict(eps=0.1, seed=3)
    wb = get_attack("pgd", digits_cnn, steps=8, early_stop=False, **kw).run(x, y)
    tr = get_attack(
        "transfer", digits_cnn, surrogate=digits_cnn, attack_options={"steps": 8},
        early_stop=early_stop, **kw,
    ).run(x, y)  # fmt: skip
    att = tr.attacked
    assert torch.equal(tr.success[att], wb.success[att])
    assert torch.equal(tr.x_adv[att], wb.x_adv[att])
    assert tr.config["transfer_rate"] == 1.0
    assert (
        tr.config["transferred"] == tr.config["surrogate_success"] == int((wb.success & att).sum())
    )
    assert tr.gradient_passes == 0 and tr.config["surrogate_gradient_passes"] > 0


def test_black_box_target_one_query_per_example(digits_cnn, batch) -> None:
    x, y = batch
    target = copy.deepcopy(digits_cnn)
    with torch.no_grad():  # a different model: the surrogate's weights perturbed
        for p in target.parameters():
            p.add_(0.05 * torch.randn_like(p) * p.abs().mean())
    asked: list[int] = []

    def predict(a):
        asked.append(len(a))
        with torch.no_grad():
            return target(torch.as_tensor(a)).softmax(1).numpy()

    clf = as_classifier(
        predict, output="probabilities", input_shape=(1, 28, 28), num_classes=10, bounds=(0.0, 1.0)
    )
    with pytest.raises(ModelError, match="transfer"):
        get_attack("pgd", clf, eps=0.1)  # gradient attacks refuse and name what can run
    res = get_attack(
        "transfer", clf, surrogate=digits_cnn, eps=0.15, attack_options={"steps": 10}, seed=0
    ).run(x, y)
    assert torch.equal(res.queries, 1 + res.attacked.long())  # the clean query, then one
    assert sum(asked) == int(res.queries.sum())
    assert 0 < res.config["transferred"] <= res.config["surrogate_success"]
    assert (
        res.config["transfer_rate"] == res.config["transferred"] / res.config["surrogate_success"]
    )
    assert res.robust_accuracy < res.clean_accuracy - 0.2
    d = res.to_dict()
    json.dumps(d)  # plain data: the surrogate is a description
    assert d["config"]["surrogate"].startswith("TinyCNN") and d["config"]["attack"] == "pgd"


def test_run_directory_surrogate(tmp_path, digits_cnn, batch) -> None:
    from xrobust.data import load_dataset
    from xrobust.models import build_model, save_checkpoint

    spec = load_dataset("digits").spec
    model = build_model("small_cnn", spec).eval()
    save_checkpoint(model, tmp_path, spec=spec, arch="small_cnn")
    x, y = batch
    x = x[:8]
    res = get_attack(
        "transfer",
        digits_cnn,
        surrogate=str(tmp_path),
        eps=0.1,
        attack_options={"steps": 2},
        seed=0,
    ).run(x, y[:8])
    assert res.config["surrogate"] == f"run {tmp_path}"
    direct = get_attack(
        "transfer", digits_cnn, surrogate=model, eps=0.1, attack_options={"steps": 2}, seed=0
    ).run(x, y[:8])
    assert torch.equal(res.x_adv, direct.x_adv)


def test_options(digits_cnn) -> None:
    with pytest.raises(ConfigError, match="needs a surrogate"):
        get_attack("transfer", digits_cnn, eps=0.1)
    with pytest.raises(ConfigError, match="Did you mean"):
        get_attack("transfer", digits_cnn, surrogate=digits_cnn, attack="pgdd")
    with pytest.raises(ConfigError, match="no option"):
        get_attack("transfer", digits_cnn, surrogate=digits_cnn, attack_options={"stepz": 3})
    with pytest.raises(ConfigError, match="may not set eps"):
        get_attack("transfer", digits_cnn, surrogate=digits_cnn, attack_options={"eps": 0.3})
    with pytest.raises(ConfigError, match="cannot run itself"):
        get_attack("transfer", digits_cnn, surrogate=digits_cnn, attack="transfer")
    t = Transfer(digits_cnn, surrogate=digits_cnn, attack="apgd-t", attack_options={"steps": 3})
    assert t.config.attack == "apgd_t" and t.surrogate_attack().config.steps == 3
    assert "TinyCNN" in repr(t)
