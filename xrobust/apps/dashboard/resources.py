"""Cached wrappers around the library: one library call each, no maths of their own.

Models and datasets are cached with ``st.cache_resource`` (one shared object); results with
``st.cache_data``, keyed on the model's identity (``model_key``: source, path or upload,
weights hash), the data's identity (``data_key``) and the configuration. The model and
tensors themselves are passed as ``_model`` / ``_x`` (not hashed). Results come back as
plain data (NumPy arrays, dicts) so that the pages only render.

``_model`` is a classifier (``xrobust.models.Classifier``: torch, ONNX or endpoint), made
here once per model identity. Its query budget, when it has one, applies to each wrapped
computation (:func:`budgeted`): an interactive page would otherwise exhaust a total budget
after a few clicks. Endpoint header values are never arguments of a cached function (only
the environment variable names are), so they never reach a cache key.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import streamlit as st
import torch

__all__ = [
    "attack",
    "attack_options",
    "attack_select",
    "audit_report",
    "budgeted",
    "builtin_data",
    "clean_probabilities",
    "corruption_decisions",
    "default_attack",
    "demo_is_trained",
    "demo_model",
    "direction_confidence",
    "endpoint_classifier",
    "eps_scale",
    "explain_batch",
    "explain_counted",
    "explanation_metrics",
    "file_data",
    "full_audit",
    "global_importance",
    "minimal_eps",
    "norms",
    "onnx_classifier",
    "overview_n",
    "overview_report",
    "probabilities",
    "quick_audit_config",
    "robustness",
    "run_model",
    "supported_attacks",
    "test_batch",
    "torch_classifier",
    "train_statistics",
]


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


# ------------------------------------------------------------------ models and data
def demo_is_trained(name: str) -> bool:
    """Whether the demo model ``name`` is already in the cache (no training needed)."""
    from xrobust.audit.demo import demo_path

    return (demo_path(name) / "model.json").exists()


@st.cache_resource(show_spinner=False)
def demo_model(name: str) -> Any:
    """The built-in demo model (trained and cached on first use)."""
    from xrobust.audit.demo import demo_run

    return demo_run(name)


@st.cache_resource(show_spinner=False, max_entries=8)
def run_model(path: str, weights_sha256: str) -> Any:
    """A checkpoint folder, loaded once per weights hash (sha-checked, no pickle)."""
    from xrobust.models import load_run

    return load_run(path)


@st.cache_resource(show_spinner=False, max_entries=16)
def torch_classifier(_module: Any, model_key: str, _spec: Any) -> Any:
    """The ``TorchClassifier`` of a loaded torch model (one per model identity)."""
    from xrobust.models import as_classifier

    return as_classifier(_module, spec=_spec)


@st.cache_resource(show_spinner=False, max_entries=8)
def onnx_classifier(
    path: str,
    sha256: str,
    _bundle: Any,
    data_key: str,
    white_box: bool,
    query_budget: int | None,
    name: str | None = None,
    output: str | None = None,
) -> tuple[Any, float | None]:
    """``as_classifier(path, spec=bundle.spec)`` (onnxruntime), or with ``white_box`` its
    onnx2torch conversion checked against onnxruntime on the data's first test rows;
    returns the classifier and the conversion's max absolute difference (or None).

    Raises:
        DataError: the graph does not fit the data (both shapes named).
    """
    from xrobust.data import as_tensors
    from xrobust.models import as_classifier

    spec = _bundle.spec
    clf = as_classifier(path, spec=spec, name=name, **({"output_name": output} if output else {}))
    clf.check_data(tuple(spec.input_shape), spec.num_classes, f"data {spec.name!r}")
    if not white_box:
        clf.set_budget(query_budget)
        return clf, None
    x, _ = as_tensors(_bundle.test, limit=64)
    white = clf.to_torch(x, query_budget=query_budget)
    return white, float(white.conversion_max_abs_diff)


@st.cache_resource(show_spinner=False, max_entries=8)
def tflite_classifier(
    path: str,
    sha256: str,
    _bundle: Any,
    data_key: str,
    query_budget: int | None,
    name: str | None = None,
    signature: str | None = None,
    output: str | None = None,
) -> Any:
    """``as_classifier(path, spec=bundle.spec)`` for a TensorFlow Lite file (LiteRT; float
    or quantized), checked against the data's shape and classes before any query.

    Raises:
        DataError / ModelError: the file does not fit the data (both shapes named).
    """
    from xrobust.models import as_classifier

    spec = _bundle.spec
    options = {k: v for k, v in (("signature", signature), ("output_name", output)) if v}
    clf = as_classifier(path, spec=spec, name=name, **options)
    clf.check_data(tuple(spec.input_shape), spec.num_classes, f"data {spec.name!r}")
    clf.set_budget(query_budget)
    return clf


@st.cache_resource(show_spinner=False, max_entries=8)
def endpoint_classifier(
    url: str,
    protocol: str,
    access: tuple[tuple[str, str], ...],
    timeout: float,
    _bundle: Any,
    data_key: str,
    query_budget: int | None,
    output: str | None = None,
) -> Any:
    """``as_classifier(url, spec=bundle.spec, protocol=..., timeout=..., ...)``, checked
    with one query on the data's first test row (so that a mismatch shows in the sidebar).
    ``access`` holds ``("header:NAME", ENV_VAR)`` pairs (the header's value is read from
    that environment variable for each request) or, for ``sagemaker://`` URLs, ``region``
    and ``endpoint_url``.

    Raises:
        ConfigError: a header's environment variable is not set (it is named).
        ModelError / DataError: the endpoint's answer does not fit the data.
    """
    from xrobust.data import as_tensors
    from xrobust.models import as_classifier

    spec = _bundle.spec
    headers = {k.removeprefix("header:"): v for k, v in access if k.startswith("header:")}
    options = {k: v for k, v in access if not k.startswith("header:")}
    if headers:
        options["headers_env"] = headers
    if output:
        options["output_name"] = output
    clf = as_classifier(url, spec=spec, protocol=protocol, timeout=timeout, **options)
    x, _ = as_tensors(_bundle.test, limit=1)
    clf.scores(x)
    clf.set_budget(query_budget)
    return clf


@contextlib.contextmanager
def budgeted(clf: Any) -> Iterator[Any]:
    """The classifier's query budget (if any) for the ``with`` block, counted from its
    start: each computation of a page gets the whole budget."""
    budget = getattr(clf, "query_budget", None)
    if budget is None:
        yield clf
        return
    with clf.budget(budget):
        yield clf


@st.cache_resource(show_spinner=False, max_entries=8)
def builtin_data(name: str, size: int | None) -> Any:
    from xrobust.data import load_dataset

    return load_dataset(name, size=size)


@st.cache_resource(show_spinner=False, max_entries=8)
def file_data(path: str, target: str | None, mtime: float) -> tuple[Any, list[str]]:
    """The user's file through ``load_dataset``, with the warnings the loader gave (shown
    in the sidebar; a cached load would not repeat them)."""
    import warnings

    from xrobust.data import load_dataset

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bundle = load_dataset(path, target=target)
    return bundle, [str(w.message) for w in caught]


@st.cache_resource(show_spinner=False, max_entries=16)
def test_batch(_bundle: Any, data_key: str, n: int) -> tuple[torch.Tensor, torch.Tensor, str]:
    """The first ``n`` test examples (the library's seeded split) and the batch's identity
    for the result caches."""
    from xrobust.data import as_tensors

    x, y = as_tensors(_bundle.test, limit=n)
    return x, y, f"{data_key}#n={len(x)}"


@st.cache_resource(show_spinner=False, max_entries=8)
def train_statistics(_bundle: Any, data_key: str) -> tuple[Any, Any]:
    """Per-feature mean and std of the train split (for the tabular corruptions)."""
    from xrobust.models.inference import dataset_statistics

    return dataset_statistics(_bundle.train)


# ------------------------------------------------------------------ attacks
def eps_scale(spec: Any) -> float:
    """The unit the pages' eps controls are expressed in: the input range for images, one
    (standardised) feature unit for tabular data, at most the range."""
    span = float(spec.bounds[1] - spec.bounds[0])
    return span if spec.modality == "image" else min(1.0, span)


def norms() -> list[str]:
    """The norms the attacks support (the library's list)."""
    from xrobust.norms import list_norms

    return list_norms()


def eps_grid(norm: str, span: float) -> list[float]:
    """The default eps grid of ``norm`` for inputs of width ``span`` (the library's)."""
    from xrobust.norms import get_norm

    return get_norm(norm).eps_grid(span)


def eps_slider(norm: str, span: float) -> Any:
    """The default eps slider (max, default, probe) of ``norm`` for inputs of width
    ``span`` (the library's :class:`xrobust.norms.EpsSlider`)."""
    from xrobust.norms import get_norm

    return get_norm(norm).eps_slider(span)


def supported_attacks(differentiable: bool, num_classes: int) -> list[str]:
    """Registered attacks that can run on the model (gradients, class count)."""
    from xrobust.attacks import ATTACKS, list_attacks

    out = []
    for name in list_attacks():
        cls = ATTACKS.get(name)
        if getattr(cls, "requires_gradients", True) and not differentiable:
            continue
        need = getattr(cls, "min_classes", 2)
        if isinstance(need, int) and need > num_classes:
            continue
        out.append(name)
    return out


def default_attack(names: list[str], differentiable: bool = True) -> int:
    """Index of the attack a page starts with: on a white box the first white-box attack
    (PGD when registered: the audit's iterative workhorse), on a black box the audit's own
    black-box default (its ``black_box_attacks``, Square). What is white-box is the
    attack classes' own ``requires_gradients``."""
    from xrobust.attacks import ATTACKS
    from xrobust.audit.config import AdversarialConfig

    defaults = AdversarialConfig()
    prefer = ["pgd", *defaults.attacks] if differentiable else list(defaults.black_box_attacks)
    fitting = [n for n in names if ATTACKS.get(n).requires_gradients == differentiable]
    for want in [*prefer, *fitting]:
        if want in fitting:
            return names.index(want)
    return 0


def attack_select(container: Any, names: list[str], differentiable: bool, key: str) -> str:
    """The attack select box of a page. Its state is kept per kind of model (white box or
    black box), so that switching an ONNX model to white-box (onnx2torch) moves the page to
    a white-box attack instead of staying on a query-only one, and back."""
    kind = "white" if differentiable else "black"
    return container.selectbox(
        "Attack",
        names,
        index=default_attack(names, differentiable),
        key=f"{key}_{kind}",
        help="white-box attacks use input gradients; query-only attacks only the outputs"
        if differentiable
        else "query-only attacks: the model answers queries only",
    )


def attack_options(name: str) -> set[str]:
    """Names of the hyperparameters attack ``name`` takes."""
    from xrobust.attacks import ATTACKS

    return {f.name for f in dataclasses.fields(ATTACKS.get(name).config_cls)}


@st.cache_data(show_spinner=False, max_entries=64)
def attack(
    _model: Any,
    model_key: str,
    _x: torch.Tensor,
    _y: torch.Tensor,
    data_key: str,
    name: str,
    options: tuple[tuple[str, Any], ...],
    num_classes: int,
) -> dict[str, Any]:
    """``get_attack(name, model, **options).run(x, y)`` as NumPy arrays and summary numbers,
    with the clean-vs-adversarial confusion (``num_classes`` x ``num_classes``)."""
    from xrobust.attacks import get_attack
    from xrobust.attacks.evaluation import adversarial_confusion
    from xrobust.models.inference import count_queries

    with budgeted(_model), count_queries(_model) as q:
        atk = get_attack(name, _model, **dict(options))
        res = atk.run(_x, _y)
    upper = not atk.requires_gradients
    return {
        "bound": "upper" if upper else "measured",
        "bound_note": (
            f"query-only attack {name}, at most {int(res.queries.max())} queries per example"
            if upper and res.queries is not None
            else (f"query-only attack {name}" if upper else f"white-box attack {name}")
        ),
        "x_adv": _np(res.x_adv),
        "y": _np(res.y),
        "pred_clean": _np(res.pred_clean),
        "pred_adv": _np(res.pred_adv),
        "success": _np(res.success),
        "attacked": _np(res.attacked),
        "norms": _np(res.norms),
        "clean_accuracy": res.clean_accuracy,
        "robust_accuracy": res.robust_accuracy,
        "success_rate": res.success_rate,
        "forward_passes": res.forward_passes,
        "gradient_passes": res.gradient_passes,
        "queries": q.queries,
        "partial": bool(getattr(res, "partial", False)),
        "stop_reason": getattr(res, "stop_reason", None),
        "time_s": res.time_s,
        "confusion": adversarial_confusion(res, num_classes).matrix,
        "summary": res.to_dict(),
    }


@st.cache_data(show_spinner=False, max_entries=64)
def clean_probabilities(_model: Any, model_key: str, _x: torch.Tensor, data_key: str) -> np.ndarray:
    """Class probabilities of the clean test batch (independent of any attack setting)."""
    from xrobust.models.inference import predict_proba

    with budgeted(_model):
        return _np(predict_proba(_model, _x))


@st.cache_data(show_spinner=False, max_entries=64)
def probabilities(_model: Any, model_key: str, x: np.ndarray) -> np.ndarray:
    """Class probabilities of arbitrary inputs (e.g. adversarial examples)."""
    from xrobust.models.inference import predict_proba

    with budgeted(_model):
        return _np(predict_proba(_model, torch.from_numpy(np.ascontiguousarray(x))))


# ------------------------------------------------------------------ explanations
@st.cache_data(show_spinner=False, max_entries=128)
def explain_batch(
    _model: Any,
    model_key: str,
    x: np.ndarray,
    target: np.ndarray,
    method: str,
    seed: int = 0,
) -> np.ndarray:
    """``explain(model, x, target, method)`` attributions (shape of x)."""
    from xrobust.explain import explain

    if len(x) == 0:
        return np.zeros_like(x)
    with budgeted(_model):
        e = explain(
            _model,
            torch.from_numpy(np.ascontiguousarray(x)),
            target=torch.from_numpy(np.asarray(target)).long(),
            method=method,
            seed=seed,
        )
    return _np(e.attributions)


@st.cache_data(show_spinner=False, max_entries=64)
def explanation_metrics(
    _model: Any,
    model_key: str,
    x: np.ndarray,
    target: np.ndarray,
    method: str,
    attributions: np.ndarray,
    insertion_baseline: str,
    randomisation: bool,
    seed: int = 0,
) -> dict[str, Any]:
    """Deletion and insertion curves of ``attributions`` and (optionally) the model
    randomisation sanity check of ``method``, as dicts."""
    from xrobust.explain.metrics import (
        deletion_curve,
        insertion_curve,
        model_randomisation_check,
    )

    xt = torch.from_numpy(np.ascontiguousarray(x))
    tt = torch.from_numpy(np.asarray(target)).long()
    at = torch.from_numpy(np.ascontiguousarray(attributions))
    with budgeted(_model):
        out: dict[str, Any] = {
            "deletion": deletion_curve(_model, xt, at, tt).to_dict(),
            "insertion": insertion_curve(_model, xt, at, tt, baseline=insertion_baseline).to_dict(),
        }
    module = getattr(_model, "module", None)
    if randomisation and module is not None:  # randomises a copy of the torch module's weights
        out["randomisation"] = model_randomisation_check(
            module, xt, method, tt, seed=seed
        ).to_dict()
    return out


# ------------------------------------------------------------------ overview / audit
def quick_audit_config(
    modality: str,
    n: int,
    eps: list[float],
    norm: str,
    seed: int = 0,
    *,
    differentiable: bool = True,
    max_queries: int = 100,
) -> Any:
    """The overview's audit: clean performance, one robustness curve and the sanity checks
    on ``n`` examples; corruptions, explanations and requirements switched off. On a black
    box the curve comes from the registered query-only attacks, each capped at
    ``max_queries`` queries per example where it has such an option."""
    from xrobust.audit import AuditConfig

    black: dict[str, Any] = {}
    if not differentiable:
        from xrobust.attacks import list_attacks

        # the audit's own black-box default (Square), when registered: one query-only
        # attack keeps the overview quick over HTTP
        names = [a for a in ("square",) if a in list_attacks(requires_gradients=False)]
        opts = {}
        for a in names:
            q = next(
                (o for o in ("max_queries", "queries", "n_queries") if o in attack_options(a)), None
            )
            if q:
                opts[a] = {q: max_queries}
        black = {"black_box_attacks": names, "options": opts}
    return AuditConfig.from_dict(
        {
            "seed": seed,
            "device": "cpu",
            "clean": {"n": None},
            "adversarial": {
                "n": n,
                "attacks": ["fgsm", "pgd"],
                "norms": [norm],
                "eps": {norm: eps},
                "steps": 10,
                "minimal_perturbation": False,
                "n_vulnerable": 0,
                **black,
            },
            "corruption": {"enabled": False},
            "explanations": {"enabled": False},
            # the query-only comparison (black_box_not_stronger) capped like the black-box
            # curve: a masked model falls to Square within a few dozen queries
            "sanity": {"n": min(n, 32), "convergence_factor": 2, "black_box_queries": max_queries}
            if differentiable
            else {"n": min(n, 16), "black_box_queries": max_queries},
            "requirements": {"enabled": False},
        }
    )


def overview_n(differentiable: bool) -> int:
    """The overview's default number of attacked examples (a black box pays per query)."""
    return 64 if differentiable else 16


def overview_report(
    model: Any, data: Any, norm: str, n: int, *, clean_only: bool = False
) -> dict[str, Any]:
    """The overview's quick audit (:func:`quick_audit_config` on the eps grid of ``norm``
    in the data's units) of a sidebar model handle on a data handle, cached; the page and
    the server's warm-up (:mod:`preload`) ask for it the same way. ``clean_only``: the same
    audit with only its clean section (what the page shows first)."""
    spec = model.spec
    span = eps_scale(spec)
    eps = eps_grid(norm, span)
    cfg = quick_audit_config(spec.modality, n, eps, norm, differentiable=model.differentiable)
    if clean_only:
        cfg.adversarial.enabled = False
        cfg.sanity.enabled = False
    return audit_report(
        model.classifier,
        model.key,
        data.bundle,
        data.key,
        json.dumps(cfg.to_dict(), sort_keys=True),
    )


@st.cache_data(show_spinner=False, max_entries=16)
def audit_report(
    _model: Any, model_key: str, _bundle: Any, data_key: str, config_json: str
) -> dict[str, Any]:
    """``audit(model, data, AuditConfig.from_dict(config))`` as the report's dict."""
    from xrobust.audit import AuditConfig, audit

    cfg = AuditConfig.from_dict(json.loads(config_json))
    with budgeted(_model):
        return audit(_model, _bundle, cfg).to_dict()


def full_audit(_model: Any, _bundle: Any, cfg: Any, progress: Any = None) -> Any:
    """``audit(model, data, cfg, progress)`` under the model's budget (not cached: the
    overview keeps its files in the session)."""
    from xrobust.audit import audit

    with budgeted(_model):
        return audit(_model, _bundle, cfg, progress)


@st.cache_data(show_spinner=False, max_entries=32)
def robustness(
    _model: Any,
    model_key: str,
    _x: torch.Tensor,
    _y: torch.Tensor,
    data_key: str,
    name: str,
    eps: tuple[float, ...],
    options: tuple[tuple[str, Any], ...],
) -> dict[str, Any]:
    """``robustness_curve(model, (x, y), name, eps, **options).to_dict()``."""
    from xrobust.attacks.evaluation import robustness_curve

    with budgeted(_model):
        return robustness_curve(_model, (_x, _y), name, list(eps), **dict(options)).to_dict()


# ------------------------------------------------------------------ black-box probes
@st.cache_data(show_spinner=False, max_entries=32)
def minimal_eps(
    _model: Any,
    model_key: str,
    _x: torch.Tensor,
    _y: torch.Tensor,
    data_key: str,
    name: str,
    eps_max: float,
    options: tuple[tuple[str, Any], ...],
) -> dict[str, Any]:
    """``minimal_perturbation(...)``: per-example smallest eps that flips the prediction."""
    from xrobust.attacks.evaluation import minimal_perturbation
    from xrobust.models.inference import count_queries

    with budgeted(_model), count_queries(_model) as q:
        mp = minimal_perturbation(_model, _x, _y, name, eps_max=eps_max, **dict(options))
    d = mp.to_dict()
    d["queries"] = q.queries
    return d


@st.cache_data(show_spinner=False, max_entries=32)
def corruption_decisions(
    _model: Any,
    model_key: str,
    _x: torch.Tensor,
    _y: torch.Tensor,
    data_key: str,
    names: tuple[str, ...],
    bounds: tuple[float, float],
    _stats: tuple[Any, Any] = (None, None),
    seed: int = 0,
) -> dict[str, Any]:
    """Predictions under each corruption at severities 1..5 (``corrupt`` + ``predict_proba``)."""
    from xrobust.audit.corruptions import corrupt
    from xrobust.models.inference import count_queries, predict_proba

    out: dict[str, Any] = {"severities": [1, 2, 3, 4, 5], "pred": {}, "examples": {}}
    with budgeted(_model), count_queries(_model) as q:
        for name in names:
            preds, ex = [], []
            for s in out["severities"]:
                xc = corrupt(
                    name,
                    _x,
                    s,
                    bounds=bounds,
                    generator=torch.Generator().manual_seed(seed),
                    train_mean=_stats[0],
                    feature_std=_stats[1],
                )
                preds.append(_np(predict_proba(_model, xc).argmax(1)))
                ex.append(_np(xc[:1]))
            out["pred"][name] = np.stack(preds)
            out["examples"][name] = np.concatenate(ex)
    out["queries"] = q.queries
    return out


@st.cache_data(show_spinner=False, max_entries=32)
def direction_confidence(
    _model: Any,
    model_key: str,
    x: np.ndarray,
    y: np.ndarray,
    x_adv: np.ndarray,
    norm: str,
    magnitudes: tuple[float, ...],
    bounds: tuple[float, float],
    n_random: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Probability of the true class along the adversarial direction and along
    ``n_random`` random directions of the same norm, at each magnitude."""
    from xrobust.models.inference import (
        confidence_along,
        count_queries,
        direction_to,
        random_directions,
    )

    xt = torch.from_numpy(np.ascontiguousarray(x))
    yt = torch.from_numpy(np.asarray(y)).long()
    adv_dir = direction_to(xt, torch.from_numpy(np.ascontiguousarray(x_adv)), norm)
    with budgeted(_model), count_queries(_model) as q:
        adv = confidence_along(_model, xt, yt, adv_dir, magnitudes, bounds=bounds)
        rnd = [
            confidence_along(_model, xt, yt, d, magnitudes, bounds=bounds)
            for d in random_directions(xt, norm, n_random, seed)
        ]
    return {
        "magnitudes": list(magnitudes),
        "adversarial": _np(adv),
        "random": np.stack([_np(r) for r in rnd]),
        "queries": q.queries,
    }


@st.cache_data(show_spinner=False, max_entries=64)
def explain_counted(
    _model: Any,
    model_key: str,
    x: np.ndarray,
    target: np.ndarray,
    method: str,
    seed: int = 0,
) -> tuple[np.ndarray, int]:
    """Like :func:`explain_batch`, with the number of model queries it took."""
    from xrobust.models.inference import count_queries

    with count_queries(_model) as q:
        a = explain_batch.__wrapped__(_model, model_key, x, target, method, seed)
    return a, q.queries


@st.cache_data(show_spinner=False, max_entries=32)
def global_importance(
    _model: Any,
    model_key: str,
    x: np.ndarray,
    target: np.ndarray,
    method: str,
    feature_names: tuple[str, ...],
) -> dict[str, Any]:
    """``global_importance`` of ``method``'s attributions over the rows of ``x``."""
    from xrobust.explain import global_importance as _gi

    attr = explain_batch(_model, model_key, x, target, method)  # budgeted there
    return _gi(torch.from_numpy(attr), list(feature_names)).to_dict()
