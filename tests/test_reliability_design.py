"""benchmarks/reliability_design.py: its repeated last pass is exactly quick's last pass."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import reliability_design


def test_the_repeated_last_pass_reproduces_quick_on_an_image_not_in_0_1(asymmetric_kernel):
    from napari_selfdeblur.api import engine_input
    from napari_selfdeblur.engine.physics import convolve_same
    from napari_selfdeblur.evaluation.sample import sharp_scene
    from napari_selfdeblur.imaging.noise import estimate_noise_sigma
    from napari_selfdeblur.nonblind.base import estimated_kernel_factor

    sharp = sharp_scene((64, 64), seed=4)
    rng = np.random.default_rng(1)
    blurry = convolve_same(sharp, asymmetric_kernel) + 0.002 * rng.standard_normal(sharp.shape)
    y = (0.2 + 0.5 * np.clip(blurry, 0, 1)).astype(np.float32)  # deblur maps it to [0, 1]
    result, agreement, seconds = reliability_design._quick(y, 9)
    assert 0 <= agreement <= 1 and seconds > 0
    factor = estimated_kernel_factor(estimate_noise_sigma(engine_input(y)))
    again = reliability_design._last_pass(y, result.kernel, factor)
    np.testing.assert_allclose(again, result.latent, atol=1e-6)
    stronger = reliability_design._last_pass(y, result.kernel, 4 * factor)
    assert np.abs(stronger - result.latent).max() > 1e-3
