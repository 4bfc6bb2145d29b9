"""Section 7: the deployed artifact beside the model it came from.

A deployed model (a quantized ``.tflite`` file, an endpoint, any black box) is audited on
the same examples as its source (the float ONNX file or torch model it was converted from),
and the section reports:

* **clean accuracy** of each, and the **agreement** of their predictions;
* **robust accuracy** of each under the same query-only attack with the same seeds (an upper
  bound for both: what a limited number of queries did not break may still break), and of
  the source under a white-box attack where it is differentiable (a torch model, or an
  ONNX file through onnx2torch; a measurement);
* **transfer**: the source's white-box adversarial examples evaluated on the deployed
  model (its accuracy on them, and the share of the examples that fooled the source which
  also fool it).

It then says in words whether the deployed model is less accurate, less robust, or only
harder to attack with gradients. A difference between two accuracies on the same examples
counts only when it is larger than one example's worth (1/n) and than twice its paired
standard error (the McNemar form, from the examples on which the two disagree:
``sqrt(b + c - (b - c)^2 / n) / n``); smaller ones are reported as no measurable change.

The section is evidence: no requirement depends on it, so it never changes the verdict by
itself (an error or a budget that runs out makes the audit incomplete, as for any section).
It runs when a source is given: ``audit(deployed, data, config, source=...)``,
``[deployed] source = "model.onnx"`` in the TOML, ``xrobust audit --tflite FILE --source
model.onnx``, or :func:`compare_deployed`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import torch

from xrobust.audit._attacks import attack_kwargs
from xrobust.audit._runtime import Runtime, chunk_seed
from xrobust.audit.config import DeployedConfig
from xrobust.audit.report import AuditReport, SectionResult
from xrobust.audit.section import Section, register_section
from xrobust.audit.sections.adversarial import _jsonable
from xrobust.errors import ConfigError, ModelError

__all__ = [
    "Comparison", "attack_options", "check_source", "compare", "compare_deployed", "findings",
    "run_deployed",
]  # fmt: skip

#: rows of real data the onnx2torch conversion of an ONNX source is checked on
_CHECK_ROWS = 64


# ---------------------------------------------------------------------- statistics
@dataclass(frozen=True)
class Comparison:
    """Two accuracies on the same n examples, and whether they differ measurably.

    Attributes:
        a / b: the accuracies (deployed, source).
        difference: ``a - b``.
        only_a / only_b: examples only the deployed / only the source gets right.
        threshold: the smallest difference that counts: max(1/n, 2 * paired standard error).
        significant: ``|difference| > threshold``.
    """

    n: int
    a: float
    b: float
    only_a: int
    only_b: int

    @property
    def difference(self) -> float:
        return self.a - self.b

    @property
    def standard_error(self) -> float:
        """The paired (McNemar) standard error of the difference."""
        n, b, c = self.n, self.only_a, self.only_b
        return math.sqrt(max(0.0, b + c - (b - c) ** 2 / n)) / n if n else float("inf")

    @property
    def threshold(self) -> float:
        return max(1.0 / max(self.n, 1), 2.0 * self.standard_error)

    @property
    def significant(self) -> bool:
        return abs(self.difference) > self.threshold

    def word(self, lower: str, same: str, higher: str) -> str:
        """``lower`` / ``same`` / ``higher``: where ``a`` stands against ``b``."""
        if not self.significant:
            return same
        return lower if self.difference < 0 else higher

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployed": round(self.a, 6),
            "source": round(self.b, 6),
            "difference": round(self.difference, 6),
            "only_deployed_correct": self.only_a,
            "only_source_correct": self.only_b,
            "standard_error": round(self.standard_error, 6),
            "threshold": round(self.threshold, 6),
            "significant": self.significant,
        }


def compare(a_correct: torch.Tensor, b_correct: torch.Tensor) -> Comparison:
    """The :class:`Comparison` of two per-example correctness vectors (same examples)."""
    a, b = a_correct.bool().flatten(), b_correct.bool().flatten()
    n = int(a.numel())
    return Comparison(
        n=n,
        a=float(a.double().mean()) if n else float("nan"),
        b=float(b.double().mean()) if n else float("nan"),
        only_a=int((a & ~b).sum()),
        only_b=int((b & ~a).sum()),
    )


def findings(
    clean: Comparison,
    robust: Comparison,
    gradients: Comparison | None = None,
    transfer: Comparison | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """The section's statements and its one-sentence summary.

    Args:
        clean: deployed vs source, clean accuracy.
        robust: deployed vs source, robust accuracy under the same query-only attack.
        gradients: the deployed model's accuracy on the source's white-box adversarials
            (``a``) vs under the query-only attack (``b``); None when no white-box attack
            ran on the source.
        transfer: the deployed model's accuracy on the source's white-box adversarials
            (``a``) vs the source's own (``b``); None likewise.
    """
    acc = clean.word("less", "as", "more")
    rob = robust.word("less", "as", "more")
    out = [
        {"aspect": "accuracy", "finding": acc, "text": (
            f"Clean accuracy: the deployed model is {acc} accurate {_than(acc)} its source "
            f"({clean.a:.4f} vs {clean.b:.4f}, {_diff(clean)})."
        )},
        {"aspect": "robustness", "finding": rob, "text": (
            f"Under the same query-only attack it is {rob} robust {_than(rob)} its source "
            f"({robust.a:.4f} vs {robust.b:.4f}, upper bounds; {_diff(robust)})."
        )},
    ]  # fmt: skip
    grad = part = None
    if gradients is not None and transfer is not None:
        grad = gradients.word("gradients", "no", "no")
        part = transfer.word("no", "no", "partial")
        out.append({"aspect": "gradients", "finding": grad, "text": _gradients_text(gradients)})
        out.append({"aspect": "transfer", "finding": part, "text": (
            f"On the source's white-box adversarial examples it scores {transfer.a:.4f}, the "
            f"source {transfer.b:.4f} ({_diff(transfer)}): "
            + ("they transfer only in part." if part == "partial" else "they transfer.")
        )})  # fmt: skip
    return out, _summary(acc, rob, grad, part)


def _gradients_text(g: Comparison) -> str:
    if g.word("gradients", "no", "no") == "gradients":
        return (
            f"The query-only attack overstates its robustness: the source's white-box "
            f"adversarial examples bring it to {g.a:.4f} against {g.b:.4f} ({_diff(g)}). "
            "It is harder to attack only because it offers no gradients."
        )
    return (
        f"The source's white-box adversarial examples do no better against it than the "
        f"query-only attack ({g.a:.4f} vs {g.b:.4f}, {_diff(g)})."
    )


def _summary(acc: str, rob: str, grad: str | None, part: str | None) -> str:
    worse = [w for w, f in (("less accurate", acc), ("less robust", rob)) if f == "less"]
    if worse:
        text = "Quantization (or conversion) made the model " + " and ".join(worse)
        if grad == "gradients":
            text += "; it also looks harder to attack only for want of gradients"
        return text + "."
    if grad == "gradients" and part != "partial":
        return (
            "Quantization (or conversion) made the model only harder to attack with gradients: "
            "it is as accurate, and the source's white-box adversarial examples fool it as they "
            "fool the source."
        )
    if grad == "gradients":
        return (
            "The deployed model is harder to attack for want of gradients, and the source's "
            "white-box adversarial examples transfer to it only in part."
        )
    better = [w for w, f in (("more accurate", acc), ("more robust", rob)) if f == "more"]
    if better:
        return "The deployed model measured " + " and ".join(better) + " than its source."
    return (
        "No measurable change in accuracy or robustness between the source and the deployed model."
    )


def _than(word: str) -> str:
    return "as" if word == "as" else "than"


def _diff(c: Comparison) -> str:
    rel = "above" if c.significant else "within"
    return f"difference {c.difference:+.4f}, {rel} the threshold {c.threshold:.4f}"


# ---------------------------------------------------------------------- the source
def check_source(source: Any) -> None:
    """Refuse a source path that does not exist, before any work.

    Raises:
        ConfigError: no such file or folder.
    """
    if not isinstance(source, str | os.PathLike):
        return
    if not str(source).startswith(("http://", "https://")) and not os.path.exists(source):
        raise ConfigError(
            f"the source model {os.fspath(source)!r} (deployed.source, --source) does not "
            "exist; expected the model the audited one came from: an .onnx file or a run folder"
        )


def _source_classifiers(source: Any, rt: Runtime) -> tuple[Any, Any, dict[str, Any], str | None]:
    """(source as a classifier, its white-box classifier or None, facts, why not white)."""
    from xrobust.models import as_classifier
    from xrobust.models.classifier import Classifier

    if isinstance(source, str | os.PathLike) or not isinstance(source, Classifier):
        try:
            clf = as_classifier(source, rt.spec, batch_size=rt.config.batch_size)
        except ModelError as exc:
            raise ModelError(f"the deployed model's source: {exc}") from exc
    else:
        clf = source
    clf.check_data(tuple(rt.spec.input_shape), rt.spec.num_classes, "the audited data")
    white, why = None, None
    if clf.differentiable and clf.module is not None:
        white = clf
    elif hasattr(clf, "to_torch"):  # an ONNX file: onnx2torch, checked against onnxruntime
        try:
            white = clf.to_torch(rt.x[rt.sample(_CHECK_ROWS)])
        except (ConfigError, ModelError) as exc:
            why = f"the source has no gradients here ({exc})"
    else:
        why = f"the source is a black box ({clf.source}): no white-box attack, no transfer"
    facts = {k: v for k, v in clf.describe().items() if k != "query_budget"}
    if white is not None and white is not clf:
        facts["white_box"] = {
            k: v for k, v in white.describe().items()
            if k.startswith("conversion") or k in ("converted_from", "name")
        }  # fmt: skip
    return clf, white, facts, why


# ---------------------------------------------------------------------- the section
def _attack(rt: Runtime, clf: Any, name: str, eps: float, x: torch.Tensor, y: torch.Tensor,
            seed: int) -> Any:  # fmt: skip
    from xrobust.attacks import get_attack

    kw = attack_options(rt, name)
    kw["seed"] = int(seed)
    return get_attack(name, clf, eps=float(eps), **kw).run(x.to(clf.device), y.to(clf.device))


def attack_options(rt: Runtime, name: str) -> dict[str, Any]:
    """The options (without eps and seed) of attack ``name`` in this section: the audit's
    (:func:`~xrobust.audit._attacks.attack_kwargs`), with ``deployed.queries`` for the
    query-only attack."""
    dc = rt.config.deployed
    over = {"queries": dc.queries} if dc.queries is not None and name == dc.attack else {}
    return attack_kwargs(rt, name, dc.norm, **over)


def _one_chunk(
    rt: Runtime, i: int, c: torch.Tensor, src: Any, white: Any, eps: float
) -> dict[str, torch.Tensor]:
    """Per-example correctness of both models on one chunk: clean, under the query-only
    attack (same seed), and (with a white-box source) white-box and transferred."""
    dc = rt.config.deployed
    x, y = rt.x[c], rt.y[c]
    seed = chunk_seed(rt.config.seed, f"deployed:{dc.attack}", i)
    dep_adv = _attack(rt, rt.classifier, dc.attack, eps, x, y, seed)
    src_adv = _attack(rt, src, dc.attack, eps, x, y, seed)
    out = {
        "deployed_clean": rt.clean_logits()[c].argmax(1),
        "source_clean": src.predict(x.to(src.device)).cpu(),
        "deployed_robust": dep_adv.pred_adv.cpu() == y,
        "source_robust": src_adv.pred_adv.cpu() == y,
        "queries": dep_adv.queries.cpu() if dep_adv.queries is not None else torch.zeros(len(c)),
    }
    if white is not None:
        wseed = chunk_seed(rt.config.seed, f"deployed:{dc.white_box_attack}", i)
        res = _attack(rt, white, dc.white_box_attack, eps, x, y, wseed)
        on_dep = rt.classifier.predict(res.x_adv.detach().to(rt.classifier.device)).cpu()
        out["white_robust"] = res.pred_adv.cpu() == y
        out["transfer_robust"] = on_dep == y
        out["source_fooled"] = (res.pred_adv.cpu() != y) & (res.pred_clean.cpu() == y)
    return out


def run_deployed(rt: Runtime, source: Any = None) -> dict[str, Any]:
    """The section: both models on the same seeded sample, the comparisons and findings."""
    from xrobust.attacks import ATTACKS
    from xrobust.audit.sections.adversarial import eps_grid

    dc = rt.config.deployed
    source = source if source is not None else dc.source
    if source is None:
        return {"_unavailable": "no source model given (deployed.source, --source, source=)"}
    src, white, facts, why = _source_classifiers(source, rt)
    if why:
        rt.skip_part("white-box attack on the source and transfer", why)
    eps = float(dc.eps) if dc.eps is not None else eps_grid(rt, dc.norm)[1]
    idx = rt.sample(dc.n)
    q0 = src.queries
    parts = rt.map_chunks(
        "deployed beside its source", idx, lambda i, c: _one_chunk(rt, i, c, src, white, eps)
    )
    cat = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    y = rt.y[idx]
    clean = compare(cat["deployed_clean"] == y, cat["source_clean"] == y)
    robust = compare(cat["deployed_robust"], cat["source_robust"])
    grads = trans = None
    if "transfer_robust" in cat:
        grads = compare(cat["transfer_robust"], cat["deployed_robust"])
        trans = compare(cat["transfer_robust"], cat["white_robust"])
    stated, summary = findings(clean, robust, grads, trans)
    most = int(cat["queries"].max()) if len(idx) else 0
    q_note = f"{dc.attack}, at most {most} queries per example" if most else dc.attack

    def seed(i: int) -> int:
        return chunk_seed(rt.config.seed, f"deployed:{dc.attack}", i)

    return {
        "n": len(idx),
        "indices": idx.tolist(),
        "norm": dc.norm,
        "eps": eps,
        "deployed": {k: v for k, v in rt.classifier.describe().items() if k != "query_budget"},
        "source": facts,
        "clean": {**clean.to_dict(), "agreement": _agreement(cat)},
        "robust": {
            **robust.to_dict(),
            "attack": dc.attack,
            "bound": "upper",
            "bound_note": f"query-only attack {q_note}, same seeds on both models",
            "seeds": [seed(i) for i in range(len(parts))],
            "options": _jsonable(attack_options(rt, dc.attack)),
        },
        "white_box": _white_box(cat, rt, ATTACKS, len(parts)) if grads else None,
        "transfer": _transfer(cat, grads, trans, dc.white_box_attack) if grads else None,
        "findings": stated,
        "summary": summary,
        "rule": (
            "a difference counts when it is larger than one example's worth (1/n) and than "
            "twice its paired standard error, sqrt(b + c - (b - c)^2 / n) / n, where b and c "
            "count the examples only one of the two gets right"
        ),
        "source_queries": int(src.queries - q0),
    }


def _agreement(cat: dict[str, torch.Tensor]) -> float:
    return round(float((cat["deployed_clean"] == cat["source_clean"]).double().mean()), 6)


def _white_box(
    cat: dict[str, torch.Tensor], rt: Runtime, registry: Any, chunks: int
) -> dict[str, Any]:
    attack = rt.config.deployed.white_box_attack
    grads = registry.get(attack).requires_gradients
    return {
        "attack": attack,
        "source": round(float(cat["white_robust"].double().mean()), 6),
        "bound": "measured" if grads else "upper",
        "bound_note": f"white-box attack {attack} on the source"
        if grads
        else f"{attack} is query-only",
        "seeds": [chunk_seed(rt.config.seed, f"deployed:{attack}", i) for i in range(chunks)],
        "options": _jsonable(attack_options(rt, attack)),
    }


def _transfer(
    cat: dict[str, torch.Tensor], grads: Comparison, trans: Any, attack: str
) -> dict[str, Any]:
    fooled = cat["source_fooled"]
    k = int(fooled.sum())
    both = int((fooled & ~cat["transfer_robust"]).sum())
    return {
        "attack": attack,
        "deployed": round(grads.a, 6),
        "deployed_query_only": round(grads.b, 6),
        "source_fooled": k,
        "also_fool_deployed": both,
        "transfer_rate": round(both / k, 6) if k else None,
        "source_white_box": round(trans.b, 6),
        "versus_query_only": grads.to_dict(),
        "versus_source": trans.to_dict(),
        "bound": "upper",
        "bound_note": f"the source's white-box {attack} examples, evaluated on the deployed model",
    }


# ---------------------------------------------------------------------- API
def compare_deployed(
    deployed: Any,
    source: Any,
    dataset: Any,
    config: Any = None,
    **audit_kwargs: Any,
) -> Any:
    """Audit ``deployed`` beside ``source`` on the same examples: the "deployed" section
    alone (with the clean predictions it needs), as an :class:`AuditReport`.

    Args:
        deployed: the deployed model (a ``.tflite`` file, an endpoint, a classifier ...:
            anything :func:`xrobust.models.as_classifier` takes).
        source: the model it came from (an ``.onnx`` file, a run directory, a module or a
            classifier).
        dataset: a dataset bundle or name.
        config: an :class:`~xrobust.audit.AuditConfig` whose ``deployed`` table is used
            (default: its defaults); the other sections are switched off.
        **audit_kwargs: passed to :func:`xrobust.audit.audit` (progress, title, ...).

    Returns:
        The report; ``report.sections["deployed"].data`` holds the figures.

    Example:
        >>> from xrobust.audit import compare_deployed
        >>> r = compare_deployed("model_int8.tflite", "model.onnx", ds)  # doctest: +SKIP
        >>> r.sections["deployed"].data["summary"]                       # doctest: +SKIP
    """
    from xrobust.audit import AuditConfig, audit

    cfg = config if config is not None else AuditConfig()
    d = cfg.to_dict()
    for name in ("adversarial", "corruption", "explanations", "sanity", "requirements"):
        d[name]["enabled"] = False
    d["deployed"]["enabled"] = True
    return audit(deployed, dataset, AuditConfig.from_dict(d), source=source, **audit_kwargs)


@register_section
class DeployedSection(Section):
    """The deployed model beside its source; only when a source is given (evidence, no
    requirement reads it)."""

    name = "deployed"
    title = "Deployed model beside its source"
    config = DeployedConfig
    order, place, summary_place = 50.0, 7.0, 3.5
    schema = "#/$defs/deployed_section"

    def applies(self, rt: Runtime) -> bool:
        return rt.source is not None or rt.config.deployed.source is not None

    def check_inputs(self, config: Any, source: Any) -> None:
        if config.deployed.enabled and (source is not None or config.deployed.source is not None):
            check_source(source if source is not None else config.deployed.source)

    def run(self, rt: Runtime, report: AuditReport) -> dict[str, Any]:
        return run_deployed(rt, rt.source)

    def html(self, s: SectionResult, report: AuditReport) -> str:
        from xrobust.audit.sections.deployed_render import html_body

        return html_body(s, report)

    def summary(self, report: AuditReport) -> list[tuple[str, str]]:
        from xrobust.audit.sections.deployed_render import markdown_rows

        return markdown_rows(report)
