"""The classifier interface: sources, declared facts, query counting and budgets, and
attacks running on a classifier (white-box through a torch module, query-only on a black
box), with partial results when the budget runs out."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from torch import nn

from xrobust.attacks import ATTACKS, PGD, AttackConfig, get_attack
from xrobust.attacks.base import Attack
from xrobust.attacks.context import AttackContext, Batch, Outcome
from xrobust.errors import ConfigError, DataError, ModelError, QueryBudgetExhausted
from xrobust.models import (
    CallableClassifier,
    Classifier,
    TorchClassifier,
    as_classifier,
    build_model,
    save_checkpoint,
)


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(16, 3))


def _data(n: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(n, 1, 4, 4, generator=g), torch.randint(0, 3, (n,), generator=g)


# ---------------------------------------------------------------------- sources
def test_torch_classifier_matches_module_and_counts() -> None:
    net, (x, _) = _net(), _data()
    clf = as_classifier(net, input_shape=(1, 4, 4), bounds=(0.0, 1.0), batch_size=5)
    assert isinstance(clf, TorchClassifier) and clf.module is net
    s = clf.scores(x)
    assert torch.allclose(s, net(x), atol=1e-6)
    assert clf.queries == 12 and clf.calls == 3  # chunks of 5, 5, 2
    assert clf.differentiable and clf.num_classes == 3 and clf.output == "logits"


def test_torch_classifier_leaves_the_module_untouched() -> None:
    net = _net()
    net.train()
    flags = [p.requires_grad for p in net.parameters()]
    before = [p.detach().clone() for p in net.parameters()]
    clf = as_classifier(net)
    clf.scores(torch.rand(3, 1, 4, 4))
    assert net.training and [p.requires_grad for p in net.parameters()] == flags
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert all(p.grad is None for p in net.parameters())


def test_callable_sources_numpy_torch_probabilities_labels() -> None:
    net, (x, _) = _net(), _data()

    def proba(a: np.ndarray) -> np.ndarray:
        assert isinstance(a, np.ndarray) and a.dtype == np.float32
        with torch.no_grad():
            return torch.softmax(net(torch.from_numpy(a)), 1).numpy()

    p = as_classifier(proba, output="probabilities", input_shape=(1, 4, 4))
    assert isinstance(p, CallableClassifier) and not p.differentiable
    assert torch.allclose(p.scores(x), torch.softmax(net(x), 1), atol=1e-6)

    t = as_classifier(lambda a: net(a).detach(), array="torch", input_shape=(1, 4, 4))
    assert torch.allclose(t.scores(x), net(x), atol=1e-6)

    lab = as_classifier(
        lambda a: net(torch.from_numpy(a)).argmax(1).tolist(),
        output="labels",
        num_classes=3,
    )
    s = lab.scores(x)
    assert s.shape == (12, 3) and torch.equal(s.sum(1), torch.ones(12))
    assert torch.equal(lab.predict(x), net(x).argmax(1))


def test_run_directory_source(tmp_path) -> None:
    from xrobust.data import load_dataset

    ds = load_dataset("digits")
    model = build_model("mlp", ds.spec)
    save_checkpoint(model, tmp_path / "run", spec=ds.spec, arch="mlp")
    clf = as_classifier(tmp_path / "run")
    assert clf.input_shape == tuple(ds.spec.input_shape)
    assert clf.num_classes == ds.spec.num_classes and clf.bounds == tuple(ds.spec.bounds)
    x = torch.stack([ds.test[i][0] for i in range(4)])
    with torch.no_grad():
        assert torch.allclose(clf.scores(x), model.eval()(x), atol=1e-6)


@pytest.mark.parametrize(
    ("obj", "kwargs", "exc", "words"),
    [
        (42, {}, ModelError, "cannot make a classifier from a int"),
        ("nowhere/model.bin", {}, ModelError, "no such file"),
        (_net(), {"array": "numpy"}, ConfigError, "do not apply to a torch module"),
        (lambda a: a, {"output": "scores"}, ConfigError, "unknown output kind"),
        (lambda a: a, {"query_budget": -1}, ConfigError, "query_budget"),
        (lambda a: a, {"batch_size": 0}, ConfigError, "batch_size"),
    ],
)
def test_bad_sources_are_clear_errors(obj, kwargs, exc, words) -> None:
    with pytest.raises(exc, match=words):
        as_classifier(obj, **kwargs)


@pytest.mark.parametrize(
    ("answer", "kind", "words"),
    [
        (lambda a: np.zeros((len(a) + 1, 3)), "logits", "answered shape"),
        (lambda a: np.full((len(a), 3), np.nan), "logits", "non-finite"),
        (lambda a: [["x"] * 3] * len(a), "logits", "expected numbers"),
        (lambda a: np.full(len(a), 7), "labels", "outside 0..2"),
        (lambda a: np.full(len(a), 0.5), "labels", "non-integer"),
        (lambda a: np.zeros((len(a), 4)), "logits", "declared with 3 classes"),
    ],
)
def test_malformed_answers_are_clear_errors(answer, kind, words) -> None:
    clf = as_classifier(answer, output=kind, num_classes=3)
    with pytest.raises(ModelError, match=words):
        clf.scores(torch.rand(2, 4))


def test_shape_and_class_mismatch_name_both() -> None:
    clf = as_classifier(_net(), input_shape=(1, 4, 4), num_classes=3)
    with pytest.raises(DataError, match=r"\(2, 4, 4\).*\(1, 4, 4\)"):
        clf.check_data((2, 4, 4), 3)
    with pytest.raises(DataError, match=r"10 classes.*answers 3"):
        clf.check_data((1, 4, 4), 10)
    nhwc = as_classifier(lambda a: a, input_shape=(8, 8, 1))
    with pytest.raises(DataError, match="NHWC"):
        nhwc.check_data((1, 8, 8), None)
    assert clf.queries == 0  # nothing asked


# ---------------------------------------------------------------------- budgets
def test_budget_refuses_before_asking() -> None:
    asked: list[int] = []

    def fn(a: np.ndarray) -> np.ndarray:
        asked.append(len(a))
        return np.zeros((len(a), 3))

    clf = as_classifier(fn, num_classes=3, query_budget=10)
    clf.scores(torch.rand(6, 4))
    with pytest.raises(QueryBudgetExhausted, match=r"6 of 10 queries used.*needs 5 more"):
        clf.scores(torch.rand(5, 4))
    assert asked == [6] and clf.queries == 6 and clf.remaining == 4
    clf.scores(torch.rand(4, 4))
    assert clf.remaining == 0
    clf.set_budget(None)
    with clf.budget(3):
        with pytest.raises(QueryBudgetExhausted, match=r"0 of 3 queries used"):
            clf.scores(torch.rand(4, 4))
        clf.scores(torch.rand(3, 4))
    assert clf.query_budget is None and clf.queries == 3


# ---------------------------------------------------------------------- attacks
def test_gradient_attack_refuses_a_black_box() -> None:
    clf = as_classifier(lambda a: np.zeros((len(a), 3)), num_classes=3)
    with pytest.raises(ModelError, match=r"needs input gradients.*need only queries"):
        PGD(clf, eps=0.1)


def test_attack_on_a_torch_classifier_equals_the_module(digits_cnn, digits28) -> None:
    x, y = digits28["x_test"][:32], digits28["y_test"][:32]
    a = PGD(digits_cnn, eps=0.1, steps=5, seed=0).run(x, y)
    clf = as_classifier(digits_cnn, bounds=(0.0, 1.0))
    b = PGD(clf, eps=0.1, steps=5, seed=0).run(x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    assert clf.queries == int(b.queries.sum())  # every forward counted on the classifier


def test_declared_bounds_are_the_default(digits_cnn) -> None:
    clf = as_classifier(digits_cnn, bounds=(0.0, 0.5))
    assert PGD(clf, eps=0.1).config.bounds == (0.0, 0.5)
    assert PGD(clf, eps=0.1, bounds=(0.0, 1.0)).config.bounds == (0.0, 1.0)


def test_pgd_under_a_budget_is_partial_not_wrong(digits_cnn, digits28) -> None:
    x, y = digits28["x_test"][:32], digits28["y_test"][:32]
    full = PGD(digits_cnn, eps=0.1, steps=10, seed=0).run(x, y)
    clf = as_classifier(digits_cnn, bounds=(0.0, 1.0), query_budget=32 + 3 * 32)
    res = PGD(clf, eps=0.1, steps=10, seed=0).run(x, y)
    assert res.partial and "query budget exhausted" in (res.stop_reason or "")
    assert clf.queries <= clf.query_budget
    # never a wrong answer: each reported prediction is the model's at the returned input
    with torch.no_grad():
        assert torch.equal(digits_cnn(res.x_adv).argmax(1), res.pred_adv)
    # fewer steps can only find fewer adversarials
    assert res.robust_accuracy >= full.robust_accuracy
    assert not full.partial and full.stop_reason is None


def test_run_loader_keeps_finished_batches(digits_cnn, digits28) -> None:
    x, y = digits28["x_test"][:40], digits28["y_test"][:40]
    clf = as_classifier(digits_cnn, bounds=(0.0, 1.0), query_budget=25)
    res = PGD(clf, eps=0.1, steps=1, early_stop=False, seed=0).run_loader((x, y), batch_size=10)
    # a batch costs 10 (clean) + 10 (final); the budget fits one batch, not a second clean pass
    assert res.partial and res.n == 10
    assert res.stop_reason.startswith("stopped after 10 of 40 examples")
    clf.set_budget(5)
    with pytest.raises(QueryBudgetExhausted):
        PGD(clf, eps=0.1, steps=1).run_loader((x, y), batch_size=10)


# a query-only attack for the black-box path: random signs at the corner of the ball
@dataclasses.dataclass(frozen=True)
class _CornerConfig(AttackConfig):
    tries: int = 4


class _Corner(Attack):
    name = "_corner_test"
    config_cls = _CornerConfig
    requires_gradients = False

    def perturb(self, ctx: AttackContext, batch: Batch) -> Outcome:
        out = Outcome.unchanged(batch.x)
        live = torch.arange(len(batch))
        for _ in range(self.config.tries):
            if live.numel() == 0:
                break
            if not ctx.can_query(live.numel()):
                ctx.budget_stop(live.numel())
                break
            sign = torch.randint(0, 2, batch.x[live].shape, generator=ctx.generator) * 2 - 1
            xt = batch.ball.select(live).project(
                batch.x[live] + batch.eps[live].view(-1, 1, 1, 1) * sign
            )
            pred = ctx.forward(xt, batch.origin[live]).argmax(1)
            out.steps[live] += 1
            ok = ctx.is_success(pred, batch.y[live], None)
            out.x_adv[live[ok]], out.pred[live[ok]] = xt[ok], pred[ok]
            live = live[~ok]
        return out


@pytest.fixture
def corner():
    ATTACKS.register(_Corner.name)(_Corner)
    yield _Corner
    ATTACKS.unregister(_Corner.name)


def test_query_only_attack_on_a_black_box(corner, digits_cnn, digits28) -> None:
    x, y = digits28["x_test"][:32], digits28["y_test"][:32]
    rows: list[int] = []

    def fn(a: np.ndarray) -> np.ndarray:
        rows.append(len(a))
        with torch.no_grad():
            return torch.softmax(digits_cnn(torch.from_numpy(a)), 1).numpy()

    clf = as_classifier(fn, output="probabilities", input_shape=(1, 28, 28), bounds=(0, 1))
    res = get_attack(corner.name, clf, eps=0.3, seed=0).run(x, y)
    assert sum(rows) == clf.queries == int(res.queries.sum())
    assert float((res.x_adv - x).abs().max()) <= 0.3 + 1e-6
    with torch.no_grad():
        assert torch.equal(digits_cnn(res.x_adv).argmax(1), res.pred_adv)
    assert res.success.any() and not res.partial
    # the same attack under a budget stops cleanly with what it found
    clf.set_budget(32 + 20)
    part = get_attack(corner.name, clf, eps=0.3, seed=0).run(x, y)
    assert part.partial and clf.queries <= 52
    assert int(part.success.sum()) <= int(res.success.sum())


def test_black_box_shape_mismatch_before_any_query(corner) -> None:
    clf = as_classifier(lambda a: np.zeros((len(a), 3)), input_shape=(1, 8, 8), num_classes=3)
    with pytest.raises(DataError, match=r"\(1, 4, 4\).*\(1, 8, 8\)"):
        get_attack(corner.name, clf, eps=0.1).run(*_data())
    assert clf.queries == 0


def test_classifier_is_the_public_base() -> None:
    assert issubclass(TorchClassifier, Classifier) and issubclass(CallableClassifier, Classifier)


def test_success_vs_queries_on_a_query_only_attack(corner, digits_cnn, digits28) -> None:
    from xrobust.attacks.evaluation import success_vs_queries

    x, y = digits28["x_test"][:32], digits28["y_test"][:32]
    res = get_attack(corner.name, digits_cnn, eps=0.3, seed=0, tries=6).run(x, y)
    c = success_vs_queries(res, points=8)
    assert c.queries[0] == 1 and c.queries[-1] == int(res.queries.max())
    assert all(a >= b for a, b in zip(c.robust_accuracy, c.robust_accuracy[1:]))
    assert c.robust_accuracy[-1] == pytest.approx(res.robust_accuracy)
    assert c.robust_accuracy[0] == pytest.approx(res.clean_accuracy)  # the clean query breaks none
    broken = res.queries[res.success & res.attacked].double()
    assert c.median_queries_successful == float(broken.median())
    # by hand: broken within b queries
    for b, acc in zip(c.queries, c.robust_accuracy):
        within = res.success & res.attacked & (res.queries <= b)
        want = float(((res.pred_clean == y) & ~within).double().mean())
        assert acc == pytest.approx(want)


def test_deletion_curve_reads_a_probability_classifier_as_probabilities(digits_cnn, digits28) -> None:
    from xrobust.explain import explain
    from xrobust.explain.metrics import deletion_curve

    x = digits28["x_test"][:4]
    e = explain(digits_cnn, x, method="saliency")

    def proba(a: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            return torch.softmax(digits_cnn(torch.from_numpy(a)), 1).numpy()

    clf = as_classifier(proba, output="probabilities", input_shape=(1, 28, 28))
    a = deletion_curve(digits_cnn, x, e, steps=4)
    b = deletion_curve(clf, x, e, steps=4)
    assert np.allclose(a.scores, b.scores, atol=1e-5)  # not a softmax of probabilities
