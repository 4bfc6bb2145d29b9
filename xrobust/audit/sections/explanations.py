"""Section 4: explanations of clean and adversarial examples, and how far to trust them.

For a sample of correctly classified examples: clean and adversarial attributions side by
side for each configured method; deletion/insertion AUC against a random attribution;
the model-parameter randomisation sanity check; and attribution shift under attack (top-k
overlap and rank correlation). All computed on rank 0 (a handful of examples).
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch

from xrobust.audit._attacks import attacks_for, attacks_unavailable, run_attack
from xrobust.audit._runtime import Runtime, to_list
from xrobust.audit.config import ExplanationConfig
from xrobust.audit.report import AuditReport, SectionResult
from xrobust.audit.section import Section, register_section
from xrobust.audit.sections.adversarial import eps_grid

__all__ = ["run_explanations"]

log = logging.getLogger(__name__)

_MAX_EXAMPLE_NUMEL = 4096


def run_explanations(rt: Runtime, adversarial: SectionResult | None = None) -> dict[str, Any]:
    """Attributions of clean and adversarial examples with their quality metrics."""
    try:
        import xrobust.explain as E
    except ImportError as exc:
        return {"_unavailable": f"xrobust.explain is not available in this installation ({exc})"}
    for m in rt.config.explanations.methods:
        E.EXPLAINERS.get(m)  # unknown names raise ConfigError with a did-you-mean
    if not _methods(rt):
        return rt.nothing_runs("explanation method")
    return rt.on_rank0(lambda: _run(rt))


def _methods(rt: Runtime) -> list[str]:
    """The configured methods the model can answer: all on a white box; on a black box
    the forward-only ones, then ``explanations.black_box_methods`` (skips recorded)."""
    import xrobust.explain as E

    cfg = rt.config.explanations
    if rt.white_box:
        return list(cfg.methods)
    src = rt.classifier.source
    rt.skipped_parts = [p for p in rt.skipped_parts if not p["part"].startswith("method ")]
    out: list[str] = []
    for m in cfg.methods:
        if E.EXPLAINERS.get(m).requires_gradients:
            rt.skip_part(f"method {m}", f"needs input gradients; the model is a black box ({src})")
        else:
            out.append(m)
    for m in cfg.black_box_methods:
        if m not in out and not E.EXPLAINERS.get(m).requires_gradients:
            out.append(m)
    return out


def _reduce(a: torch.Tensor, modality: str) -> torch.Tensor:
    """One map per example: attributions summed over channels (images) or as they are."""
    if modality == "image" and a.dim() == 4:
        return a.sum(1)
    return a


def _run(rt: Runtime) -> dict[str, Any]:
    cfg = rt.config.explanations
    pool = _pool(rt)
    if len(pool) == 0:
        return {"n": 0, "methods": {}, "note": "no correctly classified example to explain"}
    x, y = rt.x[pool], rt.y[pool]
    notes: list[str] = []
    x_adv, pred_adv, eps, attack = _adversarial(rt, x, y, notes)
    show = min(cfg.n, len(pool))
    store = math.prod(rt.spec.input_shape) <= _MAX_EXAMPLE_NUMEL
    examples: list[dict[str, Any]] = []
    for j in range(show):
        row: dict[str, Any] = {"index": int(pool[j]), "label": int(y[j])}
        if pred_adv is not None:
            row["pred_adv"] = int(pred_adv[j])
        if store and rt.spec.modality == "image":
            row["x"] = to_list(x[j].mean(0), 4)
            if x_adv is not None:
                row["x_adv"] = to_list(x_adv[j].mean(0), 4)
        examples.append(row)
    methods: dict[str, Any] = {}
    metrics = _metrics_module()
    names = _methods(rt)
    for m in names:
        md = _attributions(rt, m, x[:show], y[:show], x_adv, pred_adv, store)
        if metrics is None:
            md["metrics_note"] = "xrobust.explain.metrics is not available in this installation"
        else:
            md.update(_quality(rt, metrics, m, x, y, x_adv, rt.config.seed))
        methods[m] = md
        rt.report("explanations", len(methods), len(names))
    return {
        "n": show,
        "n_metrics": len(pool),
        "norm": cfg.norm,
        "eps": eps,
        "attack": attack,
        "feature_names": list(rt.spec.feature_names) if rt.spec.feature_names else None,
        "examples": examples,
        "methods": methods,
        "notes": notes,
    }


def _pool(rt: Runtime) -> torch.Tensor:
    """Correctly classified examples of the seeded sample: one per class first (diverse),
    then in sample order."""
    cfg = rt.config.explanations
    pool = rt.sample(max(cfg.n, cfg.n_metrics) * 3)
    pred = rt.clean_logits()[pool].argmax(1)
    pool = pool[pred == rt.y[pool]]
    first: list[int] = []
    seen: set[int] = set()
    for j, lab in enumerate(rt.y[pool].tolist()):
        if lab not in seen and len(first) < cfg.n:
            seen.add(lab)
            first.append(j)
    rest = [j for j in range(len(pool)) if j not in set(first)]
    return pool[torch.tensor(first + rest, dtype=torch.long)][: max(cfg.n, cfg.n_metrics)]


def _adversarial(
    rt: Runtime, x: torch.Tensor, y: torch.Tensor, notes: list[str]
) -> tuple[torch.Tensor | None, torch.Tensor | None, float | None, str | None]:
    """Adversarial versions at the headline eps of the configured norm: (x_adv, pred_adv,
    eps, attack), all None (with a note) when no attack can run."""
    cfg = rt.config.explanations
    why = attacks_unavailable()
    usable = [] if why else attacks_for(rt, [cfg.attack])
    if why:
        notes.append(f"adversarial attributions not available: {why}")
        return None, None, None, None
    if not usable:
        notes.append(f"adversarial attributions not available: {cfg.attack} cannot run here")
        return None, None, None, None
    _, eps = eps_grid(rt, cfg.norm)
    res = run_attack(rt, usable[0], cfg.norm, eps, x, y, seed=rt.config.seed)
    return res.x_adv, res.pred_adv, eps, usable[0]


def _attributions(
    rt: Runtime,
    method: str,
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor | None,
    pred_adv: torch.Tensor | None,
    store: bool,
) -> dict[str, Any]:
    """One method's attributions of the examples shown, clean (target: the label) and
    adversarial (target: the fooled prediction), stored when the inputs are small."""
    import xrobust.explain as E

    show, seed = len(x), rt.config.seed
    model = rt.classifier  # white-box methods differentiate through its module
    e_clean = E.explain(model, x.to(rt.device), target=y.to(rt.device), method=method, seed=seed)
    a_clean = _reduce(e_clean.attributions.detach().float().cpu(), rt.spec.modality)
    a_adv = None
    if x_adv is not None and pred_adv is not None:
        # explain the class the model now predicts: why it was fooled
        e_adv = E.explain(
            model,
            x_adv[:show].to(rt.device),
            target=pred_adv[:show].to(rt.device),
            method=method,
            seed=seed,
        )
        a_adv = _reduce(e_adv.attributions.detach().float().cpu(), rt.spec.modality)
    md: dict[str, Any] = {}
    if store:
        md["clean"] = [to_list(a_clean[j], 5) for j in range(show)]
        if a_adv is not None:
            md["adversarial"] = [to_list(a_adv[j], 5) for j in range(show)]
    return md


def _metrics_module() -> Any:
    try:
        import xrobust.explain.metrics as M
    except ImportError:
        return None
    return M


def _quality(
    rt: Runtime,
    M: Any,
    method: str,
    x: torch.Tensor,
    y: torch.Tensor,
    x_adv: torch.Tensor | None,
    seed: int,
) -> dict[str, Any]:
    """Deletion/insertion, randomisation and stability, through xrobust.explain.metrics."""
    out: dict[str, Any] = {}
    cfg = rt.config.explanations
    dev = rt.device
    xs, ys = x.to(dev), y.to(dev)
    if cfg.deletion_insertion:
        out["deletion_insertion"] = _safe(lambda: _del_ins(rt, M, method, xs, ys, seed))
    if cfg.randomisation and not rt.white_box:
        rt.skip_part(f"randomisation ({method})", "re-randomises the weights: needs a torch module")
    elif cfg.randomisation:
        out["randomisation"] = _safe(
            lambda: _randomisation(
                rt, M, method, xs[: min(8, len(xs))], ys[: min(8, len(ys))], seed
            )
        )
    if cfg.stability and x_adv is not None:
        out["stability"] = _safe(lambda: _stability(rt, M, method, xs, x_adv.to(dev), ys, seed))
    return out


def _safe(fn: Any) -> dict[str, Any]:
    from xrobust.errors import QueryBudgetExhausted

    try:
        return fn()
    except QueryBudgetExhausted:
        raise  # the section stops there (partial), not an error of this metric
    except Exception as exc:  # a metric that cannot run is reported, not fatal
        log.warning("explanation metric failed: %s", exc, exc_info=True)
        return {"status": "error", "reason": f"{type(exc).__name__}: {exc}"}


def _f(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 6)


def _del_ins(
    rt: Runtime, M: Any, method: str, x: torch.Tensor, y: torch.Tensor, seed: int
) -> dict[str, Any]:
    """Deletion and insertion AUC of the method's maps against a random map's."""
    import xrobust.explain as E

    image = rt.spec.modality == "image"
    steps = 16
    attr = E.explain(rt.classifier, x, target=y, method=method, seed=seed).attributions.detach()
    g = torch.Generator().manual_seed(seed)
    rand = torch.rand(attr.shape, generator=g).to(attr.device, attr.dtype)
    ins_base = "blur" if image else "zeros"
    out: dict[str, Any] = {
        "steps": steps,
        "insertion_baseline": ins_base,
        "deletion_baseline": "zeros",
    }
    for kind, fn, base in (
        ("deletion", M.deletion_curve, "zeros"),
        ("insertion", M.insertion_curve, ins_base),
    ):
        c = fn(rt.classifier, x, attr, y, steps=steps, baseline=base)
        r = fn(rt.classifier, x, rand, y, steps=steps, baseline=base)
        out[f"{kind}_auc"] = _f(c.mean_auc)
        out[f"random_{kind}_auc"] = _f(r.mean_auc)
        out[f"{kind}_curve"] = [round(v, 5) for v in c.mean_curve]
        out[f"random_{kind}_curve"] = [round(v, 5) for v in r.mean_curve]
        out["fractions"] = [round(v, 5) for v in c.fractions]
    return out


def _randomisation(
    rt: Runtime, M: Any, method: str, x: torch.Tensor, y: torch.Tensor, seed: int
) -> dict[str, Any]:
    """Adebayo et al.'s cascading randomisation: pass when the maps change."""
    r = M.model_randomisation_check(rt.model, x, method, target=y, seed=seed)
    status = "pass" if r.passed else "fail"
    msg = (
        f"rank correlation with the trained model's maps after randomising all {len(r.layers)} "
        f"layers: {r.final_spearman:.3f} (passes below {r.threshold:g})"
    )
    return {
        "status": status,
        "message": msg,
        "layers": list(r.layers),
        "spearman": [_f(v) for v in r.spearman],
        "topk_overlap": [_f(v) for v in r.topk_overlap],
        "final_spearman": _f(r.final_spearman),
        "threshold": r.threshold,
        "n": len(x),
    }


