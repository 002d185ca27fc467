"""Sample data for napari: blurred images with their sharp truth and kernel (hidden layers).

- ``blurred_sample_layers``: the built-in synthetic scene (no extra dependency);
- ``shaken_photo_layers``: a photograph (scikit-image's astronaut, grey) blurred by a random
  camera-shake kernel, with Gaussian noise;
- ``fluorescence_layers``: a nuclear stain blurred by a defocus (Gaussian) PSF, with
  Poisson-Gaussian noise. scikit-image bundles no fluorescence image that needs no download, so
  the stain is the hematoxylin channel of its immunohistochemistry image (nuclei bright on dark,
  as a nuclear fluorescence image), scaled to about 200 photons at the brightest;
- ``fluorescence_stack_layers``: 5 planes (128 x 128) of that stain, blurred the same way.

All use images that scikit-image installs (a napari dependency); nothing is downloaded. Each
returns napari layer tuples; the truth layers are hidden.
"""

from __future__ import annotations

from typing import Any

import numpy as np

LayerData = list[tuple[Any, dict[str, Any], str]]


def blurred_sample_layers() -> LayerData:
    """Layer tuples: blurry image, sharp ground truth (hidden) and the true PSF."""
    from ..evaluation.sample import blurred_sample

    s = blurred_sample((192, 192))
    return _layers("sample", s.sharp, s.blurry, s.kernel, {"noise_sigma": s.noise_sigma})


def _layers(name: str, sharp, blurry, kernel, meta: dict[str, Any]) -> LayerData:
    limits = (float(np.min(sharp)), float(np.max(sharp)))
    return [
        (
            np.asarray(sharp, np.float32),
            {"name": f"{name} sharp (truth)", "visible": False, "contrast_limits": limits},
            "image",
        ),
        (
            np.asarray(kernel, np.float32),
            {"name": f"{name} kernel (truth)", "visible": False, "colormap": "magma"},
            "image",
        ),
        (
            np.asarray(blurry, np.float32),
            {"name": f"{name} blurry", "contrast_limits": limits, "metadata": meta},
            "image",
        ),
    ]


def _blur(image: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    from ..engine.physics import convolve_same

    return convolve_same(image, kernel)


def shaken_photo_layers() -> LayerData:
    """A 256 x 256 grey photograph, camera shake of 19 px, noise sigma 0.01 (values in [0, 1])."""
    from skimage import data
    from skimage.color import rgb2gray

    from ..imaging.psf import shake_psf

    sharp = rgb2gray(data.astronaut())[40:296, 140:396]
    kernel = shake_psf(19, seed=4)
    rng = np.random.default_rng(0)
    blurry = np.clip(_blur(sharp, kernel) + rng.normal(0, 0.01, sharp.shape), 0, 1)
    return _layers("photo", sharp, blurry, kernel, {"noise_sigma": 0.01})


def _nuclei(shape: tuple[int, int], offset: tuple[int, int] = (0, 0)) -> np.ndarray:
    """A nuclear-stain-like image in expected photons (0 to about 200)."""
    from skimage import data
    from skimage.color import rgb2hed

    hema = rgb2hed(data.immunohistochemistry())[..., 0]
    y, x = 100 + offset[0], 100 + offset[1]
    crop = hema[y : y + shape[0], x : x + shape[1]]
    crop = (crop - crop.min()) / (crop.max() - crop.min())
    return 5.0 + 195.0 * crop**1.5  # dark background, bright nuclei


def _noisy(expected: np.ndarray, rng: np.random.Generator, read_noise: float = 2.0) -> np.ndarray:
    """Poisson photon noise plus Gaussian read noise (in photons)."""
    return rng.poisson(np.clip(expected, 0, None)) + rng.normal(0, read_noise, expected.shape)


def fluorescence_layers() -> LayerData:
    """A 256 x 256 nuclear stain, defocus PSF (Gaussian, sigma 2.5 px), Poisson-Gaussian noise."""
    from ..imaging.psf import gaussian_psf

    sharp = _nuclei((256, 256))
    kernel = gaussian_psf(2.5)
    blurry = _noisy(_blur(sharp, kernel), np.random.default_rng(1))
    return _layers("nuclei", sharp, blurry, kernel, {"noise": "Poisson + Gaussian (2 photons)"})


def fluorescence_stack_layers() -> LayerData:
    """5 planes of 128 x 128 (shifted views of the stain), each blurred by the defocus PSF."""
    from ..imaging.psf import gaussian_psf

    kernel = gaussian_psf(2.5)
    rng = np.random.default_rng(2)
    sharp = np.stack([_nuclei((128, 128), (12 * i, 20 * i)) for i in range(5)])
    blurry = np.stack([_noisy(_blur(p, kernel), rng) for p in sharp])
    return _layers("nuclei stack", sharp, blurry, kernel, {"noise": "Poisson + Gaussian"})
