"""The engine's public API: recovery on synthetic data, reproducibility, colour, dtypes, cancel."""

import numpy as np
import pytest

from napari_selfdeblur import deblur
from napari_selfdeblur.engine.physics import centroid_offset, convolve_same
from napari_selfdeblur.errors import InvalidInputError
from napari_selfdeblur.evaluation.metrics import kernel_similarity, psnr
from napari_selfdeblur.evaluation.sample import sharp_scene


def interior_psnr(estimate, truth, margin=8):
    return psnr(estimate[margin:-margin, margin:-margin], truth[margin:-margin, margin:-margin])


@pytest.mark.slow
def test_recovers_asymmetric_kernel_and_sharpens(asymmetric_kernel):
    assert centroid_offset(asymmetric_kernel) == (0, 0)
    sharp = sharp_scene((64, 64), seed=0)  # rectangles and discs
    blurry = np.clip(convolve_same(sharp, asymmetric_kernel), 0, 1).astype(np.float32)
    result = deblur(blurry, 9, preset="demo", seed=0, device="cpu")
    sim = kernel_similarity(result.kernel, asymmetric_kernel)
    # A mirrored estimate would be the wrong orientation: it must match the PSF better.
    sim_flipped = kernel_similarity(result.kernel[::-1, ::-1], asymmetric_kernel)
    print(f"kernel similarity {sim:.3f} (flipped {sim_flipped:.3f})")
    assert sim > 0.8
    assert sim > sim_flipped
    # The engine centres the kernel, so the latent is aligned with the input: no shift search.
    gain = interior_psnr(result.latent, sharp) - interior_psnr(blurry, sharp)
    print(f"PSNR gain {gain:.2f} dB")
    assert gain > 1.0
    assert result.latent.shape == blurry.shape and result.latent.dtype == np.float32
    assert result.kernel.shape == (9, 9)
    np.testing.assert_allclose(result.kernel.sum(), 1.0, rtol=1e-5)


def test_same_seed_same_result_other_seed_differs(scene, tiny_config):
    a = deblur(scene, 5, preset=tiny_config, seed=7, device="cpu")
    b = deblur(scene, 5, preset=tiny_config, seed=7, device="cpu")
    c = deblur(scene, 5, preset=tiny_config, seed=8, device="cpu")
    np.testing.assert_array_equal(a.latent, b.latent)
    np.testing.assert_array_equal(a.kernel, b.kernel)
    assert a.history == b.history
    assert not np.array_equal(a.latent, c.latent)


def test_result_fields_and_metadata(scene, tiny_config):
    r = deblur(scene, "5x3", preset=tiny_config, seed=1, device="cpu")
    assert r.kernel.shape == (5, 3)
    assert r.iterations_run == 20 and not r.cancelled
    assert r.history[-1][0] == 20 and np.isfinite(r.final_loss)
    meta = r.metadata()
    assert meta["seed"] == 1 and meta["device"] == "cpu" and meta["kernel_size"] == [5, 3]
    assert meta["config"]["iterations"] == 20
    assert meta["noise_sigma"] >= 0


def test_callback_previews_and_cancel_keeps_result(scene, tiny_config):
    seen = []
    r = deblur(
        scene,
        5,
        preset=tiny_config,
        device="cpu",
        callback=seen.append,
        callback_every=2,
        preview_every=4,
        should_stop=lambda: len(seen) >= 3,
    )
    assert r.cancelled and r.iterations_run == 6
    assert [p.iteration for p in seen] == [2, 4, 6]
    assert seen[0].latent is None and seen[1].latent.shape == scene.shape
    assert seen[1].kernel.shape == (5, 5)
    assert r.latent.shape == scene.shape and np.isfinite(r.latent).all()
    assert r.history[-1][0] == 6


def test_alternating_mode_and_tv_run(scene, tiny_config):
    cfg = tiny_config.replace(mode="alternating", tv_factor=10.0)
    r = deblur(scene, 5, preset=cfg, device="cpu")
    assert r.latent.shape == scene.shape and np.isfinite(r.final_loss)


