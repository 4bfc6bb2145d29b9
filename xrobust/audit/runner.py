"""The audit runner: one call from a model and a dataset to an :class:`AuditReport`."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import sys
import time
import traceback
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from xrobust import __version__, distributed
from xrobust._modelstate import eval_mode
from xrobust.audit._runtime import ProgressFn, Runtime
from xrobust.audit.config import SECTIONS, AuditConfig
from xrobust.audit.report import AuditReport, CheckResult, SectionResult
from xrobust.data.spec import DatasetBundle
from xrobust.device import amp_dtype, maybe_tune_allocator, resolve_device
from xrobust.errors import ConfigError, DataError, ModelError, QueryBudgetExhausted, XRobustError
from xrobust.models.classifier import Classifier, as_classifier
from xrobust.validation import check_logits

__all__ = ["audit"]

log = logging.getLogger(__name__)


class SectionUnavailable(Exception):
    """A component a section needs is not installed or not built yet."""


def audit(
    model: nn.Module | Classifier | Any,
    dataset: DatasetBundle | str,
    config: AuditConfig | None = None,
    progress: ProgressFn | None = None,
    *,
    title: str | None = None,
    model_info: dict[str, Any] | None = None,
    source: Any = None,
) -> AuditReport:
    """Audit ``model`` on ``dataset``: clean performance, adversarial and corruption
    robustness, explanations, evaluation sanity checks and requirements.

    The model must return logits for inputs in the dataset's input space (normalisation
    inside the model). Bounds, classes and input shape come from ``dataset.spec``.

    A black box (an ONNX file, an endpoint, a predict function: anything
    :func:`xrobust.models.as_classifier` takes) runs every part that needs only queries:
    clean performance, calibration, corruptions, forward-only explanations (occlusion,
    feature ablation, KernelSHAP, LIME) and the query-only attacks; the report lists the
    parts skipped and why, and the queries each section used. A query budget on the
    classifier stops the audit cleanly: the sections done are kept, the one running is
    marked "partial", and those after it say the budget ran out. Under
    ``torchrun`` (an initialised process group) the examples are sharded across ranks and
    every rank returns the same report; save it on rank 0 only.

    Args:
        model: a ``torch.nn.Module`` returning logits of shape (N, num_classes), or a
            :class:`~xrobust.models.Classifier` (or what :func:`as_classifier` takes: a
            run directory, a ``.onnx`` file, an endpoint URL, a predict function). A
            module is never moved or changed: on another device, the audit uses a copy.
        dataset: a :class:`~xrobust.data.spec.DatasetBundle`, or a dataset name or path
            for :func:`xrobust.data.load_dataset`.
        config: what to run (default :class:`AuditConfig()`).
        progress: optional callback ``progress(stage, done, total)``.
        title: report title (default: "xrobust audit of <model> on <dataset>").
        model_info: extra facts about the model stored in the report (e.g. its run folder).
        source: the model that ``model`` (a deployed artifact: a quantized ``.tflite``
            file, an endpoint) came from, audited beside it in the "deployed" section
            (:mod:`xrobust.audit.sections.deployed`); default: ``config.deployed.source``.

    Returns:
        The :class:`AuditReport`; ``report.save(folder)`` writes HTML, JSON, JUnit XML and
        Markdown.

    Raises:
        ConfigError: bad configuration (unknown attack or explainer, ...).
        DataError: unusable dataset.
        ModelError: the model's outputs do not fit the dataset.

    Example:
        >>> from xrobust.audit import audit, AuditConfig
        >>> report = audit(model, "digits", AuditConfig())  # doctest: +SKIP
        >>> report.save("reports/run")  # doctest: +SKIP
    """
    t_start = time.perf_counter()
    cfg = config if config is not None else AuditConfig()
    if not isinstance(cfg, AuditConfig):
        raise ConfigError(f"config must be an AuditConfig, got {type(cfg).__name__}")
    cfg.validate()
    if cfg.deployed.enabled and (source is not None or cfg.deployed.source is not None):
        from xrobust.audit.sections.deployed import check_source

        check_source(source if source is not None else cfg.deployed.source)  # before any work
    bundle = _resolve_dataset(dataset, model if isinstance(model, nn.Module) else None)
    spec = bundle.spec
    device = resolve_device(cfg.device)
    dist = distributed.current(device)
    device = dist.device or device
    clf = _classifier(model, spec, device, cfg)
    device = clf.device
    maybe_tune_allocator(device)  # on the CPU, as the CLI does (unless malloc is configured)
    # data and model must agree before any query is spent
    clf.check_data(tuple(spec.input_shape), spec.num_classes, f"dataset {spec.name!r}")
    timings: dict[str, float] = {}

    t0 = time.perf_counter()
    x, y = _tensors(bundle.test, "test")
    if len(x) == 0:
        raise DataError(f"dataset {spec.name!r} has an empty test split: nothing to audit")
    train_mean, feature_std = _train_stats(bundle)
    timings["load_data"] = round(time.perf_counter() - t0, 4)

    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed))
    rt = Runtime(
        model=clf.module if clf.module is not None else clf,
        classifier=clf,
        spec=spec,
        config=cfg,
        device=device,
        x=x,
        y=y,
        order=order,
        train_mean=train_mean,
        feature_std=feature_std,
        progress=progress,
        dist=dist,
        amp=amp_dtype(device, cfg.amp),
    )
    sections: dict[str, SectionResult] = {}
    sanity: list[CheckResult] = []
    requirements: list[CheckResult] = []
    q0 = clf.queries
    with eval_mode(rt.model):
        t0 = time.perf_counter()
        try:
            _check_outputs(rt)
            rt.clean_logits()
        except QueryBudgetExhausted as exc:
            raise ConfigError(
                f"the query budget of {exc.budget} does not cover the clean predictions of "
                f"the {len(x)} test examples (every section needs them); raise the budget"
            ) from exc
        timings["clean_predictions"] = round(time.perf_counter() - t0, 4)
        clean_queries = _all_ranks(rt, clf.queries - q0)

        from xrobust.audit.sections import (
            adversarial,
            clean,
            corruption,
            explanations,
            sanity_checks,
        )

        runners: dict[str, Callable[[Runtime], dict[str, Any]]] = {
            "clean": clean.run_clean,
            "adversarial": lambda r: adversarial.run_adversarial(r),
            "corruption": corruption.run_corruption,
            "explanations": lambda r: explanations.run_explanations(r, sections.get("adversarial")),
        }
        for name in ("clean", "adversarial", "corruption", "explanations"):
            sections[name] = _run_section(rt, name, runners[name])
            timings[name] = sections[name].seconds
        if source is not None or cfg.deployed.source is not None:  # evidence, not a requirement
            from xrobust.audit.sections.deployed import run_deployed

            sections["deployed"] = _run_section(rt, "deployed", lambda r: run_deployed(r, source))
            timings["deployed"] = sections["deployed"].seconds

        t0 = time.perf_counter()
        if cfg.sanity.enabled:
            sres = _run_section(
                rt, "sanity", lambda r: sanity_checks.run_sanity(r, sections.get("adversarial"))
            )
            sanity = [CheckResult.from_dict(c) for c in sres.data.pop("checks", [])]
            sres.data["attack_warnings"] = [
                {"attack": a, "message": m} for m, a in rt.cache.get("attack_warnings", {}).items()
            ]
            sections["sanity"] = sres
        else:
            sections["sanity"] = SectionResult("sanity", "skipped", "switched off in the config")
        timings["sanity"] = round(time.perf_counter() - t0, 4)

        from xrobust.audit.sections.requirements import evaluate_requirements

        if cfg.requirements.enabled:
            requirements = evaluate_requirements(cfg, sections, sanity)
            sections["requirements"] = SectionResult(
                "requirements",
                "ok",
                data={
                    "n": len(requirements),
                    "failed": sum(r.status == "fail" for r in requirements),
                    "not_evaluated": sum(r.status == "not_evaluated" for r in requirements),
                },
            )
        else:
            sections["requirements"] = SectionResult(
                "requirements", "skipped", "switched off in the config"
            )

    timings["total"] = round(time.perf_counter() - t_start, 4)
    info = _model_info(model, clf)
    info.update(model_info or {})
    per_section = {"clean_predictions": clean_queries}
    per_section.update({k: v.queries for k, v in sections.items() if v.queries})
    queries = {
        "total": clean_queries + sum(v.queries for v in sections.values()),
        "per_section": per_section,
        "budget": clf.query_budget,
        "exhausted": any(v.status == "partial" for v in sections.values()),
    }
    return AuditReport(
        created=_dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        title=title or f"xrobust audit of {info.get('name', info['class'])} on {spec.name}",
        model=info,
        dataset={"spec": spec.to_dict(), "n_test": len(x), "n_train": _len(bundle.train)},
        config=cfg.to_dict(),
        seeds={"audit": cfg.seed},
        versions=_versions(),
        environment={
            "device": str(device),
            "world_size": dist.world_size,
            "threads": torch.get_num_threads(),
            "amp": str(rt.amp).replace("torch.", "") if rt.amp is not None else None,
        },
        timings=timings,
        sections={k: sections[k] for k in SECTIONS if k in sections},
        sanity_checks=sanity,
        requirements=requirements,
        queries=queries,
    )


# ---------------------------------------------------------------------- helpers
def _classifier(model: Any, spec: Any, device: torch.device, cfg: AuditConfig) -> Classifier:
    """The classifier the audit asks: a module wrapped on ``device`` (a copy if it lives
    elsewhere), or the caller's classifier / source as :func:`as_classifier` makes it."""
    if isinstance(model, nn.Module):
        return as_classifier(model, spec, device=device, amp=cfg.amp, batch_size=cfg.batch_size)
    if isinstance(model, Classifier):
        return model
    try:
        return as_classifier(model, spec)
    except ModelError as exc:
        raise ModelError(f"audit needs a model: {exc}") from exc


