"""Richardson-Lucy deconvolution for Poisson noise, optionally with total variation (Dey et al.,
2006).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..imaging.noise import SIGMA_FLOOR
from .base import Method, Param, StepHook, no_hook, per_plane

if TYPE_CHECKING:
    import torch


def richardson_lucy(
    planes: torch.Tensor,
    psf: torch.Tensor,
    iterations: int,
    *,
    tv_weight: float | torch.Tensor = 0.0,
    step: StepHook = no_hook,
) -> torch.Tensor:
    """Richardson-Lucy deconvolution of non-negative (N, H, W) planes, with optional TV.

    Multiplicative updates x <- x / (A^T 1 - tv div(grad x / |grad x|)) * A^T (y / A x) on the
    'valid' model (:class:`ValidBlur`); dividing by A^T 1 (Bertero & Boccacci) accounts for the
    latent pixels outside the image that contribute to it, so the borders do not ring.
    """
    import torch

    from ..imaging.fourier import ValidBlur

    h, w = planes.shape[-2:]
    op = ValidBlur(psf, (h, w))
    y = planes.clamp_min(0)
    tiny = 1e-12
    x = op.extend(y).clamp_min(1e-6)
    norm = op.adjoint(torch.ones_like(y))
    # Latent pixels that no observed pixel sees (where the PSF has zero rows/columns at its
    # edge) have A^T 1 = 0; they carry no information and are left as they start.
    seen = norm > 1e-6 * norm.amax(dim=(-2, -1), keepdim=True)
    norm = torch.where(seen, norm, torch.ones_like(norm))
    tv_weight = torch.as_tensor(tv_weight, dtype=planes.dtype, device=planes.device)
    use_tv = bool((tv_weight > 0).any())
    for i in range(iterations):
        ratio = y / op(x).clamp_min(tiny)
        denom = norm
        if use_tv:
            denom = (norm - tv_weight * _tv_divergence(x)).clamp_min(1e-3 * norm)
        update = op.adjoint(ratio).clamp_min(0) / denom
        x = torch.where(seen, x * update, x)
        if step(i + 1, iterations):
            break
    return op.crop(x)


def _tv_divergence(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """div(grad x / |grad x|) with forward differences and their adjoint (replicated borders)."""
    import torch
    import torch.nn.functional as F

    gx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
    gy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    mag = torch.sqrt(gx**2 + gy**2 + eps**2)
    nx, ny = gx / mag, gy / mag
    div_x = nx - F.pad(nx[..., :, :-1], (1, 0))
    div_y = ny - F.pad(ny[..., :-1, :], (0, 0, 1, 0))
    return div_x + div_y


def _run(planes, psf, strengths, params, step, device):
    tv = per_plane(strengths, planes)
    return richardson_lucy(planes, psf, params["iterations"], tv_weight=tv, step=step)


METHOD = Method(
    name="richardson-lucy",
    label="Richardson-Lucy (+TV)",
    help="Multiplicative maximum-likelihood updates for Poisson noise, with an optional "
    "total-variation term (Dey et al. 2006); non-negative output.",
    params=(
        Param(
            "strength",
            float,
            None,
            0.0,
            1.0,
            "total-variation weight; 0 is plain RL (default: from the noise)",
        ),
        Param("iterations", int, 30, 1, 10000, "RL iterations; more is sharper, noisier"),
    ),
    strength_rule=lambda sigma: min(0.05, 2.0 * max(sigma, SIGMA_FLOOR)),
    run=_run,
)
