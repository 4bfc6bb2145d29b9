"""The attack maths on their own: projections, steps, starts, losses (hypothesis), and
hand-computed attacks on tiny linear models."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from xrobust.attacks import APGD, FGSM, PGD
from xrobust.attacks import _functional as F

SETTINGS = settings(max_examples=25, deadline=None)

shapes = st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple)
norms = st.sampled_from(["linf", "l2"])


@st.composite
def cases(draw):
    n = draw(st.integers(1, 4))
    shape = (n, *draw(shapes))
    lo = draw(st.floats(-2, 1))
    hi = lo + draw(st.floats(0.1, 3))
    eps = draw(st.floats(0.0, 1.0))
    seed = draw(st.integers(0, 2**16))
    return shape, (lo, hi), eps, seed


def _inside(xa, x, eps, norm, bounds, tol=1e-5):
    n = F.lp_norm(xa - x, norm)
    ok = bool((n <= eps + tol).all())
    if bounds is not None:
        ok &= bool((xa >= bounds[0] - 1e-7).all() and (xa <= bounds[1] + 1e-7).all())
    return ok


@SETTINGS
@given(cases(), norms)
def test_projection_and_clip_land_in_ball_and_bounds(case, norm) -> None:
    shape, bounds, eps, seed = case
    g = torch.Generator().manual_seed(seed)
    x = bounds[0] + (bounds[1] - bounds[0]) * torch.rand(shape, generator=g)
    far = x + 5 * torch.randn(shape, generator=g)
    out = F.clip_to_ball_and_bounds(far, x, eps, norm, bounds)
    assert _inside(out, x, eps, norm, bounds)
    # points already inside are left alone
    inner = F.clip_to_ball_and_bounds(x + 0.0, x, eps, norm, bounds)
    assert torch.allclose(inner, x)
    # projection is idempotent
    p = F.project(far - x, eps, norm)
    assert torch.allclose(F.project(p, eps, norm), p, atol=1e-6)


@SETTINGS
@given(cases(), norms)
def test_random_start_in_ball(case, norm) -> None:
    shape, bounds, eps, seed = case
    g = torch.Generator().manual_seed(seed)
    x = bounds[0] + (bounds[1] - bounds[0]) * torch.rand(shape, generator=g)
    out = F.random_start(x, eps, norm, bounds, g)
    assert _inside(out, x, eps, norm, bounds)


@SETTINGS
@given(cases(), norms)
def test_per_example_eps(case, norm) -> None:
    shape, _bounds, eps, seed = case
    g = torch.Generator().manual_seed(seed)
    e = torch.rand(shape[0], generator=g) * eps
    out = F.project(5 * torch.randn(shape, generator=g), e, norm)
    assert bool((F.lp_norm(out, norm) <= e + 1e-5).all())


def test_l2_projection_scales_radially() -> None:
    d = torch.tensor([[3.0, 4.0], [0.3, 0.4]])
    out = F.project(d, 1.0, "l2")
    assert torch.allclose(out, torch.tensor([[0.6, 0.8], [0.3, 0.4]]))
    assert torch.equal(
        F.project(torch.tensor([[2.0, -0.5]]), 1.0, "linf"), torch.tensor([[1.0, -0.5]])
    )


def test_l2_step_uses_normalised_gradient_not_sign() -> None:
    g = torch.tensor([[3.0, 4.0, 0.0]])
    step = F.gradient_step(torch.zeros(1, 3), g, 0.5, "l2")
    assert torch.allclose(step, torch.tensor([[0.3, 0.4, 0.0]]))
    assert torch.equal(
        F.gradient_step(torch.zeros(1, 3), g, 0.5, "linf"), torch.tensor([[0.5, 0.5, 0.0]])
    )


def test_losses_on_hand_made_logits() -> None:
    z = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    y = torch.tensor([0])
    t = torch.tensor([2])
    assert torch.allclose(F.margin_loss(z, y), torch.tensor([-1.0]))
    assert torch.allclose(F.ce_loss(z, y), -torch.log_softmax(z, 1)[:, 0])
    # DLR: -(z_y - max_{j!=y} z_j) / (z_pi1 - z_pi3) = -(2 - 1) / (2 - 0)
    assert torch.allclose(F.dlr_loss(z, y), torch.tensor([-0.5]))
    # targeted DLR: -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2) = -(2 - 0) / (2 + 0.5)
    assert torch.allclose(F.dlr_targeted_loss(z, y, t), torch.tensor([-0.8]))
    assert torch.allclose(F.per_example_loss("margin", z, y, t), -F.margin_loss(z, t))


def _linear(w: torch.Tensor, b: torch.Tensor) -> nn.Module:
    m = nn.Linear(w.shape[1], w.shape[0])
    with torch.no_grad():
        m.weight.copy_(w)
        m.bias.copy_(b)
    return m.eval()


def test_fgsm_closed_form_on_linear_model() -> None:
    # 2 classes, logits z = W x + b: d CE / dx = (softmax - onehot) W, for y = 0 it points
    # along (p1) * (w1 - w0), so sign(grad) = sign(w1 - w0).
    w = torch.tensor([[1.0, -2.0, 0.5, 0.0], [-1.0, 1.0, -0.5, 3.0]])
    m = _linear(w, torch.zeros(2))
    x = torch.full((1, 4), 0.5)
    res = FGSM(m, eps=0.1, early_stop=False).run(x, torch.tensor([0]))
    expected = x + 0.1 * torch.sign(w[1] - w[0])
    assert torch.allclose(res.x_adv, expected)
    # L2 (FGM): step eps along (w1 - w0) / ||w1 - w0||
    res2 = FGSM(m, eps=0.1, norm="l2", early_stop=False).run(x, torch.tensor([0]))
    d = w[1] - w[0]
    assert torch.allclose(res2.x_adv, x + 0.1 * d / d.norm(), atol=1e-6)
    # targeted towards class 1 moves the same way
    res3 = FGSM(m, eps=0.1, early_stop=False).run(x, torch.tensor([0]), target=1)
    assert torch.allclose(res3.x_adv, expected)


def test_pgd_reaches_the_optimal_corner_of_a_linear_model() -> None:
    # the margin of a linear binary model is maximised at x + eps * sign(w1 - w0) (within
    # bounds): the exact optimum of the linf problem, which PGD must find
    w = torch.tensor([[0.5, -1.0, 2.0], [-0.5, 1.0, -2.0]])
    m = _linear(w, torch.tensor([4.0, 0.0]))  # class 0 wins by a wide margin: never fooled
    x = torch.tensor([[0.5, 0.5, 0.95]])
    res = PGD(m, eps=0.2, steps=20, loss="margin", seed=0, early_stop=False).run(
        x, torch.tensor([0])
    )
    best = (x + 0.2 * torch.sign(w[1] - w[0])).clamp(0, 1)
    assert torch.allclose(res.x_adv, best, atol=1e-6)
    # l2: optimum at x + eps * d / ||d|| (inside the bounds here)
    x2 = torch.tensor([[0.5, 0.5, 0.5]])
    r2 = PGD(
        m,
        eps=0.2,
        norm="l2",
        steps=5,
        step_size=0.1,
        random_start=False,
        loss="margin",
        early_stop=False,
    ).run(x2, torch.tensor([0]))
    d = w[1] - w[0]
    assert torch.allclose(r2.x_adv, x2 + 0.2 * d / d.norm(), atol=1e-6)


def test_minimal_linf_distance_of_a_linear_model_matches_closed_form() -> None:
    from xrobust.attacks.evaluation import minimal_perturbation

    # binary linear model: the smallest linf perturbation crossing the boundary is
    # margin / ||w1 - w0||_1 (when the bounds do not bind)
    w = torch.tensor([[0.3, -0.2, 0.1, 0.4], [-0.1, 0.2, 0.3, -0.4]])
    b = torch.tensor([0.2, 0.0])
    m = _linear(w, b)
    x = torch.full((3, 4), 0.5) + torch.tensor([[0.0], [0.05], [-0.05]])
    y = torch.zeros(3, dtype=torch.long)
    with torch.no_grad():
        z = m(x)
    exact = (z[:, 0] - z[:, 1]) / (w[0] - w[1]).abs().sum()
    r = minimal_perturbation(m, x, y, "pgd", eps_max=0.4, bisection_steps=12, steps=10, seed=0)
    assert bool(r.found.all())
    assert torch.allclose(r.eps, exact, atol=0.4 / 2**12 + 1e-4)
    assert r.to_dict()["found_fraction"] == 1.0


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_apgd_step_schedule_matches_reference_counts(norm) -> None:
    # with 100 iterations the reference checks at 22, 22+19, ... (k shrinking by 3 to >= 6)
    k, marks, i = 22, [], 0
    while True:
        i += k
        if i > 100:
            break
        marks.append(i)
        k = max(k - 3, 6)
    assert marks[:3] == [22, 41, 57]
    m = nn.Sequential(nn.Flatten(), nn.Linear(8, 4)).eval()
    res = APGD(m, eps=0.1, norm=norm, steps=100, seed=0, early_stop=False).run(
        torch.rand(3, 8), torch.tensor([0, 1, 2])
    )
    assert int(res.steps.max()) == 100 and math.isclose(res.eps, 0.1)
