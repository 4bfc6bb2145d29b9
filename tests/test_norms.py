"""The norm objects' home (:mod:`xrobust.norms`): layering, the re-exports, and what
callers ask of a norm (eps grids and sliders, probe directions, HopSkipJump's pieces),
checked against closed forms and the geometry itself."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import xrobust.attacks.norms as attack_norms
from xrobust.attacks import Square
from xrobust.errors import ConfigError
from xrobust.models.inference import random_directions, unit_direction
from xrobust.norms import NORMS, Linf, get_norm, list_norms


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
    assert list_norms() == ["linf", "l2"]
    assert get_norm("inf") is NORMS["linf"]
    with pytest.raises(ConfigError, match="expected one of linf, l2"):
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


def test_square_knows_its_norms_by_object() -> None:
    assert set(Square.proposals) == set(NORMS.values())
