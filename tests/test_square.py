"""Square Attack: hand-checked schedule and starts, exact query counts, evaluation mode,
the query budget and score kinds. (Registry-wide invariants: test_attacks_contract.py.)"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from xrobust.attacks import Square, get_attack
from xrobust.attacks.square import l2_init, linf_init, p_schedule, square_pattern
from xrobust.errors import ConfigError, ModelError
from xrobust.models import as_classifier


class Counting(nn.Module):
    """A model counting the rows it is asked about, per clean image: each row is charged
    to the nearest clean image in Linf distance (every Square query lies within eps of
    its own image, and the test images are much further apart than eps); ``p`` is the
    attack's norm."""

    def __init__(self, model: nn.Module, x_clean: torch.Tensor, p: float = float("inf")) -> None:
        super().__init__()
        self.model, self.x_clean, self.p = model, x_clean.flatten(1), p
        self.per_example = torch.zeros(len(x_clean), dtype=torch.long)
        self.calls: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        owner = torch.cdist(x.detach().flatten(1), self.x_clean, p=self.p).argmin(1)
        self.per_example += torch.bincount(owner, minlength=len(self.x_clean))
        self.calls.append(int(x.shape[0]))
        return self.model(x)


class Constant(nn.Module):
    """Always class 0, whatever the input: never fooled, so the start is kept."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = torch.zeros(x.shape[0], 3, dtype=x.dtype)
        z[:, 0] = 10.0
        return z + 0 * x.flatten(1).sum(1, keepdim=True)


@pytest.fixture(scope="module")
def batch(digits28: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    return digits28["x_test"][:32].clone(), digits28["y_test"][:32].clone()


# ---------------------------------------------------------------------- hand-checked
def test_p_schedule_halves_at_the_reference_points() -> None:
    want = {0: 0.8, 10: 0.8, 11: 0.4, 50: 0.4, 51: 0.2, 200: 0.2, 201: 0.1, 500: 0.1,
            501: 0.05, 1000: 0.05, 1001: 0.025, 2000: 0.025, 2001: 0.0125, 4001: 0.00625,
            6001: 0.003125, 8000: 0.003125, 8001: 0.0015625, 9999: 0.0015625}  # fmt: skip
    for it, p in want.items():
        assert p_schedule(0.8, it, 10000) == pytest.approx(p), it
    # rescaled to the budget: iteration i of n is iteration i * 10000 / n of the reference
    assert p_schedule(0.8, 1, 1000) == 0.8  # 10 of 10,000
    assert p_schedule(0.8, 2, 1000) == 0.4  # 20
    assert p_schedule(0.8, 6, 1000) == 0.2  # 60
    assert p_schedule(0.8, 100, 1000) == 0.05  # 1000
    assert p_schedule(0.8, 101, 1000) == 0.025  # 1010
    assert p_schedule(0.3, 999, 1000) == pytest.approx(0.3 / 512)


def test_linf_start_is_vertical_stripes_on_the_ball_corners() -> None:
    x = torch.full((4, 2, 12, 10), 0.5)
    res = Square(Constant().eval(), eps=0.1, queries=2, seed=0).run(x, torch.zeros(4, dtype=torch.long))
    delta = res.x_adv - x
    assert torch.allclose(delta.abs(), torch.full_like(delta, 0.1), atol=1e-6)  # corners
    assert torch.equal(delta, delta[:, :, :1].expand_as(delta))  # constant down each column
    assert bool((delta[:, :, 0] > 0).any()) and bool((delta[:, :, 0] < 0).any())
    assert int(res.queries.max()) == 2  # the clean pass and the start
    s = torch.tensor([[[1.0, -1.0, 1.0]]])
    assert torch.equal(linf_init(s, 2), torch.tensor([[[[1.0, -1.0, 1.0], [1.0, -1.0, 1.0]]]]))


def test_l2_start_has_norm_eps_and_the_centred_square_layout() -> None:
    x = torch.full((3, 1, 28, 28), 0.5)
    res = Square(Constant().eval(), eps=1.0, norm="l2", queries=2, seed=0).run(
        x, torch.zeros(3, dtype=torch.long)
    )
    delta = res.x_adv - x
    assert torch.allclose(res.norms, torch.ones(3), atol=1e-5)
    # a 5 x 5 grid of 5-pixel tiles starting at pixel 1: row/col 0, 26 and 27 untouched
    for edge in (0, 26, 27):
        assert float(delta[:, :, edge].abs().max()) == 0.0
        assert float(delta[:, :, :, edge].abs().max()) == 0.0
    # each tile is +- the pattern (or its transpose)
    pat = square_pattern(5, 5).float()
    tile = delta[0, 0, 1:6, 1:6]
    scale = tile.norm()
    assert any(
        torch.allclose(tile / scale, sgn * p, atol=1e-5) for sgn in (1, -1) for p in (pat, pat.T)
    )
    d = l2_init(torch.ones(2, 3, 5, 5), torch.zeros(2, 5, 5, dtype=torch.bool), 28, 28)
    assert torch.allclose(d.flatten(1).norm(dim=1), torch.ones(2))


def test_square_pattern_has_two_opposite_pseudo_gaussian_halves() -> None:
    p = square_pattern(7, 7)
    assert float(p.norm()) == pytest.approx(1.0)
    assert bool((p[:3] > 0).all()) and bool((p[3:] < 0).all())
    assert float(p[:3].sum()) == pytest.approx(-float(p[3:].sum()), rel=0.35)
    top = p[:3]
    assert float(top[1, 3]) == float(top.max())  # peaked at the centre of the half


# ---------------------------------------------------------------------- queries
@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 2.0)])
def test_query_counts_are_the_rows_asked_per_example(digits_cnn, batch, norm, eps) -> None:
    x, y = batch
    model = Counting(digits_cnn, x, p=float("inf") if norm == "linf" else 2.0).eval()
    res = Square(model, eps=eps, norm=norm, queries=60, seed=0).run(x, y)
    assert torch.equal(res.queries, model.per_example)
    assert int(res.queries.max()) <= 60
    # one call per iteration: every active example is asked about together
    assert len(model.calls) <= 60 + 1
    assert model.calls[0] == len(x) and model.calls[1] == int(res.attacked.sum())


def test_evaluation_mode_stops_querying_fooled_examples(digits_cnn, batch) -> None:
    x, y = batch
    model = Counting(digits_cnn, x).eval()
    ev = Square(model, eps=0.15, queries=80, seed=0).run(x, y)
    assert torch.equal(ev.queries, model.per_example)
    fooled = ev.success & ev.attacked
    assert 0 < int(fooled.sum()) < int(ev.attacked.sum())
    # a fooled example was asked about up to the query that fooled it, then never again
    assert bool((ev.queries[fooled] < 80).any())
    assert torch.equal(ev.queries[ev.attacked], ev.steps[ev.attacked] + 1)
    assert bool((ev.queries[~ev.attacked] == 1).all())  # misclassified: the clean pass only
    assert bool((ev.queries[ev.attacked & ~ev.success] == 80).all())
    fixed = Square(digits_cnn, eps=0.15, queries=80, seed=0, early_stop=False).run(x, y)
    assert bool((fixed.queries == 80).all())  # every example gets every query
    assert fixed.robust_accuracy >= ev.robust_accuracy  # same paths: never more robust
    assert bool((fixed.success | ~ev.success).all())


def test_restarts_run_on_the_robust_examples_and_never_weaken(digits_cnn, batch) -> None:
    x, y = batch
    one = Square(digits_cnn, eps=0.1, queries=30, seed=2).run(x, y)
    three = Square(digits_cnn, eps=0.1, queries=30, restarts=3, seed=2).run(x, y)
    assert three.robust_accuracy <= one.robust_accuracy
    assert int(three.queries.max()) <= 90
    assert torch.equal(three.x_adv[one.success], one.x_adv[one.success])


def test_query_budget_stops_cleanly(digits_cnn, batch) -> None:
    x, y = batch
    clf = as_classifier(digits_cnn, query_budget=500)
    res = Square(clf, eps=0.1, queries=1000, seed=0).run(x, y)
    assert res.partial and "budget" in res.stop_reason
    assert int(res.queries.sum()) == clf.queries <= 500
    assert float(res.norms.max()) <= 0.1 + 1e-6
    with torch.no_grad():
        assert torch.equal(res.pred_adv, digits_cnn(res.x_adv).argmax(1))
    assert res.robust_accuracy < res.clean_accuracy


def test_black_box_classifier_counts_equal_rows_asked(digits_cnn, batch) -> None:
    x, y = batch
    calls: list[int] = []

    def predict(a):  # a NumPy predict function: a black box
        calls.append(len(a))
        with torch.no_grad():
            return digits_cnn(torch.as_tensor(a)).numpy()

    clf = as_classifier(predict, input_shape=(1, 28, 28), num_classes=10, bounds=(0.0, 1.0))
    res = Square(clf, eps=0.1, queries=40, seed=0).run(x, y)
    ref = Square(digits_cnn, eps=0.1, queries=40, seed=0).run(x, y)
    assert int(res.queries.sum()) == clf.queries == sum(calls)
    assert torch.equal(res.queries, ref.queries)
    assert float((res.x_adv - ref.x_adv).abs().max()) < 1e-6


def test_probabilities_give_the_logit_margin(digits_cnn, batch) -> None:
    x, y = batch
    ref = Square(digits_cnn, eps=0.1, queries=40, seed=1).run(x, y)
    probs = nn.Sequential(digits_cnn, nn.Softmax(dim=1)).eval()
    clf = as_classifier(probs, output="probabilities")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = Square(clf, eps=0.1, queries=40, seed=1).run(x, y)
    assert res.config["margin_on"] == "log-probabilities"
    assert torch.equal(res.success, ref.success)
    assert float((res.x_adv - ref.x_adv).abs().max()) < 1e-6


def test_labels_only_models_are_refused_with_advice(digits_cnn, batch) -> None:
    x, y = batch

    def labels(a):
        with torch.no_grad():
            return digits_cnn(torch.as_tensor(a)).argmax(1).numpy()

    clf = as_classifier(labels, output="labels", input_shape=(1, 28, 28), num_classes=10)
    with pytest.raises(ModelError, match="hop_skip_jump"):
        Square(clf, eps=0.1, queries=10).run(x, y)


def test_targeted_margin(digits_cnn, batch) -> None:
    x, y = batch
    target = (y + 3) % 10
    res = Square(digits_cnn, eps=0.3, queries=100, seed=0).run(x, y, target=target)
    assert torch.equal(res.success, res.pred_adv == target)
    assert float(res.success.float().mean()) > 0.5


def test_other_input_shapes(tabular_mlp, breast_cancer) -> None:
    x, y = breast_cancer["x_test"][:16], breast_cancer["y_test"][:16]
    for norm, eps in (("linf", 1.0), ("l2", 3.0)):
        res = get_attack("square", tabular_mlp, eps=eps, norm=norm, bounds=None, queries=50, seed=0).run(x, y)
        assert float(res.norms.max()) <= eps * (1 + 1e-5)
        assert res.robust_accuracy <= res.clean_accuracy


def test_config_checks(digits_cnn) -> None:
    with pytest.raises(ConfigError, match="queries"):
        Square(digits_cnn, eps=0.1, queries=1)
    with pytest.raises(ConfigError, match="p_init"):
        Square(digits_cnn, eps=0.1, p_init=1.5)
    with pytest.raises(ConfigError, match="restarts"):
        Square(digits_cnn, eps=0.1, restarts=0)
    assert Square.requires_gradients is False
    assert Square(digits_cnn).config.queries == 5000 and Square(digits_cnn).config.p_init == 0.8


@pytest.mark.slow
def test_square_close_to_white_box_apgd(digits_cnn, digits28) -> None:
    # the goal in small: Linf 0.1, 1,000 queries, within 10 points of APGD-CE
    x, y = digits28["x_test"][:64], digits28["y_test"][:64]
    sq = Square(digits_cnn, eps=0.1, queries=1000, seed=0).run(x, y)
    ap = get_attack("apgd", digits_cnn, eps=0.1, steps=100, seed=0).run(x, y)
    assert sq.robust_accuracy <= ap.robust_accuracy + 0.10
