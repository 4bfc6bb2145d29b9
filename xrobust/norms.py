"""Threat-model norms as small objects (Linf, L2), in the style of Foolbox 3.

A :class:`Norm` knows everything an attack needs about its ball: the measure of a
perturbation, the steepest-ascent direction of unit norm, the projection onto the ball,
uniform and surface random starts, and the largest radius that is meaningful for given
input bounds. :meth:`Norm.ball` binds a ball to a batch (centres, per-example radii and
input bounds) so that an iterative attack projects its iterates with one call and keeps
only the rows still active with :meth:`Ball.select`.

This is the only module that tells norms apart: attacks, the models' probes, the audit
and the dashboard ask a norm object (``get_norm(name)``) and never compare norm names. It
sits below ``models`` and imports nothing from the rest of the package but its errors
(``xrobust.attacks.norms`` re-exports it). Besides the geometry a norm carries what its
callers ask of it: the dashboard's eps grid and slider range for an input span
(:meth:`Norm.eps_grid`, :meth:`Norm.eps_slider`), the models' probe directions
(:meth:`Norm.normalize`, :meth:`Norm.random_unit`) and HopSkipJump's per-norm pieces
(the ``hsj_*`` methods). A new norm (L1, say) is a subclass registered in :data:`NORMS`.

Every method works on a batch (first dimension N) of any shape; ``eps`` is a float or a
per-example tensor (N,).

Example:
    >>> import torch
    >>> from xrobust.attacks.norms import get_norm
    >>> l2 = get_norm("L2")
    >>> l2.measure(torch.tensor([[3.0, 4.0]]))
    tensor([5.])
    >>> l2.project(torch.tensor([[3.0, 4.0]]), 1.0)
    tensor([[0.6000, 0.8000]])
    >>> get_norm("linf").label
    'L∞'
    >>> get_norm("l2").eps_grid(1.0)
    [0.25, 0.5, 1.0, 2.0, 3.0]
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import torch

from xrobust.errors import ConfigError

__all__ = [
    "L1",
    "L2",
    "NORMS",
    "Ball",
    "EpsScale",
    "EpsSlider",
    "Linf",
    "Norm",
    "get_norm",
    "list_norms",
]

_TINY = 1e-12


def _view(t: torch.Tensor | float, like: torch.Tensor) -> torch.Tensor | float:
    """Reshape a per-example tensor (N,) to broadcast against ``like`` (N, ...)."""
    if isinstance(t, torch.Tensor):
        return t.reshape(-1, *([1] * (like.dim() - 1)))
    return t


def _clip(x: torch.Tensor, bounds: tuple[float, float] | None) -> torch.Tensor:
    return x if bounds is None else x.clamp(bounds[0], bounds[1])


@dataclass(frozen=True)
class EpsScale:
    """The radii a front end offers for a norm, in units of the input span (the width of
    the input range, or one feature unit): ``grid`` for a robustness curve, and a slider
    from 0 to ``slider_max`` starting at ``slider_default`` (``probe_default`` for the
    largest radius a black-box probe sweeps)."""

    grid: tuple[float, ...]
    slider_max: float
    slider_default: float
    probe_default: float


@dataclass(frozen=True)
class EpsSlider:
    """A slider's range for one input span: 0 to ``max``, starting at ``default``."""

    max: float
    default: float
    probe: float


