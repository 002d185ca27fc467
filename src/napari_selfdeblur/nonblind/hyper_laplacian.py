"""Hyper-Laplacian prior by half-quadratic splitting (Krishnan & Fergus, NIPS 2009): the fast
default of non-blind refinement.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..imaging.noise import SIGMA_FLOOR
from .base import Method, Param, StepHook, no_hook, per_plane, strength_param

if TYPE_CHECKING:
    import torch


def shrink_hyper_laplacian(v: torch.Tensor, beta: float, alpha: float) -> torch.Tensor:
    """Elementwise argmin_w |w|^alpha + beta/2 (w - v)^2 for 0 < alpha <= 1.

    For alpha = 1 this is soft thresholding. Otherwise the non-zero candidate is the largest root
    of alpha w^(alpha-1) + beta (w - |v|) = 0, found by Newton's method from w = |v| (the
    derivative is convex and increasing there, so the iteration descends monotonically onto the
    root); it is kept where its energy is below that of w = 0.
    """
    import torch

    a = v.abs()
    if alpha >= 1.0:
        return torch.sign(v) * (a - 1.0 / beta).clamp_min(0)
    w_min = (alpha * (1 - alpha) / beta) ** (1 / (2 - alpha))  # inflection of the energy
    w = a.clamp_min(w_min)
    for _ in range(12):
        g = alpha * w.pow(alpha - 1) + beta * (w - a)
        h = alpha * (alpha - 1) * w.pow(alpha - 2) + beta
        w = (w - g / h).clamp(min=w_min).minimum(a.clamp_min(w_min))
    energy = w.pow(alpha) + 0.5 * beta * (w - a) ** 2
    keep = (energy < 0.5 * beta * a**2) & (a > w_min)
    return torch.where(keep, torch.sign(v) * w, torch.zeros_like(v))


def hyper_laplacian(
    planes: torch.Tensor,
    psf: torch.Tensor,
    weight: float,
    *,
    alpha: float = 2 / 3,
    beta_start: float = 1.0,
    beta_max: float = 2.0**8,
    beta_rate: float = 2 * math.sqrt(2),
    cg_iterations: int = 8,
    step: StepHook = no_hook,
) -> torch.Tensor:
    """Deconvolve (N, H, W) planes under a hyper-Laplacian gradient prior.

    Minimises weight/2 |A x - y|^2 + sum |grad x|^alpha by half-quadratic splitting: auxiliary
    gradients w, a penalty beta/2 |grad x - w|^2 raised from ``beta_start`` to ``beta_max`` by
    ``beta_rate``, alternating the elementwise w-step (:func:`shrink_hyper_laplacian`) with the
    quadratic x-step. ``weight`` plays the role of 1/noise variance. A is the 'valid' blur
    (:class:`ValidBlur`), so the latent extends beyond the image and nothing wraps; the x-step
    is then solved by conjugate gradients preconditioned with its circulant (FFT) approximation,
    warm-started from the previous x (``cg_iterations`` per step).
    """
    import torch

    from ..imaging.fourier import ValidBlur, batched_cg, psf_to_otf

    h, w = planes.shape[-2:]
    op = ValidBlur(psf, (h, w))
    shape = op.latent_shape
    dx = psf_to_otf(psf.new_tensor([[0.0, -1.0, 1.0]]), shape)
    dy = psf_to_otf(psf.new_tensor([[0.0], [-1.0], [1.0]]), shape)
    grad_den = dx.abs() ** 2 + dy.abs() ** 2
    data_den = op.otf.abs() ** 2
    aty = op.adjoint(planes)

    def grad(x, d):
        return torch.fft.irfft2(torch.fft.rfft2(x) * d, s=shape)

    def grad_t(g, d):
        return torch.fft.irfft2(torch.fft.rfft2(g) * d.conj(), s=shape)

    betas = []
    beta = beta_start
    while beta <= beta_max * (1 + 1e-9):
        betas.append(beta)
        beta *= beta_rate
    x = op.extend(planes)
    for i, beta in enumerate(betas):
        wx = shrink_hyper_laplacian(grad(x, dx), beta, alpha)
        wy = shrink_hyper_laplacian(grad(x, dy), beta, alpha)
        r = weight / beta
        rhs = r * aty + grad_t(wx, dx) + grad_t(wy, dy)
        precond_den = r * data_den + grad_den

        def apply(v, r=r):
            fv = torch.fft.rfft2(v)
            return r * op.adjoint(op(v)) + torch.fft.irfft2(fv * grad_den, s=shape)

        def precondition(v, den=precond_den):
            return torch.fft.irfft2(torch.fft.rfft2(v) / den, s=shape)

        x = batched_cg(apply, rhs, x, cg_iterations, precondition=precondition)
        if step(i + 1, len(betas)):
            break
    return op.crop(x)


def _run(planes, psf, strengths, params, step, device):
    weight = 1.0 / per_plane(strengths, planes)
    return hyper_laplacian(planes, psf, weight, alpha=params["alpha"], step=step)


METHOD = Method(
    name="hyper-laplacian",
    label="Hyper-Laplacian (fast)",
    help="Krishnan & Fergus 2009: |gradient|^alpha prior, half-quadratic splitting. The fast "
    "default; sharp edges, little ringing.",
    params=(
        strength_param("prior weight; larger is smoother (default: from the noise)"),
        Param("alpha", float, 2 / 3, 0.3, 1.0, "prior exponent; smaller is sparser"),
    ),
    strength_rule=lambda sigma: 1.87 * max(sigma, SIGMA_FLOOR) ** 1.83,
    run=_run,
)
