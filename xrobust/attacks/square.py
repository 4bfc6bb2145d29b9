"""Square Attack: score-based random search, Linf and L2.

Andriushchenko, Croce, Flammarion and Hein, "Square Attack: a query-efficient black-box
adversarial attack via random search", arXiv:1912.00049. Inputs (N, C, H, W) within
``bounds`` (also (N, H, W), seen as one channel, and (N, F), seen as a 1 x F image);
the model answers scores (N, K): logits, or probabilities (the margin is then taken on
their logarithm, which is the logit margin when they come from a softmax). A model that
answers only labels cannot guide the search: use ``hop_skip_jump``.

The algorithm follows the paper and its reference code (max-andr/square-attack, and the
AutoAttack version of it), written here for batches in which every example has its own
random squares:

* the loss is the margin ``z_y - max_{j != y} z_j`` (untargeted) or
  ``max_{j != t} z_j - z_t`` (targeted), minimised; an example is fooled when the model's
  prediction meets the goal;
* the start is the paper's: vertical stripes of +-eps for Linf (a corner of the
  Linf ball), and for L2 a 5 x 5 grid of "centred squares" (two pseudo-Gaussian halves of
  opposite signs, random signs per channel), scaled to norm eps;
* at iteration ``i`` of a budget of ``n`` queries the square covers a fraction
  ``p = p_schedule(p_init, i, n)`` of the image: ``p_init`` is halved at the reference's
  points 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 of 10,000 iterations, rescaled
  to the budget;
* Linf: a random square of side ``round(sqrt(p * H * W))`` gets a new +-eps per channel
  (drawn again, here by flipping the signs, when it would not change the image); L2: a
  random square gets a new pseudo-Gaussian pattern plus its old perturbation, with the
  mass of a second random square moved into it, and the whole perturbation is rescaled
  to norm eps;
* a candidate replaces the current point only when it lowers the margin.

Every active example is queried in one ``ctx.forward`` call per iteration. In evaluation
mode (``early_stop=True``) an example leaves as soon as it is fooled, with the queries it
used recorded in ``AttackResult.queries``; in the fixed budget every example gets every
query. Random draws are keyed by example and iteration
(:class:`~xrobust.attacks._query.RowStreams`), so that an example follows the same path
whichever others are in its batch or still active (evaluation mode is never more robust
than the fixed budget).

Query accounting: ``queries`` is the budget per example and per restart, and the first
run's budget includes the clean forward pass made by the driver, so
``AttackResult.queries <= queries * restarts``.

Example:
    >>> import torch
    >>> from xrobust.attacks import get_attack
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    >>> x, y = torch.rand(4, 1, 8, 8), torch.tensor([0, 1, 2, 0])
    >>> res = get_attack("square", model, eps=0.1, queries=50, seed=0).run(x, y)
    >>> bool(res.norms.max() <= 0.1 + 1e-6), int(res.queries.max()) <= 50
    (True, True)
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar

import torch

from xrobust.attacks._query import RowStreams, budget_allows, margin, output_kind
from xrobust.attacks.base import Attack
from xrobust.attacks.config import AttackConfig, check_fraction, check_positive_int
from xrobust.attacks.context import AttackContext, Batch, Outcome
from xrobust.attacks.iterative import keep_better, run_succeeded
from xrobust.errors import ConfigError, ModelError
from xrobust.norms import L2, Linf, Norm, get_norm

__all__ = [
    "Square",
    "SquareConfig",
    "l2_init",
    "linf_init",
    "p_schedule",
    "square_pattern",
]

#: the reference's halving points, in iterations out of 10,000
HALVING_POINTS: tuple[int, ...] = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)


@dataclass(frozen=True)
class SquareConfig(AttackConfig):
    """Square Attack hyperparameters (see :class:`AttackConfig` for the shared ones).

    Attributes:
        queries: query budget per example and per restart (paper and AutoAttack: 5000),
            the clean forward pass included in the first run's.
        p_init: initial fraction of the image a square covers (reference code: 0.8 for
            Linf and L2; the paper's ImageNet runs use 0.05 for Linf).
        restarts: runs from new random starts, each on the examples still robust.
    """

    queries: int = 5000
    p_init: float = 0.8
    restarts: int = 1

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive_int("queries", self.queries, minimum=2)
        object.__setattr__(self, "p_init", check_fraction("p_init", self.p_init))
        check_positive_int("restarts", self.restarts)
        if get_norm(self.norm) not in Square.proposals:
            known = ", ".join(n.name for n in Square.proposals)
            raise ConfigError(f"square defines proposals for the norms {known}, not {self.norm!r}")


def p_schedule(p_init: float, it: int, n_iters: int) -> float:
    """The fraction of pixels the square of iteration ``it`` covers, for a budget of
    ``n_iters`` iterations: ``p_init`` halved at each of :data:`HALVING_POINTS`
    (iterations out of 10,000, rescaled to ``n_iters``) passed.

    >>> [p_schedule(0.8, i, 10000) for i in (0, 10, 11, 51, 8001)]
    [0.8, 0.8, 0.4, 0.2, 0.0015625]
    >>> p_schedule(0.8, 100, 1000)  # iteration 1000 of 10,000 rescaled
    0.05
    """
    t = int(it / n_iters * 10000)
    halvings = sum(t > point for point in HALVING_POINTS)
    return p_init / 2**halvings


# ---------------------------------------------------------------------- the patterns
@functools.lru_cache(maxsize=256)
def _rectangle(h: int, w: int) -> torch.Tensor:
    """The reference's pseudo-Gaussian rectangle: nested centred rectangles, the k-th
    adding 1 / (k + 1)^2, normalised to unit L2 norm."""
    d = torch.zeros(h, w, dtype=torch.float64)
    ch, cw = h // 2, w // 2  # top-left corner of the innermost rectangle
    for k in range(max(h // 2 + 1, w // 2 + 1)):
        d[
            max(ch - k, 0) : min(ch - k + 2 * k + 1, h), max(cw - k, 0) : min(cw - k + 2 * k + 1, w)
        ] += 1.0 / (k + 1) ** 2
    return d / d.norm()


@functools.lru_cache(maxsize=256)
def square_pattern(h: int, w: int) -> torch.Tensor:
    """The "centred square" of the L2 attack (float64, unit L2 norm): two pseudo-Gaussian
    halves of opposite signs, split across the rows (across the columns for one row)."""
    d = torch.zeros(h, w, dtype=torch.float64)
    if h >= 2:
        d[: h // 2] = _rectangle(h // 2, w)
        d[h // 2 :] = -_rectangle(h - h // 2, w)
    elif w >= 2:
        d[:, : w // 2] = _rectangle(h, w // 2)
        d[:, w // 2 :] = -_rectangle(h, w - w // 2)
    else:
        d[:] = 1.0
    return d / d.norm()


def linf_init(signs: torch.Tensor, h: int) -> torch.Tensor:
    """Vertical stripes: a perturbation (N, C, H, W) of +-1 equal along each column, from
    ``signs`` (N, C, W) in {-1, 1}. Scaled by eps it is a corner of the Linf ball."""
    return signs[:, :, None, :].expand(-1, -1, h, -1).clone()


def l2_init(signs: torch.Tensor, transpose: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The centred-square start: a perturbation (N, C, H, W) of unit L2 norm made of a
    grid of :func:`square_pattern` tiles of side ``min(H, W) // 5``, each with a sign per
    channel (``signs`` (N, C, rows, cols)) and transposed where ``transpose`` (N, rows,
    cols) is True. Inputs smaller than 5 x 5 get one tile over the whole image."""
    n, c = signs.shape[:2]
    s = min(h, w) // 5
    th, tw = (s, s) if s >= 1 else (h, w)
    rows, cols = h // th, w // tw
    oh, ow = (h - th * rows) // 2, (w - tw * cols) // 2
    pat = square_pattern(th, tw).to(signs.device, signs.dtype)
    d = signs.new_zeros(n, c, h, w)
    for i in range(rows):
        for j in range(cols):
            tile = pat
            if th == tw:
                tile = torch.where(transpose[:, i, j, None, None], pat.T, pat)[:, None]
            r, q = oh + i * th, ow + j * tw
            d[:, :, r : r + th, q : q + tw] += tile * signs[:, :, i, j, None, None]
    return d / d.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, 1, 1, 1)


