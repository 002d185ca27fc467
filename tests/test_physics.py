import numpy as np
import pytest
import torch
from scipy import ndimage

from napari_selfdeblur.engine.physics import (
    blur_valid,
    centroid_offset,
    convolve_same,
    crop_latent,
    parse_kernel_size,
    shift_kernel,
)
from napari_selfdeblur.errors import InvalidInputError


def test_psf_convention_point_source(asymmetric_kernel):
    """A point source blurs into the kernel itself, not its mirror image (PSF convention)."""
    k = asymmetric_kernel
    x = np.zeros((21, 21))
    x[10, 10] = 1.0
    y = convolve_same(x, k)
    np.testing.assert_allclose(y[7:14, 7:14], k, atol=1e-12)
    # The torch forward model on the padded latent agrees with the numpy one.
    latent = torch.from_numpy(np.pad(x, 3))[None, None]
    y_t = blur_valid(latent, torch.from_numpy(k))[0, 0].numpy()
    np.testing.assert_allclose(y_t, y, atol=1e-12)


def test_forward_model_matches_scipy_convolve(asymmetric_kernel):
    rng = np.random.default_rng(0)
    x = rng.random((30, 25))
    expected = ndimage.convolve(x, asymmetric_kernel, mode="mirror")
    np.testing.assert_allclose(convolve_same(x, asymmetric_kernel), expected, atol=1e-12)
    # Mirrored (wrong) orientation would differ: the kernel is really asymmetric.
    wrong = ndimage.correlate(x, asymmetric_kernel, mode="mirror")
    assert np.abs(wrong - expected).max() > 0.05


def test_valid_blur_of_padded_latent_is_aligned_with_observation(asymmetric_kernel):
    rng = np.random.default_rng(1)
    latent = rng.random((40 + 6, 30 + 6))
    y = blur_valid(torch.from_numpy(latent)[None, None], torch.from_numpy(asymmetric_kernel))
    interior = convolve_same(crop_latent(latent, (7, 7), (40, 30)), asymmetric_kernel)
    np.testing.assert_allclose(y[0, 0].numpy()[3:-3, 3:-3], interior[3:-3, 3:-3], atol=1e-12)


@pytest.mark.parametrize(
    ("value", "expected"),
    [(31, (31, 31)), ("31", (31, 31)), ("31x25", (31, 25)), ("15X9", (15, 9)), ((5, 3), (5, 3))],
)
def test_parse_kernel_size(value, expected):
    assert parse_kernel_size(value) == expected


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (0, "positive"),
        (-3, "positive"),
        (30, "odd"),
        ("31x24", "odd"),
        ("big", "form"),
        ((1, 2, 3), "pair"),
    ],
)
def test_parse_kernel_size_rejects(value, message):
    with pytest.raises(InvalidInputError, match=message):
        parse_kernel_size(value)


def test_centroid_and_shift():
    k = np.zeros((9, 9))
    k[2, 6] = 1.0
    assert centroid_offset(k) == (-2, 2)
    moved = shift_kernel(k, 2, -2)
    assert moved[4, 4] == 1.0 and moved.sum() == 1.0
    # Mass pushed past the border is dropped, not wrapped.
    assert shift_kernel(k, -3, 0).sum() == 0.0


@pytest.mark.parametrize("kshape", [(5, 3), (17, 17), (31, 9)])
def test_fft_blur_equals_direct_blur(kshape):
    import torch

    from napari_selfdeblur.engine.physics import blur_valid, blur_valid_fft

    gen = torch.Generator().manual_seed(1)
    x = torch.rand(
        2,
        1,
        41 + kshape[0] - 1,
        37 + kshape[1] - 1,
        generator=gen,
        dtype=torch.float64,
        requires_grad=True,
    )
    k = torch.rand(*kshape, generator=gen, dtype=torch.float64, requires_grad=True)
    a, b = blur_valid(x, k), blur_valid_fft(x, k)
    assert a.shape == b.shape == (2, 1, 41, 37)
    torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    ga = torch.autograd.grad(a.square().sum(), (x, k))
    gb = torch.autograd.grad(b.square().sum(), (x, k))
    for u, v in zip(ga, gb, strict=True):
        torch.testing.assert_close(u, v, rtol=1e-9, atol=1e-9)


def test_next_fast_len():
    from napari_selfdeblur.imaging.fourier import next_fast_len

    assert [next_fast_len(n) for n in (1, 7, 11, 270, 271)] == [1, 8, 12, 270, 288]


def test_shake_psf_tail_moves_energy_off_the_second_half():
    from napari_selfdeblur.imaging.psf import rasterize_path, shake_psf

    # The default spends the same time on every step: the same kernel as unit weights.
    even = shake_psf(19, seed=3)
    np.testing.assert_array_equal(even, shake_psf(19, seed=3, tail=0.5))
    faint = shake_psf(19, seed=3, tail=0.1)
    assert faint.sum() == pytest.approx(1.0)
    # Same path, so the same footprint, but the tail's pixels are much fainter than the peak.
    assert np.array_equal(faint > 0, even > 0)
    assert (faint > 0.2 * faint.max()).sum() < (even > 0.2 * even.max()).sum()
    # Weights: two points, the second three times heavier, split 1:3.
    k = rasterize_path(np.array([[1.0, 1.0], [3.0, 3.0]]), 5, np.array([1.0, 3.0]))
    assert (k[1, 1], k[3, 3]) == pytest.approx((0.25, 0.75))
    with pytest.raises(InvalidInputError, match="tail"):
        shake_psf(9, tail=1.0)
