"""The norm objects' home (:mod:`xrobust.norms`): layering, the re-exports, and what
callers ask of a norm (eps grids and sliders, probe directions, HopSkipJump's pieces),
checked against closed forms and the geometry itself."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

import xrobust.attacks.norms as attack_norms
from xrobust.attacks import FGSM, PGD, HopSkipJump, Square
from xrobust.errors import ConfigError
from xrobust.models.inference import random_directions, unit_direction
from xrobust.norms import L1, NORMS, Linf, get_norm, list_norms


def test_norms_import_nothing_above_them() -> None:
    code = (
        "import sys, xrobust.norms, xrobust._hyperplane\n"
        "bad = [m for m in sys.modules if m.split('.')[:2] in "
        "(['xrobust','attacks'], ['xrobust','models'], ['xrobust','audit'], ['xrobust','apps'])]\n"
        "print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_attacks_norms_reexports_the_same_objects() -> None:
    assert attack_norms.get_norm is get_norm
    assert attack_norms.NORMS is NORMS
    assert list_norms() == ["linf", "l2", "l1"]
    assert get_norm("inf") is NORMS["linf"]
    with pytest.raises(ConfigError, match="expected one of linf, l2, l1"):
        get_norm("l7")


@pytest.mark.parametrize(
    ("name", "grid", "slider"),
    [
        ("linf", [0.025, 0.05, 0.1, 0.2, 0.3], (0.5, 0.1, 0.3)),
        ("l2", [0.25, 0.5, 1.0, 2.0, 3.0], (5.0, 1.0, 3.0)),
    ],
)
def test_eps_grid_and_slider_scale_with_the_span(name: str, grid: list, slider: tuple) -> None:
    n = get_norm(name)
    assert n.eps_grid() == grid
    assert n.eps_grid(2.0) == [round(2.0 * g, 6) for g in grid]
    s = n.eps_slider(4.0)
    assert (s.max, s.default, s.probe) == tuple(4.0 * v for v in slider)
    assert 0 < s.default <= s.probe <= s.max


@pytest.mark.parametrize("name", ["linf", "l2"])
def test_normalize_gives_unit_rows_and_keeps_zero_rows(name: str) -> None:
    n = get_norm(name)
    d = torch.randn(4, 3, 5, generator=torch.Generator().manual_seed(0))
    d[2] = 0
    u = n.normalize(d)
    sizes = n.measure(u)
    assert torch.allclose(sizes[[0, 1, 3]], torch.ones(3))
    assert sizes[2] == 0
    assert torch.equal(unit_direction(d, n), u)
    # the same direction: u is a positive multiple of d
    assert torch.allclose(u[0] * n.measure(d[:1]), d[0])


@pytest.mark.parametrize("name", ["linf", "l2"])
def test_random_unit_directions_have_norm_one(name: str) -> None:
    n = get_norm(name)
    r = random_directions(torch.zeros(3, 2, 4), name, k=5, seed=1)
    assert r.shape == (5, 3, 2, 4)
    assert torch.allclose(n.measure(r.reshape(15, -1)), torch.ones(15))
    if isinstance(n, Linf):
        assert set(r.unique().tolist()) == {-1.0, 1.0}  # corners of the ball
    assert torch.equal(r, random_directions(torch.zeros(3, 2, 4), name, k=5, seed=1))


@pytest.mark.parametrize("name", ["linf", "l2"])
def test_hsj_binary_search_ends_are_the_clean_and_the_adversarial_points(name: str) -> None:
    n = get_norm(name)
    g = torch.Generator().manual_seed(3)
    x0, xa = torch.rand(4, 6, generator=g), torch.rand(4, 6, generator=g)
    dist0 = n.measure(xa - x0)
    high, thr = n.hsj_search_range(dist0, 0.01)
    assert torch.allclose(n.hsj_toward(x0, xa, high), xa)
    assert torch.allclose(n.hsj_toward(x0, xa, torch.zeros_like(high)), x0)
    assert bool((thr > 0).all()) and bool((thr <= 0.01).all())
    # halfway along the search the point is no farther than half the way
    mid = n.hsj_toward(x0, xa, high / 2)
    assert bool((n.measure(mid - x0) <= dist0 / 2 + 1e-6).all())


def test_hsj_scales_follow_the_paper() -> None:
    # theta = gamma / d^(3/2) (L2) or gamma / d^2 (Linf); probes at sqrt(d) or d * theta * dist
    assert get_norm("l2").hsj_theta_scale(16) == 64.0
    assert get_norm("linf").hsj_theta_scale(16) == 256
    assert get_norm("l2").hsj_probe_scale(16) == 4.0
    assert get_norm("linf").hsj_probe_scale(16) == 16
    grad = torch.tensor([[0.5, -2.0, 0.0]])
    assert torch.equal(get_norm("linf").hsj_update(grad), grad.sign())
    assert torch.equal(get_norm("l2").hsj_update(grad), grad)


def test_square_and_hsj_name_the_norms_they_lack() -> None:
    assert set(Square.proposals) == {get_norm("linf"), get_norm("l2")}
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    with pytest.raises(ConfigError, match="square defines proposals for the norms linf, l2"):
        Square(net, eps=1.0, norm="l1")
    with pytest.raises(ConfigError, match="hop_skip_jump has no l1 variant"):
        HopSkipJump(net, eps=1.0, norm="l1", bounds=(0.0, 1.0))


# ---------------------------------------------------------------------- L1
def _brute_l1_box(v: torch.Tensor, eps: float, cap: torch.Tensor) -> torch.Tensor:
    """The nearest point of {|z|_1 <= eps, -cap <= z <= cap (per sign)} to v, by a fine
    search over the soft threshold theta (the KKT form) in float64: the feasible
    threshold nearest to 0 (the distance grows with theta)."""
    a = v.abs()
    theta = torch.linspace(0, float(a.max()), 200001, dtype=torch.float64)[:, None]
    z = v.sign() * (a - theta).clamp_min(0).minimum(cap)
    first = int((z.abs().sum(1) <= eps + 1e-9).nonzero()[0])
    return z[first]


def test_l1_projection_matches_the_closed_form() -> None:
    l1 = get_norm("l1")
    # closed form: (3, 1) onto the ball of radius 2 -> threshold 1 -> (2, 0)
    assert torch.allclose(l1.project(torch.tensor([[3.0, 1.0]]), 2.0), torch.tensor([[2.0, 0.0]]))
    # (1, 1, -1) radius 1.5: threshold 0.5 -> (0.5, 0.5, -0.5); inside rows are unchanged
    d = torch.tensor([[1.0, 1.0, -1.0], [0.1, 0.2, 0.3]])
    out = l1.project(d, torch.tensor([1.5, 1.0]))
    assert torch.allclose(out, torch.tensor([[0.5, 0.5, -0.5], [0.1, 0.2, 0.3]]))


def test_l1_projection_onto_ball_and_box_is_the_nearest_point() -> None:
    l1 = get_norm("l1")
    g = torch.Generator().manual_seed(5)
    x = torch.rand(6, 5, generator=g, dtype=torch.float64)
    z = x + 2.0 * torch.randn(6, 5, generator=g, dtype=torch.float64)
    out = l1.clip(z, x, 0.8, (0.0, 1.0))
    assert bool((l1.measure(out - x) <= 0.8 + 1e-9).all())
    assert bool(((out >= 0) & (out <= 1)).all())
    for i in range(6):
        v = z[i] - x[i]
        cap = torch.where(v > 0, 1 - x[i], x[i])
        want = _brute_l1_box(v, 0.8, cap)
        assert torch.allclose(out[i] - x[i], want, atol=1e-4)
    # it is no farther from z than the project-then-clip point (also feasible)
    naive = (x + l1.project(z - x, 0.8)).clamp(0, 1)
    assert bool(((out - z).norm(dim=1) <= (naive - z).norm(dim=1) + 1e-9).all())


def test_l1_direction_is_a_unit_sparse_sign_step() -> None:
    l1 = get_norm("l1")
    grad = torch.randn(3, 400, generator=torch.Generator().manual_seed(2))
    step = l1.direction(grad)
    assert torch.allclose(l1.measure(step), torch.ones(3))
    k = math.ceil(L1.sparsity * 400)
    assert bool(((step != 0).sum(1) == k).all())
    top = grad.abs().topk(k, dim=1).indices
    assert torch.equal(step.gather(1, top).sign(), grad.gather(1, top).sign())
    # the steepest ascent: its gain equals the dual norm when k = 1
    one = l1.direction(grad[:, :50])
    assert torch.allclose((one * grad[:, :50]).sum(1), l1.dual(grad[:, :50]))


def test_l1_random_starts_lie_in_the_ball() -> None:
    l1 = get_norm("l1")
    g = torch.Generator().manual_seed(4)
    x = torch.rand(8, 1, 6, 6, generator=g)
    r = l1.random_start(x, 3.0, (0.0, 1.0), generator=g)
    assert bool((l1.measure(r - x) <= 3.0 + 1e-5).all()) and bool(((r >= 0) & (r <= 1)).all())
    s = l1.surface_start(x, 3.0, None, generator=g)
    assert torch.allclose(l1.measure(s - x), torch.full((8,), 3.0), atol=1e-4)


def test_fgsm_and_pgd_in_l1_stay_in_the_ball_and_lower_accuracy() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(36, 4)).eval()
    x = torch.rand(32, 1, 6, 6, generator=torch.Generator().manual_seed(1))
    y = net(x).argmax(1)
    for atk in (
        FGSM(net, eps=2.0, norm="l1", bounds=(0.0, 1.0)),
        PGD(net, eps=2.0, norm="l1", steps=20, step_size=0.5, bounds=(0.0, 1.0), seed=0),
    ):
        res = atk.run(x, y)
        assert bool((res.norms <= 2.0 + 1e-4).all())
        assert bool(((res.x_adv >= 0) & (res.x_adv <= 1)).all())
        # y is the model's own prediction (clean accuracy 1): the attack must fool some
        assert res.robust_accuracy < 1.0


def test_audit_grids_come_from_the_norm() -> None:
    from xrobust.audit._runtime import default_eps
    from xrobust.data.spec import DatasetSpec

    img = DatasetSpec(
        name="t",
        modality="image",
        input_shape=(1, 28, 28),
        num_classes=2,
        class_names=("a", "b"),
        bounds=(0.0, 1.0),
    )
    # the fractions of max_radius (1 for Linf, 28 for L2, 784 for L1), to 2 figures
    assert default_eps(img, "linf", None) == [0.05, 0.1, 0.15, 0.2, 0.3]
    assert default_eps(img, "l2", None) == [0.56, 1.1, 2.2, 3.4]
    assert default_eps(img, "l1", None) == [1.6, 3.1, 6.3, 13.0]
