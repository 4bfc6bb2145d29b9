"""Helpers shared by the query-only attacks (Square, HopSkipJump): what the model
answers, the query budget, and random draws that do not depend on which rows are active.

Query-only attacks ask the model only through ``ctx.forward(x, batch.origin[rows])``, so
that every row asked about is counted for its example. Before each call they ask
:func:`budget_allows`: when the classifier's query budget cannot answer the call, the
attack stops cleanly (``ctx.stop``) and returns the best it has found so far.
"""

from __future__ import annotations

import torch

from xrobust.attacks.context import AttackContext

__all__ = ["RowStreams", "budget_allows", "margin", "output_kind"]


def output_kind(ctx: AttackContext) -> str:
    """What the model's scores are: "logits", "probabilities" or "labels" (one-hot)."""
    return ctx.output_kind


def budget_allows(ctx: AttackContext, n: int, attack: str) -> bool:
    """Whether a call asking about ``n`` rows fits the classifier's query budget; when
    it does not, the run is marked partial (``ctx.budget_stop``) and False is returned,
    so that the attack returns its best so far instead of asking."""
    if ctx.can_query(n):
        return True
    ctx.budget_stop(n)
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


def _i64(c: int) -> int:
    return c - (1 << 64) if c >= 1 << 63 else c


_GOLDEN, _M1, _M2 = _i64(0x9E3779B97F4A7C15), _i64(0xBF58476D1CE4E5B9), _i64(0x94D049BB133111EB)


def _shr(z: torch.Tensor, s: int) -> torch.Tensor:
    """Logical right shift of int64 values."""
    return (z >> s) & ((1 << (64 - s)) - 1)


def _mix(z: torch.Tensor) -> torch.Tensor:
    """The splitmix64 finaliser (int64 arithmetic wraps around)."""
    z = (z ^ _shr(z, 30)) * _M1
    z = (z ^ _shr(z, 27)) * _M2
    return z ^ _shr(z, 31)


class RowStreams:
    """Random numbers keyed by (run seed, example, step, position): an example draws
    the same numbers whichever other examples share its batch, how many there are, and
    which are still active (counter-based, in the manner of splitmix64), so that
    evaluation mode and the fixed budget follow the same path per example, and a batch
    cut short by ``run_loader`` draws what the longer one would have.

    Args:
        generator: the run's generator; one number is drawn from it as the seed.
    """

    def __init__(self, generator: torch.Generator) -> None:
        dev = generator.device
        self.seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=dev).item())

    def uniform(self, rows: torch.Tensor, step: int, n: int, dtype: torch.dtype) -> torch.Tensor:
        """(len(rows), n) uniform numbers in [0, 1) for examples ``rows`` at ``step``."""
        key = _mix((rows.long() * _GOLDEN + _i64((step * 0x632BE59BD9B4E019) % (1 << 64))) ^ self.seed)
        j = torch.arange(1, n + 1, device=rows.device, dtype=torch.long)
        z = _mix(key[:, None] + j[None] * _GOLDEN)
        return (_shr(z, 11).to(torch.float64) * 2.0**-53).to(dtype)

    def signs(self, rows: torch.Tensor, step: int, n: int, dtype: torch.dtype) -> torch.Tensor:
        """(len(rows), n) values in {-1, 1}."""
        return torch.where(self.uniform(rows, step, n, torch.float64) < 0.5, -1.0, 1.0).to(dtype)

    def randint(self, rows: torch.Tensor, step: int, high: int) -> torch.Tensor:
        """(len(rows),) integers in [0, high)."""
        u = self.uniform(rows, step, 1, torch.float64)[:, 0]
        return (u * high).floor().long().clamp_max(high - 1)
