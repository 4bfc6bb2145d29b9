"""Gate models in your own test suite: assertions on accuracy, robustness and audits.

Example (in a pytest file)::

    from xrobust.testing import assert_robust

    def test_model_is_robust(model):
        assert_robust(model, "digits", attack="pgd", eps=0.1, min_accuracy=0.6, n=256)

The ``robustness_gate`` fixture (from the ``xrobust`` pytest plugin, installed with the
package) does the same and records the measured accuracy in pytest's JUnit XML.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from xrobust.errors import ConfigError, DataError

__all__ = ["assert_accuracy", "assert_audit_passes", "assert_robust", "evaluation_data"]


def evaluation_data(
    data: Any,
    n: int | None = None,
    bounds: tuple[float, float] | None = None,
    model: Any = None,
) -> tuple[torch.Tensor, torch.Tensor, tuple[float, float] | None]:
    """``(x, y, bounds)`` from a dataset name or path, a ``DatasetBundle`` (its test split
    and bounds), an ``(x, y)`` pair, a torch ``Dataset`` or a ``DataLoader``; the first
    ``n`` examples (all when None).

    Raises:
        DataError: unusable data.
    """
    from xrobust.data import DatasetBundle, as_tensors, load_dataset

    if isinstance(data, str):
        from xrobust.data.schema import load_for_data_of

        # through the model's input schema when it carries one (load_run / train models)
        data = load_for_data_of(model, data) if model is not None else load_dataset(data)
    if isinstance(data, DatasetBundle):
        x, y = as_tensors(data.test, limit=n)
        if bounds is None:
            lo, hi = data.spec.bounds
            bounds = (float(lo), float(hi)) if math.isfinite(hi - lo) else None
        return x, y, bounds
    if isinstance(data, tuple | list) and len(data) == 2:
        x, y = torch.as_tensor(data[0]), torch.as_tensor(data[1])
    elif isinstance(data, torch.utils.data.DataLoader):
        xs, ys, got = [], [], 0
        for xb, yb in data:
            xs.append(xb)
            ys.append(yb)
            got += len(xb)
            if n is not None and got >= n:
                break
        if not xs:
            raise DataError("the DataLoader is empty")
        x, y = torch.cat(xs), torch.cat(ys)
    elif isinstance(data, torch.utils.data.Dataset):
        x, y = as_tensors(data, limit=n)
    else:
        raise DataError(
            f"data must be a dataset name, a DatasetBundle, an (x, y) pair, a Dataset or a "
            f"DataLoader; got {type(data).__name__}"
        )
    if n is not None:
        x, y = x[:n], y[:n]
    return x.float(), y.long(), bounds


def _default_bounds(x: torch.Tensor, bounds: tuple[float, float] | None) -> tuple[float, float]:
    if bounds is not None:
        return bounds
    if float(x.min()) >= 0.0 and float(x.max()) <= 1.0:
        return (0.0, 1.0)
    raise ConfigError(
        f"inputs range over [{float(x.min()):.3g}, {float(x.max()):.3g}]: pass bounds=(low, high) "
        "for the attack (or a DatasetBundle, whose spec carries them)"
    )


def assert_robust(
    model: nn.Module,
    data: Any,
    attack: str = "pgd",
    eps: float = 0.1,
    min_accuracy: float = 0.5,
    norm: str = "linf",
    n: int | None = 256,
    *,
    bounds: tuple[float, float] | None = None,
    seed: int = 0,
    batch_size: int = 128,
    **attack_kwargs: Any,
) -> Any:
    """Assert that ``model`` keeps at least ``min_accuracy`` robust accuracy under ``attack``.

    Args:
        model: classifier returning logits.
        data: dataset name, ``DatasetBundle`` (test split), ``(x, y)``, Dataset or DataLoader.
        attack: registered attack name ("fgsm", "pgd", "apgd", ...).
        eps: perturbation budget in input units.
        min_accuracy: required robust accuracy in [0, 1].
        norm: "linf" or "l2".
        n: number of examples (None: all).
        bounds: valid input range (default: the dataset's, or [0, 1] for data inside it).
        seed: seed of the attack's random start.
        batch_size: examples per batch.
        **attack_kwargs: further attack options (``steps``, ``restarts``, ...).

    Returns:
        The :class:`~xrobust.attacks.AttackResult` over the examples.

    A query-only attack (``square``, ``hop_skip_jump``) gives an upper bound on robust
    accuracy: a pass then says only that this many queries did not break the model, and
    a :class:`UserWarning` says so.

    Raises:
        AssertionError: robust accuracy below ``min_accuracy``; the message gives the attack,
            its settings, the measured and clean accuracies and the number of examples.
            Also when the attack stopped before it attacked every example (a query
            budget ran out): an incomplete gate fails.

    Example:
        >>> assert_robust(model, "digits", eps=0.1, min_accuracy=0.6)  # doctest: +SKIP
    """
    from xrobust.attacks import get_attack

    if not 0.0 <= min_accuracy <= 1.0:
        raise ConfigError(f"min_accuracy must be in [0, 1], got {min_accuracy!r}")
    x, y, bnd = evaluation_data(data, n, bounds, model)
    bnd = _default_bounds(x, bnd)
    atk = get_attack(attack, model, eps=eps, norm=norm, bounds=bnd, seed=seed, **attack_kwargs)
    res = atk.run_loader((x, y), batch_size=batch_size)
    _check_gate(res, atk, attack, min_accuracy)
    return res


def _check_gate(res: Any, atk: Any, attack: str, min_accuracy: float) -> None:
    """Fail an incomplete or too weak result; warn that a query-only result is a bound."""
    acc = res.robust_accuracy
    if getattr(res, "partial", False):
        raise AssertionError(
            f"robustness gate incomplete: {attack} stopped before it attacked every example "
            f"({getattr(res, 'stop_reason', '') or 'stopped early'}); the robust accuracy "
            f"{acc:.4f} is not evidence. Raise the query budget or lower n."
        )
    if not acc >= min_accuracy:
        settings = ", ".join(
            f"{k}={v}" for k, v in atk.config.to_dict().items() if k not in ("bounds", "amp")
        )
        raise AssertionError(
            f"model is not robust enough: {attack} ({settings}) leaves robust accuracy "
            f"{acc:.4f} on {res.n} examples, below the required {min_accuracy:g} "
            f"(clean accuracy {res.clean_accuracy:.4f})"
        )
    if not atk.requires_gradients:
        import warnings

        warnings.warn(
            f"{attack} is a query-only attack: robust accuracy {acc:.4f} is an upper bound "
            "(a white-box attack such as apgd may find adversarial examples it did not)",
            UserWarning,
            stacklevel=3,  # assert_robust's caller, as before
        )


def assert_accuracy(
    model: nn.Module, data: Any, min_accuracy: float, n: int | None = None, batch_size: int = 256
) -> float:
    """Assert clean accuracy of at least ``min_accuracy``; returns the accuracy.

    Example:
        >>> assert_accuracy(model, "digits", 0.9)  # doctest: +SKIP
    """
    from xrobust._modelstate import eval_mode
    from xrobust.device import model_device

    x, y, _ = evaluation_data(data, n, model=model)
    dev = model_device(model)
    with eval_mode(model), torch.no_grad():
        pred = torch.cat(
            [
                model(x[i : i + batch_size].to(dev)).argmax(1).cpu()
                for i in range(0, len(x), batch_size)
            ]
        )
    acc = float((pred == y).double().mean())
    if not acc >= min_accuracy:
        raise AssertionError(
            f"clean accuracy {acc:.4f} on {len(y)} examples is below the required {min_accuracy:g}"
        )
    return acc


def assert_audit_passes(report: Any) -> None:
    """Assert that an :class:`~xrobust.audit.AuditReport` passed: every requirement was
    evaluated on complete evidence and met. A failed audit lists the failed requirements;
    an incomplete one (a requirement not evaluated, a section that errored or stopped at
    the query budget) fails too and lists what is missing.

    Example:
        >>> from xrobust.audit import AuditReport, CheckResult
        >>> assert_audit_passes(AuditReport(requirements=[CheckResult("min_clean_accuracy", "pass", "ok")]))
        >>> assert_audit_passes(AuditReport())
        Traceback (most recent call last):
        ...
        AssertionError: audit incomplete (no verdict; evidence is missing):
          - no requirement was evaluated: nothing to pass
    """
    failed = report.failed_requirements
    if failed:
        lines = "\n".join(f"  - {c.name}: {c.message}" for c in failed)
        raise AssertionError(f"audit failed {len(failed)} requirement(s):\n{lines}")
    if report.verdict != "passed":
        lines = "\n".join(f"  - {m}" for m in report.missing_evidence())
        raise AssertionError(f"audit incomplete (no verdict; evidence is missing):\n{lines}")