def _model_info(model: Any, clf: Classifier) -> dict[str, Any]:
    module = clf.module
    info: dict[str, Any] = {"class": type(module if module is not None else model).__name__}
    if module is not None:
        info["parameters"] = int(sum(p.numel() for p in module.parameters()))
        info["trainable_parameters"] = int(
            sum(p.numel() for p in (model if isinstance(model, nn.Module) else module).parameters()
                if p.requires_grad)
        )  # fmt: skip
    info["classifier"] = clf.describe()
    if clf.source != "torch":
        info["name"] = clf.name
    return info


def _run_section(rt: Runtime, name: str, fn: Callable[[Runtime], dict[str, Any]]) -> SectionResult:
    if not rt.config.enabled(name):
        return SectionResult(name, "skipped", "switched off in the config")
    if rt.budget_stop is not None:
        return SectionResult(
            name, "skipped", f"the query budget ran out earlier ({rt.budget_stop})"
        )
    t0 = time.perf_counter()
    q0 = rt.classifier.queries
    rt.skipped_parts = []
    try:
        data = fn(rt)
        status, reason = "ok", ""
        if isinstance(data, dict) and data.get("_unavailable"):
            status, reason = "not_available", str(data.pop("_unavailable"))
        if isinstance(data, dict) and data.get("_partial"):
            status, reason = "partial", str(data.pop("_partial"))
            rt.budget_stop = reason
    except QueryBudgetExhausted as exc:
        data, status, reason = {}, "partial", f"stopped: {exc}"
        rt.budget_stop = str(exc)
    except SectionUnavailable as exc:
        data, status, reason = {}, "not_available", str(exc)
    except XRobustError:
        raise
    except Exception as exc:  # keep the audit going; the report says what broke
        log.error("audit section %s failed:\n%s", name, traceback.format_exc())
        data, status, reason = {}, "error", f"{type(exc).__name__}: {exc}"
    secs = round(time.perf_counter() - t0, 4)
    rt.report(f"{name} done", 1, 1)
    return SectionResult(
        name, status, reason, secs, data,  # type: ignore[arg-type]
        queries=_all_ranks(rt, rt.classifier.queries - q0), skipped_parts=list(rt.skipped_parts),
    )  # fmt: skip


