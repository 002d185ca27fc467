"""The MAP kernel estimator, the quick and standard presets, and kernel_size="auto"."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_selfdeblur import deblur
from napari_selfdeblur.config import MapConfig, get_preset
from napari_selfdeblur.engine.map_kernel import (
    auto_kernel_size,
    dark_thresholded,
    estimate_map,
    pyramid,
    size_from_probe,
    usefulness,
    window_min,
)
from napari_selfdeblur.engine.physics import convolve_same
from napari_selfdeblur.errors import InvalidInputError
from napari_selfdeblur.evaluation.metrics import kernel_similarity
from napari_selfdeblur.evaluation.sample import sharp_scene

CPU = torch.device("cpu")


@pytest.fixture
def hook_problem(asymmetric_kernel):
    sharp = sharp_scene((96, 96), seed=2)
    rng = np.random.default_rng(0)
    blurry = convolve_same(sharp, asymmetric_kernel) + 0.002 * rng.standard_normal(sharp.shape)
    return np.clip(blurry, 0, 1).astype(np.float32), asymmetric_kernel


def test_pyramid_levels_are_odd_and_end_at_the_size():
    levels = pyramid((27, 19))
    assert levels[-1] == (1.0, (27, 19))
    assert all(k % 2 == 1 for _, shape in levels for k in shape)
    scales = [s for s, _ in levels]
    assert scales == sorted(scales) and min(levels[0][1]) >= 5


def test_quick_recovers_an_asymmetric_kernel(hook_problem):
    blurry, truth = hook_problem
    r = deblur(blurry, 9, preset="quick", device="cpu")
    sim = kernel_similarity(r.kernel, truth)
    flipped = kernel_similarity(r.kernel[::-1, ::-1], truth)
    print(f"kernel similarity {sim:.3f} (flipped {flipped:.3f}), {r.runtime_s:.1f} s")
    assert sim >= 0.9 and sim > flipped
    assert r.metadata()["preset"] == "quick"
    assert r.latent.shape == blurry.shape and r.latent.dtype == blurry.dtype


def test_refit_against_the_sharp_image_finds_the_kernel_the_map_start_missed(hook_problem):
    from napari_selfdeblur.engine.map_kernel import refit_kernel

    blurry, truth = hook_problem
    sharp = sharp_scene((96, 96), seed=2).astype(np.float32)
    blob = np.ones((9, 9), np.float32) / 81  # what a failed start looks like
    assert kernel_similarity(blob, truth) < 0.8
    k = refit_kernel(blurry, sharp, (9, 9), MapConfig(), device=CPU)
    assert k.shape == (9, 9) and k.min() >= 0 and k.sum() == pytest.approx(1, abs=1e-5)
    assert kernel_similarity(k, truth) >= 0.95
    # With every gradient, not only the strongest, the estimate is still a PSF of that size.
    assert refit_kernel(blurry, sharp, (9, 9), MapConfig(refit_salient=1.0), device=CPU).shape == (
        9,
        9,
    )


def test_the_refit_threshold_keeps_the_top_fraction_even_of_huge_images():
    from napari_selfdeblur.engine.map_kernel import top_fraction_threshold

    values = torch.arange(1000, dtype=torch.float64).flip(0)
    assert int((values >= top_fraction_threshold(values, 0.1)).sum()) == 100
    assert int((values >= top_fraction_threshold(values, 1e-9)).sum()) == 1
    big = torch.rand(2**24 + 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    kept = int((big >= top_fraction_threshold(big, 0.1)).sum())  # torch.quantile refuses this
    assert kept == round(0.1 * big.numel())


def test_quick_polishes_its_kernel_and_records_it(hook_problem):
    blurry, _ = hook_problem
    plain = get_preset("quick").replace(polish=False)
    polished = deblur(blurry, 9, preset="quick", device="cpu")
    unpolished = deblur(blurry, 9, preset=plain, device="cpu")
    change = polished.metadata()["polish"]["kernel_change_l1"]
    assert 0 < change < 2
    assert "polish" not in unpolished.metadata()
    assert np.abs(polished.kernel - unpolished.kernel).sum() == pytest.approx(change, abs=1e-3)


def test_map_estimate_is_deterministic_and_cancellable(hook_problem):
    blurry, _ = hook_problem
    a = estimate_map(blurry[None], (9, 9), MapConfig(rounds=2), device=CPU)
    b = estimate_map(blurry[None], (9, 9), MapConfig(rounds=2), device=CPU)
    np.testing.assert_array_equal(a.kernels, b.kernels)
    seen = []
    c = estimate_map(
        blurry[None],
        (9, 9),
        MapConfig(rounds=2),
        device=CPU,
        callback=seen.append,
        should_stop=lambda: len(seen) >= 3,
    )
    assert c.cancelled and len(seen) == 3 and c.kernels.shape == (1, 9, 9)
    assert [p.step for p in seen] == [1, 2, 3] and all(np.isfinite(p.loss) for p in seen)


def test_auto_size_covers_the_true_support(hook_problem):
    blurry, truth = hook_problem
    auto = auto_kernel_size(blurry, MapConfig(), device=CPU)
    rows, cols = np.nonzero(truth > 0)
    true_support = max(rows.max() - rows.min() + 1, cols.max() - cols.min() + 1)
    print(auto)
    assert auto["chosen"] % 2 == 1 and auto["chosen"] >= true_support


def test_auto_size_through_deblur_is_reported(hook_problem):
    blurry, _ = hook_problem
    r = deblur(blurry, "auto", preset="quick", device="cpu")
    auto = r.metadata()["kernel_size_auto"]
    assert list(r.kernel.shape) == [auto["chosen"]] * 2


def test_init_map_starts_gk_at_the_map_kernel(hook_problem, tiny_config):
    from napari_selfdeblur.engine.map_kernel import fit_map
    from napari_selfdeblur.engine.solver import fit

    blurry, _ = hook_problem
    cfg = tiny_config.replace(init="map", init_iterations=300)
    start = fit_map(blurry, (9, 9), cfg.map, device=CPU)
    first = fit(blurry, (9, 9), cfg, device=CPU, stop_at=0, start=start)
    sim = kernel_similarity(first.kernel, start.kernel)
    print(f"Gk after the warm start vs MAP kernel: {sim:.4f}")
    assert first.iterations_run == 0 and sim >= 0.99


def test_standard_records_the_safeguard_and_is_deterministic(scene, tiny_config):
    cfg = tiny_config.replace(init="map", init_iterations=5, final="sparse", safeguard=True)
    a = deblur(scene, 5, preset=cfg, seed=3, device="cpu")
    b = deblur(scene, 5, preset=cfg, seed=3, device="cpu")
    np.testing.assert_array_equal(a.latent, b.latent)
    np.testing.assert_array_equal(a.kernel, b.kernel)
    guard = a.metadata()["safeguard"]
    assert guard["kept"] in ("map", "selfdeblur")
    assert {"residual", "sparsity"} <= set(guard["map"]) and {"residual"} <= set(
        guard["selfdeblur"]
    )


def test_the_safeguard_compares_against_the_unpolished_map_start(scene, tiny_config):
    from napari_selfdeblur.config import DeblurConfig
    from napari_selfdeblur.engine.map_kernel import residual
    from napari_selfdeblur.imaging.image import Intensity

    map_cfg = MapConfig(candidates=3)
    cfg = tiny_config.replace(
        init="map", init_iterations=5, final="sparse", safeguard=True, polish=True, map=map_cfg
    )
    guarded = deblur(scene, 5, preset=cfg, seed=3, device="cpu").metadata()
    # SelfDeblur's result is polished; the MAP start is given the last non-blind pass only.
    map_only = deblur(scene, 5, preset=DeblurConfig(engine="map", final="sparse", map=map_cfg))
    unit = Intensity.of(scene)  # the safeguard scores in the engine's [0, 1] units
    grey, latent = (
        torch.from_numpy(unit.to_unit(a).astype(np.float64)) for a in (scene, map_only.latent)
    )
    start_residual = residual(latent, map_only.kernel, grey)
    assert guarded["safeguard"]["map"]["residual"] == pytest.approx(start_residual, rel=1e-4)
    assert "kernel_change_l1" in guarded["polish"]
    assert guarded["map_candidates"]["kept"] == map_only.metadata()["map_candidates"]["kept"]


@pytest.mark.parametrize("choice", ["medoid", "sparsity"])
def test_a_kept_map_start_is_polished_as_quick_polishes_it(scene, tiny_config, monkeypatch, choice):
    from napari_selfdeblur import api
    from napari_selfdeblur.config import DeblurConfig

    map_cfg = MapConfig(candidates=3)
    cfg = tiny_config.replace(
        init="map",
        init_iterations=5,
        final="sparse",
        safeguard=True,
        polish=True,
        map=map_cfg,
        candidate_choice=choice,
    )
    worse = iter([{"residual": 2.0, "sparsity": 9.0}, {"residual": 1.0, "sparsity": 9.0}])
    monkeypatch.setattr(api, "_quality", lambda *args: next(worse))  # SelfDeblur's, then MAP's
    guarded = deblur(scene, 5, preset=cfg, seed=3, device="cpu")
    quick_cfg = DeblurConfig(
        engine="map", final="sparse", polish=True, map=map_cfg, candidate_choice=choice
    )
    quick = deblur(scene, 5, preset=quick_cfg)
    assert guarded.metadata()["safeguard"]["kept"] == "map"
    assert ("chosen" in guarded.metadata()["map_candidates"]) == (choice == "sparsity")
    np.testing.assert_array_equal(guarded.kernel, quick.kernel)
    np.testing.assert_array_equal(guarded.latent, quick.latent)
    assert guarded.metadata()["polish"] == quick.metadata()["polish"]


def test_a_map_start_kept_by_standard_returns_quicks_result(scene, monkeypatch):
    """The presets polish alike (same rounds, warm passes, candidates and choice), so a MAP start
    that ``standard``'s safeguard keeps is exactly what ``quick`` returns for the same image.
    """
    from napari_selfdeblur import api

    worse = iter([{"residual": 2.0, "sparsity": 9.0}, {"residual": 1.0, "sparsity": 9.0}])
    monkeypatch.setattr(api, "_quality", lambda *args: next(worse))  # SelfDeblur's, then MAP's
    guarded = deblur(scene, 5, preset="standard", iterations=4, seed=3, device="cpu")
    quick = deblur(scene, 5, preset="quick", device="cpu")
    meta = guarded.metadata()
    assert meta["safeguard"]["kept"] == "map" and meta["preset"] == "standard"
    np.testing.assert_array_equal(guarded.kernel, quick.kernel)
    np.testing.assert_array_equal(guarded.latent, quick.latent)
    assert meta["polish"] == quick.metadata()["polish"]
    assert len(meta["polish"]["round_changes_l1"]) == get_preset("quick").polish_rounds


@pytest.mark.parametrize(
    "quick_wins",
    [(True, True, True), (True, False, True), (False, True, True), (True, True, False)],
)
def test_the_safeguard_against_quick_keeps_it_only_when_better_on_both_scores(
    scene, tiny_config, monkeypatch, quick_wins
):
    """safeguard_against="quick" weighs SelfDeblur's result against quick's own result on the
    same image, and returns quick's (kernel, latent and polish notes) only when it both fits the
    input better and is sharper, and its kernel stays inside its window.
    """
    from napari_selfdeblur import api

    cfg = tiny_config.replace(
        init="map",
        init_iterations=5,
        final="sparse",
        safeguard=True,
        safeguard_against="quick",
        polish=True,
        map=MapConfig(candidates=3),
        candidate_choice="sparsity",
    )
    plain = deblur(scene, 5, preset=cfg.replace(safeguard=False), seed=3, device="cpu")
    fits, sharper, inside = quick_wins
    scores = iter(  # SelfDeblur's, then quick's
        [
            {"residual": 2.0, "sparsity": 9.0},
            {"residual": 1.0 if fits else 3.0, "sparsity": 8.0 if sharper else 10.0},
        ]
    )
    monkeypatch.setattr(api, "_quality", lambda *args: next(scores))
    monkeypatch.setattr(api, "touches_border", lambda k: not inside)
    guarded = deblur(scene, 5, preset=cfg, seed=3, device="cpu")
    quick = deblur(scene, 5, preset="quick", device="cpu")
    meta = guarded.metadata()
    assert set(meta["safeguard"]) == {"selfdeblur", "quick", "kept"}
    assert meta["safeguard"]["quick"]["at_border"] is (not inside)
    if all(quick_wins):
        assert meta["safeguard"]["kept"] == "quick"
        np.testing.assert_array_equal(guarded.kernel, quick.kernel)
        np.testing.assert_array_equal(guarded.latent, quick.latent)
        assert meta["polish"] == quick.metadata()["polish"]
        assert len(meta["polish"]["round_changes_l1"]) == get_preset("quick").polish_rounds
    else:
        assert meta["safeguard"]["kept"] == "selfdeblur"
        np.testing.assert_array_equal(guarded.kernel, plain.kernel)
        np.testing.assert_array_equal(guarded.latent, plain.latent)
        assert meta["polish"] == plain.metadata()["polish"]


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"safeguard_against": "best"}, "safeguard_against must be"),
        ({"safeguard_against": "quick", "polish": False}, "needs polish=True"),
        ({"safeguard_against": "quick", "final": "none"}, "needs polish=True"),
    ],
)
def test_the_safeguard_setting_is_checked(changes, match):
    cfg = get_preset("standard").replace(**changes)
    with pytest.raises(InvalidInputError, match=match):
        cfg.validate()


@pytest.mark.parametrize("preset", ["quick", "standard"])
def test_progress_and_cancel_for_the_new_presets(scene, preset):
    cfg = get_preset(preset)
    if preset == "standard":
        cfg = cfg.with_iterations(20).replace(image_net=get_preset("demo").image_net)
    seen = []
    r = deblur(
        scene,
        5,
        preset=cfg,
        device="cpu",
        callback=seen.append,
        callback_every=1,
        should_stop=lambda: len(seen) >= 2,
    )
    assert r.cancelled and len(seen) == 2
    assert r.latent.shape == scene.shape and r.kernel.shape == (5, 5)


@pytest.mark.parametrize(
    ("kernel_size", "match"),
    [("９", "kernel size"), (4, "odd"), ("99", "larger than the image"), ("auto7", "kernel size")],
)
def test_quick_gives_the_same_clear_errors(scene, kernel_size, match):
    with pytest.raises(InvalidInputError, match=match):
        deblur(scene, kernel_size, preset="quick", device="cpu")


@pytest.mark.parametrize(("noise", "factor"), [(0.0, 5.0), (0.02, 2.0)])
def test_estimated_kernels_get_a_stronger_default_strength(asymmetric_kernel, noise, factor):
    # 5 times on a clean image, 2 times on a noisy one (whose noise-derived strength is larger).
    from napari_selfdeblur import refine

    blurry = convolve_same(sharp_scene((96, 96), seed=2), asymmetric_kernel)
    rng = np.random.default_rng(1)
    image = (blurry + noise * rng.standard_normal(blurry.shape)).astype(np.float32)
    exact = refine(image, asymmetric_kernel, "sparse")
    estimated = refine(image, asymmetric_kernel, "sparse", kernel_estimated=True)
    assert estimated.strengths[0] == pytest.approx(exact.strengths[0] * factor)
    assert estimated.metadata()["kernel_estimated"] is True
    forced = refine(image, asymmetric_kernel, "sparse", kernel_estimated=True, strength_factor=3)
    assert forced.strengths[0] == pytest.approx(exact.strengths[0] * 3)


def test_kernels_a_blind_run_found_uncertain_get_a_stronger_strength_on_clean_planes(
    asymmetric_kernel,
):
    from napari_selfdeblur import refine
    from napari_selfdeblur.nonblind.base import UNCERTAIN_KERNEL_BOOST

    blurry = convolve_same(sharp_scene((64, 64), seed=2), asymmetric_kernel)
    noisy = blurry + 0.02 * np.random.default_rng(1).standard_normal(blurry.shape)
    stack = np.stack([blurry, noisy]).astype(np.float32)
    estimated = refine(stack, asymmetric_kernel, "sparse", kernel_estimated=True)
    uncertain = refine(stack, asymmetric_kernel, "sparse", kernel_uncertain=True)
    clean_gain, noisy_gain = np.divide(uncertain.strengths, estimated.strengths)
    assert clean_gain == pytest.approx(UNCERTAIN_KERNEL_BOOST) and noisy_gain == pytest.approx(1)
    meta = uncertain.metadata()
    assert meta["kernel_estimated"] is True and meta["kernel_uncertain"] == [True, True]
    one = refine(stack, asymmetric_kernel, "sparse", kernel_uncertain=[False, True])
    np.testing.assert_allclose(one.strengths, estimated.strengths)  # plane 1 is noisy anyway
    assert "kernel_uncertain" not in estimated.metadata()
    forced = refine(stack[0], asymmetric_kernel, "sparse", kernel_uncertain=True, strength_factor=3)
    given = refine(stack[0], asymmetric_kernel, "sparse", strength_factor=3)
    assert forced.strengths == pytest.approx(given.strengths)  # an explicit factor is used as given
    with pytest.raises(InvalidInputError, match="kernel_uncertain has 3 flags for 2 planes"):
        refine(stack, asymmetric_kernel, "sparse", kernel_uncertain=[True] * 3)


def test_the_estimated_kernel_factor_falls_smoothly_with_the_noise():
    from napari_selfdeblur.nonblind.base import (
        ESTIMATED_KERNEL_FACTOR,
        ESTIMATED_KERNEL_NOISE_RAMP,
        NOISY_ESTIMATED_KERNEL_FACTOR,
        estimated_kernel_factor,
    )

    lo, hi = ESTIMATED_KERNEL_NOISE_RAMP
    sigmas = np.geomspace(lo / 2, hi * 2, 41)
    factors = [estimated_kernel_factor(s) for s in sigmas]
    assert factors[0] == ESTIMATED_KERNEL_FACTOR and factors[-1] == NOISY_ESTIMATED_KERNEL_FACTOR
    steps = np.diff(factors)
    assert (steps <= 0).all()  # falls with the noise, never rises
    assert -steps.min() < 0.5 * (ESTIMATED_KERNEL_FACTOR - NOISY_ESTIMATED_KERNEL_FACTOR)


@pytest.mark.parametrize("kernel_size", [21, 39])
def test_quick_takes_kernels_more_than_half_the_image(kernel_size):
    # 21 px on 40 px: the refit's margins of twice the kernel exceed what reflection can add;
    # 39 px: no pixel is half a kernel from the border, so the polish keeps the MAP kernel.
    image = sharp_scene((40, 40), seed=1).astype(np.float32)
    r = deblur(image, kernel_size, preset="quick", device="cpu")
    assert r.kernel.shape == (kernel_size, kernel_size)
    assert r.kernel.sum() == pytest.approx(1.0, abs=1e-4) and np.isfinite(r.latent).all()
    assert "kernel_change_l1" in r.metadata()["polish"]


def test_strength_factor_overrides_the_estimated_kernel_factor(scene, asymmetric_kernel):
    from napari_selfdeblur import refine

    exact = refine(scene, asymmetric_kernel, "sparse").strengths[0]
    scaled = refine(scene, asymmetric_kernel, "sparse", kernel_estimated=True, strength_factor=2)
    assert scaled.strengths[0] == pytest.approx(2 * exact)
    assert scaled.metadata()["strength_factor"] == 2.0
    explicit = refine(scene, asymmetric_kernel, "sparse", strength=1e-3, strength_factor=2)
    assert explicit.strengths[0] == pytest.approx(1e-3)  # an explicit strength is never scaled
    for bad in (0, -1.0, float("nan")):
        with pytest.raises(InvalidInputError, match="strength_factor must be positive"):
            refine(scene, asymmetric_kernel, "sparse", strength_factor=bad)


def test_the_final_strength_factor_changes_only_the_last_pass(hook_problem):
    blurry, _ = hook_problem
    base = get_preset("quick")
    weak = deblur(blurry, 9, preset=base.replace(final_strength_factor=1.0), device="cpu")
    strong = deblur(blurry, 9, preset=base.replace(final_strength_factor=20.0), device="cpu")
    np.testing.assert_array_equal(weak.kernel, strong.kernel)  # same polish refit
    assert np.abs(np.diff(strong.latent)).sum() < np.abs(np.diff(weak.latent)).sum()
    with pytest.raises(InvalidInputError, match="final_strength_factor must be positive"):
        base.replace(final_strength_factor=0.0).validate()


def test_final_step_settings_do_not_change_a_checkpoint_fingerprint():
    cfg = get_preset("standard")
    changed = cfg.replace(polish=not cfg.polish, final_strength_factor=3.0, final="none")
    assert changed.fingerprint_dict() == cfg.fingerprint_dict()


def test_restarts_are_refused_for_the_map_engine(scene):
    with pytest.raises(InvalidInputError, match="restarts"):
        deblur(scene, 5, preset="quick", restarts=3, device="cpu")


def test_quick_works_on_images_too_small_for_a_unet():
    tiny = sharp_scene((24, 24), seed=1).astype(np.float32)
    with pytest.raises(InvalidInputError, match="too small"):
        deblur(tiny, 5, preset="paper", iterations=2, device="cpu")
    r = deblur(tiny, 5, preset="quick", device="cpu")
    assert r.latent.shape == tiny.shape and r.kernel.shape == (5, 5)


def test_the_size_rule_reads_the_support_of_the_probe_kernel():
    k = np.zeros((41, 41))
    k[15:26, 18:23] = 1.0  # an 11 x 5 support
    k[20, 5] = 0.04  # a faint speck far out: below a 5 % threshold, above a 3 % one
    assert size_from_probe(k, threshold=0.05, margin=4) == {"support": [11, 5], "chosen": 15}
    assert size_from_probe(k, threshold=0.05, margin=0)["chosen"] == 11
    assert size_from_probe(k)["chosen"] == 15  # the documented rule: 20 % of the peak, plus 4 px
    assert size_from_probe(k, threshold=0.03, margin=0)["support"] == [11, 18]
    assert size_from_probe(k[14:27, 14:27], threshold=0.05, margin=40)["chosen"] == 13  # probe


@pytest.mark.parametrize("settings", [{"margin": 2}, {"kernel_p": 1.0}])
def test_map_design_options_keep_the_kernel_a_psf_of_the_size_asked(hook_problem, settings):
    blurry, truth = hook_problem
    cfg = MapConfig(rounds=3, **settings)
    k = estimate_map(blurry[None], (9, 9), cfg, device=CPU).kernels[0]
    assert k.shape == (9, 9) and k.min() >= 0 and k.sum() == pytest.approx(1.0, rel=1e-5)
    assert kernel_similarity(k, truth) > 0.5


def test_candidates_keep_the_estimate_that_agrees_with_the_others(hook_problem):
    from napari_selfdeblur.engine.map_kernel import ORIENTATIONS

    blurry, truth = hook_problem
    other = np.ascontiguousarray(blurry.T)  # a second plane with its own (transposed) blur
    cfg = MapConfig(rounds=2, candidates=3)
    res = estimate_map(np.stack([blurry, other]), (9, 9), cfg, device=CPU)
    assert res.kernels.shape == (2, 9, 9) and len(res.candidates) == 2
    one = MapConfig(rounds=2)
    axes = [
        tuple(a for a, f in zip((0, 1), flips, strict=True) if f) for flips in ORIENTATIONS.values()
    ]
    for plane, note, kernel in zip((blurry, other), res.candidates, res.kernels, strict=True):
        # Each candidate is the plain estimate of the turned image, turned back.
        alone, alone_latents = [], []
        for turn in axes[:3]:
            turned = estimate_map(np.flip(plane, turn).copy()[None], (9, 9), one, device=CPU)
            alone.append(np.flip(turned.kernels[0], turn))
            alone_latents.append(np.flip(turned.latents[0], turn))
        sims = [[kernel_similarity(a, b) for b in alone] for a in alone]
        agreement = [(sum(row) - 1) / 2 for row in sims]
        assert note["agreement"] == pytest.approx(agreement, abs=1e-3)
        kept = list(ORIENTATIONS).index(note["kept"])
        assert kept == int(np.argmax(agreement))
        np.testing.assert_allclose(kernel, alone[kept], atol=1e-6)
        latent = res.latents[0 if plane is blurry else 1]
        # The kept one's latent, turned back (float32 FFTs of a batch and of one plane round
        # differently, and the L0 thresholds amplify that a little; another candidate's latent,
        # or one not turned back, differs by far more).
        np.testing.assert_allclose(latent, alone_latents[kept], atol=1e-2)
    assert kernel_similarity(res.kernels[0], truth) > 0.8
    again = estimate_map(np.stack([blurry, other]), (9, 9), cfg, device=CPU)
    np.testing.assert_array_equal(again.kernels, res.kernels)


def test_the_medoid_is_the_kernel_the_others_agree_with(asymmetric_kernel):
    from napari_selfdeblur.engine.map_kernel import medoid

    k = asymmetric_kernel
    moved = np.roll(k, 1, axis=1)  # the same kernel, translated: similarity 1
    stray = np.zeros_like(k)
    stray[k.shape[0] // 2, :] = 1 / k.shape[1]  # a horizontal line: a different blur
    best, agreement = medoid([stray, k, moved])
    assert best == 1  # k and moved tie; the first of them wins
    assert agreement[1] == pytest.approx(agreement[2]) and agreement[0] < agreement[1]
    assert agreement[1] == pytest.approx((1 + kernel_similarity(k, stray)) / 2)


def test_candidates_are_recorded_in_the_metadata(hook_problem):
    blurry, _ = hook_problem
    quick = get_preset("quick")
    assert quick.map.candidates == 3
    cfg = quick.replace(map=dataclasses.replace(quick.map, rounds=2))
    meta = deblur(blurry, 9, preset=cfg, device="cpu").metadata()
    assert meta["map_candidates"]["kept"] in ("as is", "up-down", "left-right")
    assert len(meta["map_candidates"]["agreement"]) == 3
    one = cfg.replace(map=dataclasses.replace(cfg.map, candidates=1))
    assert "map_candidates" not in deblur(blurry, 9, preset=one, device="cpu").metadata()


def test_map_design_options_are_checked():
    with pytest.raises(InvalidInputError, match="MAP candidates must be 1, 3 or 4"):
        MapConfig(candidates=2).validate()
    for bad in ({"margin": -1}, {"kernel_p": 0.0}, {"kernel_p": 2.5}):
        with pytest.raises(InvalidInputError, match="MAP"):
            MapConfig(**bad).validate()
    for bad in (0.0, 1.5):
        with pytest.raises(InvalidInputError, match="MAP refit_salient must be in"):
            MapConfig(refit_salient=bad).validate()
    for bad in ({"dark": -1.0}, {"dark_patch": 0}, {"dark_patch": 4}):
        with pytest.raises(InvalidInputError, match="MAP dark must be >= 0 and dark_patch odd"):
            MapConfig(**bad).validate()
    for bad in (
        {"usefulness": -0.1},
        {"usefulness": 1.0},
        {"usefulness_window": 0},
        {"usefulness_window": 4},
    ):
        with pytest.raises(InvalidInputError, match="MAP usefulness must be in"):
            MapConfig(**bad).validate()


def test_quick_can_start_its_polish_from_the_sharpest_candidate(hook_problem):
    from napari_selfdeblur.engine.map_kernel import ORIENTATIONS

    blurry, truth = hook_problem
    quick = get_preset("quick")
    assert quick.candidate_choice == "sparsity"
    plain = deblur(blurry, 9, preset=quick.replace(candidate_choice="medoid"), device="cpu")
    sharp = deblur(blurry, 9, preset=quick, device="cpu")
    notes = sharp.metadata()["map_candidates"]
    names = list(ORIENTATIONS)[:3]
    assert len(notes["sparsity"]) == 3
    assert notes["chosen"] == names[int(np.argmin(notes["sparsity"]))]
    assert notes["kept"] == plain.metadata()["map_candidates"]["kept"]  # the medoid, as before
    same_start = notes["chosen"] == notes["kept"]
    assert np.array_equal(sharp.latent, plain.latent) == same_start
    assert kernel_similarity(sharp.kernel, truth) >= 0.9
    with pytest.raises(InvalidInputError, match="candidate_choice must be"):
        deblur(blurry, 9, preset=quick.replace(candidate_choice="best"), device="cpu")
    # Without the polish the last pass is compared; without any pass the medoid stays.
    unpolished = deblur(blurry, 9, preset=quick.replace(polish=False), device="cpu").metadata()
    assert len(unpolished["map_candidates"]["sparsity"]) == 3
    bare = deblur(blurry, 9, preset=quick.replace(polish=False, final="none"), device="cpu")
    assert "chosen" not in bare.metadata()["map_candidates"]


def test_every_map_candidate_is_returned_beside_the_medoid(hook_problem):
    from napari_selfdeblur.engine.map_kernel import ORIENTATIONS

    blurry, _ = hook_problem
    cfg = dataclasses.replace(MapConfig(), candidates=3, rounds=2)
    res = estimate_map(np.stack([blurry, blurry.T]), (9, 9), cfg, device=torch.device("cpu"))
    assert [a.shape for a in res.alternatives] == [(3, 9, 9)] * 2
    for kept, alternatives, notes in zip(
        res.kernels, res.alternatives, res.candidates, strict=True
    ):
        np.testing.assert_array_equal(kept, alternatives[list(ORIENTATIONS).index(notes["kept"])])


def test_window_minima_match_a_direct_computation():
    rng = np.random.default_rng(0)
    x = torch.from_numpy(rng.random((2, 9, 23)))
    for width in (1, 3, 7, 9, 35):
        r = width // 2
        for dim in (-1, -2):
            n = x.shape[dim]
            spans = [(max(0, i - r), min(n, i + r + 1)) for i in range(n)]
            direct = torch.stack([x.narrow(dim, a, b - a).amin(dim) for a, b in spans], dim=dim)
            torch.testing.assert_close(window_min(x, width, dim), direct, rtol=0, atol=0)


def test_the_dark_channel_step_zeroes_only_small_window_minima():
    x = torch.full((1, 12, 12), 0.8, dtype=torch.float64)
    x[0, 2, 2], x[0, 9, 9], x[0, 5, 8] = 0.01, 0.3, 0.02
    for dy, dx in ((-1, -1), (-1, 1), (1, -1), (1, 1)):  # every 3 x 3 window holding (5, 8)
        x[0, 5 + dy, 8 + dx] = 0.015  # holds one of these darker pixels too
    out = dark_thresholded(x, 0.05**2, 3)
    assert out[0, 2, 2] == 0 and out[0, 4, 7] == 0  # window minima below the threshold
    assert out[0, 9, 9] == 0.3  # a window minimum, but above it
    assert out[0, 5, 8] == 0.02  # small, but never a window's minimum
    assert (out[x > 0.5] == 0.8).all()
    every = dark_thresholded(x, 0.05**2, 1)  # a patch of 1: the intensity L0 step
    assert every[0, 5, 8] == 0 and every[0, 9, 9] == 0.3


@pytest.mark.parametrize(("option", "value"), [("dark", 1.0), ("usefulness", 0.2)])
def test_an_optional_map_term_changes_the_estimate_and_still_finds_the_kernel(
    hook_problem, option, value
):
    # The dark-channel term of the latent step, the edge-usefulness mask of the kernel step.
    # One polish round: twelve refits converge so far that they wash out part of the difference.
    blurry, truth = hook_problem
    quick = get_preset("quick").replace(polish_rounds=1)
    changed = quick.replace(map=dataclasses.replace(quick.map, **{option: value}))
    with_term = deblur(blurry, 9, preset=changed, device="cpu")
    without = deblur(blurry, 9, preset=quick, device="cpu")
    assert kernel_similarity(with_term.kernel, truth) >= 0.9
    assert np.abs(with_term.kernel - without.kernel).sum() > 1e-3
    assert with_term.metadata()["config"]["map"][option] == value


def test_edges_are_useful_where_blurred_gradients_add_up():
    step = torch.zeros((1, 40, 40), dtype=torch.float64)
    step[0, :, 20:] = 1.0
    blurred = torch.from_numpy(convolve_same(step[0].numpy(), np.full((1, 7), 1 / 7)))[None]
    rng = np.random.default_rng(0)
    texture = torch.from_numpy(rng.random((1, 40, 40)))
    edge = usefulness(blurred, 5)[0, 10:30, 15:25]
    assert edge.min() > 0.95  # one straight (blurred) edge: the gradients add up
    assert usefulness(texture, 5)[0, 5:35, 5:35].mean() < 0.2  # they cancel in texture
    assert usefulness(torch.zeros_like(step), 5).abs().max() == 0  # flat: the floor wins
    assert usefulness(texture, 5).max() < 1


def test_the_joint_refinement_lowers_its_objective_and_returns_a_psf(hook_problem):
    from napari_selfdeblur import refine
    from napari_selfdeblur.engine.joint import joint_refine

    blurry, truth = hook_problem
    box = np.ones((3, 3)) / 9
    thick = convolve_same(np.pad(truth, 2), box)  # the truth, thickened, in a 11x11 window
    thick = (thick / thick.sum()).astype(np.float32)
    start = refine(blurry, thick, "sparse", kernel_estimated=True).image
    kept = thick.copy()
    args = dict(weight=1e-4, iterations=100, device=CPU)
    res = joint_refine(blurry, start, thick, **args)
    np.testing.assert_array_equal(thick, kept)  # the caller's kernel is not modified
    k = res.kernel
    assert k.shape == thick.shape and k.dtype == np.float32
    assert k.min() >= 0 and k.sum() == pytest.approx(1, abs=1e-5)
    assert np.abs(k - thick).sum() > 1e-3  # it moved
    assert res.objective[1] < 0.9 * res.objective[0]
    np.testing.assert_array_equal(k, joint_refine(blurry, start, thick, **args).kernel)
    stopped = joint_refine(blurry, start, thick, should_stop=lambda: True, **args)
    np.testing.assert_array_equal(stopped.kernel, thick)  # a cancelled refinement changes nothing
    assert stopped.objective[0] == stopped.objective[1] == res.objective[0]


def test_the_joint_refinement_keeps_the_true_kernel_near_the_truth(hook_problem):
    from napari_selfdeblur.engine.joint import joint_refine

    blurry, truth = hook_problem  # no collapse towards the no-blur (delta) kernel
    sharp = sharp_scene((96, 96), seed=2).astype(np.float32)
    res = joint_refine(blurry, sharp, truth, weight=1e-4, iterations=300, device=CPU)
    assert kernel_similarity(res.kernel, truth) >= 0.97
    assert res.kernel.max() < 1.5 * truth.max()


def test_more_polish_rounds_refit_against_the_previous_round(hook_problem):
    blurry, _ = hook_problem
    cfg = get_preset("quick")
    one = deblur(blurry, 9, preset=cfg.replace(polish_rounds=1), device="cpu")
    two = deblur(blurry, 9, preset=cfg.replace(polish_rounds=2), device="cpu")
    first, second = two.metadata()["polish"]["round_changes_l1"]
    assert "round_changes_l1" not in one.metadata()["polish"]
    # The first round is the one-round polish; the second moves the kernel on from there.
    assert first == pytest.approx(one.metadata()["polish"]["kernel_change_l1"], abs=1e-4)
    assert np.abs(two.kernel - one.kernel).sum() == pytest.approx(second, abs=1e-3)
    assert second > 0
    with pytest.raises(InvalidInputError, match="polish_rounds"):
        deblur(blurry, 9, preset=cfg.replace(polish_rounds=0), device="cpu")


def test_a_warm_polish_continues_each_cheap_pass_from_the_last(hook_problem, monkeypatch):
    from napari_selfdeblur.nonblind import api as nonblind_api

    blurry, _ = hook_problem
    real, calls = nonblind_api.refine, []

    def spy(image, kernel, method, **kw):
        out = real(image, kernel, method, **kw)
        calls.append((kw.get("start"), np.clip(out.image, 0, 1), kw.get("reweightings")))
        return out

    monkeypatch.setattr(nonblind_api, "refine", spy)
    cfg = get_preset("quick").replace(polish_rounds=3, polish_warm=True)
    warm = deblur(blurry, 9, preset=cfg, device="cpu")
    firsts, (cheap0, cheap1, last) = calls[-6:-3], calls[-3:]  # three candidates, the polish
    # The first cheap pass continues from the chosen candidate's first pass, the second from
    # the first; both are one reweighting. The last pass starts afresh.
    assert any(np.allclose(cheap0[0], out, atol=1e-6) for _, out, _ in firsts)
    np.testing.assert_allclose(cheap1[0], cheap0[1], atol=1e-6)
    assert cheap0[2] == cheap1[2] == 1 and last[0] is None
    calls.clear()
    again = deblur(blurry, 9, preset=cfg, device="cpu")
    np.testing.assert_array_equal(warm.latent, again.latent)
    cold = deblur(blurry, 9, preset=cfg.replace(polish_warm=False), device="cpu")
    assert all(start is None for start, _, _ in calls[-4:]) and not np.array_equal(
        cold.latent, warm.latent
    )
    assert warm.metadata()["config"]["polish_warm"] is True


def test_the_joint_refinement_runs_after_the_polish_and_is_recorded(hook_problem):
    blurry, _ = hook_problem
    cfg = get_preset("quick")
    assert cfg.joint_iterations == 0  # off in the shipped presets (docs/benchmarks.md, round 10)
    with_joint = deblur(blurry, 9, preset=cfg.replace(joint_iterations=50), device="cpu")
    without = deblur(blurry, 9, preset=cfg, device="cpu")
    joint = with_joint.metadata()["joint"]
    assert joint["iterations"] == 50 and 0 < joint["kernel_change_l1"] < 2
    assert joint["objective"][1] < joint["objective"][0]
    assert "joint" not in without.metadata()
    change = np.abs(with_joint.kernel - without.kernel).sum()
    assert change == pytest.approx(joint["kernel_change_l1"], abs=1e-3)
    with pytest.raises(InvalidInputError, match="joint_iterations"):
        deblur(blurry, 9, preset=cfg.replace(joint_iterations=-1), device="cpu")
    with pytest.raises(InvalidInputError, match="needs polish"):
        deblur(blurry, 9, preset=cfg.replace(joint_iterations=50, polish=False), device="cpu")


def test_the_last_pass_is_stronger_for_a_kernel_its_candidates_disagree_on():
    from napari_selfdeblur.api import uncertain_kernel_boost
    from napari_selfdeblur.nonblind.base import UNCERTAIN_KERNEL_BOOST

    assert uncertain_kernel_boost(None, 0.002) == 1.0  # one candidate: nothing known
    assert uncertain_kernel_boost(0.95, 0.002) == 1.0
    assert uncertain_kernel_boost(0.5, 0.002) == UNCERTAIN_KERNEL_BOOST > 1
    assert uncertain_kernel_boost(0.5, 0.02) == 1.0  # noisy: good kernels agree less too


def test_quick_boosts_only_its_last_pass_for_an_uncertain_kernel(hook_problem, monkeypatch):
    from napari_selfdeblur import api
    from napari_selfdeblur.imaging.noise import estimate_noise_sigma
    from napari_selfdeblur.nonblind.base import UNCERTAIN_KERNEL_BOOST, estimated_kernel_factor

    blurry, _ = hook_problem
    plain = deblur(blurry, 9, preset="quick", device="cpu")
    assert "uncertain_kernel_boost" not in plain.metadata()  # its candidates agree
    sigma = estimate_noise_sigma(api.engine_input(blurry))
    factor = UNCERTAIN_KERNEL_BOOST * estimated_kernel_factor(sigma)
    explicit = deblur(
        blurry, 9, preset=get_preset("quick").replace(final_strength_factor=factor), device="cpu"
    )
    monkeypatch.setattr(api, "UNCERTAIN_AGREEMENT", 1.01)  # every kernel counts as uncertain
    boosted = deblur(blurry, 9, preset="quick", device="cpu")
    assert boosted.metadata()["uncertain_kernel_boost"] == UNCERTAIN_KERNEL_BOOST
    assert boosted.refine_options == {"kernel_estimated": True, "kernel_uncertain": True}
    assert plain.refine_options == {"kernel_estimated": True, "kernel_uncertain": False}
    np.testing.assert_array_equal(boosted.kernel, plain.kernel)  # the estimate is the same
    np.testing.assert_array_equal(boosted.latent, explicit.latent)
    assert np.abs(np.diff(boosted.latent)).sum() < np.abs(np.diff(plain.latent)).sum()