def test_iterations_override_scales_schedule():
    from napari_selfdeblur.engine.checks import resolve_config

    cfg = resolve_config("paper", 500)
    assert cfg.iterations == 500 and cfg.lr_milestones == (200, 300, 400) and cfg.ssim_start == 100
    assert resolve_config("paper").iterations == 5000
    fast = resolve_config("fast", 300)  # the coarse levels and warm starts shrink in proportion
    assert fast.iterations == 300 and fast.coarse_iterations == 500 and fast.ssim_start == 150
    assert fast.init_iterations == 100 and resolve_config("fast").init_iterations == 200
    assert resolve_config("fast", 1).init_iterations == 1  # never scaled away entirely
    # a coarse level's schedule is scaled to its own length, its warm-start steps are the run's
    level = resolve_config("fast").with_iterations(1000, warm_steps=False)
    assert level.init_iterations == 200 and level.ssim_start == 500


def test_uint16_keeps_dtype_and_range(scene, tiny_config):
    img = (scene * 4000 + 100).astype(np.uint16)
    r = deblur(img, 5, preset=tiny_config, device="cpu")
    assert r.latent.dtype == np.uint16 and r.latent.shape == img.shape
    assert abs(float(r.latent.mean()) - float(img.mean())) < 600
    assert r.noise_sigma < 200  # reported in the input's units


def test_rgba_uint8_colour_path(scene, tiny_config, asymmetric_kernel):
    rgb = np.stack([scene, scene[::-1], scene[:, ::-1]], axis=-1)
    blurred = np.stack([convolve_same(rgb[..., c], asymmetric_kernel) for c in range(3)], -1)
    alpha = np.full((*scene.shape, 1), 200.0)
    img = np.concatenate([np.clip(blurred, 0, 1) * 255, alpha], -1).round().astype(np.uint8)
    r = deblur(img, 7, preset=tiny_config, device="cpu")
    assert r.latent.shape == img.shape and r.latent.dtype == np.uint8
    np.testing.assert_array_equal(r.latent[..., 3], img[..., 3])
    # Chroma is deconvolved, not copied: the colour channels differ from the blurry ones.
    assert np.abs(r.latent[..., :3].astype(int) - img[..., :3]).mean() > 1


def test_checkpoint_resume_matches_uninterrupted_run(scene, tiny_config, tmp_path):
    ckpt = tmp_path / "run.pt"
    full = deblur(scene, 5, preset=tiny_config, seed=2, device="cpu", callback_every=1)
    calls = []
    part = deblur(
        scene,
        5,
        preset=tiny_config,
        seed=2,
        device="cpu",
        callback_every=1,
        callback=calls.append,
        should_stop=lambda: len(calls) >= 7,
        checkpoint=ckpt,
        checkpoint_every=5,
    )
    assert part.cancelled and part.iterations_run == 7 and ckpt.is_file()
    resumed = deblur(
        scene,
        5,
        preset=tiny_config,
        seed=2,
        device="cpu",
        callback_every=1,
        checkpoint=ckpt,
        checkpoint_every=5,
    )
    assert resumed.extra["resumed_from_iteration"] == 7
    assert not ckpt.exists()  # a completed run removes its checkpoint
    np.testing.assert_array_equal(resumed.latent, full.latent)
    np.testing.assert_array_equal(resumed.kernel, full.kernel)
    assert resumed.history == full.history


def test_checkpoint_of_another_run_is_ignored(scene, tiny_config, tmp_path):
    ckpt = tmp_path / "run.pt"
    calls = []
    deblur(
        scene,
        5,
        preset=tiny_config,
        seed=2,
        device="cpu",
        callback=calls.append,
        callback_every=1,
        should_stop=lambda: len(calls) >= 7,
        checkpoint=ckpt,
    )
    assert ckpt.is_file()
    other_seed = deblur(scene, 5, preset=tiny_config, seed=3, device="cpu", checkpoint=ckpt)
    fresh = deblur(scene, 5, preset=tiny_config, seed=3, device="cpu")
    assert "resumed_from_iteration" not in other_seed.extra
    np.testing.assert_array_equal(other_seed.latent, fresh.latent)
    ckpt.write_bytes(b"not a checkpoint")
    damaged = deblur(scene, 5, preset=tiny_config, seed=3, device="cpu", checkpoint=ckpt)
    np.testing.assert_array_equal(damaged.latent, fresh.latent)


