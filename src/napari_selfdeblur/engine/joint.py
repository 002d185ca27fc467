"""A joint refinement of an image and its kernel at full resolution, without networks.

Starting from a kernel estimate and a non-blind result, the image (extended by half a kernel
beyond the observed window, as the 'valid' blur model needs) and the kernel are refined together
by projected Adam on

    |valid(k * x) - y|^2 + weight * sum over pixels of (|dx x|^2 + eps^2)^(alpha / 2)
                                                    + (|dy x|^2 + eps^2)^(alpha / 2),

with k kept non-negative and of unit sum after every step. It is the classical counterpart of
what SelfDeblur does after a MAP start (a joint fit of image and kernel), with a smoothed
hyper-Laplacian prior in place of the U-Net; started from a good estimate and with a small kernel
step, it refines the kernel without falling to the no-blur solution. Intensities are in [0, 1].

No preset runs it (``DeblurConfig.joint_iterations`` is 0): on the design photographs it gained
when the kernel window was the blur's exact support, and lost when the window was 2 px larger,
because the kernel then grows a faint halo into the empty margin (docs/benchmarks.md, round 10).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .physics import blur_valid_fft

#: Adam step sizes of the image (intensity units) and of the kernel (PSF values, which sum to
#: 1), the prior's exponent and smoothing, chosen on the design photographs
#: (``benchmarks/joint_design.py``; docs/benchmarks.md, round 10).
JOINT_LR_IMAGE = 1e-3
JOINT_LR_KERNEL = 5e-6
JOINT_ALPHA = 0.8
JOINT_EPSILON = 0.01


@dataclass(frozen=True)
class JointResult:
    """The refined PSF (float32, the start's shape) and the objective before the first step and
    after the last (equal when the run was stopped before any step).
    """

    kernel: np.ndarray
    objective: tuple[float, float]


def joint_refine(
    y: np.ndarray,
    latent: np.ndarray,
    kernel: np.ndarray,
    *,
    weight: float,
    iterations: int,
    device: torch.device,
    should_stop: Callable[[], bool] | None = None,
    lr_image: float = JOINT_LR_IMAGE,
    lr_kernel: float = JOINT_LR_KERNEL,
) -> JointResult:
    """Refine ``kernel`` jointly with ``latent`` for ``iterations`` steps; see the module.

    ``y`` and ``latent`` are (H, W) on the same grid, ``kernel`` (kh, kw) a PSF (not modified);
    ``weight`` is the prior's weight against the summed squared residual. Deterministic for a
    given device and thread count. ``should_stop`` is polled every 50 steps; a stopped run
    returns ``kernel`` unchanged. ``lr_image`` and ``lr_kernel`` are the Adam step sizes.
    """
    kh, kw = kernel.shape
    start = np.asarray(kernel, np.float32)
    yt = torch.from_numpy(np.asarray(y, np.float32)).to(device)
    x0 = torch.from_numpy(np.asarray(latent, np.float32)).to(device)[None, None]
    x = F.pad(x0, (kw // 2, kw // 2, kh // 2, kh // 2), mode="replicate").requires_grad_(True)
    k = torch.tensor(start, device=device, requires_grad=True)  # a copy: the caller's stays
    opt = torch.optim.Adam([{"params": [x], "lr": lr_image}, {"params": [k], "lr": lr_kernel}])
    with torch.no_grad():
        first = float(joint_objective(x, k, yt, weight))
    unchanged = JointResult(start.copy(), (first, first))
    for step in range(iterations):
        if should_stop is not None and step % 50 == 0 and should_stop():
            return unchanged
        loss = joint_objective(x, k, yt, weight)
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            k.clamp_(min=0)
            total = float(k.sum())
            if not np.isfinite(total) or total <= 0:  # nothing left of the kernel: keep the start
                return unchanged
            k /= total
    with torch.no_grad():
        last = float(joint_objective(x, k, yt, weight))
    return JointResult(k.detach().cpu().numpy().astype(np.float32), (first, last))


def joint_objective(x: torch.Tensor, k: torch.Tensor, y: torch.Tensor, weight: float):
    """The module's objective for an extended image ``x`` (1, 1, H + kh - 1, W + kw - 1)."""
    residual = blur_valid_fft(x, k)[0, 0] - y
    eps2 = JOINT_EPSILON**2
    gx = x[..., :, 1:] - x[..., :, :-1]
    gy = x[..., 1:, :] - x[..., :-1, :]
    prior = ((gx**2 + eps2) ** (JOINT_ALPHA / 2)).sum() + (
        (gy**2 + eps2) ** (JOINT_ALPHA / 2)
    ).sum()
    return (residual**2).sum() + weight * prior
