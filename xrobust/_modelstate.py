"""Temporarily change a model's train/eval mode or its parameters' ``requires_grad``.

The one mechanism every layer uses to evaluate a caller's model without leaving a trace:
each submodule's own mode and each parameter's own flag are restored exactly afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from torch import nn

__all__ = ["eval_mode", "frozen_eval", "frozen_params"]


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """Eval mode for the duration; a callable that is not an ``nn.Module`` passes through."""
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


@contextlib.contextmanager
def frozen_params(model: nn.Module) -> Iterator[None]:
    """``requires_grad=False`` on every parameter, so no weight gradient is computed."""
    flags = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p, _ in flags:
            p.requires_grad_(False)
        yield
    finally:
        for p, flag in flags:
            p.requires_grad_(flag)


@contextlib.contextmanager
def frozen_eval(model: nn.Module) -> Iterator[None]:
    """Eval mode and frozen parameters together (what an attack needs)."""
    with eval_mode(model), frozen_params(model):
        yield
