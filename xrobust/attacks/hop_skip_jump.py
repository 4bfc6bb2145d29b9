"""HopSkipJumpAttack: decision-based, Linf and L2, batched across examples.

Chen, Jordan and Wainwright, "HopSkipJumpAttack: A Query-Efficient Decision-Based
Attack", arXiv:1904.02144. Inputs of any shape (N, ...) within ``bounds``; only the
model's decision is used (the argmax of its answer), so it runs on label-only black
boxes.

The algorithm follows the paper and the authors' code (Jianbo-Lab/HSJA):

1. **Start.** Uniform noise within the bounds until it meets the goal (at most
   ``init_tries`` draws), then a blended binary search along the segment from the
   clean input to the noise. A targeted run starts, as in the paper, from an image of
   the target class: the nearest example of the batch labelled with it. An untargeted
   run where no noise meets the goal (a model that puts all noise in one class) tries
   the nearest examples of the batch with another label: an addition to the paper.
2. **Boundary.** A binary search between the clean input and the current adversarial
   (Linf: along ``clip(x_adv, x - a, x + a)``) to precision ``theta`` (L2:
   ``gamma / d^1.5``; Linf: ``gamma / d^2``, times the range of the bounds).
3. **Gradient direction.** At iteration ``t`` (from 1), ``min(init_evals * sqrt(t),
   max_evals)`` random unit directions (Gaussian for L2, uniform for Linf) at radius
   ``delta`` (``0.1 * range`` at first, then ``sqrt(d) * theta * dist`` for L2 and
   ``d * theta * dist`` for Linf) estimate the boundary's normal from the decisions
   alone, with the baseline of the paper's variance reduction.
4. **Step.** A geometric search from ``dist / sqrt(t)``, halving until the step along
   the estimate (its sign for Linf) stays adversarial; then back to 2.

Batching: every query round serves all active examples at once, and the step and
binary searches are vectorised: each round asks only about the rows still searching, so
that the per-example query counts are exact. A torch model is asked in passes of the
classifier's ``batch_size`` (256 rows by default, where the digits CNN runs 15% more rows
per second than in passes of 1,024 on a CPU); a black box (ONNX, a function, an HTTP
endpoint) gets each round in one call, which its classifier splits into requests of its
``batch_size`` rows: an endpoint keeps ``concurrency`` of them in flight, so that the
gradient estimate's ``n_samples x rows`` cost about ``rows / (batch_size x concurrency)``
round trips instead of one per request. The rounds of one example are sequential (a
bisection step depends on the last answer): an iteration costs the gradient estimate's
round trips, one or a few of the step search and about ``log2(1 / theta)`` of the binary
search (15 on 28 x 28 images), whatever the number of examples.

Budget: ``queries`` per example, the clean forward pass included; an example stops
when its budget cannot pay for the next phase, and keeps the smallest adversarial
found. Random draws come from a generator per example (seeded from the run's seed and
the example's position), so that an example's path does not depend on the others.

The radius (a design choice, since the paper's attack is a minimum-norm search):

* ``eps=None`` (the default): no radius. The attack returns, for every example, the
  smallest adversarial it found (``AttackResult.norms`` is the minimal-perturbation
  distribution) and succeeds wherever it found one. Internally the threat model is the
  ball of the largest radius the bounds allow, which holds every valid input;
  ``AttackResult.eps`` is None.
* ``eps`` given: success only within ``eps``. In evaluation mode an example leaves as
  soon as its adversarial lies within ``eps``; an example never brought within
  ``eps`` returns the projection of its best adversarial onto the ball (asked about
  once more, so its prediction is the model's).

Example:
    >>> import torch
    >>> from xrobust.attacks import get_attack
    >>> torch.manual_seed(0)  # doctest: +ELLIPSIS
    <torch._C.Generator object at ...>
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
    >>> x, y = torch.rand(4, 16), torch.tensor([0, 1, 0, 1])
    >>> res = get_attack("hop_skip_jump", model, norm="l2", queries=300, seed=0).run(x, y)
    >>> res.eps is None, int(res.queries.max()) <= 300
    (True, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from xrobust.attacks._query import budget_allows
from xrobust.attacks.base import Attack
from xrobust.attacks.config import AttackConfig, check_positive_int, check_positive_number
from xrobust.attacks.context import AttackContext, Batch, Outcome
from xrobust.errors import ConfigError
from xrobust.norms import get_norm

__all__ = ["HopSkipJump", "HopSkipJumpConfig"]

#: halvings of the geometric step search before an iteration gives up its step
MAX_HALVINGS = 30
#: other examples of the batch tried as a start where no noise met the goal
OTHER_TRIES = 3


@dataclass(frozen=True)
class HopSkipJumpConfig(AttackConfig):
    """HopSkipJump hyperparameters (see :class:`AttackConfig` for the shared ones).

    Attributes:
        eps: the radius within which an adversarial counts, or None (default) for the
            minimal perturbation (see the module docstring).
        queries: query budget per example, the clean forward pass included.
        max_iter: most iterations per example (authors: 40; the budget usually binds first).
        init_evals: directions of the first gradient estimate (authors: 100).
        max_evals: most directions of one gradient estimate (authors: 10,000).
        gamma: precision of the binary search, theta = gamma / d^1.5 (L2) or
            gamma / d^2 (Linf) in units of the bounds' range (authors: 1.0).
        init_tries: most uniform-noise draws to find a starting adversarial (ART: 100).
    """

    eps: float | None = None  # type: ignore[assignment]
    queries: int = 5000
    max_iter: int = 40
    init_evals: int = 100
    max_evals: int = 10000
    gamma: float = 1.0
    init_tries: int = 100

    def __post_init__(self) -> None:
        if self.eps is None:  # no radius: the shared checks see a zero radius
            object.__setattr__(self, "eps", 0.0)
            try:
                super().__post_init__()
            finally:
                object.__setattr__(self, "eps", None)
        else:
            super().__post_init__()
        check_positive_int("queries", self.queries, minimum=2)
        check_positive_int("max_iter", self.max_iter)
        check_positive_int("init_evals", self.init_evals)
        check_positive_int("max_evals", self.max_evals)
        check_positive_int("init_tries", self.init_tries)
        get_norm(self.norm).hsj_theta_scale(1)  # a norm without an HSJ variant: ConfigError
        object.__setattr__(self, "gamma", check_positive_number("gamma", self.gamma))
        if self.max_evals < self.init_evals:
            raise ConfigError(
                f"max_evals ({self.max_evals}) must be >= init_evals ({self.init_evals})"
            )


class _Stop(Exception):
    """The classifier's query budget cannot answer the next call."""