def _window_side(p: float, h: int, w: int, minimum: int, odd: bool) -> tuple[int, int]:
    """(height, width) of the square covering a fraction ``p`` of an H x W image."""
    if h > 1 and w > 1:
        s = max(round(math.sqrt(p * h * w)), minimum)
        if odd and s % 2 == 0:
            s += 1
        s = min(s, h - 1, w - 1) if minimum == 1 else min(s, h, w)
        return max(s, 1), max(s, 1)
    n = max(h, w)
    s = min(max(round(p * n), minimum), max(n - 1, 1))
    return (1, s) if h == 1 else (s, 1)


def _mask(vh: torch.Tensor, vw: torch.Tensor, sh: int, sw: int, h: int, w: int) -> torch.Tensor:
    """(k, 1, H, W) True inside each row's window of size sh x sw at (vh, vw)."""
    rh = torch.arange(h, device=vh.device)
    rw = torch.arange(w, device=vw.device)
    in_h = (rh[None] >= vh[:, None]) & (rh[None] < vh[:, None] + sh)
    in_w = (rw[None] >= vw[:, None]) & (rw[None] < vw[:, None] + sw)
    return (in_h[:, :, None] & in_w[:, None, :])[:, None]


def _window_index(
    t: torch.Tensor, vh: torch.Tensor, vw: torch.Tensor, sh: int, sw: int
) -> tuple[torch.Tensor, ...]:
    """Advanced indices of each row's sh x sw window of ``t`` (k, C, H, W)."""
    k, c = t.shape[:2]
    dev = t.device
    r = vh[:, None] + torch.arange(sh, device=dev)
    q = vw[:, None] + torch.arange(sw, device=dev)
    return (
        torch.arange(k, device=dev)[:, None, None, None],
        torch.arange(c, device=dev)[None, :, None, None],
        r[:, None, :, None],
        q[:, None, None, :],
    )


