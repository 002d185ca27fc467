"""Non-blind refinement: operators, every method's gain, borders, stacks, cancel, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_selfdeblur.engine.physics import blur_valid
from napari_selfdeblur.errors import InvalidInputError
from napari_selfdeblur.evaluation.metrics import psnr
from napari_selfdeblur.evaluation.sample import sharp_scene
from napari_selfdeblur.imaging.fourier import ValidBlur
from napari_selfdeblur.nonblind import METHODS
from napari_selfdeblur.nonblind.api import refine
from napari_selfdeblur.nonblind.hyper_laplacian import shrink_hyper_laplacian

FAST = {"deep-prior": {"iterations": 150, "preset": "demo"}}


def make_problem(kernel, shape=(48, 48), sigma=0.002, seed=0):
    """Sharp scene, its 'valid' blur (real borders, nothing wraps) and a little noise."""
    kh, kw = kernel.shape
    big = sharp_scene((shape[0] + kh - 1, shape[1] + kw - 1), seed=seed)
    y = blur_valid(torch.from_numpy(big)[None, None], torch.from_numpy(kernel))[0, 0].numpy()
    y = y + np.random.default_rng(seed).normal(0, sigma, y.shape)
    sharp = big[kh // 2 : kh // 2 + shape[0], kw // 2 : kw // 2 + shape[1]]
    return sharp, y.astype(np.float32)


@pytest.mark.parametrize("shape", [(30, 40), (31, 43), (24, 26)])
def test_valid_blur_matches_engine_model_and_its_adjoint(shape):
    # (31, 43): latent 37 x 47, both prime, so the products run at a larger FFT size (40 x 48);
    # (24, 26): latent 30 x 30, already a fast size.
    gen = torch.Generator().manual_seed(0)
    k = torch.rand(7, 5, generator=gen, dtype=torch.float64)
    op = ValidBlur(k / k.sum(), shape)
    x = torch.rand(2, shape[0] + 6, shape[1] + 4, generator=gen, dtype=torch.float64)
    r = torch.rand(2, *shape, generator=gen, dtype=torch.float64)
    assert op.adjoint(r).shape == x.shape
    torch.testing.assert_close(op(x), blur_valid(x[:, None], k / k.sum())[:, 0])
    assert abs(float((op(x) * r).sum() - (x * op.adjoint(r)).sum())) < 1e-9


@pytest.mark.parametrize("shape", [(61, 53), (12, 9)])
def test_pad_and_taper_keeps_the_image_and_pads_to_a_fast_size(shape):
    from napari_selfdeblur.imaging.fourier import next_fast_len, pad_and_taper

    gen = torch.Generator().manual_seed(1)
    planes = torch.rand(2, *shape, generator=gen, dtype=torch.float64)
    psf = torch.full((5, 5), 1 / 25, dtype=torch.float64)
    padded, py, px = pad_and_taper(planes, psf)
    h, w = shape
    torch.testing.assert_close(padded[:, py : py + h, px : px + w], planes)
    if min(shape) > 40:  # margins fit: the padded size is a fast FFT size
        assert padded.shape[-2:] == (next_fast_len(h + 2 * py), next_fast_len(w + 2 * px))
    # periodic and smooth: the wrap-around step is no larger than the image's own steps
    wrap = (padded[:, 0] - padded[:, -1]).abs().max()
    assert float(wrap) <= float((planes[:, 1:] - planes[:, :-1]).abs().max())


@pytest.mark.parametrize("beta", [1.0, 16.0, 256.0])
def test_hyper_laplacian_shrinkage_is_the_minimiser(beta):
    v = torch.linspace(-1.5, 1.5, 601, dtype=torch.float64)
    w = shrink_hyper_laplacian(v, beta, 2 / 3)
    grid = torch.linspace(-2, 2, 40001, dtype=torch.float64)
    energy = grid.abs()[None] ** (2 / 3) + beta / 2 * (grid[None] - v[:, None]) ** 2
    ours = w.abs() ** (2 / 3) + beta / 2 * (w - v) ** 2
    assert float((ours - energy.min(1).values).max()) < 1e-6


@pytest.mark.parametrize("method", list(METHODS))
def test_every_method_sharpens(method, asymmetric_kernel):
    sharp, blurry = make_problem(asymmetric_kernel)
    out = refine(blurry, asymmetric_kernel, method, **FAST.get(method, {}))
    assert out.image.shape == blurry.shape and out.image.dtype == blurry.dtype
    before, after = psnr(blurry, sharp), psnr(out.image, sharp)
    print(f"{method}: {before:.2f} -> {after:.2f} dB")
    assert after > before + 1.0
    assert out.planes_done == 1 and not out.cancelled


def _edge_problem():
    """Bright on the left, dark on the right, blurred across that border ('valid' model)."""
    k = np.zeros((9, 9))
    k[4, :] = 1 / 9  # horizontal motion
    kh, kw = k.shape
    big = np.full((48 + kh - 1, 48 + kw - 1), 0.1)
    big[:, : big.shape[1] // 3] = 0.9
    big[10:20, 25:35] = 0.5
    y = blur_valid(torch.from_numpy(big)[None, None], torch.from_numpy(k))[0, 0].numpy()
    return k, y, big[kh // 2 : kh // 2 + 48, kw // 2 : kw // 2 + 48]


def _edge_vs_interior(out, sharp):
    err = np.abs(out - sharp)
    return err[:, [0, 1, 2, -3, -2, -1]].mean(), err[:, 12:-12].mean()


def test_border_check_catches_wrap_around():
    # The check below must fail for a method that treats the image as periodic: a plain
    # circular Wiener filter, without padding, smears the bright side into the dark one (its
    # ringing spreads inwards too, so only the absolute bound tells it apart).
    from napari_selfdeblur.imaging.fourier import psf_to_otf

    k, y, sharp = _edge_problem()
    otf = psf_to_otf(torch.from_numpy(k), y.shape)
    d = psf_to_otf(torch.tensor([[0.0, -1.0, 1.0]], dtype=torch.float64), y.shape)
    fy = torch.fft.rfft2(torch.from_numpy(y))
    naive = torch.fft.irfft2(fy * otf.conj() / (otf.abs() ** 2 + 1e-4 * d.abs() ** 2), s=y.shape)
    edge, _ = _edge_vs_interior(naive.numpy(), sharp)
    assert edge > 0.06


@pytest.mark.parametrize("method", ["hyper-laplacian", "sparse", "wiener", "richardson-lucy"])
def test_no_wrap_around_at_the_borders(method):
    k, y, sharp = _edge_problem()
    edge, interior = _edge_vs_interior(refine(y, k, method, strength=1e-4).image, sharp)
    print(f"{method}: mean error at the edges {edge:.4f}, interior {interior:.4f}")
    assert edge < 0.06
    assert edge <= 2 * interior + 0.02


@pytest.mark.parametrize("method", ["hyper-laplacian", "sparse", "wiener", "richardson-lucy"])
def test_stack_equals_single_calls(method, asymmetric_kernel):
    planes = [make_problem(asymmetric_kernel, (32, 40), seed=s)[1] for s in range(3)]
    stack = np.stack(planes)
    together = refine(stack, asymmetric_kernel, method)
    assert together.image.shape == stack.shape and together.planes_done == 3
    for i, plane in enumerate(planes):
        alone = refine(plane, asymmetric_kernel, method)
        np.testing.assert_allclose(together.image[i], alone.image, atol=1e-5)
        assert together.strengths[i] == pytest.approx(alone.strengths[0])


def test_small_batches_give_the_same_stack(asymmetric_kernel):
    stack = np.stack([make_problem(asymmetric_kernel, (32, 32), seed=s)[1] for s in range(3)])
    whole = refine(stack, asymmetric_kernel, "sparse")
    one_by_one = refine(stack, asymmetric_kernel, "sparse", max_batch_bytes=1)
    np.testing.assert_allclose(whole.image, one_by_one.image, atol=1e-5)


def test_rgb_uint8_and_4d_stack_keep_layout(asymmetric_kernel):
    sharp, grey = make_problem(asymmetric_kernel, (32, 32))
    rgba = np.stack([grey, 0.8 * grey, 0.5 + 0.3 * grey, np.full_like(grey, 0.7)], axis=-1)
    rgba8 = (np.clip(rgba, 0, 1) * 255).astype(np.uint8)
    out = refine(rgba8, asymmetric_kernel)
    assert out.image.shape == rgba8.shape and out.image.dtype == np.uint8
    np.testing.assert_array_equal(out.image[..., 3], rgba8[..., 3])  # alpha passes through
    assert psnr(out.image[..., 0] / 255, sharp) > psnr(rgba8[..., 0] / 255, sharp)
    stack = np.stack([np.stack([grey, grey[::-1]])] * 2)  # (2, 2, H, W): time x z
    assert refine(stack, asymmetric_kernel, "wiener").image.shape == stack.shape


def test_one_kernel_per_plane(asymmetric_kernel):
    k2 = asymmetric_kernel[::-1, ::-1].copy()
    a = make_problem(asymmetric_kernel, (32, 32), seed=0)
    b = make_problem(k2, (32, 32), seed=1)
    out = refine(np.stack([a[1], b[1]]), np.stack([asymmetric_kernel, k2]), "hyper-laplacian")
    alone = refine(b[1], k2, "hyper-laplacian")
    np.testing.assert_allclose(out.image[1], alone.image, atol=1e-5)
    with pytest.raises(InvalidInputError, match="does not fit"):
        refine(np.stack([a[1], b[1], b[1]]), np.stack([asymmetric_kernel, k2]))


def test_blank_planes_pass_through(asymmetric_kernel):
    plane = make_problem(asymmetric_kernel, (32, 32))[1]
    stack = np.stack([plane, np.zeros_like(plane)])
    out = refine(stack, asymmetric_kernel)
    np.testing.assert_array_equal(out.image[1], 0)
    assert out.planes_done == 2


def test_cancel_keeps_finished_planes_and_leaves_the_rest(asymmetric_kernel):
    stack = np.stack([make_problem(asymmetric_kernel, (32, 32), seed=s)[1] for s in range(3)])
    original = stack.copy()
    seen = []

    def stop():
        return any(p.planes_done >= 1 for p in seen)

    out = refine(
        stack,
        asymmetric_kernel,
        "sparse",
        max_batch_bytes=1,
        callback=seen.append,
        should_stop=stop,
    )
    assert out.cancelled and out.planes_done == 1
    np.testing.assert_array_equal(stack, original)  # the input is untouched
    np.testing.assert_array_equal(out.image[1:], original[1:])
    assert not np.array_equal(out.image[0], original[0])


def test_sparse_continues_from_a_start(asymmetric_kernel):
    sharp, blurry = make_problem(asymmetric_kernel)
    args = {"reweightings": 1, "cg_iterations": 30}
    steps, seen = [], []
    cold = refine(blurry, asymmetric_kernel, "sparse", callback=seen.append, **args).image
    warm = refine(
        blurry, asymmetric_kernel, "sparse", start=sharp, callback=steps.append, **args
    ).image
    # The quadratic pass is skipped: the only pass reported is the reweighting (step 2 of 2).
    assert [p.step for p in seen] == [1, 2] and [p.step for p in steps] == [2]
    assert psnr(warm, sharp) > psnr(cold, sharp) + 1  # it starts from a better estimate
    again = refine(blurry, asymmetric_kernel, "sparse", start=sharp, **args).image
    np.testing.assert_array_equal(warm, again)
    # With no reweighting there is only the quadratic pass, from the start: no skipped pass.
    quad = refine(blurry, asymmetric_kernel, "sparse", start=sharp, reweightings=0).image
    assert psnr(quad, sharp) > 20


def test_a_start_is_split_like_the_image(asymmetric_kernel):
    pairs = [make_problem(asymmetric_kernel, (32, 32), seed=s) for s in range(2)]
    stack = np.stack([blurry for _, blurry in pairs])
    starts = np.stack([sharp for sharp, _ in pairs]).astype(np.float32) * 0.9
    args = {"reweightings": 1, "cg_iterations": 20}
    both = refine(stack, asymmetric_kernel, "sparse", start=starts, max_batch_bytes=1, **args)
    for i in range(2):  # each plane continues from its own start, in its own units
        one = refine(stack[i], asymmetric_kernel, "sparse", start=starts[i], **args)
        np.testing.assert_allclose(both.image[i], one.image, atol=1e-6)
    # RGB: every colour channel continues from the same channel of the start.
    rgb = np.stack([stack[0], stack[1], stack[0]], axis=-1)
    rgb_start = np.stack([starts[0], starts[1], starts[0]], axis=-1)
    out = refine(rgb, asymmetric_kernel, "sparse", start=rgb_start, **args).image
    alone = refine(rgb[..., 1], asymmetric_kernel, "sparse", start=rgb_start[..., 1], **args)
    assert psnr(out[..., 1], pairs[1][0]) == pytest.approx(psnr(alone.image, pairs[1][0]), abs=0.3)
    assert not np.allclose(out[..., 0], out[..., 1])


def test_a_start_is_checked(asymmetric_kernel):
    _, blurry = make_problem(asymmetric_kernel)
    with pytest.raises(InvalidInputError, match="'wiener' cannot start"):
        refine(blurry, asymmetric_kernel, "wiener", start=blurry)
    with pytest.raises(InvalidInputError, match=r"start has shape \(5, 48\)"):
        refine(blurry, asymmetric_kernel, "sparse", start=blurry[:5])
    bad = blurry.copy()
    bad[3, 4] = np.nan
    with pytest.raises(InvalidInputError, match="start must hold finite numbers"):
        refine(blurry, asymmetric_kernel, "sparse", start=bad)


def test_strength_controls_smoothing(asymmetric_kernel):
    _, blurry = make_problem(asymmetric_kernel)
    weak = refine(blurry, asymmetric_kernel, strength=1e-5).image
    strong = refine(blurry, asymmetric_kernel, strength=1e-1).image
    assert np.abs(np.diff(weak, axis=1)).mean() > np.abs(np.diff(strong, axis=1)).mean()


def test_every_method_description_is_consistent():
    for m in METHODS.values():
        resolved = m.resolve({})
        assert set(resolved) == {p.name for p in m.params}
        assert m.help and m.label
        if "strength" in resolved:
            assert m.strength_rule is not None
            assert m.strength_rule(0.01) > m.strength_rule(0.001) > 0


def test_even_kernel_and_small_negative_lobes(asymmetric_kernel):
    _, blurry = make_problem(asymmetric_kernel)
    k = np.pad(asymmetric_kernel, ((0, 1), (0, 1)))  # 8x8
    assert refine(blurry, k).image.shape == blurry.shape
    k = asymmetric_kernel.copy()
    k[0, 0] = -0.01
    with pytest.warns(UserWarning, match="negative"):
        refine(blurry, k)


@pytest.mark.parametrize(
    ("kernel", "message"),
    [
        (np.ones((3, 3, 3)), "does not fit"),
        (np.ones(5), "2-D"),
        (np.zeros((3, 3)), "positive sum"),
        (np.full((3, 3), np.nan), "NaN"),
        (np.ones((61, 5)), "larger than the image"),
        (np.array([[1.0, -1.0, 1.0]]), "negative"),
        (np.empty((0, 3)), "empty"),
    ],
)
def test_bad_kernels(kernel, message):
    image = sharp_scene((48, 48))
    with pytest.raises(InvalidInputError, match=message):
        refine(image, kernel)


def test_bad_images_and_parameters(asymmetric_kernel):
    image = sharp_scene((48, 48))
    bad = image.copy()
    bad[3, 3] = np.inf
    cases = [
        (dict(image=np.ones(10)), "dimension"),
        (dict(image=bad), "NaN or infinite"),
        (dict(image=np.full((20, 20), 0.5)), "constant"),
        (dict(image=image, method="blind-magic"), "unknown refinement method"),
        (dict(image=image, iterations=3), "has no parameter"),
        (dict(image=image, strength=-1.0), ">= 0"),
        (dict(image=image, method="richardson-lucy", iterations="many"), "must be int"),
    ]
    for kwargs, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            refine(kernel=asymmetric_kernel, **kwargs)


def test_deep_prior_rejects_an_image_too_small_for_its_network():
    image = sharp_scene((12, 12))
    with pytest.raises(InvalidInputError, match="too small"):
        refine(image, np.full((3, 3), 1 / 9), "deep-prior", preset="paper")


@pytest.mark.parametrize(
    "filt",
    [
        [[1.0, -1.0]],
        [[-1.0], [2.0], [-1.0]],
        [[-1.0, 1.0], [1.0, -1.0]],
        [[0.5, 0.0, -2.0], [1.5, 3.0, 0.0]],  # zeros skipped, any values
    ],
)
def test_tap_correlation_matches_torch_convolutions(filt):
    """The sparse prior's derivative products by shifted slices give conv2d's numbers, and their
    adjoint conv_transpose2d's (the same numbers, to the bit, for the prior's +-1 and 2 taps).
    """
    import torch.nn.functional as F

    from napari_selfdeblur.nonblind.sparse import correlate_adjoint, correlate_valid, filter_taps

    gen = torch.Generator().manual_seed(3)
    x = torch.rand(2, 17, 19, generator=gen)
    w = torch.tensor(filt)[None, None]
    taps = filter_taps(filt)
    z = correlate_valid(x, taps)
    expected = F.conv2d(x[:, None], w)[:, 0]
    back = correlate_adjoint(z, taps)
    expected_back = F.conv_transpose2d(expected[:, None], w)[:, 0]
    assert z.shape == expected.shape and back.shape == x.shape
    torch.testing.assert_close(z, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(back, expected_back, rtol=1e-5, atol=1e-5)
    if all(v in (-1.0, 1.0, 2.0, 0.0) for row in filt for v in row):
        assert torch.equal(z, expected) and torch.equal(back, expected_back)
