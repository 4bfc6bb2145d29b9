"""Section 3: accuracy under common corruptions at several severities."""

from __future__ import annotations

import math
from typing import Any

import torch

from xrobust.audit._runtime import Runtime, chunk_seed, to_list
from xrobust.audit.config import CorruptionConfig
from xrobust.audit.corruptions import CORRUPTIONS, corrupt, list_corruptions
from xrobust.audit.report import AuditReport, SectionResult
from xrobust.audit.section import Section, register_section
from xrobust.errors import ConfigError, QueryBudgetExhausted

__all__ = ["run_corruption"]

_MAX_EXAMPLE_NUMEL = 4096  # example images stored in the report only when this small
_EXAMPLE_POS = 0  # the sample's example shown under every corruption


def run_corruption(rt: Runtime) -> dict[str, Any]:
    """Accuracy for each corruption and severity on a seeded sample of the test set."""
    cfg = rt.config.corruption
    modality = rt.spec.modality
    names, notes = _corruptions(rt)
    idx = rt.sample(cfg.n)
    y = rt.y[idx]
    clean_correct = rt.clean_logits()[idx].argmax(1) == y
    clean_acc = float(clean_correct.double().mean()) if len(idx) else 0.0
    show_examples = modality == "image" and math.prod(rt.spec.input_shape) <= _MAX_EXAMPLE_NUMEL
    results, examples, stopped = _measure(rt, names, idx, show_examples and len(idx) > 0)
    data: dict[str, Any] = {
        "n": len(idx),
        "modality": modality,
        "severities": list(cfg.severities),
        "clean_accuracy": round(clean_acc, 6),
        "corruptions": results,
        "notes": notes,
    }
    if show_examples and len(idx):
        data["example"] = {
            "clean": to_list(rt.x[idx[_EXAMPLE_POS]].sum(0), 3),
            "corrupted": examples,
        }
    if results:
        mean_all = [r["mean_accuracy"] for r in results.values() if r["mean_accuracy"] is not None]
        data["mean_corruption_accuracy"] = (
            round(sum(mean_all) / len(mean_all), 6) if mean_all else None
        )
    if stopped is not None:
        data["_partial"] = stopped
    return data


def _corruptions(rt: Runtime) -> tuple[list[str], list[str]]:
    """The corruptions to run (checked against the data's modality) and notes on any left
    out."""
    cfg = rt.config.corruption
    modality = rt.spec.modality
    names = cfg.corruptions if cfg.corruptions is not None else list_corruptions(modality)
    notes = []
    if rt.train_mean is None and "missing_features" in names and cfg.corruptions is None:
        names = [n for n in names if n != "missing_features"]
        notes.append(
            "missing_features left out: the dataset has no training split to take means from"
        )
    for name in names:
        c = CORRUPTIONS.get(name)
        if c.modality != modality:
            raise ConfigError(
                f"corruption {name!r} is for {c.modality} data but the dataset is {modality}; "
                f"available for {modality}: {', '.join(list_corruptions(modality))}"
            )
    return names, notes


def _measure(
    rt: Runtime, names: list[str], idx: torch.Tensor, show: bool
) -> tuple[dict[str, Any], dict[str, list[Any]], str | None]:
    """Accuracy per corruption and severity, the example images (when ``show``), and why
    the query budget stopped it (None when it did not)."""
    severities = rt.config.corruption.severities
    y = rt.y[idx]
    results: dict[str, Any] = {}
    examples: dict[str, list[Any]] = {}
    total, done = len(names) * len(severities), 0
    try:
        for name in names:
            accs: list[float] = []
            for sev in severities:
                stage = f"corruption:{name}:{sev}"
                preds = (
                    torch.cat(rt.map_chunks(stage, idx, _predict(rt, name, sev, stage)))
                    if len(idx)
                    else torch.zeros(0, dtype=torch.long)
                )
                accs.append(round(float((preds == y).double().mean()) if len(idx) else 0.0, 6))
                if show:
                    examples.setdefault(name, []).append(_example(rt, idx, name, sev, stage))
                done += 1
                rt.report("corruptions", done, total)
            c = CORRUPTIONS.get(name)
            results[name] = {
                "accuracy": accs,
                "mean_accuracy": round(sum(accs) / len(accs), 6) if accs else None,
                "description": c.description,
                "levels": [c.levels[s - 1] for s in severities],
            }
    except QueryBudgetExhausted as exc:
        # the corruptions finished are kept; the one running is dropped, the rest not run
        stopped = f"stopped after {len(results)} of {len(names)} corruptions: {exc}"
        results = {k: v for k, v in results.items() if len(v["accuracy"]) == len(severities)}
        return results, examples, stopped
    return results, examples, None


def _corrupted(rt: Runtime, name: str, x: torch.Tensor, sev: int, g: torch.Generator) -> Any:
    return corrupt(
        name,
        x,
        sev,
        bounds=rt.bounds,
        generator=g,
        train_mean=rt.train_mean,
        feature_std=rt.feature_std,
    )


def _predict(rt: Runtime, name: str, sev: int, stage: str) -> Any:
    """``fn(chunk_index, chunk)`` of :meth:`Runtime.map_chunks`: predictions on the chunk
    corrupted with the chunk's own seed."""

    def one(i: int, c: torch.Tensor) -> torch.Tensor:
        g = torch.Generator().manual_seed(chunk_seed(rt.config.seed, stage, i))
        return rt.forward(_corrupted(rt, name, rt.x[c], sev, g)).argmax(1)

    return one


def _example(rt: Runtime, idx: torch.Tensor, name: str, sev: int, stage: str) -> list[Any]:
    """The example image under one corruption and severity (as the first chunk saw it)."""
    g = torch.Generator().manual_seed(chunk_seed(rt.config.seed, stage, 0))
    xe = _corrupted(rt, name, rt.x[idx[: rt.config.batch_size]], sev, g)
    return to_list(xe[_EXAMPLE_POS].sum(0), 3)


@register_section
class CorruptionSection(Section):
    """Accuracy under common corruptions at each severity."""

    name = "corruption"
    title = "Corruption robustness"
    config = CorruptionConfig
    order, place = 30.0, 3.0
    schema = "#/$defs/corruption_section"
    always_shown = True

    def run(self, rt: Runtime, report: AuditReport) -> dict[str, Any]:
        return run_corruption(rt)

    def html(self, s: SectionResult, report: AuditReport) -> str:
        from xrobust.audit.html import corruption_html

        return corruption_html(s, report)

    def summary(self, report: AuditReport) -> list[tuple[str, str]]:
        from xrobust.audit.markdown import corruption_rows

        return corruption_rows(report)
