"""Projections onto the intersection of a hyperplane and a box (FAB's step).

For points ``p`` (m, d), normals ``w`` (m, d) and offsets ``b`` (m,), each function
returns the smallest perturbation ``delta`` (m, d) in its norm with

    w . (p + delta) = b   and   lo <= p + delta <= hi   (the input bounds, per coordinate),

row by row and without a Python loop over rows or coordinates. Both problems are convex
and their solutions have a closed form up to one scalar found by sorting:

* L2: ``delta_i = s_i * min(lam * |w_i|, cap_i)`` (the KKT conditions of the QP), with
  ``s_i`` the sign that moves ``w . p`` towards ``b`` and ``cap_i`` how far coordinate i
  can move that way inside the box; the constraint is piecewise linear and increasing in
  ``lam``, with breakpoints ``cap_i / |w_i|``.
* Linf: ``delta_i = s_i * min(t, cap_i)`` (fill every coordinate up to the radius t),
  piecewise linear and increasing in ``t`` with breakpoints ``cap_i``.

Sorting the breakpoints and taking cumulative sums gives the constraint's value at each
breakpoint, hence the segment that holds the solution and the scalar on it. When the
box cannot reach the hyperplane the result is the box corner closest to it (what FAB
uses then: the step that gets nearest). Croce and Hein, "Minimally distorted adversarial
examples with a fast adaptive boundary attack", arXiv:1907.02044, Section 3.

Example:
    >>> import torch
    >>> from xrobust._hyperplane import project_l2
    >>> d = project_l2(torch.tensor([[0.5, 0.5]]), torch.tensor([[1.0, 0.0]]), torch.tensor([0.75]), (0.0, 1.0))
    >>> d
    tensor([[0.2500, 0.0000]])
"""

from __future__ import annotations

import torch

__all__ = ["project_l2", "project_linf"]

_TINY = 1e-12


def _setup(
    p: torch.Tensor, w: torch.Tensor, b: torch.Tensor, bounds: tuple[float, float] | None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """(need, direction, |w|, cap): the required ``|w . delta|``, each coordinate's sign of
    movement, the weights' magnitudes and how far each coordinate can move that way."""
    r = b - (w * p).sum(1)  # required w . delta
    s = torch.where(r >= 0, 1.0, -1.0).to(p.dtype)
    v = w * s.unsqueeze(1)  # now need v . delta = |r|
    direction = torch.sign(v)
    av = v.abs()
    if bounds is None:
        cap = torch.full_like(p, float("inf"))
    else:
        cap = torch.where(v > 0, bounds[1] - p, p - bounds[0]).clamp_min(0.0)
    cap = torch.where(av > 0, cap, torch.zeros_like(cap))
    return r.abs(), direction, av, cap


def _corner(need: torch.Tensor, av: torch.Tensor, cap: torch.Tensor) -> torch.Tensor:
    """Rows whose box cannot reach the hyperplane (its best corner falls short)."""
    total = (av * torch.where(torch.isinf(cap), torch.zeros_like(cap), cap)).sum(1)
    reach_inf = (torch.isinf(cap) & (av > 0)).any(1)
    return ~reach_inf & (total < need)


def project_linf(
    p: torch.Tensor, w: torch.Tensor, b: torch.Tensor, bounds: tuple[float, float] | None
) -> torch.Tensor:
    """The smallest Linf ``delta`` with ``w . (p + delta) = b`` inside ``bounds``.

    Args:
        p: points (m, d); w: normals (m, d); b: offsets (m,).
        bounds: (low, high) of every coordinate of ``p + delta``, or None.

    Returns:
        delta (m, d); coordinates with ``w_i = 0`` are left at 0.
    """
    need, direction, av, cap = _setup(p, w, b, bounds)
    cs, order = cap.sort(dim=1)
    a = av.gather(1, order)
    finite = torch.where(torch.isinf(cs), torch.zeros_like(cs), cs)
    before = torch.cumsum(a * finite, dim=1) - a * finite  # sum_{j<k} a_j cs_j
    after = a.flip(1).cumsum(1).flip(1)  # sum_{j>=k} a_j
    value = before + cs * after  # the constraint at t = cs_k
    value = torch.where(torch.isnan(value), torch.full_like(value, float("inf")), value)
    k = (value < need.unsqueeze(1)).sum(1).clamp_max(p.shape[1] - 1).unsqueeze(1)
    t = (need - before.gather(1, k).squeeze(1)) / after.gather(1, k).squeeze(1).clamp_min(_TINY)
    t = t.clamp_min(0.0)
    corner = _corner(need, av, cap)
    t = torch.where(corner, torch.full_like(t, float("inf")), t)
    delta = direction * torch.minimum(t.unsqueeze(1), cap)
    return torch.where(av > 0, delta, torch.zeros_like(delta))


def project_l2(
    p: torch.Tensor, w: torch.Tensor, b: torch.Tensor, bounds: tuple[float, float] | None
) -> torch.Tensor:
    """The smallest L2 ``delta`` with ``w . (p + delta) = b`` inside ``bounds``.

    Args:
        p: points (m, d); w: normals (m, d); b: offsets (m,).
        bounds: (low, high) of every coordinate of ``p + delta``, or None.

    Returns:
        delta (m, d); coordinates with ``w_i = 0`` are left at 0.
    """
    need, direction, av, cap = _setup(p, w, b, bounds)
    brk = torch.where(av > 0, cap / av.clamp_min(_TINY), torch.full_like(av, float("inf")))
    ls, order = brk.sort(dim=1)
    a, c = av.gather(1, order), cap.gather(1, order)
    ac = torch.where(torch.isinf(c), torch.zeros_like(c), a * c)
    before = torch.cumsum(ac, dim=1) - ac  # sum_{j<k} a_j cap_j
    q = (a * a).flip(1).cumsum(1).flip(1)  # sum_{j>=k} a_j^2
    value = before + ls * q  # the constraint at lam = ls_k
    value = torch.where(torch.isnan(value), torch.full_like(value, float("inf")), value)
    k = (value < need.unsqueeze(1)).sum(1).clamp_max(p.shape[1] - 1).unsqueeze(1)
    lam = (need - before.gather(1, k).squeeze(1)) / q.gather(1, k).squeeze(1).clamp_min(_TINY)
    lam = lam.clamp_min(0.0)
    corner = _corner(need, av, cap)
    lam = torch.where(corner, torch.full_like(lam, float("inf")), lam)
    delta = direction * torch.minimum(lam.unsqueeze(1) * av, cap)
    return torch.where(av > 0, delta, torch.zeros_like(delta))
