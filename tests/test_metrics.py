"""Metrics and the Levin protocol scorer."""

import numpy as np
import pytest
from scipy import ndimage

from napari_selfdeblur.evaluation.datasets import default_levin_root, levin_cases, oriented_psf
from napari_selfdeblur.evaluation.metrics import (
    kernel_similarity,
    levin_score,
    psnr,
    shift_search,
    ssim,
)

LEVIN = default_levin_root()
needs_levin = pytest.mark.skipif(not LEVIN.exists(), reason="Levin data not found")


def smooth_random(shape, seed):
    rng = np.random.default_rng(seed)
    return ndimage.gaussian_filter(rng.random(shape), 2.0)


def brute_force_search(est, gt, crop, max_shift, step):
    """Reference: resample with scipy's map_coordinates (order 1) at every shift on the grid."""
    h, w = gt.shape[0] - 2 * crop, gt.shape[1] - 2 * crop
    yy, xx = np.mgrid[crop : crop + h, crop : crop + w].astype(float)
    ref = gt[crop : crop + h, crop : crop + w]
    best = (np.inf, None)
    for dy in np.arange(-max_shift, max_shift + step / 2, step):
        for dx in np.arange(-max_shift, max_shift + step / 2, step):
            cand = ndimage.map_coordinates(est, [yy + dy, xx + dx], order=1)
            sse = float(((cand - ref) ** 2).sum())
            if sse < best[0]:
                best = (sse, (dy, dx))
    return best


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_shift_search_equals_brute_force(seed):
    rng = np.random.default_rng(seed)
    gt = smooth_random((40, 44), seed)
    est = rng.random((40, 44))  # unrelated random data: no easy minimum to find
    _, shift, sse = shift_search(est, gt, crop=6, max_shift=2, step=0.5)
    ref_sse, ref_shift = brute_force_search(est, gt, 6, 2, 0.5)
    assert shift == pytest.approx(ref_shift)
    assert sse == pytest.approx(ref_sse, rel=1e-10)


def test_levin_psnr_is_invariant_to_a_subpixel_shift():
    """An estimate sampled on a grid shifted by (1.25, -2.5) px scores as the unshifted one."""

    def scene(dy, dx):
        y, x = np.mgrid[0:96, 0:96].astype(float)
        y, x = y - dy, x - dx
        # Slowly varying, so that bilinear resampling itself loses almost nothing.
        return 0.5 + 0.2 * np.sin(x / 10 + 0.3) * np.cos(y / 14) + 0.1 * np.sin((x + y) / 8)

    gt = scene(0, 0)
    base = levin_score(0.8 * scene(0, 0) + 0.1, gt)  # a systematic (contrast) error
    score = levin_score(0.8 * scene(1.25, -2.5) + 0.1, gt)
    # The search follows the applied shift (it may sit a quarter pixel off the truth for both,
    # since a systematic error can lower the SSE slightly off the true alignment).
    moved = (score.shift[0] - base.shift[0], score.shift[1] - base.shift[1])
    assert moved == pytest.approx((1.25, -2.5))  # where the estimate is sampled
    assert abs(score.psnr - base.psnr) < 0.1
    assert abs(score.ssim - base.ssim) < 0.005


def test_psnr_ssim_and_kernel_similarity_basics():
    x = smooth_random((32, 32), 1)
    assert psnr(x, x) == np.inf
    assert psnr(x, x + 0.1) == pytest.approx(20.0)
    assert ssim(x, x) == pytest.approx(1.0)
    assert ssim(x, 1 - x) < 0
    k = np.zeros((9, 9))
    k[4, 2:7] = 1
    k[2:4, 6] = 1
    assert kernel_similarity(np.roll(k, 2, axis=1), k) == pytest.approx(1.0)
    assert kernel_similarity(k[::-1, ::-1], k) < 0.8  # orientation matters
    delta = np.zeros((9, 9))
    delta[4, 4] = 1
    assert kernel_similarity(delta, k) < 0.5


@needs_levin
def test_levin_kernel_orientation_found_by_reblurring():
    """The data's README: kernels 4 and 8 are stored as the PSF, 2, 5, 6 and 7 rotated."""
    from napari_selfdeblur.fileio import read_image

    for k, rotated in [(2, True), (4, False), (5, True), (6, True), (7, True), (8, False)]:
        raw = read_image(LEVIN / "gt" / f"kernel{k}.png").astype(float)
        raw /= raw.sum()
        expected = raw[::-1, ::-1] if rotated else raw
        np.testing.assert_allclose(oriented_psf(str(LEVIN.resolve()), k), expected)


@pytest.mark.slow
@needs_levin
def test_blurry_levin_inputs_score_about_22_to_24_db():
    scores = [levin_score(c.blurry, c.sharp).psnr for c in levin_cases(LEVIN, "all")]
    assert len(scores) == 32
    assert 22 <= np.mean(scores) <= 24


def test_ssim_matches_scikit_image():
    metrics = pytest.importorskip("skimage.metrics")
    rng = np.random.default_rng(0)
    a = smooth_random((60, 50), 3)
    b = a + 0.05 * rng.random(a.shape)
    expected = metrics.structural_similarity(
        a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=1.0
    )
    assert ssim(a, b) == pytest.approx(expected, rel=1e-9)
