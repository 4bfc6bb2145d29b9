"""How far can an explanation be trusted: faithfulness, robustness and sanity metrics.

- :func:`deletion_curve` / :func:`insertion_curve`: the target probability as the most
  important pixels are removed from the input (deletion: lower AUC is better) or inserted
  into a blurred copy (insertion: higher AUC is better). Petsiuk, Das, Saenko, "RISE:
  Randomized Input Sampling for Explanation of Black-box Models", arXiv:1806.07421.
- :func:`infidelity` and :func:`max_sensitivity`: Yeh et al., "On the (In)fidelity and
  Sensitivity of Explanations", arXiv:1901.09392 (computed by ``captum.metrics``).
- :func:`ig_completeness`: integrated gradients' attributions should sum to
  f(x) - f(baseline); the relative convergence delta measures how far they are.
- :func:`model_randomisation_check`: Adebayo et al., "Sanity Checks for Saliency Maps",
  arXiv:1810.03292; cascading randomisation of the layers from the top down; a method whose
  maps stay the same when the model is destroyed does not explain the model.
- :func:`stability_under_attack`: how the attribution of x compares with that of its
  adversarial x' (top-k overlap and Spearman rank correlation).

All results are dataclasses with ``to_dict`` (JSON-ready), so the audit can store them.

Example:
    >>> import torch
    >>> a = torch.tensor([[3.0, 2.0, 1.0, 0.0]])
    >>> sim = attribution_similarity(a, a.flip(1), k=2)
    >>> sim.topk_overlap, sim.spearman
    ([0.0], [-1.0])
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch
from captum.metrics import infidelity as _captum_infidelity
from captum.metrics import sensitivity_max as _captum_sensitivity_max
from torch import nn

from xrobust.device import model_device
from xrobust.errors import ConfigError, DataError, ModelError
from xrobust.explain._baselines import BaselineSpec, resolve_baseline
from xrobust.explain.base import (
    Explanation,
    TargetSpec,
    _budget_bytes,
    _check_input,
    _eval_mode,
    _logits,
    _resolve_targets,
    _seeded,
    quiet_captum,
)

__all__ = [
    "CompletenessResult",
    "CurveResult",
    "SanityCheckResult",
    "ScoreResult",
    "SimilarityResult",
    "StabilityResult",
    "attribution_similarity",
    "deletion_curve",
    "ig_completeness",
    "infidelity",
    "insertion_curve",
    "max_sensitivity",
    "model_randomisation_check",
    "spearman",
    "stability_under_attack",
]

Model = nn.Module | Callable[[torch.Tensor], torch.Tensor]
ExplainFn = Callable[[nn.Module, torch.Tensor, torch.Tensor], torch.Tensor]


def _mean(v: Sequence[float]) -> float:
    finite = [f for f in v if not math.isnan(f)]
    return float(sum(finite) / len(finite)) if finite else float("nan")


# --------------------------------------------------------------------------- similarity
def _rank(a: torch.Tensor) -> torch.Tensor:
    """Ranks along dim 1 (0-based), ties given their average rank."""
    a = a.double()
    n, p = a.shape
    srt, idx = a.sort(dim=1, stable=True)
    new = torch.ones_like(srt, dtype=torch.bool)
    new[:, 1:] = srt[:, 1:] != srt[:, :-1]
    gid = new.long().cumsum(1) - 1
    pos = torch.arange(p, dtype=torch.float64, device=a.device).expand(n, p)
    sums = torch.zeros(n, p, dtype=torch.float64, device=a.device).scatter_add_(1, gid, pos)
    cnt = torch.zeros(n, p, dtype=torch.float64, device=a.device).scatter_add_(
        1, gid, torch.ones_like(pos)
    )
    avg = sums.gather(1, gid) / cnt.gather(1, gid)
    return torch.empty_like(avg).scatter_(1, idx, avg)


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation per example between two batches of maps (N, ...).

    Ties get average ranks. A constant map has no ranking; its correlation is reported as
    0 (no agreement), so a method that returns all zeros never looks stable.

    Example:
        >>> import torch
        >>> spearman(torch.tensor([[1.0, 2, 3]]), torch.tensor([[10.0, 20, 30]])).tolist()
        [1.0]
    """
    if a.shape != b.shape:
        raise DataError(f"maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    ra, rb = _rank(a.reshape(a.shape[0], -1)), _rank(b.reshape(b.shape[0], -1))
    ra = ra - ra.mean(1, keepdim=True)
    rb = rb - rb.mean(1, keepdim=True)
    den = ra.norm(dim=1) * rb.norm(dim=1)
    rho = (ra * rb).sum(1) / den.clamp_min(1e-300)
    return torch.where(den > 0, rho, torch.zeros_like(rho)).float()


def _topk_overlap(a: torch.Tensor, b: torch.Tensor, k: int) -> torch.Tensor:
    fa, fb = a.reshape(a.shape[0], -1), b.reshape(b.shape[0], -1)
    ia, ib = fa.topk(k, dim=1).indices, fb.topk(k, dim=1).indices
    ma = torch.zeros_like(fa, dtype=torch.bool).scatter_(1, ia, True)
    mb = torch.zeros_like(fb, dtype=torch.bool).scatter_(1, ib, True)
    return (ma & mb).sum(1).float() / k


def _k_of(k: int | float, p: int) -> int:
    if isinstance(k, float) and 0 < k <= 1:
        return max(1, round(k * p))
    if isinstance(k, int) and 1 <= k <= p:
        return k
    raise ConfigError(f"k must be a fraction in (0, 1] or a count in 1..{p}, got {k!r}")


class _OverlapSummary:
    """Means over examples for results holding ``topk_overlap`` and ``spearman`` lists."""

    topk_overlap: list[float]
    spearman: list[float]

    @property
    def mean_topk_overlap(self) -> float:
        return _mean(self.topk_overlap)

    @property
    def mean_spearman(self) -> float:
        return _mean(self.spearman)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean_topk_overlap"] = self.mean_topk_overlap
        d["mean_spearman"] = self.mean_spearman
        return d


@dataclass
class SimilarityResult(_OverlapSummary):
    """Agreement between two batches of attribution maps (computed on |maps|).

    Attributes:
        topk_overlap: per example, the share of the top-k features common to both maps.
        spearman: per example, Spearman rank correlation of the two maps.
        k: number of top features compared.
    """

    topk_overlap: list[float]
    spearman: list[float]
    k: int


def attribution_similarity(
    a: torch.Tensor, b: torch.Tensor, k: int | float = 0.1, absolute: bool = True
) -> SimilarityResult:
    """Top-k overlap and Spearman correlation between two batches of maps of equal shape.

    Args:
        a, b: attribution maps (N, ...).
        k: top features compared: a fraction of the features (float) or a count (int).
        absolute: compare |maps| (importance regardless of sign), the usual choice.
    """
    if a.shape != b.shape:
        raise DataError(f"maps differ in shape: {tuple(a.shape)} vs {tuple(b.shape)}")
    a, b = a.detach().float().cpu(), b.detach().float().cpu()
    if absolute:
        a, b = a.abs(), b.abs()
    kk = _k_of(k, a[0].numel())
    return SimilarityResult(
        topk_overlap=_topk_overlap(a, b, kk).tolist(), spearman=spearman(a, b).tolist(), k=kk
    )


# ------------------------------------------------------------------ deletion / insertion
@dataclass
class CurveResult:
    """A deletion or insertion curve per example, with its area under the curve.

    Attributes:
        kind: "deletion" (lower AUC: more faithful) or "insertion" (higher is better).
        fractions: share of pixels removed / inserted at each step, 0..1.
        scores: per example, the softmax probability of the target at each step.
        auc: per example, the trapezoidal area under its curve (over fractions 0..1).
        method: name of the explainer, when known.
    """

    kind: Literal["deletion", "insertion"]
    fractions: list[float]
    scores: list[list[float]]
    auc: list[float]
    method: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def mean_auc(self) -> float:
        return _mean(self.auc)

    @property
    def mean_curve(self) -> list[float]:
        n = len(self.scores)
        return [sum(s[i] for s in self.scores) / n for i in range(len(self.fractions))]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean_auc"] = self.mean_auc
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CurveResult:
        return cls(**{k: v for k, v in d.items() if k != "mean_auc"})


def _unpack(
    model: Model, x: torch.Tensor, attributions: torch.Tensor | Explanation, target: TargetSpec
) -> tuple[torch.Tensor, torch.Tensor, str | None]:
    x = _check_input(x)
    method = None
    if isinstance(attributions, Explanation):
        if attributions.multi_target:
            raise DataError("metrics need one target per example; explain one target at a time")
        if target is None:
            target = attributions.target
        method = attributions.method
        attributions = attributions.attributions
    if attributions.shape != x.shape:
        raise DataError(
            f"attributions of shape {tuple(attributions.shape)} do not match inputs "
            f"{tuple(x.shape)}"
        )
    t = _resolve_targets(model, x, target)
    if t.ndim != 1:
        raise DataError("metrics need one target per example")
    return attributions, t, method


def _pixel_scores(attr: torch.Tensor, absolute: bool) -> torch.Tensor:
    """Importance per pixel (images: summed over channels) or per feature, (N, P)."""
    a = attr.abs() if absolute else attr
    if a.ndim == 4:
        a = a.sum(1)
    return a.reshape(a.shape[0], -1)


def _probabilities(model: Any, scores: torch.Tensor) -> torch.Tensor:
    """Class probabilities from a model's scores: softmax of logits, or the scores as they
    are for a classifier that declares probabilities (or one-hot labels)."""
    if getattr(model, "output", "logits") in ("probabilities", "labels"):
        return scores
    return torch.softmax(scores, 1)


def _curve(
    kind: Literal["deletion", "insertion"],
    model: Model,
    x: torch.Tensor,
    attributions: torch.Tensor | Explanation,
    target: TargetSpec,
    steps: int,
    baseline: BaselineSpec,
    absolute: bool,
    batch_size: int | None,
) -> CurveResult:
    attr, t, method = _unpack(model, x, attributions, target)
    if steps < 1:
        raise ConfigError(f"steps must be at least 1, got {steps}")
    device = model_device(model) if isinstance(model, nn.Module) else x.device
    xd = x.detach().to(device)
    t = t.to(device)
    base = resolve_baseline(baseline, xd)
    imp = _pixel_scores(attr.detach().to(device).float(), absolute)
    n, p = imp.shape
    order = imp.argsort(dim=1, descending=True, stable=True)
    rank = torch.empty_like(order).scatter_(
        1, order, torch.arange(p, device=device).expand(n, p).contiguous()
    )
    counts = [round(p * i / steps) for i in range(steps + 1)]
    fractions = [c / p for c in counts]
    one = int(xd[0].numel() * xd.element_size())
    bs = batch_size or max(1, min(1024, _budget_bytes(None, device) // max(1, 8 * one)))
    scores = torch.empty(n, steps + 1, device=device)
    with _eval_mode(model), torch.no_grad():
        for i in range(n):
            src, dst = (xd[i], base[i]) if kind == "deletion" else (base[i], xd[i])
            for s0 in range(0, steps + 1, bs):
                cs = torch.tensor(counts[s0 : s0 + bs], device=device)
                take = rank[i][None, :] < cs[:, None]  # (S, P): pixels switched to dst
                if xd.ndim == 4:
                    take = take.view(-1, 1, *xd.shape[2:])
                else:
                    take = take.view(-1, *xd.shape[1:])
                batch = torch.where(take, dst.unsqueeze(0), src.unsqueeze(0))
                prob = _probabilities(model, _logits(model, batch).float())[:, t[i]]
                scores[i, s0 : s0 + len(cs)] = prob
    fr = torch.tensor(fractions, device=device)
    auc = torch.trapezoid(scores, fr, dim=1)
    return CurveResult(
        kind=kind,
        fractions=fractions,
        scores=scores.cpu().tolist(),
        auc=auc.cpu().tolist(),
        method=method,
        params={
            "steps": steps,
            "baseline": str(baseline) if not isinstance(baseline, torch.Tensor) else "tensor",
            "absolute": absolute,
        },
    )


def deletion_curve(
    model: Model,
    x: torch.Tensor,
    attributions: torch.Tensor | Explanation,
    target: TargetSpec = None,
    *,
    steps: int = 28,
    baseline: BaselineSpec = "zeros",
    absolute: bool = False,
    batch_size: int | None = None,
) -> CurveResult:
    """Deletion curve: remove pixels (replace by ``baseline``) from most to least important
    and track the target probability; a faithful map makes it fall fast (low AUC).

    Args:
        model: the model (logits).
        x: inputs (N, ...).
        attributions: maps of x's shape, or an :class:`Explanation` (its targets are used).
        target: class per example (default: the explanation's, else the prediction).
        steps: number of removal steps (the curve has steps + 1 points).
        baseline: what removed pixels become ("zeros", "blur", a number, a tensor).
        absolute: rank by |attribution| (default: signed, positive evidence first).
        batch_size: perturbed inputs per forward pass (default from the memory budget).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Linear(4, 2)
        >>> c = deletion_curve(m, torch.rand(3, 4), torch.rand(3, 4), steps=4)
        >>> len(c.fractions), len(c.auc)
        (5, 3)
    """
    return _curve("deletion", model, x, attributions, target, steps, baseline, absolute, batch_size)


def insertion_curve(
    model: Model,
    x: torch.Tensor,
    attributions: torch.Tensor | Explanation,
    target: TargetSpec = None,
    *,
    steps: int = 28,
    baseline: BaselineSpec = "blur",
    absolute: bool = False,
    batch_size: int | None = None,
) -> CurveResult:
    """Insertion curve: start from ``baseline`` (a blurred copy for images, as in the RISE
    paper; use "zeros" for tabular data) and insert the input's pixels from most to least
    important; a faithful map makes the target probability rise fast (high AUC).

    Same arguments as :func:`deletion_curve`.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> c = insertion_curve(nn.Linear(4, 2), torch.rand(2, 4), torch.rand(2, 4),
        ...                     steps=4, baseline="zeros")
        >>> c.fractions
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    return _curve(
        "insertion", model, x, attributions, target, steps, baseline, absolute, batch_size
    )


# --------------------------------------------------------------- infidelity / sensitivity
@dataclass
class ScoreResult:
    """A per-example score of an explanation (lower is better for both metrics here).

    Attributes:
        metric: "infidelity" or "max_sensitivity".
        values: per example.
        method: explainer name, when known.
        params: the metric's settings.
    """

    metric: str
    values: list[float]
    method: str | None = None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def mean(self) -> float:
        return _mean(self.values)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["mean"] = self.mean
        return d


def infidelity(
    model: Model,
    x: torch.Tensor,
    attributions: torch.Tensor | Explanation,
    target: TargetSpec = None,
    *,
    noise_std: float = 0.1,
    n_perturb_samples: int = 16,
    normalize: bool = True,
    seed: int = 0,
) -> ScoreResult:
    """Infidelity (Yeh et al. 2019): expected squared error between attributions dotted
    with random perturbations I ~ N(0, noise_std^2) and the output change f(x) - f(x - I).

    With ``normalize`` the attributions are rescaled by the best least-squares factor
    first, so the score does not depend on their scale. Lower is better.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Linear(3, 2)
        >>> x = torch.rand(2, 3)
        >>> exact = m.weight[0].detach() * torch.ones_like(x)  # gradients of a linear model
        >>> r = infidelity(m, x, exact, target=0)
        >>> r.mean < 1e-8
        True
    """
    attr, t, method = _unpack(model, x, attributions, target)
    device = model_device(model) if isinstance(model, nn.Module) else x.device
    xd = x.detach().to(device)

    def perturb(inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        noise = torch.randn_like(inputs) * noise_std
        return noise, inputs - noise

    with _eval_mode(model), _seeded(seed, device), quiet_captum(), torch.no_grad():
        v = _captum_infidelity(
            model,
            perturb,
            xd,
            attr.detach().to(device),
            target=t.to(device),
            n_perturb_samples=n_perturb_samples,
            normalize=normalize,
        )
    return ScoreResult(
        "infidelity",
        v.float().cpu().tolist(),
        method,
        {"noise_std": noise_std, "n_perturb_samples": n_perturb_samples, "normalize": normalize},
    )


def max_sensitivity(
    model: nn.Module,
    x: torch.Tensor,
    method: str = "saliency",
    target: TargetSpec = None,
    *,
    radius: float = 0.02,
    n_perturb_samples: int = 8,
    seed: int = 0,
    **params: Any,
) -> ScoreResult:
    """Max-sensitivity (Yeh et al. 2019): the largest relative change of the explanation
    when x moves uniformly within an L-inf ball of ``radius``. Lower is more stable.

    Args:
        model: the model.
        x: inputs (N, ...).
        method: explainer name; ``params`` are its options.
        target: explained class (default: the prediction on x, kept for the perturbed x).
        radius: L-inf radius of the perturbations, in input units.
        n_perturb_samples: perturbations per example.
        seed: seeds the perturbations (and stochastic explainers).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> r = max_sensitivity(nn.Linear(3, 2), torch.rand(2, 3), "saliency")
        >>> r.values  # gradients of a linear model do not move
        [0.0, 0.0]
    """
    from xrobust.explain import get_explainer

    x = _check_input(x)
    explainer = get_explainer(method, model, **params)
    device = model_device(model) if isinstance(model, nn.Module) else x.device
    xd = x.detach().to(device)
    t = _resolve_targets(model, xd, target)

    def fn(inputs: Any, target: torch.Tensor) -> tuple[torch.Tensor]:
        # Captum hands the batch as a 1-tuple and expects a tuple back
        if isinstance(inputs, tuple):
            (inputs,) = inputs
        return (explainer.explain(inputs, target).attributions,)

    with _seeded(seed, device), quiet_captum():
        v = _captum_sensitivity_max(
            fn, xd, perturb_radius=radius, n_perturb_samples=n_perturb_samples, target=t
        )
    return ScoreResult(
        "max_sensitivity",
        v.float().cpu().tolist(),
        method,
        {"radius": radius, "n_perturb_samples": n_perturb_samples},
    )


# ------------------------------------------------------------------------- completeness
@dataclass
class CompletenessResult:
    """Integrated gradients' completeness: sum of attributions vs f(x) - f(baseline).

    Attributes:
        abs_delta: per example, |sum(attributions) - (f(x) - f(baseline))|.
        rel_delta: per example, abs_delta / |f(x) - f(baseline)|.
        n_steps: integration steps used.
        passed: max rel_delta below ``tolerance``.
        tolerance: the threshold used.
    """

    abs_delta: list[float]
    rel_delta: list[float]
    n_steps: int
    tolerance: float
    passed: bool

    @property
    def max_rel_delta(self) -> float:
        return max(self.rel_delta)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_rel_delta"] = self.max_rel_delta
        return d


def ig_completeness(
    model: nn.Module,
    x: torch.Tensor,
    target: TargetSpec = None,
    *,
    tolerance: float = 1e-2,
    **ig_params: Any,
) -> CompletenessResult:
    """Check that integrated gradients add up: relative convergence delta per example.

    ``ig_params`` go to the integrated_gradients explainer (``n_steps``, ``baselines``,
    ...). The logit difference is computed here with the same baselines.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2))
        >>> ig_completeness(m, torch.rand(4, 3), n_steps=32).passed
        True
    """
    from xrobust.explain import get_explainer

    explainer = get_explainer("integrated_gradients", model, **ig_params)
    e = explainer.explain(x, target)
    if e.multi_target:
        raise DataError("ig_completeness needs one target per example")
    device = model_device(model)
    xd = x.detach().to(device)
    base = explainer.params.baseline_for(xd)
    t = e.target.to(device)
    with _eval_mode(model), torch.no_grad():
        diff = (_logits(model, xd) - _logits(model, base)).gather(1, t[:, None])[:, 0]
        total = e.attributions.to(device).reshape(len(xd), -1).sum(1)
    abs_delta = (total - diff).abs()
    rel = abs_delta / diff.abs().clamp_min(1e-12)
    rel_list = rel.float().cpu().tolist()
    return CompletenessResult(
        abs_delta=abs_delta.float().cpu().tolist(),
        rel_delta=rel_list,
        n_steps=int(explainer.params.n_steps),
        tolerance=tolerance,
        passed=bool(max(rel_list) < tolerance),
    )


# ------------------------------------------------------------------------ sanity check
@dataclass
class SanityCheckResult:
    """Model-parameter randomisation test (Adebayo et al. 2018), cascading from the top.

    Attributes:
        method: explainer name (or the function's name).
        layers: names of the randomised layers, top (output) first; stage i has layers
            0..i randomised.
        spearman: per stage, mean Spearman rank correlation of |maps| between the trained
            and the randomised model.
        topk_overlap: per stage, mean top-k overlap of |maps|.
        threshold: the method passes when the correlation after randomising every layer is
            below this.
        passed: whether the maps depend on the parameters.
    """

    method: str
    layers: list[str]
    spearman: list[float]
    topk_overlap: list[float]
    threshold: float
    passed: bool

    @property
    def final_spearman(self) -> float:
        return self.spearman[-1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["final_spearman"] = self.final_spearman
        return d


def _param_layers(model: nn.Module) -> list[tuple[str, nn.Module]]:
    return [
        (name, m)
        for name, m in model.named_modules()
        if next(m.children(), None) is None and any(True for _ in m.parameters(recurse=False))
    ]


def _randomise(layer: nn.Module) -> None:
    reset = getattr(layer, "reset_parameters", None)
    if callable(reset):
        reset()
        return
    with torch.no_grad():
        for p in layer.parameters(recurse=False):
            std = float(p.std()) if p.numel() > 1 else 1.0
            p.normal_(0.0, std if std > 0 else 1.0)


def model_randomisation_check(
    model: nn.Module,
    x: torch.Tensor,
    method: str | ExplainFn = "saliency",
    target: TargetSpec = None,
    *,
    threshold: float = 0.5,
    k: int | float = 0.1,
    seed: int = 0,
    **params: Any,
) -> SanityCheckResult:
    """Cascading model-parameter randomisation (Adebayo et al., arXiv:1810.03292).

    A deep copy of the model has its parameterised layers re-initialised one after the
    other from the output down; after each stage the maps are recomputed (same targets as
    on the trained model) and compared with the trained model's maps by Spearman rank
    correlation of their absolute values. Maps that do not change fail: the method
    passes when the correlation with every layer randomised is below ``threshold``. The
    user's model is never modified.

    Args:
        model: the trained model.
        x: inputs (N, ...).
        method: explainer name (``params`` are its options), or a function
            ``f(model, x, target) -> maps`` (e.g. to check a custom method).
        target: explained classes (default: the trained model's predictions).
        threshold: Spearman correlation under which the check passes.
        k: top-k features for the overlap figures.
        seed: seeds the re-initialisation and stochastic explainers.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> torch.manual_seed(0) and None
        >>> m = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 3))
        >>> r = model_randomisation_check(m, torch.rand(8, 6), "saliency")
        >>> r.layers
        ['2', '0']
    """
    if not isinstance(model, nn.Module):
        raise ModelError("the randomisation check needs a torch.nn.Module to randomise")
    x = _check_input(x)
    device = model_device(model)
    xd = x.detach().to(device)
    with _eval_mode(model):
        t = _resolve_targets(model, xd, target)
    if t.ndim != 1:
        raise DataError("the randomisation check needs one target per example")

    fn, name = _explain_fn(method, params, seed)
    with _eval_mode(model):
        ref = fn(model, xd, t).detach()
    names, rhos, overlaps = _cascade(model, fn, ref, xd, t, k, seed, device)
    return SanityCheckResult(
        method=name,
        layers=names,
        spearman=rhos,
        topk_overlap=overlaps,
        threshold=threshold,
        passed=bool(rhos[-1] < threshold),
    )


def _explain_fn(
    method: str | ExplainFn, params: dict[str, Any], seed: int
) -> tuple[ExplainFn, str]:
    """``f(model, x, target) -> maps`` for an explainer name (with its options) or a
    function, and the method's name."""
    if callable(method) and not isinstance(method, str):
        return method, getattr(method, "__name__", "custom")
    from xrobust.explain import get_explainer

    name = str(method)

    def fn(m: nn.Module, inp: torch.Tensor, tt: torch.Tensor) -> torch.Tensor:
        return get_explainer(name, m, **params).explain(inp, tt, seed=seed).attributions

    return fn, name


def _cascade(
    model: nn.Module,
    fn: ExplainFn,
    ref: torch.Tensor,
    xd: torch.Tensor,
    t: torch.Tensor,
    k: int | float,
    seed: int,
    device: torch.device,
) -> tuple[list[str], list[float], list[float]]:
    """Randomise a copy's parameterised layers from the output down; after each, the
    layer's name and the maps' similarity (Spearman, top-k overlap) to ``ref``."""
    clone = copy.deepcopy(model).eval()
    layers = list(reversed(_param_layers(clone)))
    if not layers:
        raise ModelError("the model has no parameterised layers to randomise")
    names, rhos, overlaps = [], [], []
    with _seeded(seed, device):
        for lname, layer in layers:
            _randomise(layer)
            sim = attribution_similarity(ref, fn(clone, xd, t).detach(), k=k)
            names.append(lname)
            rhos.append(sim.mean_spearman)
            overlaps.append(sim.mean_topk_overlap)
    return names, rhos, overlaps


# ------------------------------------------------------------------ stability under attack
@dataclass
class StabilityResult(_OverlapSummary):
    """How an explanation moves under an adversarial perturbation of the input.

    Attributes:
        method: explainer name.
        target: explained class per example (the same for x and x_adv).
        topk_overlap: per example, share of the top-k features of x kept for x_adv.
        spearman: per example, rank correlation of |attributions| of x and x_adv.
        k: top features compared.
        prediction_changed: per example, whether the model's prediction changed.
    """

    method: str
    target: list[int]
    topk_overlap: list[float]
    spearman: list[float]
    k: int
    prediction_changed: list[bool]


def stability_under_attack(
    model: Model,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    method: str = "saliency",
    target: TargetSpec = None,
    *,
    k: int | float = 0.1,
    seed: int | None = 0,
    **params: Any,
) -> StabilityResult:
    """Compare the attributions of x and of its adversarial x_adv for the same class.

    Args:
        model: the model.
        x: clean inputs (N, ...).
        x_adv: adversarial inputs of the same shape (from any attack).
        method: explainer name; ``params`` are its options.
        target: class explained for both (default: the prediction on the clean x).
        k: top-k features compared (fraction or count).
        seed: seeds stochastic explainers (the same seed for both inputs).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> m = nn.Linear(4, 2)
        >>> x = torch.rand(3, 4)
        >>> r = stability_under_attack(m, x, x + 0.01, "input_x_gradient", k=2)
        >>> len(r.spearman), r.k
        (3, 2)
    """
    from xrobust.explain import get_explainer

    x, x_adv = _check_input(x), _check_input(x_adv)
    if x.shape != x_adv.shape:
        raise DataError(f"x {tuple(x.shape)} and x_adv {tuple(x_adv.shape)} differ in shape")
    explainer = get_explainer(method, model, **params)
    device = model_device(model) if isinstance(model, nn.Module) else x.device
    with _eval_mode(model):
        t = _resolve_targets(model, x.to(device), target)
        if t.ndim != 1:
            raise DataError("stability needs one target per example")
        changed = _logits(model, x.to(device)).argmax(1) != _logits(model, x_adv.to(device)).argmax(
            1
        )
    a = explainer.explain(x, t, seed=seed).attributions
    b = explainer.explain(x_adv, t, seed=seed).attributions
    sim = attribution_similarity(a, b, k=k)
    return StabilityResult(
        method=method,
        target=t.cpu().tolist(),
        topk_overlap=sim.topk_overlap,
        spearman=sim.spearman,
        k=sim.k,
        prediction_changed=changed.cpu().tolist(),
    )
