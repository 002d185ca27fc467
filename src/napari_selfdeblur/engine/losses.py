"""Loss terms: SSIM (Gaussian window) and total variation, for (N, C, H, W) tensors in [0, 1]."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def gaussian_window(size: int, sigma: float, *, device=None, dtype=None) -> torch.Tensor:
    """Normalised 1-D Gaussian of odd length ``size``."""
    r = torch.arange(size, device=device, dtype=dtype or torch.float32) - (size - 1) / 2
    w = torch.exp(-(r**2) / (2 * sigma**2))
    return w / w.sum()


def ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    window: int = 11,
    sigma: float = 1.5,
    data_range: float = 1.0,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """Mean SSIM of two (N, C, H, W) tensors, Gaussian window, 'valid' filtering (no padding)."""
    c = x.shape[1]
    g = gaussian_window(window, sigma, device=x.device, dtype=x.dtype)
    gy = g.view(1, 1, -1, 1).expand(c, 1, -1, 1)
    gx = g.view(1, 1, 1, -1).expand(c, 1, 1, -1)

    def filt(t: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.conv2d(t, gy, groups=c), gx, groups=c)

    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mx, my = filt(x), filt(y)
    sxx = filt(x * x) - mx * mx
    syy = filt(y * y) - my * my
    sxy = filt(x * y) - mx * my
    num = (2 * mx * my + c1) * (2 * sxy + c2)
    den = (mx * mx + my * my + c1) * (sxx + syy + c2)
    return (num / den).mean()


def total_variation(x: torch.Tensor) -> torch.Tensor:
    """Mean anisotropic total variation (sum of absolute finite differences per pixel)."""
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs().mean()
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs().mean()
    return dy + dx
