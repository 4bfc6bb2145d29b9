"""SmoothGrad: gradients (or integrated gradients) averaged over noisy copies of the input.

Smilkov et al., "SmoothGrad: removing noise by adding noise", arXiv:1706.03825. Any input
shape (N, ...). Stochastic: pass ``seed`` to ``explain`` for reproducible maps.
"""

from __future__ import annotations

from xrobust.explain._noise_tunnel import NoiseTunnelExplainer
from xrobust.explain.base import EXPLAINERS

__all__ = ["SmoothGrad"]


@EXPLAINERS.register("smoothgrad")
class SmoothGrad(NoiseTunnelExplainer):
    """Mean attribution over ``nt_samples`` Gaussian-noised copies (Captum NoiseTunnel).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> e = SmoothGrad(nn.Linear(3, 2), nt_samples=4).explain(torch.ones(1, 3), seed=0)
        >>> e.attributions.shape
        torch.Size([1, 3])
    """

    name = "smoothgrad"
    nt_type = "smoothgrad"
