"""The plugin's napari-free tasks and parametric PSFs."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_selfdeblur._napari.tasks import (
    LayerGeometry,
    blind_task,
    refine_task,
    roi_box,
    run_to_end,
)
from napari_selfdeblur.engine.physics import centroid_offset, convolve_same
from napari_selfdeblur.errors import InvalidInputError
from napari_selfdeblur.evaluation.metrics import psnr
from napari_selfdeblur.evaluation.sample import sharp_scene
from napari_selfdeblur.imaging.psf import disk_psf, gaussian_psf, motion_psf
from napari_selfdeblur.nonblind.api import refine
from napari_selfdeblur.provenance import blind_kernel_options, from_blind_run


def test_parametric_psfs_are_normalised_centred_and_oriented():
    for k in (gaussian_psf(1.5), disk_psf(3.2), motion_psf(9, 30)):
        assert k.shape[0] % 2 == 1 and k.shape[1] % 2 == 1
        assert k.sum() == pytest.approx(1.0) and (k >= 0).all()
        assert centroid_offset(k) == (0, 0)
    horizontal = motion_psf(9, 0)
    c = horizontal.shape[0] // 2
    assert horizontal[c].sum() > 0.95  # all the mass on the middle row
    rising = motion_psf(9, 45)  # up and to the right: top-right and bottom-left corners
    n = rising.shape[0]
    assert rising[1, n - 2] > 0 and rising[n - 2, 1] > 0 and rising[1, 1] == 0
    with pytest.raises(InvalidInputError, match="positive"):
        gaussian_psf(0)


def test_roi_box_clips_and_rejects():
    assert roi_box(np.array([[-5, 10], [20.5, 30.2]]), (64, 64)) == (0, 21, 10, 31)
    with pytest.raises(InvalidInputError, match="outside"):
        roi_box(np.array([[100, 100], [120, 130]]), (64, 64))
    with pytest.raises(InvalidInputError, match="only"):
        roi_box(np.array([[62, 62], [80, 80]]), (64, 64))


def test_blind_task_on_a_crop_refines_the_whole_image(tiny_config):
    sharp = sharp_scene((64, 64), seed=2)
    k = motion_psf(5, 20)
    blurry = convolve_same(sharp, k).astype(np.float32)
    geo = LayerGeometry("cells", (0.5, 0.5), (3.0, 4.0))
    seen = []
    latent, kernel = run_to_end(
        blind_task(blurry, geo, 7, preset=tiny_config, roi=(8, 56, 8, 56), preview_every=10),
        seen.append,
    )
    assert latent[0].shape == blurry.shape and latent[1]["name"] == "cells latent"
    assert latent[1]["scale"] == (0.5, 0.5) and latent[1]["translate"] == (3.0, 4.0)
    meta = latent[1]["metadata"]
    assert meta["roi"] == [8, 56, 8, 56] and meta["refined_with"] == "hyper-laplacian"
    assert kernel[0].shape == (7, 7) and kernel[1]["translate"][-1] > 4.0 + 64 * 0.5
    assert any(e.kernel is not None for e in seen)
    assert seen[-1].stage == "refine"


def test_blind_task_stack_modes(tiny_config):
    planes = np.stack([sharp_scene((40, 40), seed=s) for s in range(3)]).astype(np.float32)
    geo = LayerGeometry.plain("stack", 3)
    cfg = tiny_config.replace(iterations=4, lr_milestones=(2, 3), ssim_start=2)
    lat, ker = run_to_end(blind_task(planes, geo, 5, preset=cfg, stack_mode="per-plane"))
    assert lat[0].shape == planes.shape and ker[0].shape == (3, 5, 5)
    assert len(lat[1]["metadata"]["runs"]) == 3
    lat, ker = run_to_end(
        blind_task(planes, geo, 5, preset=cfg, stack_mode="refine", current_plane=1)
    )
    assert lat[0].shape == planes.shape and ker[0].shape == (5, 5)
    assert [r["plane"] for r in lat[1]["metadata"]["runs"]] == [1]
    # The other planes are deconvolved with the blind estimate at the estimated-kernel strength.
    method = lat[1]["metadata"]["refined_with"]
    estimated = refine(planes[0], ker[0], method, kernel_estimated=True).image
    exact = refine(planes[0], ker[0], method).image
    np.testing.assert_allclose(lat[0][0], estimated, rtol=1e-5, atol=1e-6)
    assert np.abs(lat[0][0] - exact).max() > 1e-3


def test_only_kernel_layers_of_blind_runs_count_as_estimates():
    assert from_blind_run({"preset": "quick", "kernel_size": [9, 9]})
    assert not from_blind_run({"kernel_size": [9, 9]})  # e.g. a PSF the user loaded
    assert not from_blind_run(None) and not from_blind_run("preset")


def test_what_a_blind_run_recorded_says_which_kernels_are_uncertain():
    quick = {"preset": "quick", "config": {}}
    assert blind_kernel_options(None, (9, 9)) == {
        "kernel_estimated": False,
        "kernel_uncertain": False,
    }
    assert blind_kernel_options(quick, (9, 9))["kernel_uncertain"] is False
    assert blind_kernel_options({**quick, "uncertain_kernel_boost": 2.5}, (9, 9)) == {
        "kernel_estimated": True,
        "kernel_uncertain": True,
    }
    # A command-line stack records one boost per plane; a widget stack one run per plane.
    per_plane = {**quick, "uncertain_kernel_boost": [1.0, 2.5]}
    assert blind_kernel_options(per_plane, (2, 9, 9))["kernel_uncertain"] == (False, True)
    runs = {**quick, "runs": [{"plane": 0, "preset": "quick"}, {**quick, "plane": 1,
            "uncertain_kernel_boost": 2.5}]}  # fmt: skip
    assert blind_kernel_options(runs, (2, 9, 9))["kernel_uncertain"] == (False, True)
    # What does not match the kernel, or cannot be read, is not taken as uncertain.
    assert blind_kernel_options(per_plane, (3, 9, 9))["kernel_uncertain"] is False
    for odd in ("2.5", True, None, [2.5, "x"]):
        meta = {**quick, "uncertain_kernel_boost": odd}
        assert blind_kernel_options(meta, (9, 9))["kernel_uncertain"] is False
    # Not a blind run: an exact kernel, whatever else it says.
    assert (
        blind_kernel_options({"uncertain_kernel_boost": 2.5}, (9, 9))["kernel_uncertain"] is False
    )


def test_a_blind_task_refines_other_planes_as_strongly_as_its_kernel_needs(monkeypatch):
    from napari_selfdeblur import api

    planes = np.stack(
        [convolve_same(sharp_scene((48, 48), seed=s), motion_psf(7, 30)) for s in range(3)]
    ).astype(np.float32)
    geo = LayerGeometry.plain("stack", 3)
    monkeypatch.setattr(api, "UNCERTAIN_AGREEMENT", 1.01)  # every MAP kernel counts as uncertain
    lat, ker = run_to_end(
        blind_task(planes, geo, 7, preset="quick", stack_mode="refine", current_plane=1)
    )
    assert lat[1]["metadata"]["uncertain_kernel_boost"] > 1
    method = lat[1]["metadata"]["refined_with"]
    uncertain = refine(planes[0], ker[0], method, kernel_uncertain=True).image
    estimated = refine(planes[0], ker[0], method, kernel_estimated=True).image
    np.testing.assert_allclose(lat[0][0], uncertain, rtol=1e-5, atol=1e-6)
    assert np.abs(uncertain - estimated).max() > 1e-3


@pytest.mark.slow
def test_cancelled_blind_task_returns_best_so_far(tiny_config):
    image = sharp_scene((40, 40), seed=1).astype(np.float32)
    cancel = threading.Event()
    cfg = tiny_config.replace(iterations=100000)
    task = blind_task(image, LayerGeometry.plain("x", 2), 5, preset=cfg, cancel=cancel)

    def on_progress(p):
        if p.iteration >= 3:
            cancel.set()

    latent, kernel = run_to_end(task, on_progress)
    meta = latent[1]["metadata"]
    assert meta["cancelled"] and 3 <= meta["iterations_run"] < 100000
    assert np.isfinite(latent[0]).all() and kernel[0].sum() == pytest.approx(1.0, rel=1e-4)


def test_bad_task_input_raises_when_created(tiny_config):
    geo = LayerGeometry.plain("x", 2)
    with pytest.raises(InvalidInputError, match="empty"):
        blind_task(np.zeros((0, 0)), geo, 5, preset=tiny_config)
    with pytest.raises(InvalidInputError, match="odd"):
        blind_task(np.ones((40, 40)), geo, 4, preset=tiny_config)
    with pytest.raises(InvalidInputError, match="positive sum"):
        refine_task(np.ones((40, 40)), geo, np.zeros((3, 3)))
    with pytest.raises(InvalidInputError, match="larger than the image"):
        blind_task(np.ones((40, 40)), geo, 41, preset=tiny_config)
    # The kernel is estimated on the region of interest, so it is checked against the region.
    with pytest.raises(InvalidInputError, match="larger than the image 8x8"):
        blind_task(np.ones((40, 40)), geo, 9, preset=tiny_config, roi=(0, 8, 0, 8))
    with pytest.raises(InvalidInputError, match="too small"):
        blind_task(np.ones((200, 200)), geo, 5, preset="paper", roi=(0, 8, 0, 8))


def test_refine_task_raises_psnr():
    sharp = sharp_scene((64, 64), seed=4)
    k = gaussian_psf(1.5)
    blurry = convolve_same(sharp, k)
    [(out, kwargs, kind)] = run_to_end(refine_task(blurry, LayerGeometry.plain("b", 2), k))
    assert kind == "image" and kwargs["name"] == "b refined"
    assert (
        psnr(out[10:-10, 10:-10], sharp[10:-10, 10:-10])
        > psnr(blurry[10:-10, 10:-10], sharp[10:-10, 10:-10]) + 2
    )


def test_blind_task_passes_restarts(tiny_config):
    image = sharp_scene((40, 40), seed=1).astype(np.float32)
    cfg = tiny_config.replace(iterations=6, lr_milestones=(3, 5), ssim_start=3)
    latent, _ = run_to_end(
        blind_task(image, LayerGeometry.plain("x", 2), 5, preset=cfg, restarts=2)
    )
    assert latent[1]["metadata"]["restarts"]["seeds"] == [0, 1]


def test_blind_task_with_auto_kernel_size_reports_the_choice():
    sharp = sharp_scene((72, 72), seed=4)
    blurry = convolve_same(sharp, motion_psf(7, 30)).astype(np.float32)
    seen = []
    latent, kernel = run_to_end(
        blind_task(blurry, LayerGeometry.plain("img", 2), "auto", preset="quick"), seen.append
    )
    auto = latent[1]["metadata"]["kernel_size_auto"]
    assert kernel[0].shape == (auto["chosen"], auto["chosen"]) and auto["chosen"] % 2 == 1
    assert auto["chosen"] >= 7 and latent[1]["metadata"]["preset"] == "quick"
    assert seen[0].stage == "kernel size"
