"""What an attack found: :class:`AttackResult`, per example and in summary.

Example:
    >>> import torch
    >>> from xrobust.attacks import FGSM, AttackResult
    >>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 3))
    >>> x, y = torch.rand(6, 4), torch.randint(0, 3, (6,))
    >>> atk = FGSM(model, eps=0.1)
    >>> both = AttackResult.concat([atk.run(x[:3], y[:3]), atk.run(x[3:], y[3:])])
    >>> both.n
    6
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from xrobust.errors import DataError

__all__ = ["AttackResult"]


@dataclass
class AttackResult:
    """What an attack found, per example and in summary.

    Attributes:
        x_adv: adversarial inputs (shape, device and dtype of the input batch), or None when
            :meth:`Attack.run_loader` was asked not to keep them.
        y: true labels.
        pred_clean: model predictions on the clean inputs.
        pred_adv: model predictions on ``x_adv`` (for an example fooled in evaluation mode,
            the prediction of the forward pass that found its adversarial: no pass is
            repeated).
        success: per example, the attack's goal is met at ``x_adv`` (untargeted: the
            prediction is wrong; targeted: it equals the target).
        norms: per example, ``||x_adv - x||`` in the attack's norm.
        attacked: per example, whether the attack ran on it (evaluation mode skips examples
            already misclassified, or already classified as the target).
        steps: per example, gradient steps spent on it.
        attack: registry name of the attack.
        norm / eps: the threat model.
        config: the attack's hyperparameters.
        target: target classes of a targeted run, else None.
        broken_by: per example, the name of the attack that first broke it (ensembles), or None.
        forward_passes / gradient_passes: model evaluations, counted in examples.
        queries: per example, model evaluations spent on it (the clean pass included).
        time_s: wall-clock seconds of the run.
        partial: the classifier's query budget ran out before the attack finished: the
            examples it did not finish keep their clean input (``success`` False), so the
            robust accuracy is an upper bound. ``stop_reason`` says where it stopped.
        precision: what the search's passes ran in ("fp32", "bf16", "fp16"); whatever it
            is, ``pred_adv`` and ``success`` are fp32 verdicts.
    """

    x_adv: torch.Tensor | None
    y: torch.Tensor
    pred_clean: torch.Tensor
    pred_adv: torch.Tensor
    success: torch.Tensor
    norms: torch.Tensor
    attacked: torch.Tensor
    steps: torch.Tensor
    attack: str
    norm: str
    eps: float
    config: dict[str, Any] = field(default_factory=dict)
    target: torch.Tensor | None = None
    broken_by: list[str | None] | None = None
    forward_passes: int = 0
    gradient_passes: int = 0
    time_s: float = 0.0
    queries: torch.Tensor | None = None
    partial: bool = False
    stop_reason: str | None = None
    precision: str = "fp32"

    @property
    def n(self) -> int:
        """Number of examples."""
        return int(self.y.shape[0])

    @property
    def clean_accuracy(self) -> float:
        """Accuracy on the clean inputs."""
        return float((self.pred_clean == self.y).float().mean()) if self.n else float("nan")

    @property
    def robust_accuracy(self) -> float:
        """Accuracy on the adversarial inputs."""
        return float((self.pred_adv == self.y).float().mean()) if self.n else float("nan")

    @property
    def success_rate(self) -> float:
        """Fraction of attacked examples on which the attack met its goal."""
        k = int(self.attacked.sum())
        return float((self.success & self.attacked).sum()) / k if k else 0.0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready summary (no tensors) for reports."""
        ok = self.success & self.attacked
        nrm = self.norms[ok].float()
        d: dict[str, Any] = {
            "attack": self.attack,
            "norm": self.norm,
            "eps": self.eps,
            "config": self.config,
            "targeted": self.target is not None,
            "n": self.n,
            "n_attacked": int(self.attacked.sum()),
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "success_rate": self.success_rate,
            "mean_norm_successful": float(nrm.mean()) if nrm.numel() else None,
            "median_norm_successful": float(nrm.median()) if nrm.numel() else None,
            "max_norm": float(self.norms.max()) if self.norms.numel() else None,
            "steps_total": int(self.steps.sum()),
            "forward_passes": self.forward_passes,
            "gradient_passes": self.gradient_passes,
            "time_s": self.time_s,
            "partial": self.partial,
            "precision": self.precision,
        }
        if self.stop_reason is not None:
            d["stop_reason"] = self.stop_reason
        if self.queries is not None and self.n:
            q = self.queries.float()
            d["queries"] = {
                "total": int(self.queries.sum()),
                "median": float(q.median()),
                "max": int(self.queries.max()),
            }
        if self.broken_by is not None:
            counts: dict[str, int] = {}
            for b in self.broken_by:
                if b is not None:
                    counts[b] = counts.get(b, 0) + 1
            d["broken_by"] = counts
        return d


    @classmethod
    def concat(cls, parts: Sequence[AttackResult], *, keep_adv: bool = True) -> AttackResult:
        """One result for consecutive batches of the same attack (``run_loader``, the CLI).

        Per-example fields are concatenated in order and counts summed; ``x_adv`` is
        concatenated when every part has it and ``keep_adv`` is True, else None.

        Raises:
            DataError: no parts, or parts of different attacks or threat models.
        """
        if not parts:
            raise DataError("nothing to concatenate: no attack results")
        first = parts[0]
        for p in parts[1:]:
            if (p.attack, p.norm, p.eps) != (first.attack, first.norm, first.eps):
                raise DataError(
                    "cannot concatenate results of different attacks or threat models: "
                    f"{(first.attack, first.norm, first.eps)} and {(p.attack, p.norm, p.eps)}"
                )
        cat = torch.cat
        advs = [p.x_adv for p in parts]
        return cls(
            x_adv=cat(advs) if keep_adv and all(a is not None for a in advs) else None,  # type: ignore[misc]
            y=cat([p.y for p in parts]),
            pred_clean=cat([p.pred_clean for p in parts]),
            pred_adv=cat([p.pred_adv for p in parts]),
            success=cat([p.success for p in parts]),
            norms=cat([p.norms for p in parts]),
            attacked=cat([p.attacked for p in parts]),
            steps=cat([p.steps for p in parts]),
            attack=first.attack,
            norm=first.norm,
            eps=first.eps,
            config=dict(first.config),
            target=_cat_optional([p.target for p in parts]),
            broken_by=None
            if first.broken_by is None
            else [b for p in parts for b in (p.broken_by or [None] * p.n)],
            forward_passes=sum(p.forward_passes for p in parts),
            gradient_passes=sum(p.gradient_passes for p in parts),
            time_s=sum(p.time_s for p in parts),
            queries=_cat_optional([p.queries for p in parts]),
            partial=any(p.partial for p in parts),
            stop_reason=next((p.stop_reason for p in parts if p.stop_reason), None),
            precision=first.precision,
        )


def _cat_optional(ts: list[torch.Tensor | None]) -> torch.Tensor | None:
    return None if any(t is None for t in ts) else torch.cat(ts)  # type: ignore[arg-type]
