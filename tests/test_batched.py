"""Stacks: planes fitted at once (torch.func) match plane-by-plane runs; deblur_stack's contract."""

import numpy as np
import pytest
import torch

from napari_selfdeblur import deblur, deblur_stack
from napari_selfdeblur.engine.batched import can_batch, fit_planes
from napari_selfdeblur.engine.physics import convolve_same
from napari_selfdeblur.engine.solver import fit
from napari_selfdeblur.errors import InvalidInputError
from napari_selfdeblur.evaluation.sample import sharp_scene

CPU = torch.device("cpu")


@pytest.fixture
def stack() -> np.ndarray:
    box = np.full((3, 3), 1 / 9)
    return np.stack([convolve_same(sharp_scene((40, 40), seed=s), box) for s in range(3)]).astype(
        np.float32
    )


@pytest.fixture
def short(tiny_config):
    # Few iterations: Adam turns rounding differences in near-zero gradients into full steps,
    # so batched and single runs drift apart over long runs, as any two float paths do.
    return tiny_config.replace(iterations=3, channels_last=False)


@pytest.mark.parametrize("init", ["random", "noblur"])
def test_batched_planes_match_single_runs(stack, short, init):
    cfg = short.replace(init=init, init_iterations=10)
    batched = fit_planes(stack, (5, 5), cfg, device=CPU, seed=2, callback_every=1)
    for plane, b in zip(stack, batched, strict=True):
        single = fit(plane, (5, 5), cfg, device=CPU, seed=2, callback_every=1)
        assert [i for i, _ in b.history] == [1, 2, 3] and b.iterations_run == 3
        np.testing.assert_allclose(
            [v for _, v in b.history], [v for _, v in single.history], rtol=1e-3
        )
        np.testing.assert_allclose(b.kernel, single.kernel, atol=1e-4)
        np.testing.assert_allclose(b.latent, single.latent, atol=5e-3)
    # Different planes give different results (no plane's data leaks into another's).
    assert not np.allclose(batched[0].latent, batched[1].latent, atol=0.05)


def test_deblur_stack_batches_and_reports_planes(stack, short):
    seen = []
    results = deblur_stack(
        stack, 5, preset=short, device="cpu", batch_size=2, callback=seen.append, callback_every=1
    )
    assert len(results) == 3
    assert [r.extra.get("batched_planes") for r in results] == [2, 2, 1]
    assert [p.planes for p in seen] == [(0, 1)] * 3 + [(2,)] * 3
    one = deblur(stack[2], 5, preset=short, device="cpu")
    np.testing.assert_allclose(results[2].latent, one.latent, atol=5e-3)
    assert results[2].metadata()["config"] == one.metadata()["config"]
    # One after another (the CPU default) is exactly deblur() plane by plane.
    plain = deblur_stack(stack, 5, preset=short, device="cpu", callback=seen.append)
    assert all("batched_planes" not in r.extra for r in plain)
    np.testing.assert_array_equal(plain[2].latent, one.latent)
    assert {p.planes for p in seen[6:]} == {(0,), (1,), (2,)}


def test_deblur_stack_cancel_keeps_inputs_and_finished_planes(stack, short):
    original = stack.copy()
    calls = []
    cfg = short.replace(iterations=10)
    results = deblur_stack(
        stack,
        5,
        preset=cfg,
        device="cpu",
        batch_size=2,
        callback_every=1,
        callback=calls.append,
        should_stop=lambda: len(calls) >= 4,
    )
    assert len(results) == 2 and all(r.cancelled and r.iterations_run == 4 for r in results)
    assert all(r.latent.shape == (40, 40) and np.isfinite(r.latent).all() for r in results)
    np.testing.assert_array_equal(stack, original)


def test_deblur_stack_falls_back_and_rejects_bad_stacks(stack, short):
    alt = short.replace(mode="alternating")
    assert not can_batch(alt) and can_batch(short)
    results = deblur_stack(stack[:2], 5, preset=alt, device="cpu", batch_size=4)
    assert all("batched_planes" not in r.extra for r in results)
    with pytest.raises(ValueError, match="joint"):
        fit_planes(stack, (5, 5), alt, device=CPU)
    with pytest.raises(InvalidInputError, match="same shape"):
        deblur_stack([stack[0], stack[1][:30]], 5, preset=short, device="cpu")
    with pytest.raises(InvalidInputError, match="no planes"):
        deblur_stack([], 5, preset=short, device="cpu")
    with pytest.raises(InvalidInputError, match="batch_size"):
        deblur_stack(stack, 5, preset=short, device="cpu", batch_size=0)
    with pytest.raises(InvalidInputError, match="larger than the image"):
        deblur_stack(stack, 41, preset=short, device="cpu", batch_size=2)
