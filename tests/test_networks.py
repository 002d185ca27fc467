import numpy as np
import pytest
import torch
import torch.nn.functional as F

from napari_selfdeblur.config import ImageNetConfig, KernelNetConfig, get_preset
from napari_selfdeblur.engine.networks import (
    ImageGenerator,
    KernelGenerator,
    NonLocalBlock,
    min_image_size,
    reflect_pad,
    reflect_pad_deterministic,
    upsample2x_bilinear,
    upsample2x_bilinear_deterministic,
)


def test_paper_image_generator_has_reference_structure():
    net = ImageGenerator(get_preset("paper").image_net)
    n_params = sum(p.numel() for p in net.parameters())
    assert 2.35e6 < n_params < 2.38e6  # reference: about 2.37 M
    n_nonlocal = sum(isinstance(m, NonLocalBlock) for m in net.modules())
    assert n_nonlocal == 3
    n_bn = sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules())
    assert n_bn > 20


@pytest.mark.parametrize("size", [(35, 35), (40, 47), (71, 64)])
def test_image_generator_output_shape_and_range(size):
    cfg = ImageNetConfig(
        channels_down=(8,) * 5,
        channels_up=(8,) * 5,
        channels_skip=(2,) * 5,
        nonlocal_inter_channels=4,
    )
    net = ImageGenerator(cfg)
    out = net(torch.rand(1, 8, *size) * 0.1)
    assert out.shape == (1, 1, *size)
    assert 0 < out.min() and out.max() < 1


def test_min_image_size_is_tight():
    cfg = ImageNetConfig(
        channels_down=(4,) * 5,
        channels_up=(4,) * 5,
        channels_skip=(2,) * 5,
        nonlocal_inter_channels=2,
    )
    n = min_image_size(cfg)
    net = ImageGenerator(cfg)
    assert net(torch.rand(1, 8, n, n)).shape[-1] == n
    with pytest.raises((RuntimeError, ValueError)):  # the deepest level collapses to 1 pixel
        net(torch.rand(1, 8, n - 1, n - 1))


def test_deterministic_building_blocks_match_torch():
    """The CUDA-path replacements compute exactly what the built-ins compute."""
    x = torch.randn(2, 3, 7, 10, requires_grad=True)
    for pad in (1, 2):
        expected = F.pad(x, (pad,) * 4, mode="reflect")
        torch.testing.assert_close(reflect_pad_deterministic(x, pad), expected)
        torch.testing.assert_close(reflect_pad(x, pad), expected)
    expected = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    got = upsample2x_bilinear_deterministic(x)
    torch.testing.assert_close(got, expected)
    torch.testing.assert_close(upsample2x_bilinear(x), expected)
    # Gradients agree too.
    (g1,) = torch.autograd.grad((got * expected.detach()).sum(), x)
    (g2,) = torch.autograd.grad((expected * expected.detach()).sum(), x)
    torch.testing.assert_close(g1, g2)


def test_kernel_generator_is_a_rectangular_distribution():
    net = KernelGenerator(KernelNetConfig(), (5, 9))
    k = net(torch.rand(200) * 0.1).detach()
    assert k.shape == (5, 9)
    assert float(k.min()) >= 0
    np.testing.assert_allclose(float(k.sum()), 1.0, rtol=1e-6)
    assert sum(p.numel() for p in net.parameters()) == 200 * 1000 + 1000 + 1000 * 45 + 45
