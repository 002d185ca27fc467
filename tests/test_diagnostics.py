"""Failure detection: flags the no-blur solution and stalls, passes a good result."""

from __future__ import annotations

import numpy as np

from napari_selfdeblur import deblur
from napari_selfdeblur.engine.diagnostics import diagnose
from napari_selfdeblur.engine.physics import convolve_same
from napari_selfdeblur.evaluation.sample import sharp_scene
from napari_selfdeblur.imaging.psf import motion_psf


def _problem():
    sharp = sharp_scene((64, 64), seed=0)
    k = motion_psf(9, 20)
    return sharp, convolve_same(sharp, k), k


def test_flags_the_no_blur_solution():
    _, blurry, k = _problem()
    delta = np.zeros_like(k)
    delta[k.shape[0] // 2, k.shape[1] // 2] = 1
    d = diagnose(blurry, blurry, delta)
    assert {"delta_kernel", "latent_is_input"} <= set(d.flags) and not d.ok
    assert d.kernel_support_px == 1.0
    # A slightly smeared delta (the usual near-miss) is still flagged.
    near = 0.9 * delta + 0.1 / delta.size
    assert "delta_kernel" in diagnose(blurry, blurry + 0.001, near).flags


def test_passes_a_good_result():
    sharp, blurry, k = _problem()
    history = [(i, 0.05 * 0.5 ** (i / 100)) for i in range(10, 1001, 10)]  # still improving
    d = diagnose(blurry, sharp, k, history)
    assert d.ok, d.messages
    assert d.kernel_support_px > 5 and d.latent_change > 0.05


def test_flags_a_stall_at_a_poor_fit_but_not_a_converged_one():
    sharp, blurry, k = _problem()
    flat_bad = [(i, 0.3) for i in range(10, 1001, 10)]
    flat_good = [(i, 0.01) for i in range(10, 1001, 10)]
    assert "stalled" in diagnose(blurry, sharp, k, flat_bad).flags
    assert "stalled" not in diagnose(blurry, sharp, k, flat_good).flags
    assert "stalled" not in diagnose(blurry, sharp, k, flat_bad, completed=False).flags
    # Losses before the MSE -> SSIM switch are not compared with those after it.
    switch = [(i, 0.001 if i <= 800 else 0.05 - i * 1e-5) for i in range(10, 1001, 10)]
    assert "stalled" not in diagnose(blurry, sharp, k, switch, loss_switch=800).flags


def test_every_result_carries_its_diagnosis(scene, tiny_config):
    r = deblur(scene, 5, preset=tiny_config, device="cpu")
    assert r.diagnosis is not None
    meta = r.metadata()["diagnosis"]
    assert set(meta) >= {"flags", "warnings", "kernel_support_px", "latent_change"}
    assert r.warnings == meta["warnings"]


def test_latent_far_outside_the_input_range_is_flagged():
    rng = np.random.default_rng(0)
    image = 0.12 + 0.76 * rng.random((40, 40))
    k = np.zeros((5, 5))
    k[2, 1:4] = 1 / 3
    wild = np.where(rng.random((40, 40)) > 0.5, 7.0, -7.0)
    assert "latent_out_of_range" in diagnose(image, wild, k).flags
    assert "latent_out_of_range" not in diagnose(image, np.clip(image * 1.2, 0, 1), k).flags


def test_short_runs_are_flagged_unconverged_and_complete_runs_are_not():
    from napari_selfdeblur import deblur
    from napari_selfdeblur.evaluation.sample import blurred_sample

    s = blurred_sample((64, 64))
    size = s.kernel.shape[0] + 2
    short = deblur(s.blurry.astype(np.float32), size, preset="demo", iterations=40)
    assert "unconverged" in short.diagnosis.flags
    assert short.diagnosis.residual_noise_ratio > 20
    for preset in ("standard", "quick"):
        full = deblur(s.blurry.astype(np.float32), size, preset=preset)
        assert "unconverged" not in full.diagnosis.flags, preset
        assert full.diagnosis.residual_noise_ratio < 5, preset


def test_map_candidates_that_disagree_flag_the_kernel_as_uncertain():
    sharp, blurry, k = _problem()
    assert "kernel_uncertain" in diagnose(blurry, sharp, k, kernel_agreement=0.3).flags
    for agreement in (None, 0.9):
        d = diagnose(blurry, sharp, k, kernel_agreement=agreement)
        assert d.ok and d.to_dict()["kernel_agreement"] == agreement


def test_a_map_result_reports_its_candidates_agreement(scene):
    r = deblur(scene, 5, preset="quick", device="cpu")
    meta = r.metadata()
    assert meta["diagnosis"]["kernel_agreement"] == max(meta["map_candidates"]["agreement"])
    assert ("kernel_uncertain" in r.diagnosis.flags) == (r.diagnosis.kernel_agreement < 0.5)


def test_a_kernel_touches_its_border_when_its_edge_nears_its_peak():
    from napari_selfdeblur.engine.diagnostics import BORDER_FRACTION, touches_border

    k = np.zeros((7, 7))
    k[3, 1:6] = 1.0  # a horizontal line one pixel inside the window
    assert not touches_border(k) and not touches_border(np.zeros((5, 5)))
    k[3, 0] = BORDER_FRACTION * 1.01  # an edge value just over the fraction of the peak
    assert touches_border(k)
    k[3, 0] = BORDER_FRACTION * 0.99
    assert not touches_border(k)
    blurry = convolve_same(sharp_scene((32, 32), seed=1), k / k.sum())
    k[0, 3] = 0.5
    assert "kernel_at_border" in diagnose(blurry, blurry, k / k.sum()).flags
