"""Forward model of blur and the kernel convention used throughout the package.

Convention: a kernel is the point-spread function (PSF). For an image ``x`` of shape (H, W) and a
kernel ``k`` of odd shape (kh, kw), centred at ``(kh // 2, kw // 2)``, the blurry image is

    y[i, j] = sum_{a, b} x[i - a + kh // 2, j - b + kw // 2] * k[a, b]

i.e. ``y = convolve(x, k)`` with 'same' alignment (scipy.ndimage.convolve semantics in the
interior). SelfDeblur's latent is larger than the observation, (H + kh - 1, W + kw - 1); blurring
it with a 'valid' convolution gives an (H, W) image, and the latent's window at offset
``(kh // 2, kw // 2)`` is aligned with the observation.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from ..errors import InvalidInputError

if TYPE_CHECKING:
    import torch


def parse_kernel_size(value: int | str | tuple[int, int] | list[int]) -> tuple[int, int]:
    """Parse ``31``, ``"31"``, ``"31x25"`` (height x width) or ``(31, 25)``; odd sizes > 0."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(-?[0-9]+)\s*(?:[xX,]\s*(-?[0-9]+)\s*)?", value, flags=re.ASCII)
        if not m:
            raise InvalidInputError(
                f"kernel size {value!r} is not of the form 31 or 31x25 (height x width)"
            )
        kh = int(m.group(1))
        kw = int(m.group(2)) if m.group(2) is not None else kh
    elif isinstance(value, (int, np.integer)):
        kh = kw = int(value)
    else:
        try:
            kh, kw = (int(v) for v in value)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"kernel size {value!r} must be an int or a (height, width) pair"
            ) from None
    if kh <= 0 or kw <= 0:
        raise InvalidInputError(f"kernel size must be positive, got {kh}x{kw}")
    if kh % 2 == 0 or kw % 2 == 0:
        raise InvalidInputError(
            f"kernel size must be odd so that the kernel has a centre pixel, got {kh}x{kw}"
        )
    return kh, kw


def latent_shape(image_shape: tuple[int, int], kernel_shape: tuple[int, int]) -> tuple[int, int]:
    """Shape of the padded latent whose 'valid' blur has ``image_shape``."""
    return image_shape[0] + kernel_shape[0] - 1, image_shape[1] + kernel_shape[1] - 1


def crop_latent(latent, kernel_shape: tuple[int, int], image_shape: tuple[int, int], shift=(0, 0)):
    """Cut the window aligned with the observation out of a padded latent (last two axes).

    ``shift`` (dy, dx) is the translation by which the kernel was moved off centre; the window
    moves the other way so that the pair still explains the observation.
    """
    oy, ox = kernel_shape[0] // 2 - shift[0], kernel_shape[1] // 2 - shift[1]
    return latent[..., oy : oy + image_shape[0], ox : ox + image_shape[1]]


def blur_valid(latent: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """'Valid' convolution of a batch of latents (N, C, H', W') with one PSF (kh, kw).

    torch's conv2d is a cross-correlation, so the PSF is flipped on the way in. Every channel is
    blurred by the same kernel.
    """
    import torch.nn.functional as F

    c = latent.shape[1]
    weight = kernel.flip(-2, -1).reshape(1, 1, *kernel.shape[-2:]).expand(c, 1, -1, -1)
    return F.conv2d(latent, weight, groups=c)


def blur_valid_fft(latent: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """:func:`blur_valid` computed with FFTs (the same values up to float rounding).

    The latent is zero-padded to a fast FFT size; the 'valid' window of the circular convolution
    never reaches the padding or wraps around, so it equals the linear convolution there. Its
    cost hardly depends on the kernel size, where direct convolution grows with kh * kw.
    """
    import torch

    from ..imaging.fourier import next_fast_len

    kh, kw = kernel.shape[-2:]
    hp, wp = latent.shape[-2:]
    shape = (next_fast_len(hp), next_fast_len(wp))
    spectrum = torch.fft.rfft2(latent, s=shape) * torch.fft.rfft2(kernel, s=shape)
    full = torch.fft.irfft2(spectrum, s=shape)
    return full[..., kh - 1 : hp, kw - 1 : wp]


def select_blur(name: str):
    """The 'valid' blur implementation a config names: ``"fft"`` or ``"direct"``."""
    return {"fft": blur_valid_fft, "direct": blur_valid}[name]


def convolve_same(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Blur a 2-D image with a PSF ('same' size, reflected borders) in numpy.

    Matches :func:`blur_valid` applied to the reflect-padded image. Used to make synthetic data
    and to check the convention; the engine itself runs on torch.
    """
    image = np.asarray(image, dtype=np.float64)
    kernel = np.asarray(kernel, dtype=np.float64)
    kh, kw = kernel.shape
    padded = np.pad(image, ((kh // 2, kh // 2), (kw // 2, kw // 2)), mode="reflect")
    h, w = image.shape
    out = np.zeros((h, w))
    for a in range(kh):
        for b in range(kw):
            # y[i, j] += k[a, b] * x[i - a + kh//2, j - b + kw//2]; padded index = that + kh//2
            out += kernel[a, b] * padded[kh - 1 - a : kh - 1 - a + h, kw - 1 - b : kw - 1 - b + w]
    return out


def centroid_offset(kernel: np.ndarray) -> tuple[int, int]:
    """Integer offset (dy, dx) of a kernel's centre of mass from its centre pixel."""
    k = np.clip(np.asarray(kernel, dtype=np.float64), 0, None)
    total = k.sum()
    if total <= 0:
        return 0, 0
    ys, xs = np.indices(k.shape)
    cy, cx = (ys * k).sum() / total, (xs * k).sum() / total
    return round(cy - k.shape[0] // 2), round(cx - k.shape[1] // 2)


def shift_kernel(kernel: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """Translate a kernel by (dy, dx) pixels, filling with zeros; mass pushed out is dropped."""
    out = np.zeros_like(kernel)
    h, w = kernel.shape
    src = kernel[max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
    out[max(0, dy) : max(0, dy) + src.shape[0], max(0, dx) : max(0, dx) + src.shape[1]] = src
    return out


def resample(a: np.ndarray, shape: tuple[int, int], *, kernel: bool = False) -> np.ndarray:
    """Bilinear resampling of a 2-D array to ``shape`` (antialiased when shrinking).

    ``kernel=True`` maps the corner pixels onto each other (so centre stays on centre for odd
    sizes), clips negatives and renormalises to unit sum.
    """
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    if kernel:
        out = F.interpolate(t, size=shape, mode="bilinear", align_corners=True)[0, 0].clamp_min(0)
        return (out / out.sum()).numpy()
    shrink = shape[0] < a.shape[0] or shape[1] < a.shape[1]
    return F.interpolate(t, size=shape, mode="bilinear", align_corners=False, antialias=shrink)[
        0, 0
    ].numpy()


def gaussian_kernel(kernel_shape: tuple[int, int], sigma: float) -> torch.Tensor:
    """A centred isotropic Gaussian PSF of ``kernel_shape`` (unit sum, float32, on the CPU)."""
    import torch

    kh, kw = kernel_shape
    yy = torch.arange(kh, dtype=torch.float32) - kh // 2
    xx = torch.arange(kw, dtype=torch.float32) - kw // 2
    g = torch.exp(-0.5 * (yy[:, None] ** 2 + xx[None, :] ** 2) / sigma**2)
    return g / g.sum()
