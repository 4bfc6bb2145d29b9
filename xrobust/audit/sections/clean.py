"""Section 1: clean performance (accuracy, per-class precision/recall, confusion, calibration)."""

from __future__ import annotations

from typing import Any

import torch

from xrobust.audit._runtime import Runtime, to_list
from xrobust.audit.config import CleanConfig
from xrobust.audit.report import AuditReport, SectionResult
from xrobust.audit.section import Section, register_section

__all__ = ["calibration", "confusion_matrix", "per_class_metrics", "run_clean"]


def confusion_matrix(y_true: torch.Tensor, y_pred: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Counts ``C[i, j]`` of examples of class i predicted as j."""
    idx = y_true.long() * num_classes + y_pred.long()
    return torch.bincount(idx, minlength=num_classes * num_classes).view(num_classes, num_classes)


def per_class_metrics(cm: torch.Tensor) -> dict[str, list[float | None]]:
    """Precision, recall, F1 and support per class from a confusion matrix (None where a
    ratio is undefined, e.g. precision of a class never predicted)."""
    cm = cm.double()
    tp = cm.diag()
    pred = cm.sum(0)
    true = cm.sum(1)

    def ratio(a: torch.Tensor, b: torch.Tensor) -> list[float | None]:
        return [None if float(bb) == 0 else round(float(aa / bb), 6) for aa, bb in zip(a, b)]

    precision = ratio(tp, pred)
    recall = ratio(tp, true)
    f1 = [
        None if p is None or r is None or p + r == 0 else round(2 * p * r / (p + r), 6)
        for p, r in zip(precision, recall)
    ]
    return {"precision": precision, "recall": recall, "f1": f1, "support": [int(s) for s in true]}


def calibration(probs: torch.Tensor, y: torch.Tensor, bins: int) -> dict[str, Any]:
    """Expected calibration error over ``bins`` equal-width confidence bins, with the
    reliability diagram's points (Guo et al., arXiv:1706.04599)."""
    conf, pred = probs.double().max(1)
    correct = (pred == y).double()
    edges = torch.linspace(0, 1, bins + 1, dtype=torch.float64)
    # bin i holds confidences in (edges[i], edges[i+1]]; confidence 0 goes to bin 0
    which = torch.clamp(torch.bucketize(conf, edges, right=False) - 1, 0, bins - 1)
    count = torch.bincount(which, minlength=bins).double()
    sum_conf = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, conf)
    sum_acc = torch.zeros(bins, dtype=torch.float64).index_add_(0, which, correct)
    n = max(1, len(y))
    nz = count > 0
    mean_conf = torch.where(nz, sum_conf / count.clamp_min(1), torch.zeros_like(count))
    mean_acc = torch.where(nz, sum_acc / count.clamp_min(1), torch.zeros_like(count))
    gaps = (mean_conf - mean_acc).abs()
    ece = float((count / n * gaps).sum())
    mce = float(gaps[nz].max()) if bool(nz.any()) else 0.0
    return {
        "ece": round(ece, 6),
        "mce": round(mce, 6),
        "bins": bins,
        "bin_edges": to_list(edges, 6),
        "bin_confidence": [round(float(c), 6) if k else None for c, k in zip(mean_conf, nz)],
        "bin_accuracy": [round(float(a), 6) if k else None for a, k in zip(mean_acc, nz)],
        "bin_count": [int(c) for c in count],
        "mean_confidence": round(float(conf.mean()) if len(conf) else 0.0, 6),
    }


def run_clean(rt: Runtime) -> dict[str, Any]:
    """Clean accuracy, per-class precision/recall/F1, confusion matrix and calibration."""
    idx = rt.sample(rt.config.clean.n)
    logits = rt.clean_logits()[idx]
    y = rt.y[idx]
    pred = logits.argmax(1)
    cm = confusion_matrix(y, pred, rt.num_classes)
    probs = rt.probabilities(logits)
    nll = float(-torch.log(probs.double().gather(1, y.view(-1, 1)).clamp_min(1e-12)).mean())
    return {
        "n": len(idx),
        "accuracy": round(float((pred == y).double().mean()), 6),
        "nll": round(nll, 6),
        "per_class": per_class_metrics(cm),
        "confusion_matrix": cm.tolist(),
        "calibration": calibration(probs, y, rt.config.clean.ece_bins),
    }


@register_section
class CleanSection(Section):
    """Clean accuracy, per-class metrics, the confusion matrix and calibration."""

    name = "clean"
    title = "Clean performance"
    config = CleanConfig
    order, place = 10.0, 1.0
    schema = "#/$defs/clean_section"
    always_shown = True

    def run(self, rt: Runtime, report: AuditReport) -> dict[str, Any]:
        return run_clean(rt)

    def html(self, s: SectionResult, report: AuditReport) -> str:
        from xrobust.audit.html import clean_html

        return clean_html(s, report)

    def summary(self, report: AuditReport) -> list[tuple[str, str]]:
        from xrobust.audit.markdown import clean_rows

        return clean_rows(report)