def _stability(
    rt: Runtime,
    M: Any,
    method: str,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    seed: int,
) -> dict[str, Any]:
    """How much the attribution of the true class moves from x to its adversarial x'."""
    r = M.stability_under_attack(rt.classifier, x, x_adv, method, target=y, seed=seed)
    fooled = [i for i, c in enumerate(r.prediction_changed) if c]

    def mean(v: list[float], idx: list[int] | None = None) -> float | None:
        vals = [v[i] for i in (idx if idx is not None else range(len(v))) if math.isfinite(v[i])]
        return round(sum(vals) / len(vals), 6) if vals else None

    return {
        "topk_overlap": _f(r.mean_topk_overlap),
        "spearman": _f(r.mean_spearman),
        "k": r.k,
        "n": len(r.spearman),
        "n_fooled": len(fooled),
        "topk_overlap_fooled": mean(r.topk_overlap, fooled),
        "spearman_fooled": mean(r.spearman, fooled),
    }


@register_section
class ExplanationsSection(Section):
    """Clean and adversarial attributions, their quality metrics and the randomisation
    check (reads the adversarial section's headline eps)."""

    name = "explanations"
    title = "Explanations"
    config = ExplanationConfig
    order, place, summary_place = 40.0, 4.0, 5.5
    always_shown = True

    def run(self, rt: Runtime, report: AuditReport) -> dict[str, Any]:
        return run_explanations(rt, report.sections.get("adversarial"))

    def html(self, s: SectionResult, report: AuditReport) -> str:
        from xrobust.audit.html import explanations_html

        return explanations_html(s, report)

    def summary(self, report: AuditReport) -> list[tuple[str, str]]:
        from xrobust.audit.advice import explanation_checks
        from xrobust.audit.markdown import check_rows

        # the randomisation check of each explanation method; no requirement
        return check_rows("Explanation checks", explanation_checks(report), " (not required)")
