"""HopSkipJump: the closed-form distance of a linear model, exact query counts, batched
queries, the radius (eps given or None), the query budget, determinism. (Registry-wide
invariants: test_attacks_contract.py.)"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from xrobust.attacks import HopSkipJump, get_attack
from xrobust.errors import ConfigError
from xrobust.models import as_classifier


class CountingCalls(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls.append(int(x.shape[0]))
        return self.model(x)


def linear_binary(d: int = 20, seed: int = 0) -> tuple[nn.Module, torch.Tensor, float]:
    """Class 1 where w.x + b > 0, the boundary through the centre of [0, 1]^d."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, generator=g)
    b = float(-0.5 * w.sum())
    lin = nn.Linear(d, 2)
    with torch.no_grad():
        lin.weight[:] = torch.stack([torch.zeros(d), w])
        lin.bias[:] = torch.tensor([0.0, b])
    return lin.eval(), w, b


@pytest.fixture(scope="module")
def batch(digits28: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return digits28["x_test"][:16].clone(), digits28["y_test"][:16].clone()


def test_linear_model_distance_matches_the_closed_form() -> None:
    model, w, b = linear_binary()
    g = torch.Generator().manual_seed(1)
    x = 0.3 + 0.4 * torch.rand(16, 20, generator=g)
    y = (x @ w + b > 0).long()
    true = (x @ w + b).abs() / w.norm()  # L2 distance to the hyperplane
    res = HopSkipJump(model, norm="l2", queries=1000, seed=0).run(x, y)
    assert res.eps is None and res.to_dict()["eps"] is None
    assert bool(res.success.all())
    ratio = res.norms / true
    assert float(ratio.min()) >= 1.0 - 1e-4  # nothing closer than the boundary exists
    assert float(ratio.max()) < 1.1
    assert int(res.queries.max()) <= 1000


def test_linear_model_linf_distance_near_the_closed_form() -> None:
    model, w, b = linear_binary(d=10, seed=3)
    g = torch.Generator().manual_seed(2)
    x = 0.4 + 0.2 * torch.rand(12, 10, generator=g)
    y = (x @ w + b > 0).long()
    true = (x @ w + b).abs() / w.abs().sum()  # Linf distance: |w.x + b| / ||w||_1
    res = HopSkipJump(model, norm="linf", queries=1500, seed=0).run(x, y)
    assert bool(res.success.all())
    ratio = res.norms / true
    assert float(ratio.min()) >= 1.0 - 1e-4
    assert float(ratio.median()) < 1.5


def test_query_counts_are_the_rows_asked_and_queries_are_batched(digits_cnn, batch) -> None:
    x, y = batch
    model = CountingCalls(digits_cnn).eval()
    res = HopSkipJump(model, norm="l2", queries=300, init_evals=40, seed=0).run(x, y)
    assert int(res.queries.sum()) == sum(model.calls) == res.forward_passes
    assert int(res.queries.max()) <= 300
    # the first gradient estimate of every active example goes out in one batched query,
    # in calls of the classifier's batch_size (rows of many examples in each)
    k = int(res.attacked.sum())
    assert max(model.calls) >= min(40 * (k - 1), as_classifier(model).batch_size)
    big = HopSkipJump(as_classifier(model, batch_size=4096), norm="l2", queries=300,
                      init_evals=40, seed=0)  # fmt: skip
    model.calls.clear()
    assert torch.equal(big.run(x, y).queries, res.queries)  # the chunking changes nothing
    assert max(model.calls) >= 40 * (k - 1)
    # far fewer calls than rows: the step and binary searches are vectorised too
    assert len(model.calls) < sum(model.calls) / 10


def test_black_box_counts_equal_the_rows_the_classifier_received(digits_cnn, batch) -> None:
    x, y = batch
    seen: list[int] = []

    def labels(a):  # a label-only black box
        seen.append(len(a))
        with torch.no_grad():
            return digits_cnn(torch.as_tensor(a)).argmax(1).numpy()

    clf = as_classifier(labels, output="labels", input_shape=(1, 28, 28), num_classes=10,
                        bounds=(0.0, 1.0))  # fmt: skip
    res = HopSkipJump(clf, norm="l2", queries=200, init_evals=20, seed=0).run(x, y)
    ref = HopSkipJump(digits_cnn, norm="l2", queries=200, init_evals=20, seed=0).run(x, y)
    assert int(res.queries.sum()) == clf.queries == sum(seen)
    assert torch.equal(res.queries, ref.queries)  # labels alone give the same attack
    assert torch.allclose(res.norms, ref.norms, atol=1e-5)


def test_eps_given_success_only_within_it_and_early_exit(digits_cnn, batch) -> None:
    x, y = batch
    ev = HopSkipJump(digits_cnn, norm="l2", eps=5.0, queries=300, init_evals=20, seed=0).run(x, y)
    assert float(ev.norms.max()) <= 5.0 * (1 + 1e-5)
    with torch.no_grad():
        assert torch.equal(ev.pred_adv, digits_cnn(ev.x_adv).argmax(1))
    ok = ev.success & ev.attacked
    assert int(ok.sum()) > 0
    assert bool((ev.norms[ok] <= 5.0 * (1 + 1e-5)).all())
    # an example within eps leaves: it used fewer queries than one searching to the end
    fixed = HopSkipJump(
        digits_cnn, norm="l2", eps=5.0, queries=300, init_evals=20, seed=0, early_stop=False
    ).run(x, y)
    assert int(ev.queries[ok].sum()) < int(fixed.queries[ok].sum())
    assert bool((fixed.success | ~ev.success).all())  # never less successful
    assert bool((fixed.norms[ok] <= ev.norms[ok] + 1e-6).all())  # it went on shrinking


def test_eps_none_reports_the_minimal_perturbation(digits_cnn, batch) -> None:
    x, y = batch
    res = get_attack("hop_skip_jump", digits_cnn, norm="l2", queries=300, init_evals=20, seed=0).run(x, y)
    att = res.attacked
    assert bool(res.success[att].all())  # an adversarial for every example attacked
    d = res.to_dict()
    assert d["eps"] is None and d["median_norm_successful"] > 0
    delta = (res.x_adv - x).flatten(1).norm(dim=1)
    assert torch.allclose(res.norms, delta, atol=1e-5)
    assert float(res.x_adv.min()) >= 0 and float(res.x_adv.max()) <= 1


def test_more_queries_never_a_larger_perturbation(digits_cnn, batch) -> None:
    x, y = batch
    kw = dict(norm="l2", init_evals=20, seed=0)
    short = HopSkipJump(digits_cnn, queries=150, **kw).run(x, y)
    long = HopSkipJump(digits_cnn, queries=400, **kw).run(x, y)
    ok = short.success & short.attacked
    # the same path per example, followed further: the best found can only shrink
    assert bool((long.norms[ok] <= short.norms[ok] + 1e-6).all())
    assert float(long.norms[ok].median()) < float(short.norms[ok].median())


def test_query_budget_stops_cleanly(digits_cnn, batch) -> None:
    x, y = batch
    clf = as_classifier(digits_cnn, query_budget=700)
    res = HopSkipJump(clf, norm="l2", eps=4.0, queries=1000, seed=0).run(x, y)
    assert res.partial and "budget" in res.stop_reason
    assert int(res.queries.sum()) == clf.queries <= 700
    assert float(res.norms.max()) <= 4.0 * (1 + 1e-5)
    with torch.no_grad():
        assert torch.equal(res.pred_adv, digits_cnn(res.x_adv).argmax(1))


def test_deterministic_under_seed_and_independent_of_the_batch(digits_cnn, batch) -> None:
    x, y = batch
    kw = dict(norm="l2", queries=150, init_evals=20)
    a = HopSkipJump(digits_cnn, seed=4, **kw).run(x, y)
    b = HopSkipJump(digits_cnn, seed=4, **kw).run(x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)
    c = HopSkipJump(digits_cnn, seed=5, **kw).run(x, y)
    assert not torch.equal(a.x_adv, c.x_adv)


def test_targeted_starts_from_the_target_class(digits_cnn, digits28) -> None:
    x, y = digits28["x_test"][:24], digits28["y_test"][:24]
    target = (y + 1) % 10
    res = HopSkipJump(digits_cnn, norm="l2", queries=250, init_evals=20, seed=0).run(
        x, y, target=target
    )
    assert torch.equal(res.success, res.pred_adv == target)
    present = torch.isin(target, y) & res.attacked  # an image of the target is in the batch
    assert float(res.success[present].float().mean()) >= 0.9


def test_config_checks(digits_cnn) -> None:
    with pytest.raises(ConfigError, match="queries"):
        HopSkipJump(digits_cnn, queries=1)
    with pytest.raises(ConfigError, match="max_evals"):
        HopSkipJump(digits_cnn, init_evals=200, max_evals=100)
    with pytest.raises(ConfigError, match="gamma"):
        HopSkipJump(digits_cnn, gamma=0.0)
    with pytest.raises(ConfigError, match="larger than the bounds allow"):
        HopSkipJump(digits_cnn, eps=2.0)
    cfg = HopSkipJump(digits_cnn).config
    assert cfg.eps is None and cfg.queries == 5000 and cfg.init_evals == 100
    assert HopSkipJump.requires_gradients is False


@pytest.mark.slow
def test_finds_adversarials_for_most_digits_within_the_budget(digits_cnn, digits28) -> None:
    # the goal in small (there: >= 90% of 100 images within 5,000 queries)
    x, y = digits28["x_test"][:20], digits28["y_test"][:20]
    res = HopSkipJump(digits_cnn, norm="l2", queries=2000, seed=0).run(x, y)
    assert res.success_rate >= 0.9
    assert float(res.norms[res.success & res.attacked].median()) < 4.0


def test_no_start_found_returns_the_clean_inputs() -> None:
    class Constant(nn.Module):  # always class 0: no noise ever meets the goal
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            z = torch.zeros(x.shape[0], 2)
            z[:, 0] = 5.0
            return z + 0 * x.sum(1, keepdim=True)

    x = torch.rand(3, 4)
    res = HopSkipJump(Constant().eval(), queries=50, init_tries=5, seed=0).run(
        x, torch.zeros(3, dtype=torch.long)
    )
    assert not bool(res.success.any()) and torch.equal(res.x_adv, x)
    assert bool((res.queries == 1 + 5 + 0).all())  # the clean pass and the noise draws
