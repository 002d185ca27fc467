"""Noise-level estimation for grey images.

Estimator: Immerkaer, "Fast noise variance estimation", CVIU 64(2), 1996. The image is filtered
with the difference of two Laplacians, [[1, -2, 1], [-2, 4, -2], [1, -2, 1]], which cancels
locally planar structure; for additive white Gaussian noise of standard deviation sigma,
sigma = sqrt(pi / 2) / (6 (H - 2) (W - 2)) * sum |filtered|.
"""

from __future__ import annotations

import math

import numpy as np

#: Noise levels below this ([0, 1] units) are raised to it when a regularisation strength is derived
#: from the noise, so that a noise-free synthetic image still gets a little regularisation.
SIGMA_FLOOR = 1e-3


def estimate_noise_sigma(image: np.ndarray) -> float:
    """Standard deviation of additive Gaussian noise in a 2-D image, in the image's units."""
    x = np.asarray(image, dtype=np.float64)
    if x.ndim != 2 or min(x.shape) < 3:
        raise ValueError(f"noise estimation needs a 2-D image of at least 3x3, got {x.shape}")
    f = (
        x[:-2, :-2]
        - 2 * x[:-2, 1:-1]
        + x[:-2, 2:]
        - 2 * x[1:-1, :-2]
        + 4 * x[1:-1, 1:-1]
        - 2 * x[1:-1, 2:]
        + x[2:, :-2]
        - 2 * x[2:, 1:-1]
        + x[2:, 2:]
    )
    h, w = x.shape
    return float(math.sqrt(math.pi / 2) * np.abs(f).sum() / (6 * (h - 2) * (w - 2)))


def wiener_strength(sigma: float) -> float:
    """Default gradient-penalty weight of :func:`wiener_filter` for noise ``sigma`` ([0, 1] units).

    A power law fitted by ``benchmarks/calibrate_nonblind.py`` on natural photographs blurred by
    random shake kernels (not the Levin set).
    """
    return 25.0 * max(sigma, SIGMA_FLOOR) ** 1.66