class Norm:
    """A threat-model norm. Subclasses set ``name``, ``label`` and ``aliases`` and
    implement :meth:`measure`, :meth:`direction`, :meth:`project`, :meth:`_uniform` and
    :meth:`_surface`; the rest is shared."""

    name: ClassVar[str] = ""
    #: how reports and figures write the norm
    label: ClassVar[str] = ""
    #: other spellings accepted by :func:`get_norm`
    aliases: ClassVar[tuple[str, ...]] = ()
    #: the radii front ends offer, per unit of input span
    scale: ClassVar[EpsScale]
    #: the audit's default eps grid: fractions of :meth:`max_radius` over the data range
    #: ("image") or over a box one median feature spread wide ("tabular")
    audit_fractions: ClassVar[dict[str, tuple[float, ...]]]

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Norm) and other.name == self.name

    def __hash__(self) -> int:
        return hash(self.name)

    # -------------------------------------------------------------- per subclass
    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        """Per-example norm of ``delta`` (N, ...) -> (N,)."""
        raise NotImplementedError

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        """The steepest-ascent direction of unit norm for gradient ``grad``."""
        raise NotImplementedError

    def project(self, delta: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
        """Project perturbations onto the ball of radius ``eps`` (per example)."""
        raise NotImplementedError

    def _uniform(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """A perturbation drawn uniformly from the unit ball, shaped like ``x``."""
        raise NotImplementedError

    def _surface(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        """A random perturbation of norm exactly 1 (AutoAttack's start), shaped like ``x``."""
        raise NotImplementedError

    def dual(self, grad: torch.Tensor) -> torch.Tensor:
        """Per-example dual norm of ``grad`` (N, ...) -> (N,): how fast a linear function
        with this gradient grows per unit perturbation (L1 for Linf, L2 for L2)."""
        raise NotImplementedError

    def project_hyperplane(
        self,
        p: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor,
        bounds: tuple[float, float] | None,
    ) -> torch.Tensor:
        """The smallest perturbation (in this norm) moving flat points ``p`` (m, d) onto
        the hyperplanes ``w . z = b`` within ``bounds`` (FAB's projection; see
        :mod:`xrobust._hyperplane`)."""
        raise self._no_variant("fab")

    def max_radius(self, bounds: tuple[float, float] | None, numel: int | None) -> float:
        """The largest radius that can matter for inputs of ``numel`` values within
        ``bounds`` (``inf`` when unbounded, or when it depends on an unknown ``numel``)."""
        raise NotImplementedError

    def random_unit(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        """Random directions of norm 1, one per row of ``shape`` (float32, on the CPU):
        the black-box probes' directions (Linf: a random corner of the ball)."""
        raise NotImplementedError

    def hsj_theta_scale(self, d: int) -> float:
        """HopSkipJump's divisor of ``gamma * span`` giving the binary-search threshold
        theta for inputs of ``d`` values (Chen et al., arXiv:1904.02144, Section 4)."""
        raise self._no_variant("hop_skip_jump")

    def hsj_probe_scale(self, d: int) -> float:
        """HopSkipJump's factor of ``theta * distance`` giving the radius of the probes of
        its gradient estimate, for inputs of ``d`` values."""
        raise self._no_variant("hop_skip_jump")

    def hsj_update(self, grad: torch.Tensor) -> torch.Tensor:
        """HopSkipJump's update direction from its estimated boundary normal."""
        raise self._no_variant("hop_skip_jump")

    def hsj_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator,
        device: torch.device,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        """HopSkipJump's raw random probe directions (normalised by the attack)."""
        raise self._no_variant("hop_skip_jump")

    def hsj_search_range(
        self, dist0: torch.Tensor, theta: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """HopSkipJump's binary search towards the boundary: the upper end of the searched
        parameter (see :meth:`hsj_toward`) and the search's per-row threshold, for rows at
        distance ``dist0`` from their clean inputs."""
        raise self._no_variant("hop_skip_jump")

    def hsj_toward(self, x0: torch.Tensor, xa: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """The point of HopSkipJump's binary search at parameter ``a`` (per row) between
        clean ``x0`` and adversarial ``xa``."""
        raise self._no_variant("hop_skip_jump")

    # -------------------------------------------------------------- shared
    def _no_variant(self, attack: str) -> ConfigError:
        return ConfigError(f"{attack} has no {self.name} variant; use norm='linf' or 'l2'")

    def eps_grid(self, span: float = 1.0) -> list[float]:
        """The default eps grid (a robustness curve's radii) for inputs of width ``span``."""
        return [round(g * span, 6) for g in self.scale.grid]

    def eps_slider(self, span: float = 1.0) -> EpsSlider:
        """The default eps slider for inputs of width ``span`` (unrounded)."""
        s = self.scale
        return EpsSlider(s.slider_max * span, s.slider_default * span, s.probe_default * span)

    def normalize(self, delta: torch.Tensor) -> torch.Tensor:
        """Each row of ``delta`` (as float32) scaled to norm 1; zero rows stay 0."""
        flat = delta.reshape(delta.shape[0], -1).float()
        size = self.measure(flat)
        size = torch.where(size > 0, size, torch.ones_like(size))
        return (flat / size[:, None]).reshape(delta.shape)

    def step(self, x: torch.Tensor, grad: torch.Tensor, size: float | torch.Tensor) -> torch.Tensor:
        """One ascent step of length ``size`` (per example) along :meth:`direction`."""
        return x + _view(size, x) * self.direction(grad)

    def clip(
        self,
        x_adv: torch.Tensor,
        x: torch.Tensor,
        eps: float | torch.Tensor,
        bounds: tuple[float, float] | None,
    ) -> torch.Tensor:
        """Project ``x_adv`` onto the ball around ``x``, then clip to ``bounds``.

        Clipping after the projection stays inside the ball because ``x`` itself lies
        inside the bounds (clipping only moves coordinates towards ``x``'s box).
        """
        return _clip(x + self.project(x_adv - x, eps), bounds)

    def random_start(
        self,
        x: torch.Tensor,
        eps: float | torch.Tensor,
        bounds: tuple[float, float] | None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A point drawn uniformly from the ball of radius ``eps`` around ``x``, clipped
        to ``bounds`` (Madry et al.'s start)."""
        return _clip(x + self._uniform(x, generator) * _view(eps, x), bounds)

    def surface_start(
        self,
        x: torch.Tensor,
        eps: float | torch.Tensor,
        bounds: tuple[float, float] | None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """A random point on the ball's surface, clipped to ``bounds`` (APGD's start)."""
        return _clip(x + self._surface(x, generator) * _view(eps, x), bounds)

    def ball(self, x: torch.Tensor, eps: torch.Tensor, bounds: tuple[float, float] | None) -> Ball:
        """The ball around each row of ``x`` with radii ``eps``, intersected with ``bounds``."""
        return Ball(self, x, eps, bounds)


class Linf(Norm):
    """The max norm: every coordinate moves by at most eps."""

    name = "linf"
    label = "L∞"
    aliases = ("inf", "l_inf", "linfinity")
    scale = EpsScale((0.025, 0.05, 0.1, 0.2, 0.3), 0.5, 0.1, 0.3)
    audit_fractions = {"image": (0.05, 0.1, 0.15, 0.2, 0.3), "tabular": (0.05, 0.1, 0.25, 0.5)}

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        flat = delta.reshape(delta.shape[0], -1)
        return flat.abs().amax(dim=1) if flat.shape[1] else flat.new_zeros(flat.shape[0])

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.sign()

    def project(self, delta: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
        e = _view(eps, delta)
        if isinstance(e, torch.Tensor):
            return torch.maximum(torch.minimum(delta, e), -e)
        return delta.clamp(-e, e)

    def _uniform(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        return 2 * torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) - 1

    def _surface(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        t = self._uniform(x, gen)
        return t / _view(self.measure(t).clamp_min(_TINY), t)

    def dual(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.reshape(grad.shape[0], -1).abs().sum(1)

    def project_hyperplane(
        self,
        p: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor,
        bounds: tuple[float, float] | None,
    ) -> torch.Tensor:
        from xrobust._hyperplane import project_linf

        return project_linf(p, w, b, bounds)

    def max_radius(self, bounds: tuple[float, float] | None, numel: int | None) -> float:
        return math.inf if bounds is None else bounds[1] - bounds[0]

    def random_unit(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return torch.randint(0, 2, shape, generator=generator).float() * 2 - 1

    def hsj_theta_scale(self, d: int) -> float:
        return d**2

    def hsj_probe_scale(self, d: int) -> float:
        return d

    def hsj_update(self, grad: torch.Tensor) -> torch.Tensor:
        return grad.sign()

    def hsj_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator,
        device: torch.device,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        return 2 * torch.rand(shape, generator=generator, device=device, dtype=dtype) - 1

    def hsj_search_range(
        self, dist0: torch.Tensor, theta: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # the searched parameter is the radius of a box around the clean input
        return dist0.clone(), torch.clamp(dist0 * theta, max=theta)

    def hsj_toward(self, x0: torch.Tensor, xa: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        av = _view(a, x0)
        return torch.minimum(torch.maximum(xa, x0 - av), x0 + av)


class L2(Norm):
    """The Euclidean norm of the whole perturbation."""

    name = "l2"
    label = "L2"
    aliases = ("2", "l_2")
    scale = EpsScale((0.25, 0.5, 1.0, 2.0, 3.0), 5.0, 1.0, 3.0)
    audit_fractions = {"image": (0.02, 0.04, 0.08, 0.12), "tabular": (0.025, 0.0625, 0.125, 0.25)}

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.reshape(delta.shape[0], -1).norm(p=2, dim=1)

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        return grad / _view(self.measure(grad).clamp_min(_TINY), grad)

    def project(self, delta: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
        n = self.measure(delta)
        e = eps if isinstance(eps, torch.Tensor) else torch.full_like(n, float(eps))
        factor = torch.where(n > e, e / n.clamp_min(_TINY), torch.ones_like(n))
        return delta * _view(factor, delta)

    def _uniform(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        # a Gaussian direction scaled by u ** (1/d): uniform in the unit ball
        d = x[0].numel() if x.shape[0] else 1
        r = torch.rand(x.shape[0], generator=gen, device=x.device, dtype=x.dtype)
        return self._surface(x, gen) * _view(r.pow(1.0 / d), x)

    def _surface(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        return self.direction(torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype))

    def dual(self, grad: torch.Tensor) -> torch.Tensor:
        return self.measure(grad)

    def project_hyperplane(
        self,
        p: torch.Tensor,
        w: torch.Tensor,
        b: torch.Tensor,
        bounds: tuple[float, float] | None,
    ) -> torch.Tensor:
        from xrobust._hyperplane import project_l2

        return project_l2(p, w, b, bounds)

    def max_radius(self, bounds: tuple[float, float] | None, numel: int | None) -> float:
        if bounds is None or numel is None:
            return math.inf
        return (bounds[1] - bounds[0]) * math.sqrt(numel)

    def random_unit(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return self.normalize(torch.randn(shape, generator=generator))

    def hsj_theta_scale(self, d: int) -> float:
        return d**1.5

    def hsj_probe_scale(self, d: int) -> float:
        return math.sqrt(d)

    def hsj_update(self, grad: torch.Tensor) -> torch.Tensor:
        return grad

    def hsj_sample(
        self,
        shape: tuple[int, ...],
        generator: torch.Generator,
        device: torch.device,
        dtype: torch.dtype,
    ) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=device, dtype=dtype)

    def hsj_search_range(
        self, dist0: torch.Tensor, theta: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        # the searched parameter is the blend weight between clean and adversarial
        return torch.ones_like(dist0), torch.full_like(dist0, theta)

    def hsj_toward(self, x0: torch.Tensor, xa: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        av = _view(a, x0)
        return (1 - av) * x0 + av * xa


class L1(Norm):
    """The sum of absolute values: a budget spread over few coordinates (sparse attacks).

    The steepest-ascent direction is SLIDE's top-k sign step (Tramèr and Boneh,
    arXiv:1904.13000): the signs of the ``sparsity`` fraction of coordinates with the
    largest gradient magnitude, scaled to unit L1 norm (L1-APGD, Croce and Hein,
    arXiv:2103.01208, adapts k; here it is fixed). The projection is Duchi et al.'s
    sort-based projection onto the L1 ball (ICML 2008, Figure 1); :meth:`clip` projects
    exactly onto the ball intersected with the input box (the same soft threshold with
    per-coordinate caps, its threshold found by bisection).
    """

    name = "l1"
    label = "L1"
    aliases = ("1", "l_1")
    scale = EpsScale((1.0, 2.5, 5.0, 10.0, 15.0), 20.0, 5.0, 12.0)
    # the L1 radius grows with the input size (max_radius = span * d): small fractions
    # (MNIST-sized images: about 1.6 to 12.5)
    audit_fractions = {"image": (0.002, 0.004, 0.008, 0.016), "tabular": (0.0125, 0.03, 0.06, 0.12)}
    #: the fraction of coordinates a step moves (SLIDE's 99th percentile)
    sparsity: ClassVar[float] = 0.01

    def measure(self, delta: torch.Tensor) -> torch.Tensor:
        return delta.reshape(delta.shape[0], -1).abs().sum(1)

    def direction(self, grad: torch.Tensor) -> torch.Tensor:
        flat = grad.reshape(grad.shape[0], -1)
        k = max(1, math.ceil(self.sparsity * flat.shape[1])) if flat.shape[1] else 0
        idx = flat.abs().topk(k, dim=1).indices
        out = torch.zeros_like(flat).scatter_(1, idx, flat.gather(1, idx).sign() / max(k, 1))
        return out.reshape(grad.shape)

    def project(self, delta: torch.Tensor, eps: float | torch.Tensor) -> torch.Tensor:
        flat = delta.reshape(delta.shape[0], -1)
        e = _per_row(eps, flat)
        u = flat.abs().sort(dim=1, descending=True).values
        css = u.cumsum(1)
        j = torch.arange(1, flat.shape[1] + 1, device=flat.device, dtype=flat.dtype)
        rho = (u - (css - e[:, None]) / j > 0).sum(1).clamp_min(1)
        theta = ((css.gather(1, (rho - 1)[:, None]).squeeze(1) - e) / rho).clamp_min(0)
        shrunk = flat.sign() * (flat.abs() - theta[:, None]).clamp_min(0)
        inside = (self.measure(flat) <= e)[:, None]
        return torch.where(inside, flat, shrunk).reshape(delta.shape)

    def clip(
        self,
        x_adv: torch.Tensor,
        x: torch.Tensor,
        eps: float | torch.Tensor,
        bounds: tuple[float, float] | None,
    ) -> torch.Tensor:
        if bounds is None:
            return x + self.project(x_adv - x, eps)
        v = (x_adv - x).reshape(x.shape[0], -1)
        xf = x.reshape(x.shape[0], -1)
        cap = torch.where(v > 0, bounds[1] - xf, xf - bounds[0]).clamp_min(0)
        a, e = v.abs(), _per_row(eps, v)
        lo, hi = torch.zeros_like(e), a.amax(1) if a.shape[1] else torch.zeros_like(e)
        for _ in range(60):  # g(theta) = sum(clamp(a - theta, 0, cap)) decreases in theta
            mid = (lo + hi) / 2
            over = (a - mid[:, None]).clamp_min(0).minimum(cap).sum(1) > e
            lo, hi = torch.where(over, mid, lo), torch.where(over, hi, mid)
        theta = torch.where(a.minimum(cap).sum(1) > e, hi, torch.zeros_like(hi))
        d = v.sign() * (a - theta[:, None]).clamp_min(0).minimum(cap)
        return _clip(x + d.reshape(x.shape), bounds)

    def _laplace(
        self, shape: tuple[int, ...], x: torch.Tensor, gen: torch.Generator | None
    ) -> torch.Tensor:
        e = torch.empty(shape, device=x.device, dtype=x.dtype).exponential_(generator=gen)
        s = torch.randint(0, 2, shape, generator=gen, device=x.device).to(x.dtype) * 2 - 1
        return e * s

    def _uniform(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        # a point uniform on the unit sphere (normalised Laplace) scaled by u ** (1/d)
        d = x[0].numel() if x.shape[0] else 1
        r = torch.rand(x.shape[0], generator=gen, device=x.device, dtype=x.dtype)
        return self._surface(x, gen) * _view(r.pow(1.0 / d), x)

    def _surface(self, x: torch.Tensor, gen: torch.Generator | None) -> torch.Tensor:
        t = self._laplace(tuple(x.shape), x, gen)
        return t / _view(self.measure(t).clamp_min(_TINY), t)

    def dual(self, grad: torch.Tensor) -> torch.Tensor:
        flat = grad.reshape(grad.shape[0], -1).abs()
        return flat.amax(1) if flat.shape[1] else flat.new_zeros(flat.shape[0])

    def max_radius(self, bounds: tuple[float, float] | None, numel: int | None) -> float:
        if bounds is None or numel is None:
            return math.inf
        return (bounds[1] - bounds[0]) * numel

    def random_unit(self, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
        return self.normalize(self._laplace(shape, torch.empty(0), generator))


def _per_row(eps: float | torch.Tensor, flat: torch.Tensor) -> torch.Tensor:
    if isinstance(eps, torch.Tensor):
        return eps.reshape(-1).to(flat.dtype)
    return torch.full((flat.shape[0],), float(eps), device=flat.device, dtype=flat.dtype)


class Ball:
    """The eps-balls around a batch of centres, intersected with the input bounds.

    For Linf the intersection is a box whose corners are computed once, which makes the
    projection of every iterate a single ``clamp``.
    """

    def __init__(
        self,
        norm: Norm,
        x: torch.Tensor,
        eps: torch.Tensor,
        bounds: tuple[float, float] | None,
    ) -> None:
        self.norm, self.x, self.eps, self.bounds = norm, x, eps, bounds
        self._box: tuple[torch.Tensor, torch.Tensor] | None = None
        if isinstance(norm, Linf):
            e = _view(eps, x)
            self._box = (_clip_lo(x - e, bounds), _clip_hi(x + e, bounds))

    def project(self, z: torch.Tensor) -> torch.Tensor:
        """The point of the ball (and of the bounds) nearest to ``z``, row by row."""
        if self._box is not None:
            return torch.clamp(z, self._box[0], self._box[1])
        return self.norm.clip(z, self.x, self.eps, self.bounds)

    def select(self, keep: torch.Tensor) -> Ball:
        """The balls of the rows where ``keep`` (mask or indices) selects."""
        out = Ball.__new__(Ball)
        out.norm, out.x, out.eps, out.bounds = self.norm, self.x[keep], self.eps[keep], self.bounds
        out._box = None if self._box is None else (self._box[0][keep], self._box[1][keep])
        return out


def _clip_lo(t: torch.Tensor, bounds: tuple[float, float] | None) -> torch.Tensor:
    return t if bounds is None else t.clamp_min(bounds[0])


def _clip_hi(t: torch.Tensor, bounds: tuple[float, float] | None) -> torch.Tensor:
    return t if bounds is None else t.clamp_max(bounds[1])


#: name -> norm object; the registry of threat models
NORMS: dict[str, Norm] = {n.name: n for n in (Linf(), L2(), L1())}


def list_norms() -> list[str]:
    """Names of the supported norms."""
    return list(NORMS)


def get_norm(norm: str | Norm) -> Norm:
    """The norm object for a name ("linf", "Linf", "inf", "l2", "L2", "2") or a Norm.

    Raises:
        ConfigError: unknown name, listing the known ones.
    """
    if isinstance(norm, Norm):
        return norm
    key = str(norm).strip().lower()
    for n in NORMS.values():
        if key == n.name or key in n.aliases:
            return n
    raise ConfigError(f"unknown norm {norm!r}; expected one of {', '.join(NORMS)}")
