"""The audit runner: one call from a model and a dataset to an :class:`AuditReport`."""

from __future__ import annotations

import datetime as _dt
import logging
import os
import platform
import sys
import time
import traceback
from typing import Any

import torch
from torch import nn

from xrobust import __version__, distributed
from xrobust._modelstate import eval_mode
from xrobust.audit._runtime import ProgressFn, Runtime
from xrobust.audit.config import SECTIONS, AuditConfig
from xrobust.audit.report import AuditReport, CheckResult, SectionResult
from xrobust.audit.section import Section, get_section, list_sections
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
    cfg = _config(config, source)
    bundle = _resolve_dataset(dataset, model if isinstance(model, nn.Module) else None)
    timings: dict[str, float] = {}
    rt = _runtime(model, bundle, cfg, progress, source, timings)
    report = AuditReport()
    with eval_mode(rt.model):
        clean_queries = _clean_predictions(rt, timings)
        for cls in _sections():
            section = cls()
            if not section.applies(rt):
                continue
            result = _run_section(rt, section, report)
            _keep(report, section, result)
            timings[result.name] = result.seconds
    timings["total"] = round(time.perf_counter() - t_start, 4)
    return _finish(report, model, bundle, rt, timings, clean_queries, title, model_info)


# ---------------------------------------------------------------------- steps
def _sections() -> list[type[Section]]:
    """The registered sections in the order they run."""
    return [get_section(n) for n in list_sections()]


def _config(config: AuditConfig | None, source: Any) -> AuditConfig:
    """The validated config, with the defaults of registered sections it does not set
    (so the report records every option that ran); every section checks its inputs."""
    cfg = config if config is not None else AuditConfig()
    if not isinstance(cfg, AuditConfig):
        raise ConfigError(f"config must be an AuditConfig, got {type(cfg).__name__}")
    cfg.validate()
    missing = {
        cls.name: cls.config()
        for cls in _sections()
        if cls.name not in SECTIONS and cls.name not in cfg.extra
    }
    if missing:
        cfg = cfg.replace(extra={**missing, **cfg.extra})
    for cls in _sections():
        cls().check_inputs(cfg, source)  # before any work
    return cfg


def _runtime(
    model: Any,
    bundle: DatasetBundle,
    cfg: AuditConfig,
    progress: ProgressFn | None,
    source: Any,
    timings: dict[str, float],
) -> Runtime:
    """The shared runtime: the classifier on its device, checked against the data, and the
    test split as tensors."""
    spec = bundle.spec
    device = resolve_device(cfg.device)
    dist = distributed.current(device)
    device = dist.device or device
    clf = _classifier(model, spec, device, cfg)
    device = clf.device
    maybe_tune_allocator(device)  # on the CPU, as the CLI does (unless malloc is configured)
    # data and model must agree before any query is spent
    clf.check_data(tuple(spec.input_shape), spec.num_classes, f"dataset {spec.name!r}")
    t0 = time.perf_counter()
    x, y = _tensors(bundle.test, "test")
    if len(x) == 0:
        raise DataError(f"dataset {spec.name!r} has an empty test split: nothing to audit")
    train_mean, feature_std = _train_stats(bundle)
    timings["load_data"] = round(time.perf_counter() - t0, 4)
    return Runtime(
        model=clf.module if clf.module is not None else clf,
        classifier=clf,
        spec=spec,
        config=cfg,
        device=device,
        x=x,
        y=y,
        order=torch.randperm(len(x), generator=torch.Generator().manual_seed(cfg.seed)),
        train_mean=train_mean,
        feature_std=feature_std,
        progress=progress,
        dist=dist,
        amp=amp_dtype(device, cfg.amp),
        source=source,
    )


def _clean_predictions(rt: Runtime, timings: dict[str, float]) -> int:
    """The clean outputs every section shares; returns the queries they took."""
    q0 = rt.classifier.queries
    t0 = time.perf_counter()
    try:
        _check_outputs(rt)
        rt.clean_logits()
    except QueryBudgetExhausted as exc:
        raise ConfigError(
            f"the query budget of {exc.budget} does not cover the clean predictions of "
            f"the {len(rt.x)} test examples (every section needs them); raise the budget"
        ) from exc
    timings["clean_predictions"] = round(time.perf_counter() - t0, 4)
    return _all_ranks(rt, rt.classifier.queries - q0)


def _keep(report: AuditReport, section: Section, result: SectionResult) -> None:
    """Add a section's result to the report; its checks go to the report's list."""
    report.sections[result.name] = result
    if section.checks is not None:
        target: list[CheckResult] = getattr(report, section.checks)
        for c in result.data.pop("checks", []):
            target.append(c if isinstance(c, CheckResult) else CheckResult.from_dict(c))


def _finish(
    report: AuditReport,
    model: Any,
    bundle: DatasetBundle,
    rt: Runtime,
    timings: dict[str, float],
    clean_queries: int,
    title: str | None,
    model_info: dict[str, Any] | None,
) -> AuditReport:
    """The report's description of the run: model, data, config, seeds, versions,
    environment, timings and queries."""
    clf, spec, sections = rt.classifier, rt.spec, report.sections
    info = _model_info(model, clf)
    info.update(model_info or {})
    per_section = {"clean_predictions": clean_queries}
    per_section.update({k: v.queries for k, v in sections.items() if v.queries})
    report.created = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    report.title = title or f"xrobust audit of {info.get('name', info['class'])} on {spec.name}"
    report.model = info
    report.dataset = {"spec": spec.to_dict(), "n_test": len(rt.x), "n_train": _len(bundle.train)}
    report.config = rt.config.to_dict()
    report.seeds = {"audit": rt.config.seed}
    report.versions = _versions()
    report.environment = {
        "device": str(rt.device),
        "world_size": rt.dist.world_size,
        "threads": torch.get_num_threads(),
        "amp": str(rt.amp).replace("torch.", "") if rt.amp is not None else None,
    }
    report.timings = timings
    report.queries = {
        "total": clean_queries + sum(v.queries for v in sections.values()),
        "per_section": per_section,
        "budget": clf.query_budget,
        "exhausted": any(v.status == "partial" for v in sections.values()),
    }
    return report


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


def _unrunnable(rt: Runtime, section: Section) -> str | None:
    """Why ``section`` is not run (switched off, out of budget, no gradients), or None."""
    if not rt.config.enabled(section.name):
        return "switched off in the config"
    if "queries" in section.needs and rt.budget_stop is not None:
        return f"the query budget ran out earlier ({rt.budget_stop})"
    return None


def _run_section(rt: Runtime, section: Section, report: AuditReport) -> SectionResult:
    """One section run under the shared rules: skipped when off or out of budget, not
    available without what it needs, partial when the budget ran out, "error" when it
    raised (the audit goes on)."""
    name = section.name
    why = _unrunnable(rt, section)
    if why is not None:
        return SectionResult(name, "skipped", why)
    if "gradients" in section.needs and not rt.white_box:
        why = f"needs input gradients; the model is a black box ({rt.classifier.source})"
        return SectionResult(name, "not_available", why)
    t0 = time.perf_counter()
    q0 = rt.classifier.queries
    rt.skipped_parts = []
    try:
        data = section.run(rt, report)
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
