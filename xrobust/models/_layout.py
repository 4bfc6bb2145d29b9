"""A channels_last copy of a convolutional module, for faster evaluation on the CPU.

On the CPU, oneDNN runs 2-D convolutions about twice as fast when the *weights* are in
the channels_last memory format (BENCHMARKS.md, "channels_last evaluation copy"); the
input's format alone changes nothing. The caller's module must never be converted in
place, so :class:`ChannelsLastCopy` keeps a private copy and hands it out through
:meth:`ChannelsLastCopy.get`, which first brings it in step with the original:

* every parameter and buffer is compared by value with the original's and copied over
  when it differs (weights changed by an optimiser step, ``load_state_dict`` or
  ``p.data`` tricks alike); comparing costs one read of the weights, far less than one
  forward pass of a batch;
* a changed structure (other submodules, forward hooks, parameter names, shapes or
  dtypes) makes a fresh copy.

The copy is always in eval mode with frozen parameters (what attacks and queries need).
It is used automatically (``channels_last=None``) only for modules built entirely from
``torch.nn`` layers and xrobust's own models, whose forward depends on nothing but their
tensors, and that contain a ``Conv2d``; the first use compares its output with the
original's on the batch at hand and falls back to the original for good if they differ
or the copy raises (a forward that calls ``.view`` on a feature map, for instance).
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import torch
from torch import nn

__all__ = ["ChannelsLastCopy", "auto_channels_last"]

log = logging.getLogger(__name__)

# module namespaces whose forward is determined by the module's tensors and constructor
# arguments (no user code); torch.nn.parallel (DataParallel, DDP) is deliberately absent
_KNOWN_PREFIXES = ("torch.nn.modules.", "xrobust.models.")

#: relative tolerance of the first-use check (different summation order only)
_RTOL = 1e-3


def auto_channels_last(module: nn.Module, device: torch.device) -> bool:
    """Whether the copy is used by default: a CPU module of known layers with a Conv2d."""
    if device.type != "cpu":
        return False
    has_conv = False
    for m in module.modules():
        if not type(m).__module__.startswith(_KNOWN_PREFIXES):
            return False
        if isinstance(m, nn.Conv2d):
            has_conv = True
    return has_conv


def _structure(module: nn.Module) -> tuple[Any, ...]:
    # hooks added or removed after the copy was made change what a forward computes
    mods = tuple(
        (name, type(m), tuple(m._forward_pre_hooks), tuple(m._forward_hooks))
        for name, m in module.named_modules()
    )
    tensors = tuple(
        (name, tuple(t.shape), t.dtype, t.device)
        for name, t in (*module.named_parameters(), *module.named_buffers())
    )
    return mods, tensors


class ChannelsLastCopy:
    """A private channels_last copy of ``module``, kept in step with it.

    Args:
        module: the caller's module (never changed).

    Example:
        >>> import torch
        >>> net = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.Flatten())
        >>> fast = ChannelsLastCopy(net)
        >>> x = torch.rand(4, 1, 5, 5)
        >>> torch.allclose(fast.get(x)(x), net(x), atol=1e-6)
        True
        >>> net[0].weight.is_contiguous(memory_format=torch.channels_last)
        False
    """

    def __init__(self, module: nn.Module) -> None:
        self.original = module
        self.copy: nn.Module | None = None
        self.disabled = False
        self.syncs = 0
        self._structure: tuple[Any, ...] | None = None
        self._checked = False

    def get(self, x: torch.Tensor | None = None) -> nn.Module:
        """The module to run: the in-step copy, or the original once the copy failed.

        ``x`` (a batch about to be evaluated) is used for the first-use check; without it
        the check waits for a call that gives one.
        """
        if self.disabled:
            return self.original
        try:
            self._sync()
            if not self._checked and x is not None:
                self._check(x)
        except Exception as exc:  # the copy cannot stand in: use the original for good
            log.debug("channels_last copy of %s disabled: %s", type(self.original).__name__, exc)
            self.disabled, self.copy = True, None
            return self.original
        return self.copy if self._checked else self.original

    # ------------------------------------------------------------------ internals
    def _sync(self) -> None:
        structure = _structure(self.original)
        if self.copy is None or structure != self._structure:
            self._make(structure)
            return
        with torch.no_grad():
            theirs = dict(self.original.named_parameters())
            theirs.update(self.original.named_buffers())
            for name, mine in (*self.copy.named_parameters(), *self.copy.named_buffers()):
                src = theirs[name]
                if not torch.equal(mine, src):
                    mine.copy_(src)
                    self.syncs += 1

    def _make(self, structure: tuple[Any, ...]) -> None:
        c = copy.deepcopy(self.original)
        c.eval()
        for p in c.parameters():
            p.requires_grad_(False)
        # ``to`` restrides every 4-D tensor, also a single-input-channel conv weight, for
        # which ``contiguous(memory_format=...)`` is a no-op (its strides are ambiguous and
        # the first layer would then run, and hand on its output, in NCHW)
        c.to(memory_format=torch.channels_last)
        self.copy, self._structure, self._checked = c, structure, False

    def _check(self, x: torch.Tensor) -> None:
        from xrobust._modelstate import frozen_eval

        assert self.copy is not None
        xs = x.detach()[:8]
        p = next((t for t in self.original.parameters() if t.is_floating_point()), None)
        if p is not None:  # as the attacks feed it (their fp64 work copies included)
            xs = xs.to(p.device, p.dtype)
        with torch.no_grad():
            with frozen_eval(self.original):
                want = self.original(xs)
            got = self.copy(xs)
        if not isinstance(want, torch.Tensor) or not isinstance(got, torch.Tensor):
            raise TypeError("the module does not return a tensor")
        scale = float(want.abs().max()) if want.numel() else 0.0
        if got.shape != want.shape or not torch.allclose(
            got, want, rtol=_RTOL, atol=_RTOL * max(scale, 1e-6)
        ):
            raise ValueError("the copy's output differs from the original's")
        self._checked = True