def _all_ranks(rt: Runtime, n: int) -> int:
    """Queries summed over the processes (each rank asks about its own shard)."""
    return int(sum(rt.dist.gather_objects(int(n)))) if rt.dist.enabled else int(n)


def _resolve_dataset(
    dataset: DatasetBundle | str | os.PathLike[str], model: Any = None
) -> DatasetBundle:
    if isinstance(dataset, DatasetBundle):
        return dataset
    if isinstance(dataset, str | os.PathLike):
        try:
            from xrobust.data import load_dataset
        except ImportError as exc:  # pragma: no cover - data layer missing
            raise DataError(
                f"cannot load dataset {dataset!r}: xrobust.data is not available ({exc})"
            ) from exc
        from xrobust.data.schema import load_for_data_of

        # a model from load_run/train carries its input schema: a CSV is read through it
        return (
            load_for_data_of(model, str(dataset))
            if model is not None
            else load_dataset(str(dataset))
        )
    raise DataError(
        f"dataset must be a DatasetBundle or a dataset name/path, got {type(dataset).__name__}"
    )


def _tensors(ds: Any, split: str, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """A torch Dataset of (x, y) as two CPU tensors."""
    from xrobust.data import as_tensors

    x, y = as_tensors(ds, limit=limit)
    if not x.is_floating_point():
        raise DataError(f"{split} inputs must be floating point, got {x.dtype}")
    return x.float().cpu(), y.long().cpu().view(-1)


def _train_stats(bundle: DatasetBundle) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    try:
        xt, _ = _tensors(bundle.train, "train", limit=5000)
    except Exception:  # a train split is optional for the audit
        return None, None
    if len(xt) == 0:
        return None, None
    return xt.mean(0), xt.std(0, unbiased=False)


def _check_outputs(rt: Runtime) -> None:
    xb = rt.x[: min(2, len(rt.x))]
    try:
        out = rt.forward(xb)
    except Exception as exc:
        raise ModelError(
            f"the model failed on a batch of shape {tuple(xb.shape)} from dataset "
            f"{rt.spec.name!r}: {type(exc).__name__}: {exc}"
        ) from exc
    try:
        check_logits(out, len(xb), num_classes=rt.num_classes, min_classes=1)
    except ModelError as exc:
        raise ModelError(f"{exc} (dataset {rt.spec.name!r})") from exc


def _len(ds: Any) -> int | None:
    try:
        return len(ds)
    except TypeError:
        return None


def _versions() -> dict[str, str]:
    import numpy

    v = {
        "xrobust": __version__,
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "platform": platform.platform(),
    }
    try:
        import captum

        v["captum"] = captum.__version__
    except ImportError:  # pragma: no cover
        v["captum"] = "not installed"
    return v
