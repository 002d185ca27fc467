"""Coarse-to-fine runs: level shapes, resampling, warm starts, progress, resume and cancel."""

import numpy as np
import pytest
import torch

from napari_selfdeblur import deblur
from napari_selfdeblur.config import get_preset
from napari_selfdeblur.engine.physics import convolve_same, resample
from napari_selfdeblur.engine.solver import build_generators, coarse_levels, warm_start
from napari_selfdeblur.errors import InvalidInputError
from napari_selfdeblur.evaluation.metrics import kernel_similarity, psnr

CPU = torch.device("cpu")


def com(k: np.ndarray) -> np.ndarray:
    yy, xx = np.indices(k.shape)
    return np.array([(yy * k).sum(), (xx * k).sum()]) / k.sum()


@pytest.fixture
def scene48() -> np.ndarray:
    from napari_selfdeblur.evaluation.sample import sharp_scene

    return sharp_scene((48, 48), seed=3, fine_detail=True)  # 1/4 is 12x12: two coarse levels


@pytest.fixture
def c2f(tiny_config):
    return tiny_config.replace(coarse_levels=2, coarse_iterations=6, init_iterations=20)


def test_level_shapes_scale_image_and_kernel_extent(tiny_config):
    levels = coarse_levels((40, 40), (7, 7), tiny_config.replace(coarse_levels=3))
    # 1/4 (10x10) is smaller than the SSIM window, 1/8 too small for the U-Net; kernels stay odd.
    assert levels == [((20, 20), (5, 5))]
    demo = get_preset("demo").replace(coarse_levels=1)
    assert coarse_levels((255, 255), (17, 27), demo) == [((128, 128), (9, 15))]
    assert coarse_levels((255, 255), (11, 11), demo) == [((128, 128), (7, 7))]
    assert coarse_levels((255, 255), (17, 17), demo.replace(coarse_levels=0)) == []
    with pytest.raises(InvalidInputError, match="coarse_levels"):
        demo.replace(coarse_levels=-1).validate()


def test_kernel_resampling_keeps_centre_and_unit_sum(asymmetric_kernel):
    up = resample(asymmetric_kernel, (13, 13), kernel=True)
    assert up.shape == (13, 13) and abs(up.sum() - 1) < 1e-6 and up.min() >= 0
    # The centre of mass keeps its place relative to the centre, scaled with the kernel's extent.
    np.testing.assert_allclose(com(up) - 6, 2 * (com(asymmetric_kernel) - 3), atol=0.2)
    delta = np.zeros((5, 5))
    delta[2, 2] = 1
    assert np.unravel_index(resample(delta, (9, 9), kernel=True).argmax(), (9, 9)) == (4, 4)
    img = np.random.default_rng(0).random((40, 40))
    small = resample(img, (20, 20))
    assert small.shape == (20, 20) and abs(small.mean() - img.mean()) < 0.01


def test_warm_start_fits_both_generators(scene, tiny_config, asymmetric_kernel):
    cfg = tiny_config.replace(init_iterations=150)
    gx, gk, zx, zk = build_generators(cfg, (7, 7), scene.shape, 0, CPU)
    target = torch.from_numpy(scene.astype(np.float32))[None, None]
    k_target = torch.from_numpy(asymmetric_kernel.astype(np.float32))
    before = gk(zk).detach().numpy()
    warm_start(
        gx,
        gk,
        zx,
        zk,
        x_target=target,
        k_target=k_target,
        cfg=cfg,
        kernel_shape=(7, 7),
        image_shape=scene.shape,
    )
    with torch.no_grad():
        k = gk(zk).numpy()
        x = gx(zx)[0, 0, 3:-3, 3:-3].numpy()
    print(
        f"warm start: kernel similarity {kernel_similarity(before, asymmetric_kernel):.2f} -> "
        f"{kernel_similarity(k, asymmetric_kernel):.2f}, latent {psnr(x, scene):.1f} dB"
    )
    assert (
        kernel_similarity(k, asymmetric_kernel)
        > 0.95
        > kernel_similarity(before, asymmetric_kernel)
    )
    assert k[asymmetric_kernel > 0].sum() > 0.8  # the mass sits on the target's support
    assert psnr(x, scene) > 22


@pytest.mark.slow
def test_coarse_levels_run_first_and_are_reported(scene48, c2f):
    blurry = convolve_same(scene48, np.full((5, 5), 1 / 25)).astype(np.float32)
    seen = []
    r = deblur(blurry, 7, preset=c2f, device="cpu", callback=seen.append, callback_every=1)
    stages = [p.stage for p in seen]
    assert stages == ["coarse 1/2"] * 6 + ["coarse 2/2"] * 6 + [""] * 20
    assert [p.iteration for p in seen] == list(range(1, 33))
    assert {p.total for p in seen} == {32}
    assert r.iterations_run == 20 and [i for i, _ in r.history] == list(range(1, 21))
    assert r.latent.shape == blurry.shape and r.kernel.shape == (7, 7)
    assert r.metadata()["config"]["coarse_levels"] == 2
    again = deblur(blurry, 7, preset=c2f, device="cpu")
    np.testing.assert_array_equal(again.latent, r.latent)
    np.testing.assert_array_equal(again.kernel, r.kernel)
    # Gk-only warm start is another run, and so is the plain run without coarse levels.
    other = deblur(blurry, 7, preset=c2f.replace(warm_image=False), device="cpu")
    assert not np.array_equal(other.latent, r.latent)


def test_fingerprint_holds_coarse_settings_only_when_used(tiny_config):
    plain = tiny_config.fingerprint_dict()
    assert "coarse_levels" not in plain and "init_iterations" not in plain
    assert plain == tiny_config.replace(coarse_iterations=7, warm_image=False).fingerprint_dict()
    used = tiny_config.replace(coarse_levels=1).fingerprint_dict()
    assert used["coarse_levels"] == 1 and "init_iterations" in used


def test_resume_skips_coarse_levels_and_matches(scene48, c2f, tmp_path):
    ckpt = tmp_path / "run.pt"
    full = deblur(scene48, 5, preset=c2f, seed=1, device="cpu", callback_every=1)
    calls = []
    part = deblur(
        scene48,
        5,
        preset=c2f,
        seed=1,
        device="cpu",
        callback_every=1,
        callback=calls.append,
        should_stop=lambda: len(calls) >= 12 + 7,
        checkpoint=ckpt,
        checkpoint_every=5,
    )
    assert part.cancelled and part.iterations_run == 7 and ckpt.is_file()
    calls.clear()
    resumed = deblur(
        scene48,
        5,
        preset=c2f,
        seed=1,
        device="cpu",
        callback_every=1,
        callback=calls.append,
        checkpoint=ckpt,
    )
    assert all(p.stage == "" for p in calls) and calls[0].iteration == 12 + 8
    np.testing.assert_array_equal(resumed.latent, full.latent)
    np.testing.assert_array_equal(resumed.kernel, full.kernel)


def test_cancel_on_a_coarse_level_returns_a_full_size_result(scene48, c2f):
    original = scene48.copy()
    calls = []
    r = deblur(
        scene48,
        5,
        preset=c2f,
        device="cpu",
        callback=calls.append,
        callback_every=1,
        should_stop=lambda: len(calls) >= 3,
    )
    assert r.cancelled and r.iterations_run == 0
    assert r.latent.shape == scene48.shape and r.kernel.shape == (5, 5)
    assert np.isfinite(r.latent).all()
    np.testing.assert_array_equal(scene48, original)
