"""FAB and FAB-T: the hyperplane-box projections against an LP / QP solver, closed-form
minimal distances on linear models, the minimum-norm contract, and (slow) the reference
implementation of Croce and Hein (pyautoattack)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from xrobust.attacks import FAB, FABT, get_attack
from xrobust.attacks._hyperplane import project_l2, project_linf
from xrobust.attacks.evaluation import minimal_perturbation

scipy_opt = pytest.importorskip("scipy.optimize")


def _instances(seed: int, m: int = 40, d: int = 6, bounded: bool = True):
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(m, d, generator=g, dtype=torch.float64)
    w = torch.randn(m, d, generator=g, dtype=torch.float64)
    w[::7, 0] = 0.0  # some zero weights
    # offsets reachable inside the box for most rows, beyond it for a few
    z = torch.rand(m, d, generator=g, dtype=torch.float64)
    b = (w * z).sum(1)
    b[::9] = (w.abs().sum(1) + 1.0)[::9] * torch.sign(b[::9] + 1e-9)  # out of reach
    return p, w, b, ((0.0, 1.0) if bounded else None)


def _lp_linf(p, w, b, bounds):
    """min t s.t. -t <= d_i <= t, w.d = b - w.p, lo <= p + d <= hi (scipy's HiGHS)."""
    d = len(p)
    c = np.r_[np.zeros(d), 1.0]
    a_ub = np.block([[np.eye(d), -np.ones((d, 1))], [-np.eye(d), -np.ones((d, 1))]])
    b_ub = np.zeros(2 * d)
    a_eq = np.r_[w, 0.0][None]
    b_eq = [b - w @ p]
    lo, hi = (-np.inf, np.inf) if bounds is None else bounds
    box = [(lo - pi, hi - pi) for pi in p] + [(0, None)]
    r = scipy_opt.linprog(c, a_ub, b_ub, a_eq, b_eq, bounds=box, method="highs")
    return r.x[:d] if r.status == 0 else None


def _qp_l2(p, w, b, bounds):
    d = len(p)
    lo, hi = (-np.inf, np.inf) if bounds is None else bounds
    cons = [{"type": "eq", "fun": lambda v: w @ v - (b - w @ p), "jac": lambda v: w}]
    box = [(lo - pi, hi - pi) for pi in p]
    r = scipy_opt.minimize(
        lambda v: v @ v, np.zeros(d), jac=lambda v: 2 * v, constraints=cons, bounds=box,
        method="SLSQP", options={"ftol": 1e-14, "maxiter": 500},
    )  # fmt: skip
    return r.x if r.success and abs(w @ r.x - (b - w @ p)) < 1e-7 else None


def _reachable(p, w, b, bounds) -> bool:
    if bounds is None:
        return bool(np.any(w != 0))
    lo, hi = bounds
    reach = (
        np.where(w > 0, w * (hi - p), w * (lo - p)).sum(),
        np.where(w > 0, w * (lo - p), w * (hi - p)).sum(),
    )
    need = b - w @ p
    return reach[1] - 1e-12 <= need <= reach[0] + 1e-12


@pytest.mark.parametrize("bounded", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_linf_projection_matches_linear_programming(seed, bounded) -> None:
    p, w, b, bounds = _instances(seed, bounded=bounded)
    d = project_linf(p, w, b, bounds)
    checked = 0
    for i in range(len(p)):
        pn, wn, bn = p[i].numpy(), w[i].numpy(), float(b[i])
        di = d[i].numpy()
        if bounds is not None:
            assert np.all(pn + di >= -1e-12) and np.all(pn + di <= 1 + 1e-12)
        if not _reachable(pn, wn, bn, bounds):
            # out of reach: the box corner nearest the hyperplane
            need = bn - wn @ pn
            s = np.sign(need)
            corner = np.where(s * wn > 0, 1 - pn, -pn) * (wn != 0)
            assert np.allclose(di, corner, atol=1e-12)
            continue
        ref = _lp_linf(pn, wn, bn, bounds)
        assert ref is not None
        assert abs(wn @ (pn + di) - bn) < 1e-9
        assert abs(np.abs(di).max() - np.abs(ref).max()) < 1e-9
        checked += 1
    assert checked >= 20


@pytest.mark.parametrize("bounded", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_l2_projection_matches_quadratic_programming(seed, bounded) -> None:
    p, w, b, bounds = _instances(seed, bounded=bounded)
    d = project_l2(p, w, b, bounds)
    checked = 0
    for i in range(len(p)):
        pn, wn, bn = p[i].numpy(), w[i].numpy(), float(b[i])
        di = d[i].numpy()
        if bounds is not None:
            assert np.all(pn + di >= -1e-12) and np.all(pn + di <= 1 + 1e-12)
        if not _reachable(pn, wn, bn, bounds):
            need = bn - wn @ pn
            corner = np.where(np.sign(need) * wn > 0, 1 - pn, -pn) * (wn != 0)
            assert np.allclose(di, corner, atol=1e-12)
            continue
        ref = _qp_l2(pn, wn, bn, bounds)
        assert ref is not None
        assert abs(wn @ (pn + di) - bn) < 1e-9
        assert np.allclose(di, ref, atol=1e-6)  # the minimiser is unique
        checked += 1
    assert checked >= 20


def test_projection_of_a_point_on_the_hyperplane_is_zero() -> None:
    p = torch.rand(5, 4, dtype=torch.float64)
    w = torch.randn(5, 4, dtype=torch.float64)
    b = (w * p).sum(1)
    for proj in (project_linf, project_l2):
        assert float(proj(p, w, b, (0.0, 1.0)).abs().max()) < 1e-12


def _binary_linear(d: int = 20, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    m = nn.Linear(d, 2).double()
    return m.eval()


@pytest.mark.parametrize("norm", ["l2", "linf"])
@pytest.mark.parametrize("cls", [FAB, FABT])
def test_linear_model_closed_form_minimal_distance(norm, cls) -> None:
    """On a binary linear model the minimal distance to the boundary is
    |w.x + b| / ||w||_dual (unbounded inputs); FAB finds it within 1%."""
    model = _binary_linear()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(32, 20, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
        wd = (model.weight[1] - model.weight[0]).double()
        f = x @ wd + (model.bias[1] - model.bias[0])
    dual = wd.norm() if norm == "l2" else wd.abs().sum()
    exact = f.abs() / dual
    res = cls(model, eps=100.0, norm=norm, bounds=None, early_stop=False, steps=100).run(x, y)
    assert bool(res.success.all())
    rel = (res.norms.double() - exact) / exact
    assert float(rel.min()) >= -1e-6  # never below the true minimum: it is adversarial
    assert float(rel.max()) < 0.01, float(rel.max())


def test_linear_model_with_bounds_matches_the_box_projection() -> None:
    """With input bounds the first projection from the clean input is the exact minimal
    L2 perturbation of a linear model (the QP), and FAB converges to it."""
    model = _binary_linear(d=6, seed=3)
    g = torch.Generator().manual_seed(2)
    x = torch.rand(16, 6, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
        wd = (model.weight[1] - model.weight[0]).double()
        bd = float(model.bias[0] - model.bias[1])
    res = FABT(model, eps=2.4, norm="l2", early_stop=False, steps=200).run(x, y)
    for i in range(len(x)):
        if not bool(res.success[i]):
            continue
        ref = _qp_l2(x[i].numpy(), wd.numpy(), bd, (0.0, 1.0))
        if ref is None:
            continue
        exact = float(np.linalg.norm(ref))
        assert exact - 1e-9 <= float(res.norms[i]) <= exact * 1.01 + 1e-9


def test_success_within_eps_and_x_adv_inside_the_ball(digits_cnn, digits28) -> None:
    x, y = digits28["x_test"][:16], digits28["y_test"][:16]
    kw = dict(steps=20, n_target_classes=3, early_stop=False)
    big = FABT(digits_cnn, eps=0.3, **kw).run(x, y)
    small = FABT(digits_cnn, eps=0.05, **kw).run(x, y)
    # the same trajectories (deterministic): success within 0.05 iff the minimum is <= 0.05
    ok = big.success & big.attacked & (big.norms <= 0.05)
    assert torch.equal(small.success & small.attacked, ok)
    assert float(small.norms.max()) <= 0.05 + 1e-6
    assert torch.equal(small.x_adv[~small.success], x[~small.success])


def test_minimal_perturbation_uses_the_norms_of_one_run(digits_cnn, digits28) -> None:
    x, y = digits28["x_test"][:24], digits28["y_test"][:24]
    mp = minimal_perturbation(digits_cnn, x, y, "fab_t", eps_max=0.3, steps=20)
    run = FABT(digits_cnn, eps=0.3, steps=20, early_stop=False).run(x, y)
    assert mp.tolerance == 0.0
    assert torch.equal(mp.found, run.success.cpu() | (run.pred_clean != run.y).cpu())
    found = mp.found & (run.pred_clean == run.y)
    assert torch.allclose(mp.eps[found], run.norms[found])
    assert bool((mp.eps[run.pred_clean != run.y] == 0).all())
    with torch.no_grad():
        assert bool((digits_cnn(mp.x_adv[found]).argmax(1) != y[found]).all())


def test_gradient_passes_are_counted(digits_cnn, digits28) -> None:
    x, y = digits28["x_test"][:16], digits28["y_test"][:16]
    t = FABT(digits_cnn, eps=0.3, steps=5, n_target_classes=1, early_stop=False).run(x, y)
    n = int((t.pred_clean == t.y).sum())  # examples misclassified clean are not attacked
    assert t.gradient_passes == 5 * n  # one gradient row per example and iteration
    u = FAB(digits_cnn, eps=0.3, steps=5, early_stop=False).run(x, y)
    assert u.gradient_passes == 5 * n * 10  # the 10 class gradients per iteration


def test_options_are_validated(digits_cnn) -> None:
    from xrobust.errors import ConfigError

    for bad in (dict(alpha_max=0.0), dict(beta=1.5), dict(eta=-1.0), dict(restarts=0)):
        with pytest.raises(ConfigError):
            get_attack("fab_t", digits_cnn, eps=0.1, **bad)
    assert get_attack("fab-t", digits_cnn, eps=0.1).config.n_target_classes == 9


def test_restarts_never_weaker(digits_cnn, digits28) -> None:
    x, y = digits28["x_test"][:32], digits28["y_test"][:32]
    one = FABT(digits_cnn, eps=0.06, steps=10, n_target_classes=2, seed=0).run(x, y)
    two = FABT(digits_cnn, eps=0.06, steps=10, n_target_classes=2, restarts=2, seed=0).run(x, y)
    assert two.robust_accuracy <= one.robust_accuracy


# ---------------------------------------------------------------- the reference
def _reference_fab_t(model, x, y, norm: str, eps: float, n_iter: int = 100):
    aa = pytest.importorskip("pyautoattack")
    fab = aa.fab_pt.FABAttack_PT(
        model, norm="Linf" if norm == "linf" else "L2", n_restarts=1, n_iter=n_iter, eps=eps,
        seed=0, n_target_classes=9, device=x.device,
    )  # fmt: skip
    fab.targeted = True
    with torch.no_grad():
        return fab.perturb(x, y)


@pytest.mark.slow
@pytest.mark.parametrize("norm,eps", [("linf", 0.1), ("l2", 1.0)])
def test_fab_t_no_weaker_than_the_reference(digits_cnn, digits28, norm, eps) -> None:
    # 24 images and 25 iterations (both sides) keep the suite fast;
    # benchmarks/bench_fab.py compares 128 images at the reference's 100 (BENCHMARKS.md)
    n, steps = 24, 25
    x, y = digits28["x_test"][:n], digits28["y_test"][:n]
    model = copy.deepcopy(digits_cnn)
    x_ref = _reference_fab_t(model, x, y, norm, eps, n_iter=steps)
    with torch.no_grad():
        d = (x_ref - x).flatten(1)
        n_ref = d.abs().amax(1) if norm == "linf" else d.norm(dim=1)
        ok_ref = (model(x_ref).argmax(1) == y) | (n_ref > eps + 1e-6)
    ours = FABT(model, eps=eps, norm=norm, steps=steps).run(x, y)
    assert ours.robust_accuracy <= float(ok_ref.float().mean()) + 1 / n + 1e-9
