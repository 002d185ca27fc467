"""Built-in sample: a procedural sharp scene, a bundled camera-shake PSF and their blur.

Nothing is downloaded: the scene is generated from a seed and the kernel ships with the package
(``data/motion_kernel_15.txt``). Values are floats in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources

import numpy as np

from ..engine.physics import convolve_same


def motion_kernel() -> np.ndarray:
    """The bundled 15x15 camera-shake PSF (float64, unit sum)."""
    text = resources.files("napari_selfdeblur").joinpath("data/motion_kernel_15.txt").read_text()
    k = np.loadtxt(text.splitlines())
    return k / k.sum()


def sharp_scene(
    shape: tuple[int, int] = (128, 128), seed: int = 0, fine_detail: bool = False
) -> np.ndarray:
    """A piecewise-constant test scene of rectangles and discs, in [0.05, 0.95].

    ``fine_detail`` adds one-pixel lines and a bar target: a harder case, since SelfDeblur is
    known to fail more often on images rich in high frequencies.
    """
    rng = np.random.default_rng(seed)
    h, w = shape
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    img = 0.35 + 0.15 * (xx / w) - 0.1 * (yy / h)
    scale = min(h, w)
    for _ in range(8):  # rectangles
        y0, x0 = rng.integers(0, h - scale // 8), rng.integers(0, w - scale // 8)
        ry, rx = rng.integers(scale // 10, scale // 2, size=2)
        img[y0 : y0 + ry, x0 : x0 + rx] = rng.uniform(0.1, 0.9)
    for _ in range(4):  # discs
        cy, cx, r = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(scale / 16, scale / 5)
        img[np.hypot(yy - cy, xx - cx) < r] = rng.uniform(0.1, 0.9)
    if fine_detail:
        for _ in range(6):  # one-pixel lines at random angles
            cy, cx, theta = rng.uniform(0, h), rng.uniform(0, w), rng.uniform(0, np.pi)
            dist = np.abs((yy - cy) * np.cos(theta) - (xx - cx) * np.sin(theta))
            along = np.abs((yy - cy) * np.sin(theta) + (xx - cx) * np.cos(theta))
            img[(dist < 0.8) & (along < scale / 4)] = rng.choice([0.05, 0.95])
        bars = (xx > 0.7 * w) & (yy < 0.25 * h)  # a bar target of period 4 px
        img[bars] = np.where((xx[bars].astype(int) // 2) % 2 == 0, 0.9, 0.1)
    return np.clip(img, 0.05, 0.95)


@dataclass(frozen=True)
class Sample:
    """A sharp image, its blurred observation and the PSF that links them."""

    sharp: np.ndarray
    blurry: np.ndarray
    kernel: np.ndarray
    noise_sigma: float


def blurred_sample(
    shape: tuple[int, int] = (128, 128), noise_sigma: float = 0.005, seed: int = 0
) -> Sample:
    """The sharp scene blurred by the bundled PSF plus Gaussian noise, clipped to [0, 1]."""
    sharp = sharp_scene(shape, seed)
    kernel = motion_kernel()
    rng = np.random.default_rng(seed + 1)
    blurry = convolve_same(sharp, kernel) + noise_sigma * rng.standard_normal(shape)
    return Sample(sharp, np.clip(blurry, 0, 1), kernel, noise_sigma)
