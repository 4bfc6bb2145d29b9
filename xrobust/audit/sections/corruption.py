"""Section 3: accuracy under common corruptions at several severities."""

from __future__ import annotations

import math
from typing import Any

import torch

from xrobust.audit._runtime import Runtime, chunk_seed, to_list
from xrobust.audit.corruptions import CORRUPTIONS, corrupt, list_corruptions
from xrobust.errors import ConfigError, QueryBudgetExhausted

__all__ = ["run_corruption"]

_MAX_EXAMPLE_NUMEL = 4096  # example images stored in the report only when this small


def run_corruption(rt: Runtime) -> dict[str, Any]:
    """Accuracy for each corruption and severity on a seeded sample of the test set."""
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
    idx = rt.sample(cfg.n)
    y = rt.y[idx]
    clean_correct = rt.clean_logits()[idx].argmax(1) == y
    clean_acc = float(clean_correct.double().mean()) if len(idx) else 0.0
    results: dict[str, Any] = {}
    example_pos = 0
    show_examples = modality == "image" and math.prod(rt.spec.input_shape) <= _MAX_EXAMPLE_NUMEL
    examples: dict[str, list[Any]] = {}
    total = len(names) * len(cfg.severities)
    done = 0
    stopped: str | None = None
    try:
        for name in names:
            accs: list[float] = []
            for sev in cfg.severities:
                stage = f"corruption:{name}:{sev}"

                def one(
                    i: int, c: torch.Tensor, _name: str = name, _sev: int = sev, _stage: str = stage
                ) -> torch.Tensor:
                    g = torch.Generator().manual_seed(chunk_seed(rt.config.seed, _stage, i))
                    xc = corrupt(
                        _name,
                        rt.x[c],
                        _sev,
                        bounds=rt.bounds,
                        generator=g,
                        train_mean=rt.train_mean,
                        feature_std=rt.feature_std,
                    )
                    return rt.forward(xc).argmax(1)

                preds = (
                    torch.cat(rt.map_chunks(stage, idx, one))
                    if len(idx)
                    else torch.zeros(0, dtype=torch.long)
                )
                accs.append(round(float((preds == y).double().mean()) if len(idx) else 0.0, 6))
                if show_examples and len(idx):
                    g = torch.Generator().manual_seed(chunk_seed(rt.config.seed, stage, 0))
                    xe = corrupt(
                        name,
                        rt.x[idx[: rt.config.batch_size]],
                        sev,
                        bounds=rt.bounds,
                        generator=g,
                        train_mean=rt.train_mean,
                        feature_std=rt.feature_std,
                    )
                    examples.setdefault(name, []).append(to_list(xe[example_pos].sum(0), 3))
                done += 1
                rt.report("corruptions", done, total)
            results[name] = {
                "accuracy": accs,
                "mean_accuracy": round(sum(accs) / len(accs), 6) if accs else None,
                "description": CORRUPTIONS.get(name).description,
                "levels": [CORRUPTIONS.get(name).levels[s - 1] for s in cfg.severities],
            }
    except QueryBudgetExhausted as exc:
        # the corruptions finished are kept; the one running is dropped, the rest not run
        stopped = f"stopped after {len(results)} of {len(names)} corruptions: {exc}"
        results = {k: v for k, v in results.items() if len(v["accuracy"]) == len(cfg.severities)}
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
            "clean": to_list(rt.x[idx[example_pos]].sum(0), 3),
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
