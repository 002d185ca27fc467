"""Sparse derivative prior by iteratively reweighted least squares (Levin, Fergus, Durand & Freeman,
SIGGRAPH 2007): the quality choice of non-blind refinement.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..imaging.noise import SIGMA_FLOOR
from .base import Method, Param, StepHook, no_hook, per_plane, strength_param

if TYPE_CHECKING:
    import torch


# Derivative filters of the sparse prior and their relative weights: first differences count
# fully, second differences a quarter.
_SPARSE_FILTERS = (
    ([[1.0, -1.0]], 1.0),
    ([[1.0], [-1.0]], 1.0),
    ([[-1.0, 2.0, -1.0]], 0.25),
    ([[-1.0], [2.0], [-1.0]], 0.25),
    ([[-1.0, 1.0], [1.0, -1.0]], 0.25),
)


def filter_taps(f: list[list[float]]) -> tuple[int, int, tuple[tuple[int, int, float], ...]]:
    """(height, width, nonzero taps (row, column, value)) of a small filter."""
    taps = tuple((i, j, v) for i, row in enumerate(f) for j, v in enumerate(row) if v)
    return len(f), len(f[0]), taps


#: The derivative filters as (taps, weight): products by shifted slices, about 30 times faster
#: on a CPU than conv2d and conv_transpose2d with such tiny filters, and the same numbers.
_SPARSE_TAPS = tuple((filter_taps(f), c) for f, c in _SPARSE_FILTERS)


def correlate_valid(x: torch.Tensor, filt) -> torch.Tensor:
    """conv2d(x, filt) of (N, H, W) planes: the 'valid' correlation, (N, H - fh + 1, W - fw + 1)."""
    fh, fw, taps = filt
    oh, ow = x.shape[-2] - fh + 1, x.shape[-1] - fw + 1
    out = None
    for i, j, v in taps:
        term = v * x[..., i : i + oh, j : j + ow]
        out = term if out is None else out + term
    return out


def correlate_adjoint(z: torch.Tensor, filt) -> torch.Tensor:
    """conv_transpose2d(z, filt): the adjoint of :func:`correlate_valid`, (N, H, W) again."""
    fh, fw, taps = filt
    oh, ow = z.shape[-2:]
    out = z.new_zeros((*z.shape[:-2], oh + fh - 1, ow + fw - 1))
    for i, j, v in taps:
        out[..., i : i + oh, j : j + ow] += v * z
    return out


def sparse_prior(
    planes: torch.Tensor,
    psf: torch.Tensor,
    weight: float,
    *,
    alpha: float = 0.8,
    reweightings: int = 2,
    cg_iterations: int = 100,
    epsilon: float = 0.01,
    irls_scale: float = 0.1,
    step: StepHook = no_hook,
    start: torch.Tensor | None = None,
) -> torch.Tensor:
    """Deconvolve (N, H, W) planes under a sparse (|.|^alpha) prior on derivatives, by IRLS.

    Minimises |A x - y|^2 + weight * sum_f c_f sum |f * x|^alpha over first and second
    derivative filters f (c_f = 1 and 1/4), with A the 'valid' blur (:class:`ValidBlur`), so the
    image is solved for beyond its border. The first pass is quadratic (Gaussian prior); each of
    the ``reweightings`` passes replaces |z|^alpha by the quadratic with weights
    ``irls_scale`` * max(|z|, epsilon)^(alpha - 2) at the previous estimate (Levin et al.'s
    constants: alpha 0.8, epsilon 0.01, scale 0.1), solved by conjugate gradients. With
    ``start`` (N, H, W), an earlier estimate, the first weights come from it and the quadratic
    pass is skipped: ``reweightings`` passes in all, the first from ``start`` extended beyond the
    border.
    """
    import torch

    from ..imaging.fourier import ValidBlur, batched_cg

    h, w = planes.shape[-2:]
    op = ValidBlur(psf, (h, w))
    filters = _SPARSE_TAPS

    def responses(x):
        return [correlate_valid(x, f) for f, _ in filters]

    def make_apply(weights):
        def apply(x):
            out = op.adjoint(op(x))
            for (f, _), wt, z in zip(filters, weights, responses(x), strict=True):
                out = out + weight * correlate_adjoint(wt * z, f)
            return out

        return apply

    b = op.adjoint(planes)
    x = op.extend(planes if start is None else start)
    total = reweightings + 1
    for i in range(1 if start is not None and reweightings else 0, total):
        weights = [  # pass 0 is quadratic; the others reweight at the current estimate
            irls_scale * c * z.abs().clamp_min(epsilon).pow(alpha - 2)
            if i
            else torch.full_like(z, c)
            for (_, c), z in zip(filters, responses(x), strict=True)
        ]
        x = batched_cg(make_apply(weights), b, x, cg_iterations)
        if step(i + 1, total):
            break
    return op.crop(x)


def _run(planes, psf, strengths, params, step, device, start=None):
    return sparse_prior(
        planes,
        psf,
        per_plane(strengths, planes),
        alpha=params["alpha"],
        reweightings=params["reweightings"],
        cg_iterations=params["cg_iterations"],
        step=step,
        start=start,
    )


METHOD = Method(
    name="sparse",
    label="Sparse prior, IRLS (quality)",
    help="Levin et al. 2007: |derivative|^0.8 prior on first and second derivatives, "
    "iteratively reweighted least squares. Slower, the best quality.",
    params=(
        strength_param("prior weight; larger is smoother (default: from the noise)"),
        Param("alpha", float, 0.8, 0.3, 2.0, "prior exponent; smaller is sparser"),
        Param("reweightings", int, 2, 0, 20, "IRLS passes after the quadratic one"),
        Param("cg_iterations", int, 100, 1, 2000, "conjugate-gradient steps per pass"),
    ),
    strength_rule=lambda sigma: 29.9 * max(sigma, SIGMA_FLOOR) ** 1.98,
    run=_run,
    warm_start=True,
)
