"""Ensemble presets: composition and order, the options each member gets, members run on
the examples still robust, ``broken_by`` names, and a clear error for a preset whose
member is not registered."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch
from torch import nn

from xrobust.attacks import ATTACKS, Attack, AttackConfig, Ensemble, get_attack
from xrobust.attacks.context import AttackContext, Batch, Outcome
from xrobust.attacks.ensemble import PRESETS
from xrobust.errors import ConfigError


@dataclass(frozen=True)
class _QueriesConfig(AttackConfig):
    queries: int = 100


class _RandomSearch(Attack):
    """A stand-in query-only attack (random signs at the radius) used while the real
    ``square`` is not registered: it checks the options and the order the preset gives."""

    name = "square"
    config_cls = _QueriesConfig
    requires_gradients = False

    def perturb(self, ctx: AttackContext, batch: Batch) -> Outcome:
        out = Outcome.unchanged(batch.x)
        noise = torch.randn(batch.x.shape, generator=ctx.generator, device=batch.x.device)
        out.x_adv = batch.ball.project(batch.norm.step(batch.x, noise, batch.eps))
        out.steps[:] = 1
        return out


@pytest.fixture
def square_registered():
    """The real Square when it is registered, else the stand-in, for the test's length."""
    if "square" in ATTACKS:
        yield ATTACKS.get("square")
        return
    ATTACKS.register("square")(_RandomSearch)
    try:
        yield _RandomSearch
    finally:
        ATTACKS.unregister("square")


def test_presets_and_default() -> None:
    assert PRESETS["standard"] == ("apgd", "apgd_t")
    assert PRESETS["autoattack"] == ("apgd", "apgd_t", "fab_t", "square")
    assert PRESETS["fast"] == ("pgd", "apgd")
    ens = get_attack("ensemble", nn.Linear(4, 10), eps=0.1)
    assert ens.config.preset == "standard"
    assert ens.config.members() == ("apgd", "apgd_t")


def test_autoattack_members_get_the_reference_budgets(square_registered) -> None:
    ens = Ensemble(nn.Linear(4, 10), eps=0.1, norm="l2", preset="autoattack")
    members = ens.members()
    assert [m.name for m in members] == ["apgd", "apgd_t", "fab_t", "square"]
    apgd, apgd_t, fab_t, square = members
    assert apgd.config.steps == apgd_t.config.steps == fab_t.config.steps == 100
    assert apgd_t.config.n_target_classes == fab_t.config.n_target_classes == 9
    assert fab_t.config.restarts == 1 and fab_t.config.alpha_max == 0.1
    assert square.config.queries == 5000
    assert all(m.config.norm == "l2" and m.config.eps == 0.1 for m in members)
    small = Ensemble(nn.Linear(4, 10), eps=0.1, preset="autoattack", queries=300)
    assert small.members()[3].config.queries == 300


def test_missing_member_is_a_clear_error() -> None:
    if "square" in ATTACKS:
        pytest.skip("square is registered")
    ens = Ensemble(nn.Linear(4, 10), eps=0.1, preset="autoattack")
    with pytest.raises(ConfigError, match=r"preset 'autoattack' needs 'square'.*not registered"):
        ens.run(torch.rand(2, 4), torch.tensor([0, 1]))


def test_members_run_in_order_on_the_examples_still_robust(
    digits_cnn, digits28, square_registered
) -> None:
    x, y = digits28["x_test"][:48], digits28["y_test"][:48]
    ens = Ensemble(
        digits_cnn, eps=0.06, preset="autoattack", steps=5, n_target_classes=2, queries=50,
        seed=0,
    )  # fmt: skip
    res = ens.run(x, y)
    report = res.config["members"]
    assert [r["attack"] for r in report] == ["apgd", "apgd_t", "fab_t", "square"][: len(report)]
    robust = int(res.attacked.sum())
    for r in report:
        assert r["attacked"] == robust  # each member sees exactly the survivors
        robust -= r["broken"]
    assert robust == int((res.pred_adv == y).sum())
    counts = res.to_dict()["broken_by"]
    assert set(counts) <= {"apgd", "apgd_t", "fab_t", "square"}
    assert sum(counts.values()) == int((res.success & res.attacked).sum())
    for i, b in enumerate(res.broken_by):
        assert (b is not None) == bool(res.success[i] and res.attacked[i])
    assert float((res.x_adv - x).abs().amax()) <= 0.06 + 1e-6


def test_fab_t_member_breaks_what_earlier_members_leave(digits_cnn, digits28) -> None:
    """FAB-T as a later member runs on the rows FGSM left robust, breaks some of them,
    and the earlier member's verdicts are unchanged (same seeds)."""
    x, y = digits28["x_test"][:48], digits28["y_test"][:48]
    kw = dict(eps=0.08, steps=10, n_target_classes=2, seed=0)
    one = Ensemble(digits_cnn, attacks=("fgsm",), **kw).run(x, y)
    two = Ensemble(digits_cnn, attacks=("fgsm", "fab_t"), **kw).run(x, y)
    assert two.robust_accuracy < one.robust_accuracy
    assert [b == "fgsm" for b in two.broken_by] == [b is not None for b in one.broken_by]
    assert two.to_dict()["broken_by"]["fab_t"] >= 1
    assert two.config["members"][1]["attacked"] == int((one.pred_adv == y).sum())
