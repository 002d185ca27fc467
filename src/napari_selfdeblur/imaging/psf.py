"""Parametric point-spread functions (numpy): Gaussian, disk (defocus), linear motion, shake.

Every PSF is float64, odd-sized, centred at (kh // 2, kw // 2) and sums to 1: the kernel
convention of :mod:`napari_selfdeblur.engine.physics`. Lengths are in pixels, angles in degrees
counter-clockwise from the +x (column) axis with y pointing down the rows, as napari displays
an image.
"""

from __future__ import annotations

import math
import warnings

import numpy as np

from ..errors import InvalidInputError


def _odd(n: float) -> int:
    n = max(1, math.ceil(n))
    return n if n % 2 else n + 1


def _check_positive(name: str, value: float) -> float:
    value = float(value)
    if not math.isfinite(value) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive number of pixels, got {value}")
    return value


def gaussian_psf(sigma: float, size: int | None = None) -> np.ndarray:
    """Isotropic Gaussian of standard deviation ``sigma`` px; size defaults to 6 sigma + 1."""
    sigma = _check_positive("sigma", sigma)
    n = _odd(size if size is not None else 6 * sigma + 1)
    r = np.arange(n) - n // 2
    g = np.exp(-0.5 * (r / sigma) ** 2)
    k = np.outer(g, g)
    return k / k.sum()


