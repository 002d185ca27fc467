"""Non-blind deconvolution with a known PSF (kernel convention: see :mod:`.physics`).

Planes are processed as a batch (N, H, W) of float tensors in [0, 1]. FFT-based methods work on a
padded, edge-tapered copy of each plane so that the circular model of the FFT does not wrap one
border into the other (no ringing at the image edges); the padding is cropped off afterwards.
"""

from __future__ import annotations

import numpy as np
import torch

from .errors import InvalidInputError


def check_kernel(kernel: np.ndarray, image_shape: tuple[int, int]) -> np.ndarray:
    """Validate a PSF for an image of ``image_shape`` and return it as float64 with unit sum."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim != 2:
        raise InvalidInputError(f"kernel must be 2-D, got shape {k.shape}")
    if not np.isfinite(k).all():
        raise InvalidInputError("kernel contains NaN or infinite values")
    if k.shape[0] > image_shape[0] or k.shape[1] > image_shape[1]:
        raise InvalidInputError(
            f"kernel {k.shape[0]}x{k.shape[1]} is larger than the image "
            f"{image_shape[0]}x{image_shape[1]}"
        )
    total = k.sum()
    if total <= 0:
        raise InvalidInputError(f"kernel sums to {total:g}; a PSF must have a positive sum")
    return k / total


def psf_to_otf(psf: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """FFT of a PSF zero-padded to ``shape`` with its centre moved to the origin (rfft2 layout)."""
    kh, kw = psf.shape
    big = psf.new_zeros(shape)
    big[:kh, :kw] = psf
    big = torch.roll(big, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
    return torch.fft.rfft2(big)


def pad_and_taper(planes: torch.Tensor, psf: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Reflect-pad (N, H, W) planes and taper the margin so the result is smooth when periodic.

    The margin blends from the reflected image (inside) to its circular blur by the PSF (at the
    outer edge), as MATLAB's ``edgetaper`` does, which matches the FFT's circular model there.
    Returns the padded planes and the margins (py, px) to crop afterwards.
    """
    kh, kw = psf.shape
    h, w = planes.shape[-2:]
    py, px = min(2 * kh, h - 1), min(2 * kw, w - 1)
    padded = torch.nn.functional.pad(planes[:, None], (px, px, py, py), mode="reflect")[:, 0]
    otf = psf_to_otf(psf, padded.shape[-2:])
    blurred = torch.fft.irfft2(torch.fft.rfft2(padded) * otf, s=padded.shape[-2:])

    def ramp(n: int, m: int) -> torch.Tensor:
        r = torch.ones(n, dtype=planes.dtype, device=planes.device)
        t = torch.linspace(0, 1, m + 2, dtype=planes.dtype, device=planes.device)[1:-1]
        t = 0.5 - 0.5 * torch.cos(torch.pi * t)  # smooth 0 -> 1
        r[:m], r[n - m :] = t, t.flip(0)
        return r

    alpha = ramp(padded.shape[-2], py)[:, None] * ramp(padded.shape[-1], px)[None, :]
    return alpha * padded + (1 - alpha) * blurred, py, px


def wiener(planes: torch.Tensor, psf: torch.Tensor, strength: float) -> torch.Tensor:
    """Tikhonov-regularised (gradient-penalty Wiener) deconvolution of (N, H, W) planes.

    Solves min_x |k * x - y|^2 + strength * |grad x|^2 in closed form in the Fourier domain.
    """
    h, w = planes.shape[-2:]
    padded, py, px = pad_and_taper(planes, psf)
    shape = padded.shape[-2:]
    otf = psf_to_otf(psf, shape)
    dx = psf_to_otf(psf.new_tensor([[0.0, -1.0, 1.0]]), shape)
    dy = psf_to_otf(psf.new_tensor([[0.0], [-1.0], [1.0]]), shape)
    denom = otf.abs() ** 2 + strength * (dx.abs() ** 2 + dy.abs() ** 2)
    est = torch.fft.irfft2(torch.fft.rfft2(padded) * otf.conj() / denom, s=shape)
    return est[:, py : py + h, px : px + w]


def default_wiener_strength(noise_sigma: float) -> float:
    """Gradient-penalty weight for :func:`wiener` from the noise level (sigma in [0, 1] units)."""
    return 2e-3 + 50.0 * noise_sigma**2
