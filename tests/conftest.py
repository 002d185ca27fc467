"""Shared fixtures: small synthetic problems that run in seconds on a 2-core CPU."""

from __future__ import annotations

import numpy as np
import pytest

from napari_selfdeblur.config import DeblurConfig, ImageNetConfig


@pytest.fixture
def tiny_config() -> DeblurConfig:
    """A 3-level, 16-channel U-Net run for 20 iterations: for plumbing, not for quality."""
    return DeblurConfig(
        iterations=20,
        lr_milestones=(10, 15),
        ssim_start=10,
        image_net=ImageNetConfig(
            channels_down=(16, 16, 16),
            channels_up=(16, 16, 16),
            channels_skip=(4, 4, 4),
            nonlocal_levels=(2,),
            nonlocal_inter_channels=8,
        ),
    )


@pytest.fixture
def asymmetric_kernel() -> np.ndarray:
    """A 7x7 hook-shaped PSF with no symmetry whose centre of mass is the centre pixel."""
    k = np.zeros((7, 7))
    k[3, 1:6] = 1.0  # horizontal stroke through the centre
    k[1:3, 5] = 1.0  # hook up on the right
    k[4, 2] = k[5, 3] = 1.0  # a tail down and to the right
    return k / k.sum()


@pytest.fixture
def scene() -> np.ndarray:
    from napari_selfdeblur.evaluation.sample import sharp_scene

    return sharp_scene((40, 40), seed=3, fine_detail=True)