@dataclass
class _State:
    """Per row of the batch being attacked."""

    x_adv: torch.Tensor  # current point on the adversarial side of the boundary
    pred_adv: torch.Tensor  # the model's decision there
    dist: torch.Tensor  # its distance to the clean input
    best: torch.Tensor  # smallest adversarial so far
    pred_best: torch.Tensor
    dist_best: torch.Tensor
    found: torch.Tensor  # an adversarial is known
    used: torch.Tensor  # queries spent on the example (the clean pass included)
    steps: torch.Tensor  # iterations done
    # constants of the run (not per row)
    lo: float = 0.0  # range of the inputs (the bounds, or the batch's range if unbounded)
    hi: float = 1.0
    theta: float = 1.0  # precision of the binary search
    d: int = 1  # values per input
    seeds: tuple[int, ...] = ()  # per row, the seed of its random streams


class HopSkipJump(Attack):
    """HopSkipJumpAttack (Chen et al., arXiv:1904.02144), Linf or L2, untargeted or
    targeted, from decisions alone.

    Example:
        >>> import torch
        >>> from xrobust.attacks import HopSkipJump
        >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(16, 2))
        >>> x, y = torch.rand(2, 16), torch.tensor([0, 1])
        >>> res = HopSkipJump(model, eps=2.0, norm="l2", queries=200, seed=0).run(x, y)
        >>> bool(res.norms.max() <= 2.0 + 1e-5)
        True
    """

    name = "hop_skip_jump"
    config_cls = HopSkipJumpConfig
    config: HopSkipJumpConfig
    requires_gradients = False
    #: it returns each example's smallest adversarial: ``minimal_perturbation`` runs it
    #: once at ``eps_max`` instead of bisecting
    minimizes_norm: ClassVar[bool] = True
    #: its binary searches end on the decision boundary, whose side a bf16 pass cannot
    #: tell reliably: on a torch model it always queries in fp32 (as FAB)
    reduced_precision_search: ClassVar[bool] = False

    # -------------------------------------------------------------- entry
    def perturb(self, ctx: AttackContext, batch: Batch) -> Outcome:
        cfg, b = self.config, batch
        m, dev = len(b), b.x.device
        d = b.x[0].numel()
        lo, hi = self._range(b.full_x)
        theta = cfg.gamma * (hi - lo) / self.norm.hsj_theta_scale(d)
        base = int(torch.randint(0, 2**62, (1,), generator=ctx.generator, device=dev).item())
        seeds = tuple((base + 1_000_003 * i) % (2**62) for i in b.idx.tolist())
        inf = torch.full((m,), float("inf"), dtype=b.x.dtype, device=dev)
        st = _State(
            x_adv=b.x.clone(), pred_adv=torch.full((m,), -1, dtype=torch.long, device=dev),
            dist=inf.clone(), best=b.x.clone(),
            pred_best=torch.full((m,), -1, dtype=torch.long, device=dev), dist_best=inf.clone(),
            found=torch.zeros(m, dtype=torch.bool, device=dev),
            used=torch.ones(m, dtype=torch.long, device=dev),
            steps=torch.zeros(m, dtype=torch.long, device=dev),
            lo=lo, hi=hi, theta=theta, d=d, seeds=seeds,
        )  # fmt: skip
        try:
            self._start(ctx, b, st)
            self._boundary(ctx, b, st, self._rows(st, st.found))
            self._keep_best(b, st, self._rows(st, st.found))
            for t in range(1, cfg.max_iter + 1):
                live = self._live(b, st, t)
                if live.numel() == 0:
                    break
                self._iteration(ctx, b, st, live, t)
        except _Stop:
            pass
        return self._outcome(ctx, b, st)

    # -------------------------------------------------------------- queries
    def _ask(
        self, ctx: AttackContext, b: Batch, st: _State, rows: torch.Tensor, z: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Decisions (goal met) and predictions at ``z``, whose row k is a point for row
        ``rows[k]`` of the batch; counted per example."""
        n = int(z.shape[0])
        if n == 0:
            e = torch.zeros(0, dtype=torch.long, device=z.device)
            return e.bool(), e
        if not budget_allows(ctx, n, self.name):
            raise _Stop
        if ctx.model is None:
            # a black box: one call with every row of the round, which its classifier
            # splits into its own requests (``batch_size`` rows each) and an endpoint
            # keeps ``concurrency`` of in flight
            pred = ctx.forward(z, b.origin[rows]).argmax(1)
        else:
            preds = []
            chunk = ctx.classifier.batch_size  # the model's rows per pass (256 by default)
            for i in range(0, n, chunk):
                r = rows[i : i + chunk]
                preds.append(ctx.forward(z[i : i + chunk], b.origin[r]).argmax(1))
            pred = torch.cat(preds)
        st.used.index_add_(0, rows, torch.ones_like(rows))
        tgt = None if b.target is None else b.target[rows]
        return ctx.is_success(pred, b.y[rows], tgt), pred

    def _afford(
        self, st: _State, rows: torch.Tensor, n: int = 1, *, final: bool = False
    ) -> torch.Tensor:
        """The rows among ``rows`` whose search budget (or, ``final``, whole budget) pays
        for ``n`` more queries each."""
        cap = self.config.queries if final else self._cap()
        return rows[st.used[rows] + n <= cap]

    def _cap(self) -> int:
        """Queries an example may spend searching: its budget less one, kept for the
        final answer (the projection onto the ball, or the driver's check of a row that
        never found an adversarial)."""
        return self.config.queries - 1

    @staticmethod
    def _gen(st: _State, row: int, stream: int) -> torch.Generator:
        """Row ``row``'s generator for stream ``stream`` (0: the start, t: iteration t)."""
        g = torch.Generator(device=st.used.device)
        g.manual_seed((st.seeds[row] + 7919 * stream) % (2**63 - 1))
        return g

    # -------------------------------------------------------------- phases
    def _start(self, ctx: AttackContext, b: Batch, st: _State) -> None:
        """Uniform noise until adversarial, then the blended binary search."""
        m = len(b)
        noise = b.x.clone()
        noise_pred = torch.full((m,), -1, dtype=torch.long, device=b.x.device)
        gens = [self._gen(st, i, 0) for i in range(m)]
        if b.target is not None:  # the paper starts a targeted run from an image of the target
            self._other_examples(ctx, b, st, noise, noise_pred)
        todo = (~st.found).nonzero().squeeze(1)
        shape = b.x.shape[1:]
        for _ in range(self.config.init_tries):
            todo = self._afford(st, todo)
            if todo.numel() == 0:
                break
            z = torch.stack([
                torch.rand(shape, generator=gens[int(i)], device=b.x.device, dtype=b.x.dtype)
                for i in todo
            ]) * (st.hi - st.lo) + st.lo  # fmt: skip
            ok, pred = self._ask(ctx, b, st, todo, z)
            noise[todo[ok]] = z[ok]
            noise_pred[todo[ok]] = pred[ok]
            st.found[todo[ok]] = True
            todo = todo[~ok]
        if b.target is None:
            self._other_examples(ctx, b, st, noise, noise_pred)
        rows = self._rows(st, st.found)
        if rows.numel() == 0:  # nothing met the goal: no start, nothing to search
            return
        # blended search on the segment from x to the noise: the smallest adversarial blend
        lo_ = torch.zeros(rows.numel(), dtype=b.x.dtype, device=b.x.device)
        hi_ = torch.ones_like(lo_)
        pred_hi = noise_pred[rows].clone()
        x0, nz = b.x[rows], noise[rows]
        while True:
            act = ((hi_ - lo_) > 1e-3) & (st.used[rows] < self._cap())
            k = act.nonzero().squeeze(1)
            if k.numel() == 0:
                break
            mid = (lo_[k] + hi_[k]) / 2
            z = self._blend(x0[k], nz[k], mid)
            ok, pred = self._ask(ctx, b, st, rows[k], z)
            hi_[k] = torch.where(ok, mid, hi_[k])
            lo_[k] = torch.where(ok, lo_[k], mid)
            pred_hi[k] = torch.where(ok, pred, pred_hi[k])
        st.x_adv[rows] = self._blend(x0, nz, hi_)
        st.pred_adv[rows] = pred_hi
        st.dist[rows] = self.norm.measure(st.x_adv[rows] - x0)

    def _other_examples(
        self,
        ctx: AttackContext,
        b: Batch,
        st: _State,
        noise: torch.Tensor,
        noise_pred: torch.Tensor,
    ) -> None:
        """Start rows without an adversarial from the nearest other example of the batch
        whose label meets the goal (another label; the target, when targeted), checked by
        one query each, at most :data:`OTHER_TRIES` tries: first for targeted runs (the
        paper starts them from an image of the target class), and for untargeted runs
        where no noise met the goal (a model that classifies all noise as one class)."""
        todo = (~st.found).nonzero().squeeze(1)
        if todo.numel() == 0 or len(b) < 2:
            return
        goal = b.y if b.target is None else b.target
        dist = self.norm.measure(
            (b.x[todo][:, None] - b.x[None]).reshape(todo.numel() * len(b), *b.x.shape[1:])
        ).reshape(todo.numel(), len(b))
        fits = (
            goal[None] != b.y[todo][:, None]
            if b.target is None
            else b.y[None] == goal[todo][:, None]
        )
        dist = torch.where(fits, dist, torch.full_like(dist, float("inf")))
        order = dist.argsort(1)
        for k in range(min(OTHER_TRIES, len(b))):
            cand = order[:, k]
            ok_row = torch.isfinite(dist.gather(1, cand[:, None]).squeeze(1)) & ~st.found[todo]
            rows = self._afford(st, todo[ok_row])
            if rows.numel() == 0:
                continue
            pick = cand[ok_row][st.used[todo[ok_row]] + 1 <= self._cap()]
            ok, pred = self._ask(ctx, b, st, rows, b.x[pick])
            noise[rows[ok]] = b.x[pick[ok]]
            noise_pred[rows[ok]] = pred[ok]
            st.found[rows[ok]] = True

    def _boundary(self, ctx: AttackContext, b: Batch, st: _State, rows: torch.Tensor) -> None:
        """Binary search between the clean inputs and ``st.x_adv`` for ``rows``."""
        if rows.numel() == 0:
            return
        x0, xa = b.x[rows], st.x_adv[rows]
        dist0 = self.norm.measure(xa - x0)
        high, thr = self.norm.hsj_search_range(dist0, st.theta)
        low = torch.zeros_like(high)
        thr = thr.clamp_min(1e-12)
        pred_hi = st.pred_adv[rows].clone()
        while True:
            act = ((high - low) / thr > 1) & (st.used[rows] < self._cap())
            k = act.nonzero().squeeze(1)
            if k.numel() == 0:
                break
            mid = (high[k] + low[k]) / 2
            z = self._toward(x0[k], xa[k], mid)
            ok, pred = self._ask(ctx, b, st, rows[k], z)
            high[k] = torch.where(ok, mid, high[k])
            low[k] = torch.where(ok, low[k], mid)
            pred_hi[k] = torch.where(ok, pred, pred_hi[k])
        out = self._toward(x0, xa, high)
        st.x_adv[rows] = out
        st.pred_adv[rows] = pred_hi
        st.dist[rows] = self.norm.measure(out - x0)

    def _iteration(
        self, ctx: AttackContext, b: Batch, st: _State, live: torch.Tensor, t: int
    ) -> None:
        cfg = self.config
        n_t = min(int(cfg.init_evals * math.sqrt(t)), cfg.max_evals)
        # each example keeps enough of its budget for one step and a binary search
        reserve = 2 + self._search_steps(st)
        left = self._cap() - st.used[live] - reserve
        n_rows = torch.clamp(left, max=n_t)
        live = live[n_rows >= 1]
        n_rows = n_rows[n_rows >= 1]
        if live.numel() == 0:
            return
        grad = self._gradient(ctx, b, st, live, n_rows, t)
        update = self.norm.hsj_update(grad)
        # geometric step search: halve until the step stays adversarial
        xa, dist = st.x_adv[live], st.dist[live]
        step = dist / math.sqrt(t)
        cand = xa.clone()
        pred_c = st.pred_adv[live].clone()
        searching = torch.ones(live.numel(), dtype=torch.bool, device=xa.device)
        for _ in range(MAX_HALVINGS):
            k = (searching & (st.used[live] < self._cap())).nonzero().squeeze(1)
            if k.numel() == 0:
                break
            z = self._clip(xa[k] + _rows(step[k], xa) * update[k])
            ok, pred = self._ask(ctx, b, st, live[k], z)
            cand[k[ok]] = z[ok]
            pred_c[k[ok]] = pred[ok]
            searching[k[ok]] = False
            step[k[~ok]] = step[k[~ok]] / 2
        st.x_adv[live] = cand
        st.pred_adv[live] = pred_c
        self._boundary(ctx, b, st, live)
        st.steps[live] += 1
        self._keep_best(b, st, live)

    def _gradient(
        self,
        ctx: AttackContext,
        b: Batch,
        st: _State,
        live: torch.Tensor,
        n_rows: torch.Tensor,
        t: int,
    ) -> torch.Tensor:
        """The estimated boundary normal (unit L2 norm) at ``st.x_adv[live]``, from
        ``n_rows[k]`` directions for row k, all asked about in one batched query."""
        xa = st.x_adv[live]
        shape, dt, dev = xa.shape[1:], xa.dtype, xa.device
        k_max = int(n_rows.max())
        d = st.d
        if t == 1:
            delta = torch.full((live.numel(),), 0.1 * (st.hi - st.lo), dtype=dt, device=dev)
        else:
            delta = self.norm.hsj_probe_scale(d) * st.theta * st.dist[live]
        delta = delta.clamp_min(1e-12)
        rv = torch.zeros((live.numel(), k_max, *shape), dtype=dt, device=dev)
        for j, (row, n) in enumerate(zip(live.tolist(), n_rows.tolist())):
            g = self._gen(st, row, t)
            rv[j, :n] = self.norm.hsj_sample((n, *shape), g, dev, dt)
        flat = rv.flatten(2)
        flat /= flat.norm(dim=2, keepdim=True).clamp_min(1e-12)
        dv = delta.reshape(-1, 1, *([1] * len(shape)))
        pert = self._clip(xa[:, None] + dv * rv)
        rv = (pert - xa[:, None]) / dv
        valid = torch.arange(k_max, device=dev)[None] < n_rows[:, None]
        owner = live[:, None].expand(-1, k_max)[valid]
        ok, _ = self._ask(ctx, b, st, owner, pert[valid])
        fval = torch.zeros(valid.shape, dtype=dt, device=dev)
        fval[valid] = 2.0 * ok.to(dt) - 1.0
        nv = n_rows.to(dt)
        mean = fval.sum(1) / nv
        # all +1: the mean direction; all -1: its opposite; else baseline-corrected
        centred = torch.where(valid, fval - mean[:, None], torch.zeros_like(fval))
        weights = torch.where((mean.abs() == 1)[:, None], fval.sign() * valid.to(dt), centred)
        grad = (weights.reshape(*weights.shape, *([1] * len(shape))) * rv).sum(1) / _rows(nv, xa)
        return grad / _rows(grad.flatten(1).norm(dim=1).clamp_min(1e-12), xa)

    # -------------------------------------------------------------- helpers
    @staticmethod
    def _search_steps(st: _State) -> int:
        """Queries of one binary search to precision theta."""
        return math.ceil(math.log2(max((st.hi - st.lo) / st.theta, 2.0))) + 1

    def _live(self, b: Batch, st: _State, t: int) -> torch.Tensor:
        """Rows that go on at iteration ``t``: an adversarial known, budget left, and (in
        evaluation mode with a radius) not yet within it."""
        live = st.found.clone()
        live &= st.used + 2 + self._search_steps(st) < self._cap()
        if self.config.eps is not None and self.config.early_stop:
            live &= ~(st.dist_best <= b.eps)
        return live.nonzero().squeeze(1)

    def _keep_best(self, b: Batch, st: _State, rows: torch.Tensor) -> None:
        if rows.numel() == 0:
            return
        better = st.dist[rows] < st.dist_best[rows]
        r = rows[better]
        st.best[r] = st.x_adv[r]
        st.pred_best[r] = st.pred_adv[r]
        st.dist_best[r] = st.dist[r]

    def _outcome(self, ctx: AttackContext, b: Batch, st: _State) -> Outcome:
        out = Outcome.unchanged(b.x)
        out.steps = st.steps
        found = st.dist_best < float("inf")
        out.x_adv[found] = st.best[found]
        out.pred[found] = st.pred_best[found]
        if b.target is None and self.config.early_stop:
            # never started: the clean input, which evaluation mode knows is classified y
            out.pred[~found] = b.y[~found]
        out.loss = -st.dist_best
        if self.config.eps is not None:
            # outside the radius: the best adversarial projected onto the ball, asked once more
            far = (found & (st.dist_best > b.eps * (1 + 1e-6))).nonzero().squeeze(1)
            if far.numel():
                out.x_adv[far] = b.ball.select(far).project(st.best[far])
                out.pred[far] = -1  # unknown: the driver asks where this run cannot pay
                pay = self._afford(st, far, final=True)
                if pay.numel() and budget_allows(ctx, pay.numel(), self.name):
                    _, pred = self._ask(ctx, b, st, pay, out.x_adv[pay])
                    out.pred[pay] = pred
        return out

    def _blend(self, x0: torch.Tensor, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        av = _rows(a, x0)
        return (1 - av) * x0 + av * z

    def _toward(self, x0: torch.Tensor, xa: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The point of the binary search at ``a``: the norm's
        :meth:`~xrobust.norms.Norm.hsj_toward` (the blend for L2, ``xa`` clipped to the
        Linf ball of radius ``a`` for Linf)."""
        return self.norm.hsj_toward(x0, xa, a)

    def _clip(self, z: torch.Tensor) -> torch.Tensor:
        bounds = self.config.bounds
        return z if bounds is None else z.clamp(bounds[0], bounds[1])

    def _range(self, x: torch.Tensor) -> tuple[float, float]:
        """The bounds, or for unbounded inputs the range of the batch's values."""
        if self.config.bounds is not None:
            return self.config.bounds
        lo, hi = float(x.min()), float(x.max())
        return (lo, hi) if hi > lo else (lo - 1.0, lo + 1.0)

    @staticmethod
    def _rows(st: _State, mask: torch.Tensor) -> torch.Tensor:
        return mask.nonzero().squeeze(1)


def _rows(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1)))
