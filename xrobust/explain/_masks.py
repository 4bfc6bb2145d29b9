"""Feature masks and windows for perturbation methods: square patches for images (shared
across channels), one feature per column for tabular data."""

from __future__ import annotations

import torch

from xrobust.errors import ConfigError, DataError

__all__ = ["default_patch", "feature_mask", "occlusion_window", "superpixels"]


def default_patch(x: torch.Tensor) -> int:
    """Patch side giving about 7 x 7 patches over an image (4 for 28 x 28)."""
    return max(1, min(x.shape[-2:]) // 7)


def feature_mask(
    x: torch.Tensor, mask: torch.Tensor | str | None = None, patch: int | None = None
) -> torch.Tensor:
    """A feature mask of shape (1, *x.shape[1:]) with ids 0..M-1.

    Images (N, C, H, W): square ``patch`` x ``patch`` patches shared across channels
    ("patches", the default), or "superpixels" (one segmentation per image, about as many
    segments as patches; the mask then has the batch's first dimension). Tabular (N, F):
    one feature per column. Other shapes: one feature per scalar. A user tensor (shape of one input, or with a leading 1) is checked
    and used.
    """
    one = tuple(x.shape[1:])
    if isinstance(mask, torch.Tensor):
        m = mask.to(device=x.device)
        if tuple(m.shape) == one:
            m = m.unsqueeze(0)
        if tuple(m.shape[1:]) != one or m.shape[0] not in (1, x.shape[0]):
            raise DataError(
                f"feature_mask of shape {tuple(mask.shape)} does not fit inputs {one}; give one "
                "integer id per input element (shape of one input)"
            )
        if m.is_floating_point():
            raise DataError("feature_mask must hold integer feature ids")
        return m.long()
    if mask == "superpixels":
        if x.ndim != 4:
            raise ConfigError("feature_mask='superpixels' needs image batches (N, C, H, W)")
        side = patch or default_patch(x)
        return superpixels(x, n_segments=max(1, (x.shape[-2] // side) * (x.shape[-1] // side)))
    if mask not in (None, "patches", "features"):
        raise ConfigError(
            f"unknown feature_mask {mask!r}; expected 'patches', 'superpixels', 'features' "
            "or a tensor"
        )
    if x.ndim == 4 and mask != "features":
        c, h, w = one
        p = patch or default_patch(x)
        if p < 1:
            raise ConfigError(f"patch must be at least 1, got {p}")
        cols = (w + p - 1) // p
        rr = torch.arange(h, device=x.device) // p
        cc = torch.arange(w, device=x.device) // p
        ids = rr[:, None] * cols + cc[None, :]
        return ids.expand(1, c, h, w).clone()
    n = int(torch.tensor(one).prod()) if one else 1
    return torch.arange(n, device=x.device).view(1, *one)


def occlusion_window(
    x: torch.Tensor, window: int | tuple[int, ...] | None, stride: int | tuple[int, ...] | None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Sliding window and strides for Occlusion, over all non-batch dimensions.

    Images: a ``window`` x ``window`` square over all channels (default: the default patch),
    stride half the window. Tabular: one feature at a time.
    """
    one = tuple(x.shape[1:])
    if isinstance(window, tuple):
        win = window
    elif x.ndim == 4:
        p = window or default_patch(x)
        win = (one[0], p, p)
    else:
        win = tuple([window or 1] * len(one))
    if len(win) != len(one) or any(w < 1 or w > s for w, s in zip(win, one)):
        raise ConfigError(f"occlusion window {win} does not fit inputs {one}")
    if isinstance(stride, tuple):
        st = stride
    elif x.ndim == 4:
        s = stride or max(1, win[1] // 2)
        st = (one[0], s, s)
    else:
        st = tuple([stride or 1] * len(one))
    if len(st) != len(one) or any(s < 1 for s in st):
        raise ConfigError(f"occlusion strides {st} do not fit inputs {one}")
    return win, st


def superpixels(
    x: torch.Tensor, n_segments: int = 49, compactness: float = 0.3, iters: int = 8
) -> torch.Tensor:
    """SLIC-style superpixels: k-means on (row, column, intensity) from a regular grid of
    seeds, one segmentation per image, shared across channels.

    Achanta et al., "SLIC Superpixels Compared to State-of-the-Art Superpixel Methods"
    (TPAMI 2012), simplified: every pixel may join every centre (small images only need
    a few hundred centres at most). ``compactness`` weighs position against intensity
    (both scaled to [0, 1]).

    Returns:
        int64 mask (N, C, H, W) with ids 0..K-1 per image (K <= n_segments).

    Example:
        >>> import torch
        >>> x = torch.zeros(1, 1, 8, 8); x[..., 4:] = 1.0
        >>> m = superpixels(x, n_segments=4)
        >>> bool((m[..., :4] != m[..., 4:].unique()[:, None, None, None]).all())
        True
    """
    n, c, h, w = x.shape
    g = max(1, round(n_segments**0.5))
    gy, gx = max(1, min(h, g)), max(1, min(w, (n_segments + g - 1) // g))
    yy, xx = torch.meshgrid(
        torch.linspace(0, 1, h, device=x.device),
        torch.linspace(0, 1, w, device=x.device),
        indexing="ij",
    )
    lo = x.amin(dim=(1, 2, 3), keepdim=True)
    hi = x.amax(dim=(1, 2, 3), keepdim=True)
    inten = ((x - lo) / (hi - lo).clamp_min(1e-12)).float()  # (N, C, H, W)
    pos = torch.stack([yy, xx]).expand(n, 2, h, w) * compactness
    feats = torch.cat([pos, inten], 1).flatten(2)  # (N, 2 + C, P)
    cy = ((torch.arange(gy, device=x.device) + 0.5) * h / gy).long().clamp(max=h - 1)
    cx = ((torch.arange(gx, device=x.device) + 0.5) * w / gx).long().clamp(max=w - 1)
    seeds = (cy[:, None] * w + cx[None, :]).flatten()
    centres = feats[:, :, seeds]  # (N, 2 + C, K)
    for _ in range(iters):
        d = torch.cdist(feats.transpose(1, 2), centres.transpose(1, 2))  # (N, P, K)
        assign = d.argmin(2)  # (N, P)
        onehot = torch.nn.functional.one_hot(assign, centres.shape[2]).float()  # (N, P, K)
        counts = onehot.sum(1)  # (N, K)
        sums = feats @ onehot  # (N, 2 + C, K)
        keep = counts > 0
        centres = torch.where(keep[:, None, :], sums / counts.clamp_min(1)[:, None, :], centres)
    # relabel to contiguous ids per image
    out = torch.empty_like(assign)
    for i in range(n):
        _, out[i] = torch.unique(assign[i], return_inverse=True)
    return out.view(n, 1, h, w).expand(n, c, h, w).contiguous()
