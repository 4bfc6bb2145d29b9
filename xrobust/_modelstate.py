"""Temporarily change a model's train/eval mode, its parameters' ``requires_grad`` or its
device.

The one mechanism every layer uses to evaluate a caller's model without leaving a trace:
each submodule's own mode, each parameter's own flag and the model's device are restored
exactly afterwards, also when the body raises.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from xrobust.device import model_device

__all__ = [
    "eval_mode",
    "frozen_eval",
    "frozen_params",
    "on_device",
    "restore_mode_on_error",
]


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
def restore_mode_on_error(model: Any) -> Iterator[None]:
    """Leave the mode changes of the body in place, unless it raises: then every
    submodule's mode is put back as it was (training ends in eval mode; a failed or
    interrupted run leaves the caller's model as it found it)."""
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    try:
        yield
    except BaseException:
        for m, mode in modes:
            m.training = mode
        raise


@contextlib.contextmanager
def on_device(model: nn.Module, device: torch.device) -> Iterator[None]:
    """The model on ``device`` for the duration, moved back to where it was afterwards."""
    orig = model_device(model)
    model.to(device)
    try:
        yield
    finally:
        model.to(orig)


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