def disk_psf(radius: float, supersample: int = 8) -> np.ndarray:
    """Uniform disk (out-of-focus blur) of ``radius`` px, with anti-aliased edges."""
    radius = _check_positive("radius", radius)
    n = _odd(2 * radius + 1)
    s = supersample
    fine = (np.arange(n * s) + 0.5) / s - n / 2
    yy, xx = np.meshgrid(fine, fine, indexing="ij")
    inside = (yy**2 + xx**2 <= radius**2).astype(np.float64)
    k = inside.reshape(n, s, n, s).mean(axis=(1, 3))
    if k.sum() == 0:  # radius below half a pixel: a point
        k[n // 2, n // 2] = 1.0
    return k / k.sum()


def motion_psf(length: float, angle: float = 0.0, samples_per_px: int = 8) -> np.ndarray:
    """Straight linear motion of ``length`` px at ``angle`` degrees, centred, anti-aliased."""
    length = _check_positive("length", length)
    theta = math.radians(float(angle))
    dx, dy = math.cos(theta), -math.sin(theta)  # rows grow downwards
    n = _odd(length * max(abs(dx), abs(dy)) + 2)
    t = np.linspace(-length / 2, length / 2, max(2, int(length * samples_per_px)))
    c = n // 2
    return rasterize_path(np.stack([c + t * dy, c + t * dx], axis=1), n)


def rasterize_path(points: np.ndarray, size: int, weights: np.ndarray | None = None) -> np.ndarray:
    """A size x size PSF from points (y, x) in pixels along a path, splatted bilinearly, each
    with its weight (the time the camera spent there; default: the same for every point).

    Points outside the square are dropped; the result sums to 1.
    """
    points = np.asarray(points, dtype=np.float64)
    weights = np.ones(len(points)) if weights is None else np.asarray(weights, dtype=np.float64)
    k = np.zeros((size, size))
    for (y, x), wp in zip(points, weights, strict=True):
        iy, ix = math.floor(y), math.floor(x)
        fy, fx = y - iy, x - ix
        for oy, ox, w in (
            (0, 0, (1 - fy) * (1 - fx)),
            (1, 0, fy * (1 - fx)),
            (0, 1, (1 - fy) * fx),
            (1, 1, fy * fx),
        ):
            if 0 <= iy + oy < size and 0 <= ix + ox < size:
                k[iy + oy, ix + ox] += w * wp
    if k.sum() <= 0:
        raise InvalidInputError("the path lies outside the kernel")
    return k / k.sum()


def shake_psf(size: int, seed: int = 0, steps: int = 400, tail: float = 0.5) -> np.ndarray:
    """A random camera-shake-like PSF: a smoothed random walk scaled to fill size x size.

    ``tail`` is the fraction of the energy in the second half of the walk's steps: 0.5 (the
    default) spends the same time on every step; less leaves a faint tail, as when the camera
    speeds up at the end of the exposure.
    """
    if not 0 < tail < 1:
        raise InvalidInputError(f"tail must be between 0 and 1, got {tail}")
    rng = np.random.default_rng(seed)
    pos, vel = np.zeros(2), rng.normal(size=2)
    pts = []
    for _ in range(steps):
        vel = 0.9 * vel + 0.35 * rng.normal(size=2)
        pos = pos + 0.1 * vel
        pts.append(pos.copy())
    pts = np.array(pts)
    pts -= pts.mean(0)
    pts *= (size // 2 - 1) / max(float(np.abs(pts).max()), 1e-9)
    weights = None if tail == 0.5 else np.where(np.arange(steps) < steps // 2, 1 - tail, tail)
    return rasterize_path(pts + size // 2, size, weights)


def prepare_kernel(kernel: np.ndarray, name: str = "kernel") -> np.ndarray:
    """Check one PSF and return it float64, odd-sized and with unit sum.

    Small negative lobes (at most 5 % of the total mass, as estimated kernels can have) are
    clipped with a warning; an even-sized kernel gets a zero row/column at the bottom/right so
    its centre stays at (kh // 2, kw // 2).
    """
    k = np.asarray(kernel)
    if k.size == 0:
        raise InvalidInputError(f"{name} is empty (shape {k.shape})")
    if k.ndim != 2:
        raise InvalidInputError(f"{name} must be 2-D, got shape {k.shape}")
    real = np.issubdtype(k.dtype, np.integer) or np.issubdtype(k.dtype, np.floating)
    if not (real or k.dtype == np.bool_):  # a boolean kernel is a uniform PSF on its support
        raise InvalidInputError(f"{name} has dtype {k.dtype}; a real-valued kernel is needed")
    k = k.astype(np.float64)
    if not np.isfinite(k).all():
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    positive = k.clip(min=0).sum()
    negative = -k.clip(max=0).sum()
    if positive <= 0 or k.sum() <= 0:
        raise InvalidInputError(f"{name} sums to {k.sum():g}; a PSF must have a positive sum")
    if negative > 0:
        if negative > 0.05 * positive:
            raise InvalidInputError(
                f"{name} has large negative values ({negative / positive:.0%} of its positive "
                "mass); a PSF must be non-negative"
            )
        warnings.warn(f"{name}: clipped small negative values to 0", stacklevel=3)
        k = k.clip(min=0)
    k = np.pad(k, ((0, 1 - k.shape[0] % 2), (0, 1 - k.shape[1] % 2)))
    return k / k.sum()


def prepare_kernels(kernel: np.ndarray, stack_shape: tuple[int, ...]) -> list[np.ndarray]:
    """One checked PSF (a 2-D kernel) or one per plane (shape ``(*stack_shape, kh, kw)``)."""
    kern = np.asarray(kernel)
    if kern.ndim == 2:
        return [prepare_kernel(kern)]
    if kern.ndim >= 3 and tuple(kern.shape[:-2]) == tuple(stack_shape):
        flat = kern.reshape((-1, *kern.shape[-2:]))
        return [prepare_kernel(k, f"kernel of plane {i}") for i, k in enumerate(flat)]
    raise InvalidInputError(
        f"kernel shape {kern.shape} does not fit an image with stack shape {tuple(stack_shape)}: "
        f"give one 2-D kernel or one per plane, shape {(*stack_shape, 'kh', 'kw')}"
    )


PSF_SHAPES = {"gaussian": gaussian_psf, "disk": disk_psf, "motion": motion_psf}


def kernel_similarity(estimate: np.ndarray, truth: np.ndarray) -> float:
    """Largest normalised cross-correlation of two kernels over all integer shifts, in [0, 1].

    The correlation is not mean-subtracted (kernels are non-negative and zero outside their
    support), so kernels of different sizes compare directly; 1 means equal up to a translation,
    which blind deconvolution cannot determine. Orientation matters: pass both as PSFs.
    """
    a = np.asarray(estimate, np.float64)
    b = np.asarray(truth, np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        return 0.0
    shape = (a.shape[0] + b.shape[0] - 1, a.shape[1] + b.shape[1] - 1)
    corr = np.fft.irfft2(
        np.fft.rfft2(a, shape) * np.conj(np.fft.rfft2(b, shape)), shape
    )  # circular correlation on a grid large enough to hold every shift without overlap
    return float(corr.max() / (na * nb))
