"""Helpers shared by the query-only attacks (Square, HopSkipJump): what the model
answers, the query budget, and draws that do not depend on which rows are active.

Query-only attacks ask the model only through ``ctx.forward(x, batch.origin[rows])``, so
that every row asked about is counted for its example. Before each call they ask
:func:`budget_allows`: when the classifier's query budget cannot answer the call, the
attack stops cleanly (``ctx.stop``) and returns the best it has found so far.
"""

from __future__ import annotations

import torch

from xrobust.attacks.context import AttackContext

__all__ = ["budget_allows", "margin", "output_kind", "randint_rows", "rand_rows"]


def output_kind(ctx: AttackContext) -> str:
    """What the model's scores are: "logits", "probabilities" or "labels" (one-hot)."""
    return str(getattr(ctx, "output_kind", "logits") or "logits")


def budget_allows(ctx: AttackContext, n: int, attack: str) -> bool:
    """Whether a call asking about ``n`` rows fits the classifier's query budget; when
    it does not, the run is marked partial (``ctx.stop``) and False is returned."""
    remaining = getattr(ctx, "remaining_queries", None)
    left = remaining() if callable(remaining) else None
    if left is None or left >= n:
        return True
    reason = f"{attack}: query budget exhausted ({left} rows left, the next call needs {n})"
    stop = getattr(ctx, "stop", None)
    if callable(stop):
        stop(reason)
    else:  # pragma: no cover - before the classifier-aware context exists
        ctx.note("stopped", reason)
    return False


def margin(
    scores: torch.Tensor, y: torch.Tensor, target: torch.Tensor | None, kind: str
) -> torch.Tensor:
    """The attacker's margin per row, to minimise; the goal is met once it is negative.

    Untargeted: ``z_y - max_{j != y} z_j``; targeted: ``max_{j != t} z_j - z_t``, with
    ``z`` the logits, or the log-probabilities when the model answers probabilities
    (the same margin when they come from a softmax).
    """
    z = scores.clamp_min(1e-30).log() if kind == "probabilities" else scores
    z = z.float() if z.dtype not in (torch.float32, torch.float64) else z
    c = y if target is None else target
    own = z.gather(1, c[:, None]).squeeze(1)
    other = z.scatter(1, c[:, None], float("-inf")).amax(1)
    return own - other if target is None else other - own


def rand_rows(
    gen: torch.Generator, n_full: int, idx: torch.Tensor, *shape: int, dtype: torch.dtype
) -> torch.Tensor:
    """Uniform [0, 1) draws for the full batch (``n_full`` rows), then the rows ``idx``:
    the random stream of an example does not depend on which others are still active."""
    u = torch.rand((n_full, *shape), generator=gen, device=idx.device, dtype=dtype)
    return u[idx]


def randint_rows(
    gen: torch.Generator, n_full: int, idx: torch.Tensor, high: int, *shape: int
) -> torch.Tensor:
    """Integers in [0, high) drawn for the full batch, then the rows ``idx``."""
    r = torch.randint(0, high, (n_full, *shape), generator=gen, device=idx.device)
    return r[idx]