def test_restarts_continue_the_best_probe(scene, tiny_config):
    r = deblur(
        scene,
        5,
        preset=tiny_config,
        seed=10,
        device="cpu",
        restarts=3,
        restart_iterations=5,
        callback_every=1,
    )
    info = r.metadata()["restarts"]
    assert info["seeds"] == [10, 11, 12] and info["probe_iterations"] == 5
    best = info["seeds"][int(np.argmin(info["probe_losses"]))]
    assert r.seed == info["chosen_seed"] == best
    plain = deblur(scene, 5, preset=tiny_config, seed=best, device="cpu", callback_every=1)
    np.testing.assert_array_equal(r.latent, plain.latent)  # the same as a plain run of that seed
    np.testing.assert_array_equal(r.kernel, plain.kernel)
    assert r.iterations_run == 20 and not r.cancelled
    with pytest.raises(InvalidInputError, match="restart_iterations"):
        deblur(scene, 5, preset=tiny_config, device="cpu", restarts=2, restart_iterations=20)


@pytest.mark.slow
def test_noblur_init_starts_at_the_input(scene, tiny_config):
    import torch

    from napari_selfdeblur.engine.solver import fit

    blurry = convolve_same(scene, np.full((3, 3), 1 / 9)).astype(np.float32)
    cfg = tiny_config.replace(init="noblur", init_iterations=150)
    start = fit(blurry, (7, 7), cfg, device=torch.device("cpu"), stop_at=0)
    assert start.iterations_run == 0
    print(
        f"no-blur start: latent vs input {psnr(start.latent, blurry):.1f} dB, "
        f"kernel peak {start.kernel.max():.2f}"
    )
    assert psnr(start.latent, blurry) > 25
    assert np.unravel_index(start.kernel.argmax(), (7, 7)) == (3, 3)
    assert start.kernel[2:5, 2:5].sum() > 0.6  # concentrated around the centre
    random = fit(blurry, (7, 7), tiny_config, device=torch.device("cpu"), stop_at=0)
    assert psnr(random.latent, blurry) < psnr(start.latent, blurry) - 10
    # And the joint phase runs from there.
    r = deblur(blurry, 7, preset=cfg, device="cpu")
    assert r.iterations_run == 20 and np.isfinite(r.final_loss)
    assert r.metadata()["config"]["init"] == "noblur"


def test_execution_settings_change_results_only_at_rounding_level(scene, tiny_config):
    base = deblur(scene, 5, preset=tiny_config.replace(iterations=8), device="cpu")
    for change in ({"blur": "direct"}, {"channels_last": False}):
        other = deblur(scene, 5, preset=tiny_config.replace(iterations=8, **change), device="cpu")
        np.testing.assert_allclose(other.kernel, base.kernel, atol=1e-4)
        np.testing.assert_allclose(other.latent, base.latent, atol=2e-3)
    assert (
        tiny_config.fingerprint_dict()
        == tiny_config.replace(blur="direct", channels_last=False).fingerprint_dict()
    )
    assert "init" not in tiny_config.fingerprint_dict()
    assert tiny_config.replace(init="noblur").fingerprint_dict()["init"] == "noblur"


def test_bfloat16_precision_runs_close_to_float32(scene, tiny_config):
    import torch

    from napari_selfdeblur.engine.solver import fit

    cfg = tiny_config.replace(iterations=8)
    base = fit(scene, (5, 5), cfg, device=torch.device("cpu"))
    mixed = fit(scene, (5, 5), cfg.replace(precision="bfloat16"), device=torch.device("cpu"))
    assert mixed.latent.dtype == np.float32 and np.isfinite(mixed.latent).all()
    assert not np.array_equal(mixed.latent, base.latent)  # it did run in lower precision
    assert psnr(mixed.latent, base.latent) > 20  # 25.5 dB here; bfloat16 kernels vary by CPU
    np.testing.assert_allclose(mixed.kernel, base.kernel, atol=0.02)
    assert "precision" not in cfg.fingerprint_dict()
    assert cfg.replace(precision="bfloat16").fingerprint_dict()["precision"] == "bfloat16"
    with pytest.raises(InvalidInputError, match="precision"):
        cfg.replace(precision="float16").validate()
