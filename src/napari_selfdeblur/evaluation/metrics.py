"""Image and kernel quality metrics (numpy), including the Levin et al. evaluation protocol.

Images are floats in [0, 1]. ``levin_score`` follows the protocol with which SelfDeblur
scores the Levin set (docs/benchmarks.md, "Levin scorer"): crop 15 px from the ground
truth, search sub-pixel shifts of the estimate in [-5, 5] px (step 0.25, bilinear resampling) for
the smallest squared error, and report PSNR (peak 1) and SSIM (Gaussian 11 / 1.5, K = (0.01, 0.03),
L = 255 on 8-bit values, 'valid' filtering, mean of the map) at that shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..imaging.psf import kernel_similarity as kernel_similarity  # a metric too: re-exported


def psnr(estimate: np.ndarray, truth: np.ndarray, peak: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB of two equally shaped arrays (no alignment)."""
    mse = float(np.mean((np.asarray(estimate, np.float64) - np.asarray(truth, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(peak**2 / mse)


def ssim(
    estimate: np.ndarray,
    truth: np.ndarray,
    *,
    data_range: float = 1.0,
    window: int = 11,
    sigma: float = 1.5,
) -> float:
    """Mean SSIM (Wang et al. 2004, K = (0.01, 0.03)), Gaussian window, 'valid' filtering.

    The same implementation as the SSIM loss (:func:`napari_selfdeblur.engine.losses.ssim`), in
    float64.
    """
    import torch

    from ..engine.losses import ssim as ssim_torch

    x = torch.from_numpy(np.asarray(estimate, np.float64))[None, None]
    y = torch.from_numpy(np.asarray(truth, np.float64))[None, None]
    return float(ssim_torch(x, y, window=window, sigma=sigma, data_range=data_range))


@dataclass(frozen=True)
class LevinScore:
    """PSNR/SSIM under the Levin protocol and the best shift (dy, dx) in pixels.

    The truth's pixel (i, j) is compared with the estimate sampled at (i + dy, j + dx).
    """

    psnr: float
    ssim: float
    shift: tuple[float, float]
    sse: float


def _shift_bilinear_rows(x: np.ndarray, s: float, start: int, n: int) -> np.ndarray:
    """Rows ``start + s + i`` (i < n) of ``x``, linearly interpolated (MATLAB interp2 'linear')."""
    base = int(np.floor(s))
    f = s - base
    a = x[start + base : start + base + n]
    if f == 0:
        return a
    b = x[start + base + 1 : start + base + 1 + n]
    return (1 - f) * a + f * b


def shift_search(
    estimate: np.ndarray,
    truth: np.ndarray,
    crop: int = 15,
    max_shift: float = 5.0,
    step: float = 0.25,
) -> tuple[np.ndarray, tuple[float, float], float]:
    """Resample ``estimate`` onto the cropped ``truth`` grid at the shift of least squared error.

    Every shift (dy, dx) on the grid -max_shift:step:max_shift is tried (bilinear resampling,
    separable, so all 41 x 41 shifts of a 255x255 image take well under a second). Returns the
    resampled estimate (the size of ``truth[crop:-crop, crop:-crop]``), the shift and its SSE.
    """
    est = np.asarray(estimate, np.float64)
    gt = np.asarray(truth, np.float64)
    if est.shape != gt.shape:
        raise ValueError(f"estimate {est.shape} and truth {gt.shape} differ in shape")
    if crop < max_shift + 1:
        raise ValueError("crop must exceed max_shift so that every shift stays inside the image")
    h, w = gt.shape[0] - 2 * crop, gt.shape[1] - 2 * crop
    ref = gt[crop : crop + h, crop : crop + w]
    shifts = np.arange(-max_shift, max_shift + step / 2, step)
    best = (np.inf, 0.0, 0.0)
    for dy in shifts:
        rows = _shift_bilinear_rows(est, dy, crop, h)  # (h, W)
        cols_t = rows.T
        for dx in shifts:
            cand = _shift_bilinear_rows(cols_t, dx, crop, w).T
            sse = float(np.sum((cand - ref) ** 2))
            if sse < best[0]:
                best = (sse, float(dy), float(dx))
    sse, dy, dx = best
    aligned = _shift_bilinear_rows(_shift_bilinear_rows(est, dy, crop, h).T, dx, crop, w).T
    return aligned, (dy, dx), sse


def levin_score(estimate: np.ndarray, truth: np.ndarray) -> LevinScore:
    """PSNR and SSIM of a deblurred image under the Levin et al. protocol (values in [0, 1])."""
    aligned, shift, sse = shift_search(estimate, truth)
    ref = np.asarray(truth, np.float64)[15:-15, 15:-15]
    return LevinScore(psnr(aligned, ref), ssim(aligned, ref), shift, sse)


def error_ratio(estimate_score: LevinScore, known_kernel_score: LevinScore) -> float:
    """Levin's error ratio: ||x_est - x_gt|| / ||x_known_kernel - x_gt||, each at its best shift."""
    return float(np.sqrt(estimate_score.sse / known_kernel_score.sse))
