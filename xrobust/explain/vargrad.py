"""VarGrad: the variance of gradients (or integrated gradients) over noisy input copies.

Adebayo et al., "Local Explanation Methods for Deep Neural Networks Lack Sensitivity to
Parameter Values", arXiv:1810.03307. Any input shape (N, ...). Stochastic: pass ``seed``.
"""

from __future__ import annotations

from xrobust.explain._noise_tunnel import NoiseTunnelExplainer
from xrobust.explain.base import EXPLAINERS

__all__ = ["VarGrad"]


@EXPLAINERS.register("vargrad")
class VarGrad(NoiseTunnelExplainer):
    """Variance of the attribution over ``nt_samples`` noisy copies (Captum NoiseTunnel).

    Example:
        >>> import torch
        >>> from torch import nn
        >>> e = VarGrad(nn.Linear(3, 2), nt_samples=4).explain(torch.ones(1, 3), seed=0)
        >>> bool((e.attributions >= 0).all())
        True
    """

    name = "vargrad"
    nt_type = "vargrad"