def _as_image(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 4:
        return x
    if x.dim() == 3:
        return x[:, None]
    if x.dim() == 2:
        return x[:, None, None, :]
    raise ConfigError(
        f"square attacks inputs shaped (N, C, H, W), (N, H, W) or (N, F); got {tuple(x.shape)}"
    )


def _rows(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.reshape(-1, *([1] * (like.dim() - 1)))


# ---------------------------------------------------------------------- the attack
class Square(Attack):
    """Square Attack (Andriushchenko et al., arXiv:1912.00049), Linf or L2, untargeted or
    targeted, on scores alone (no gradient is ever computed).

    Example:
        >>> import torch
        >>> from xrobust.attacks import Square
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
        >>> x = torch.rand(3, 1, 8, 8)
        >>> res = Square(model, eps=0.5, norm="l2", queries=20, seed=0).run(x, torch.tensor([0, 1, 2]))
        >>> bool(res.norms.max() <= 0.5 + 1e-5)
        True
    """

    name = "square"
    config_cls = SquareConfig
    config: SquareConfig
    requires_gradients = False

    def perturb(self, ctx: AttackContext, batch: Batch) -> Outcome:
        kind = output_kind(ctx)
        if kind == "labels":
            raise ModelError(
                "square needs scores (logits or probabilities) to guide its search; this "
                "model answers labels only: use hop_skip_jump"
            )
        ctx.note("margin_on", "log-probabilities" if kind == "probabilities" else "logits")
        best: Outcome | None = None
        for r in range(self.config.restarts):
            pos = torch.arange(len(batch), device=batch.x.device)
            if best is not None and self.config.early_stop:
                pos = pos[~run_succeeded(ctx, best, batch)]
            if pos.numel() == 0:
                break
            sub = batch if best is None else batch.select(pos)
            cur, stopped = self._search(ctx, sub, r, kind)
            best = cur if best is None else keep_better(ctx, best, cur, pos, batch)
            if stopped:
                break
        assert best is not None
        return best

    # -------------------------------------------------------------- one run
    def _search(
        self, ctx: AttackContext, b: Batch, restart: int, kind: str
    ) -> tuple[Outcome, bool]:
        """One run over the rows of ``b``: ``(outcome, stopped by the query budget)``."""
        cfg = self.config
        out = Outcome.unchanged(b.x)
        budget = cfg.queries - (1 if restart == 0 else 0)  # the clean pass is the first query
        m = len(b)
        if not budget_allows(ctx, m, self.name):
            return out, True
        x = _as_image(b.x)
        eps = b.eps.reshape(-1, 1, 1, 1).to(x.dtype)
        rng = RowStreams(ctx.generator)
        start, candidate = self.proposals[self.norm]
        x_best = start(self, rng, b, x, eps)
        scores = ctx.forward(x_best.reshape(b.x.shape), b.origin)
        loss = margin(scores, b.y, b.target, kind)
        pred = scores.argmax(1)
        steps = torch.ones(m, dtype=torch.long, device=x.device)
        live = torch.arange(m, device=x.device)
        stopped = False
        for i in range(budget - 1):
            if cfg.early_stop:
                live = live[~ctx.is_success(pred[live], b.y[live], _pick(b.target, live))]
            if live.numel() == 0:
                break
            if not budget_allows(ctx, live.numel(), self.name):
                stopped = True
                break
            p = p_schedule(cfg.p_init, i, cfg.queries)
            cand = candidate(self, rng, b, live, i, x, x_best, eps, p)
            sc = ctx.forward(cand.reshape(-1, *b.x.shape[1:]), b.origin[live])
            new_loss = margin(sc, b.y[live], _pick(b.target, live), kind)
            steps[live] += 1
            better = new_loss < loss[live]
            if bool(better.any()):
                rows = live[better]
                x_best[rows] = cand[better]
                loss[rows] = new_loss[better]
                pred[rows] = sc.argmax(1)[better]
        out.x_adv = x_best.reshape(b.x.shape)
        out.pred = pred
        out.steps = steps
        out.loss = -loss
        return out, stopped

    def _linf_start(
        self, rng: RowStreams, b: Batch, x: torch.Tensor, eps: torch.Tensor
    ) -> torch.Tensor:
        (c, h, w), k = x.shape[1:], len(b)
        signs = rng.signs(b.idx, 0, c * w, x.dtype).reshape(k, c, w)
        return self._clip(x + linf_init(signs, h) * eps)

    def _l2_start(
        self, rng: RowStreams, b: Batch, x: torch.Tensor, eps: torch.Tensor
    ) -> torch.Tensor:
        (c, h, w), k = x.shape[1:], len(b)
        s = min(h, w) // 5
        rows, cols = (h // s, w // s) if s >= 1 else (1, 1)
        signs = rng.signs(b.idx, 0, c * rows * cols, x.dtype).reshape(k, c, rows, cols)
        transpose = (rng.uniform(b.idx, 1, rows * cols, x.dtype) < 0.5).reshape(k, rows, cols)
        return self._clip(x + l2_init(signs, transpose, h, w) * eps)

    def _clip(self, z: torch.Tensor) -> torch.Tensor:
        bounds = self.config.bounds
        return z if bounds is None else z.clamp(bounds[0], bounds[1])

    def _linf_candidate(
        self,
        rng: RowStreams,
        b: Batch,
        live: torch.Tensor,
        it: int,
        x: torch.Tensor,
        x_best: torch.Tensor,
        eps: torch.Tensor,
        p: float,
    ) -> torch.Tensor:
        (c, h, w), idx = x.shape[1:], b.idx[live]
        sh, sw = _window_side(p, h, w, minimum=1, odd=False)
        u = rng.uniform(idx, it + 2, 2 + c, torch.float64)  # position, then a sign per channel
        vh, vw = _position(u[:, 0], h - sh + 1), _position(u[:, 1], w - sw + 1)
        sign = _signs(u[:, 2:], x.dtype).reshape(-1, c, 1, 1)
        xl, xb, el = x[live], x_best[live], eps[live]
        mask = _mask(vh, vw, sh, sw, h, w)
        cand = self._clip(xl + sign * el)
        # a square that would not change the image is drawn again: the other signs
        same = ((cand - xb).abs() < 1e-7) | ~mask
        flip = same.flatten(1).all(1)
        if bool(flip.any()):
            sign = torch.where(_rows(flip, sign), -sign, sign)
            cand = self._clip(xl + sign * el)
        return torch.where(mask, cand, xb)

    def _l2_candidate(
        self,
        rng: RowStreams,
        b: Batch,
        live: torch.Tensor,
        it: int,
        x: torch.Tensor,
        x_best: torch.Tensor,
        eps: torch.Tensor,
        p: float,
    ) -> torch.Tensor:
        (c, h, w), idx = x.shape[1:], b.idx[live]
        sh, sw = _window_side(p, h, w, minimum=3, odd=True)
        u = rng.uniform(idx, it + 2, 5 + c, torch.float64)  # two positions, a flip, the signs
        vh1, vw1 = _position(u[:, 0], h - sh + 1), _position(u[:, 1], w - sw + 1)
        vh2, vw2 = _position(u[:, 2], h - sh + 1), _position(u[:, 3], w - sw + 1)
        transpose = u[:, 4] < 0.5
        sign = _signs(u[:, 5:], x.dtype).reshape(-1, c, 1, 1)
        xl, el = x[live], eps[live]
        delta = x_best[live] - xl
        w1 = _window_index(delta, vh1, vw1, sh, sw)
        old = delta[w1]  # (k, C, sh, sw)
        norm_w1 = old.pow(2).sum((2, 3), keepdim=True).sqrt()
        norm_img = delta.flatten(1).pow(2).sum(1).reshape(-1, 1, 1, 1)
        m1, m2 = _mask(vh1, vw1, sh, sw, h, w), _mask(vh2, vw2, sh, sw, h, w)
        norm_both = (delta * (m1 | m2)).pow(2).sum((2, 3), keepdim=True)
        pat = square_pattern(sh, sw).to(x.device, x.dtype)
        if sh == sw:
            pat = torch.where(transpose[:, None, None], pat.T, pat)[:, None]
        new = pat * sign + old / (1e-10 + norm_w1)
        room = ((el**2 - norm_img).clamp_min(0.0) / c + norm_both).sqrt()
        new = new / new.pow(2).sum((2, 3), keepdim=True).sqrt().clamp_min(1e-12) * room
        delta = delta.masked_fill(m2, 0.0)  # the second square's mass moves into the first
        delta[w1] = new
        scale = el / delta.flatten(1).norm(dim=1).clamp_min(1e-12).reshape(-1, 1, 1, 1)
        return self._clip(xl + delta * scale)

    #: each norm the paper defines: its start and its proposal of one step
    proposals: ClassVar[dict[Norm, tuple[Callable[..., torch.Tensor], ...]]] = {
        Linf(): (_linf_start, _linf_candidate),
        L2(): (_l2_start, _l2_candidate),
    }


def _position(u: torch.Tensor, n: int) -> torch.Tensor:
    """Integers in [0, n) from uniform numbers."""
    return (u * n).floor().long().clamp_max(n - 1)


def _signs(u: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return torch.where(u < 0.5, -1.0, 1.0).to(dtype)


def _pick(t: torch.Tensor | None, rows: torch.Tensor) -> torch.Tensor | None:
    return None if t is None else t[rows]
