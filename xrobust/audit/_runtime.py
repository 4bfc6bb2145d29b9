"""What every section shares: the model, the data, clean predictions, chunking and sharding.

Examples are processed in fixed chunks of ``config.batch_size``. Each chunk's random
numbers are seeded from (seed, stage, chunk index), so a chunk gives the same result in
whichever process runs it. Under ``torchrun`` (an initialised ``torch.distributed``
process group) rank ``r`` runs chunks ``r, r + W, r + 2W, ...`` and the per-example results
are gathered in chunk order: the report is the same as one process's.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from xrobust.audit.config import AuditConfig
from xrobust.data.spec import DatasetSpec
from xrobust.distributed import DistContext
from xrobust.models.classifier import Classifier
from xrobust.validation import probability_kind

log = logging.getLogger(__name__)

T = TypeVar("T")

ProgressFn = Callable[[str, int, int], None]


def chunk_seed(seed: int, stage: str, index: int) -> int:
    """A seed for one chunk of one stage, independent of the process that runs it."""
    return (seed * 1_000_003 + zlib.crc32(stage.encode()) + index * 7919) % (2**31 - 1)


@dataclass
class Runtime:
    """Shared state of one audit run."""

    model: nn.Module | Classifier  # the torch module (white-box), else the classifier
    classifier: Classifier
    spec: DatasetSpec
    config: AuditConfig
    device: torch.device
    x: torch.Tensor  # evaluation inputs (CPU)
    y: torch.Tensor  # evaluation labels (CPU)
    order: torch.Tensor  # seeded permutation of range(len(x)); samples are its prefixes
    train_mean: torch.Tensor | None = None
    feature_std: torch.Tensor | None = None
    progress: ProgressFn | None = None
    dist: DistContext = field(default_factory=DistContext)
    amp: torch.dtype | None = None
    #: the model the audited one came from (``audit(..., source=)``), or None
    source: Any = None
    cache: dict[Any, Any] = field(default_factory=dict)
    _logits: torch.Tensor | None = None
    #: why the query budget stopped the audit (the sections after it are skipped)
    budget_stop: str | None = None
    #: parts of the running section that could not run, ``{"part", "reason"}``
    skipped_parts: list[dict[str, str]] = field(default_factory=list)

    # ------------------------------------------------------------------ the model
    @property
    def white_box(self) -> bool:
        """Whether input gradients are available (a torch module)."""
        return self.classifier.differentiable and self.classifier.module is not None

    def skip_part(self, part: str, reason: str) -> None:
        """Record that ``part`` of the running section did not run, and why."""
        self.skipped_parts.append({"part": part, "reason": reason})

    def nothing_runs(self, what: str) -> dict[str, str]:
        """A section's result when none of its configured ``what`` can run on this model:
        "not available", with every skipped part and its reason."""
        parts = "; ".join(f"{p['part']}: {p['reason']}" for p in self.skipped_parts)
        return {"_unavailable": f"no configured {what} can run on this model: {parts}"}

    # ------------------------------------------------------------------ data
    @property
    def bounds(self) -> tuple[float, float]:
        return (float(self.spec.bounds[0]), float(self.spec.bounds[1]))

    @property
    def num_classes(self) -> int:
        return int(self.spec.num_classes)

    def sample(self, n: int | None) -> torch.Tensor:
        """Indices of a seeded sample of ``n`` evaluation examples (all when None)."""
        if n is None or n >= len(self.order):
            return self.order.clone()
        return self.order[:n].clone()

    def chunks(self, idx: torch.Tensor) -> list[torch.Tensor]:
        bs = self.config.batch_size
        return [idx[i : i + bs] for i in range(0, len(idx), bs)]

    # ------------------------------------------------------------------ compute
    def report(self, stage: str, done: int, total: int) -> None:
        if self.progress is not None and self.dist.is_main:
            try:
                self.progress(stage, done, total)
            except Exception:  # a broken progress bar must not break the audit
                log.debug("progress callback failed", exc_info=True)

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Model outputs for a batch (float32, on the CPU), in chunks of batch_size."""
        from xrobust.device import autocast

        outs = []
        bs = self.config.batch_size
        for i in range(0, len(x), bs):
            xb = x[i : i + bs].to(self.device)
            if not self.white_box:
                outs.append(self.classifier.scores(xb).float().cpu())
                continue
            self.classifier.spend(len(xb))
            with autocast(self.device, self.amp):
                out = self.model(xb)  # type: ignore[operator]
            outs.append(out.float().cpu())
        if not outs:
            return torch.zeros(0, self.num_classes)
        return torch.cat(outs)

    def clean_logits(self) -> torch.Tensor:
        """Outputs on the whole evaluation set, computed once and shared by the sections."""
        if self._logits is None:
            order = self.order
            per_chunk = self.map_chunks(
                "clean predictions", order, lambda i, idx: self.forward(self.x[idx])
            )
            logits = torch.cat(per_chunk) if per_chunk else torch.zeros(0, self.num_classes)
            out = torch.empty_like(logits)
            out[order] = logits
            self._logits = out
        return self._logits

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """Class probabilities: softmax of logits, or the outputs themselves when the model
        already returns softmax probabilities (then the sanity check flags it)."""
        if probability_kind(logits) == "softmax":
            return logits.clamp_min(0)
        return F.softmax(logits.double(), dim=1).float()

    def map_chunks(
        self,
        stage: str,
        idx: torch.Tensor,
        fn: Callable[[int, torch.Tensor], T],
    ) -> list[T]:
        """``fn(chunk_index, chunk_indices)`` over the chunks of ``idx``, sharded across
        ranks; returns the results of every chunk in order (on every rank)."""
        chunks = self.chunks(idx)
        world = self.dist.world_size
        mine = [(i, c) for i, c in enumerate(chunks) if i % world == self.dist.rank]
        results: list[tuple[int, T]] = []
        for k, (i, c) in enumerate(mine):
            torch.manual_seed(chunk_seed(self.config.seed, stage, i))
            results.append((i, fn(i, c)))
            self.report(stage, min(len(idx), (k + 1) * world * self.config.batch_size), len(idx))
        gathered = self.dist.gather_objects(results)
        merged = sorted((pair for part in gathered for pair in part), key=lambda p: p[0])
        return [r for _, r in merged]

    def on_rank0(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and hand its result to every rank."""
        if not self.dist.enabled:
            return fn()
        result = fn() if self.dist.is_main else None
        return self.dist.broadcast_object(result)


def default_eps(spec: DatasetSpec, norm: str, feature_std: torch.Tensor | None) -> list[float]:
    """An eps grid for ``norm`` from the data range (images) or feature spread (tabular):
    the norm's ``audit_fractions`` of ``Norm.max_radius`` of that range (the grid policy
    lives with the norm, :mod:`xrobust.norms`)."""
    from xrobust.attacks.norms import get_norm

    n = get_norm(norm)
    d = math.prod(spec.input_shape)
    lo, hi = spec.bounds
    if spec.modality == "tabular" or not math.isfinite(hi - lo):
        s = float(feature_std.median()) if feature_std is not None else 1.0
        radius, fractions = n.max_radius((0.0, s), d), n.audit_fractions["tabular"]
    else:
        radius, fractions = n.max_radius((lo, hi), d), n.audit_fractions["image"]
    return [_round(f * radius) for f in fractions]


def _round(v: float) -> float:
    """A derived eps to 2 significant figures, so that every label shows the value that
    ran ("eps=0.1", not "eps=0.0999")."""
    if v == 0:
        return 0.0
    return float(f"{v:.2g}")


def to_list(t: torch.Tensor | Sequence[Any], digits: int | None = None) -> list[Any]:
    """A tensor as (nested) Python lists, floats rounded to ``digits`` when given."""
    if isinstance(t, torch.Tensor):
        if t.is_floating_point():
            t = t.detach().cpu().double()
            if digits is not None:
                t = torch.round(t * 10**digits) / 10**digits
            vals = t.tolist()
            return _finite(vals)
        return t.detach().cpu().tolist()
    return list(t)


def _finite(v: Any) -> Any:
    if isinstance(v, list):
        return [_finite(i) for i in v]
    if isinstance(v, float) and not math.isfinite(v):
        return None
    return v
