"""Non-blind deconvolution with a known PSF (kernel convention: see :mod:`.physics`).

Planes are processed as a batch (N, H, W) of float tensors in [0, 1]. FFT-based methods work on a
padded, edge-tapered copy of each plane so that the circular model of the FFT does not wrap one
border into the other (no ringing at the image edges); the padding is cropped off afterwards.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F

#: ``step(done, total)`` is called after each step of an iterative method and returns whether to
#: stop (cancel); the methods then return their current iterate.
StepHook = Callable[[int, int], bool]


def psf_to_otf(psf: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """FFT of a PSF zero-padded to ``shape`` with its centre moved to the origin (rfft2 layout)."""
    kh, kw = psf.shape
    big = psf.new_zeros(shape)
    big[:kh, :kw] = psf
    big = torch.roll(big, shifts=(-(kh // 2), -(kw // 2)), dims=(0, 1))
    return torch.fft.rfft2(big)


def pad_and_taper(planes: torch.Tensor, psf: torch.Tensor) -> tuple[torch.Tensor, int, int]:
    """Reflect-pad (N, H, W) planes and taper the margin so the result is smooth when periodic.

    The margin blends from the reflected image (inside) to its circular blur by the PSF (at the
    outer edge), as MATLAB's ``edgetaper`` does, which matches the FFT's circular model there.
    Returns the padded planes and the margins (py, px) to crop afterwards.
    """
    kh, kw = psf.shape
    h, w = planes.shape[-2:]
    py, px = min(2 * kh, h - 1), min(2 * kw, w - 1)
    padded = torch.nn.functional.pad(planes[:, None], (px, px, py, py), mode="reflect")[:, 0]
    otf = psf_to_otf(psf, padded.shape[-2:])
    blurred = torch.fft.irfft2(torch.fft.rfft2(padded) * otf, s=padded.shape[-2:])

    def ramp(n: int, m: int) -> torch.Tensor:
        r = torch.ones(n, dtype=planes.dtype, device=planes.device)
        t = torch.linspace(0, 1, m + 2, dtype=planes.dtype, device=planes.device)[1:-1]
        t = 0.5 - 0.5 * torch.cos(torch.pi * t)  # smooth 0 -> 1
        r[:m], r[n - m :] = t, t.flip(0)
        return r

    alpha = ramp(padded.shape[-2], py)[:, None] * ramp(padded.shape[-1], px)[None, :]
    return alpha * padded + (1 - alpha) * blurred, py, px


def wiener(planes: torch.Tensor, psf: torch.Tensor, strength: float) -> torch.Tensor:
    """Tikhonov-regularised (gradient-penalty Wiener) deconvolution of (N, H, W) planes.

    Solves min_x |k * x - y|^2 + strength * |grad x|^2 in closed form in the Fourier domain.
    """
    h, w = planes.shape[-2:]
    padded, py, px = pad_and_taper(planes, psf)
    shape = padded.shape[-2:]
    otf = psf_to_otf(psf, shape)
    dx = psf_to_otf(psf.new_tensor([[0.0, -1.0, 1.0]]), shape)
    dy = psf_to_otf(psf.new_tensor([[0.0], [-1.0], [1.0]]), shape)
    denom = otf.abs() ** 2 + strength * (dx.abs() ** 2 + dy.abs() ** 2)
    est = torch.fft.irfft2(torch.fft.rfft2(padded) * otf.conj() / denom, s=shape)
    return est[:, py : py + h, px : px + w]


def _no_hook(done: int, total: int) -> bool:
    return False


# --------------------------------------------------------------------------------------------
# Hyper-Laplacian prior, half-quadratic splitting (Krishnan & Fergus, NIPS 2009)
# --------------------------------------------------------------------------------------------


def shrink_hyper_laplacian(v: torch.Tensor, beta: float, alpha: float) -> torch.Tensor:
    """Elementwise argmin_w |w|^alpha + beta/2 (w - v)^2 for 0 < alpha <= 1.

    For alpha = 1 this is soft thresholding. Otherwise the non-zero candidate is the largest root
    of alpha w^(alpha-1) + beta (w - |v|) = 0, found by Newton's method from w = |v| (the
    derivative is convex and increasing there, so the iteration descends monotonically onto the
    root); it is kept where its energy is below that of w = 0.
    """
    a = v.abs()
    if alpha >= 1.0:
        return torch.sign(v) * (a - 1.0 / beta).clamp_min(0)
    w_min = (alpha * (1 - alpha) / beta) ** (1 / (2 - alpha))  # inflection of the energy
    w = a.clamp_min(w_min)
    for _ in range(12):
        g = alpha * w.pow(alpha - 1) + beta * (w - a)
        h = alpha * (alpha - 1) * w.pow(alpha - 2) + beta
        w = (w - g / h).clamp(min=w_min).minimum(a.clamp_min(w_min))
    energy = w.pow(alpha) + 0.5 * beta * (w - a) ** 2
    keep = (energy < 0.5 * beta * a**2) & (a > w_min)
    return torch.where(keep, torch.sign(v) * w, torch.zeros_like(v))


def hyper_laplacian(
    planes: torch.Tensor,
    psf: torch.Tensor,
    weight: float,
    *,
    alpha: float = 2 / 3,
    beta_start: float = 1.0,
    beta_max: float = 2.0**8,
    beta_rate: float = 2 * math.sqrt(2),
    cg_iterations: int = 8,
    step: StepHook = _no_hook,
) -> torch.Tensor:
    """Deconvolve (N, H, W) planes under a hyper-Laplacian gradient prior.

    Minimises weight/2 |A x - y|^2 + sum |grad x|^alpha by half-quadratic splitting: auxiliary
    gradients w, a penalty beta/2 |grad x - w|^2 raised from ``beta_start`` to ``beta_max`` by
    ``beta_rate``, alternating the elementwise w-step (:func:`shrink_hyper_laplacian`) with the
    quadratic x-step. ``weight`` plays the role of 1/noise variance. A is the 'valid' blur
    (:class:`ValidBlur`), so the latent extends beyond the image and nothing wraps; the x-step
    is then solved by conjugate gradients preconditioned with its circulant (FFT) approximation,
    warm-started from the previous x (``cg_iterations`` per step).
    """
    h, w = planes.shape[-2:]
    op = ValidBlur(psf, (h, w))
    shape = op.latent_shape
    dx = psf_to_otf(psf.new_tensor([[0.0, -1.0, 1.0]]), shape)
    dy = psf_to_otf(psf.new_tensor([[0.0], [-1.0], [1.0]]), shape)
    grad_den = dx.abs() ** 2 + dy.abs() ** 2
    data_den = op.otf.abs() ** 2
    aty = op.adjoint(planes)

    def grad(x, d):
        return torch.fft.irfft2(torch.fft.rfft2(x) * d, s=shape)

    def grad_t(g, d):
        return torch.fft.irfft2(torch.fft.rfft2(g) * d.conj(), s=shape)

    betas = []
    beta = beta_start
    while beta <= beta_max * (1 + 1e-9):
        betas.append(beta)
        beta *= beta_rate
    x = op.extend(planes)
    for i, beta in enumerate(betas):
        wx = shrink_hyper_laplacian(grad(x, dx), beta, alpha)
        wy = shrink_hyper_laplacian(grad(x, dy), beta, alpha)
        r = weight / beta
        rhs = r * aty + grad_t(wx, dx) + grad_t(wy, dy)
        precond_den = r * data_den + grad_den

        def apply(v, r=r):
            fv = torch.fft.rfft2(v)
            return r * op.adjoint(op(v)) + torch.fft.irfft2(fv * grad_den, s=shape)

        def precondition(v, den=precond_den):
            return torch.fft.irfft2(torch.fft.rfft2(v) / den, s=shape)

        x = _batched_cg(apply, rhs, x, cg_iterations, precondition=precondition)
        if step(i + 1, len(betas)):
            break
    return op.crop(x)


# --------------------------------------------------------------------------------------------
# 'Valid' forward model: the unknown is larger than the observation, so nothing wraps
# --------------------------------------------------------------------------------------------


class ValidBlur:
    """y = A x: the 'valid' blur of an (N, H + kh - 1, W + kw - 1) latent to (N, H, W), by FFT.

    Same convention as :func:`napari_selfdeblur.physics.blur_valid`. Methods built on it solve
    for the latent beyond the image border, so they need no padding heuristics at the edges.
    """

    def __init__(self, psf: torch.Tensor, image_shape: tuple[int, int]):
        self.kh, self.kw = psf.shape
        self.h, self.w = image_shape
        self.latent_shape = (self.h + self.kh - 1, self.w + self.kw - 1)
        self.otf = psf_to_otf(psf, self.latent_shape)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """The latent's window aligned with the observation."""
        oy, ox = self.kh // 2, self.kw // 2
        return x[..., oy : oy + self.h, ox : ox + self.w]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return self.crop(torch.fft.irfft2(torch.fft.rfft2(x) * self.otf, s=self.latent_shape))

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        oy, ox = self.kh // 2, self.kw // 2
        big = F.pad(r, (ox, self.kw - 1 - ox, oy, self.kh - 1 - oy))
        return torch.fft.irfft2(torch.fft.rfft2(big) * self.otf.conj(), s=self.latent_shape)

    def extend(self, y: torch.Tensor) -> torch.Tensor:
        """A starting latent: the observation with its border pixels replicated outwards."""
        oy, ox = self.kh // 2, self.kw // 2
        pads = (ox, self.kw - 1 - ox, oy, self.kh - 1 - oy)
        return F.pad(y[:, None], pads, mode="replicate")[:, 0]


# --------------------------------------------------------------------------------------------
# Sparse gradient prior, IRLS (Levin, Fergus, Durand & Freeman, SIGGRAPH 2007)
# --------------------------------------------------------------------------------------------

# Derivative filters of the sparse prior and their relative weights: first differences count
# fully, second differences a quarter.
_SPARSE_FILTERS = (
    ([[1.0, -1.0]], 1.0),
    ([[1.0], [-1.0]], 1.0),
    ([[-1.0, 2.0, -1.0]], 0.25),
    ([[-1.0], [2.0], [-1.0]], 0.25),
    ([[-1.0, 1.0], [1.0, -1.0]], 0.25),
)


def _batched_cg(apply, b, x, iterations, *, precondition=None, tol=1e-6):
    """(Preconditioned) conjugate gradients for a symmetric positive definite ``apply``.

    Works on (N, ...) batches with one step size per plane; a plane stops when its residual is
    below ``tol`` relative to its ``b``, and the loop when every plane has.
    """
    dims = tuple(range(1, b.ndim))

    def dot(u, v):
        return (u * v).sum(dims, keepdim=True)

    r = b - apply(x)
    z = precondition(r) if precondition is not None else r
    p = z.clone()
    rz = dot(r, z)
    stop = (tol**2) * dot(b, b)
    for _ in range(iterations):
        # A plane whose residual is small stops moving, exactly when it would alone: the
        # result of a plane does not depend on the batch it is in.
        active = dot(r, r) > stop
        if not bool(active.any()):
            break
        ap = apply(p)
        alpha = torch.where(active, rz / dot(p, ap).clamp_min(1e-30), torch.zeros_like(rz))
        x = x + alpha * p
        r = r - alpha * ap
        z = precondition(r) if precondition is not None else r
        rz_new = dot(r, z)
        beta = torch.where(active, rz_new / rz.clamp_min(1e-30), torch.zeros_like(rz))
        p = torch.where(active, z + beta * p, p)
        rz = torch.where(active, rz_new, rz)
    return x


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
    step: StepHook = _no_hook,
) -> torch.Tensor:
    """Deconvolve (N, H, W) planes under a sparse (|.|^alpha) prior on derivatives, by IRLS.

    Minimises |A x - y|^2 + weight * sum_f c_f sum |f * x|^alpha over first and second
    derivative filters f (c_f = 1 and 1/4), with A the 'valid' blur (:class:`ValidBlur`), so the
    image is solved for beyond its border. The first pass is quadratic (Gaussian prior); each of
    the ``reweightings`` passes replaces |z|^alpha by the quadratic with weights
    ``irls_scale`` * max(|z|, epsilon)^(alpha - 2) at the previous estimate (Levin et al.'s
    constants: alpha 0.8, epsilon 0.01, scale 0.1), solved by conjugate gradients.
    """
    h, w = planes.shape[-2:]
    op = ValidBlur(psf, (h, w))
    filters = [
        (planes.new_tensor(f)[None, None], c) for f, c in _SPARSE_FILTERS
    ]  # conv2d weights

    def responses(x):
        return [F.conv2d(x[:, None], f)[:, 0] for f, _ in filters]

    def make_apply(weights):
        def apply(x):
            out = op.adjoint(op(x))
            for (f, _), wt, z in zip(filters, weights, responses(x), strict=True):
                out = out + weight * F.conv_transpose2d((wt * z)[:, None], f)[:, 0]
            return out

        return apply

    b = op.adjoint(planes)
    x = op.extend(planes)
    weights = [torch.full_like(z, c) for (_, c), z in zip(filters, responses(x), strict=True)]
    total = reweightings + 1
    for i in range(total):
        if i > 0:
            weights = [
                irls_scale * c * z.abs().clamp_min(epsilon).pow(alpha - 2)
                for (_, c), z in zip(filters, responses(x), strict=True)
            ]
        x = _batched_cg(make_apply(weights), b, x, cg_iterations)
        if step(i + 1, total):
            break
    return op.crop(x)


# --------------------------------------------------------------------------------------------
# Richardson-Lucy, optionally with total variation (Dey et al., 2006)
# --------------------------------------------------------------------------------------------


def richardson_lucy(
    planes: torch.Tensor,
    psf: torch.Tensor,
    iterations: int,
    *,
    tv_weight: float | torch.Tensor = 0.0,
    step: StepHook = _no_hook,
) -> torch.Tensor:
    """Richardson-Lucy deconvolution of non-negative (N, H, W) planes, with optional TV.

    Multiplicative updates x <- x / (A^T 1 - tv div(grad x / |grad x|)) * A^T (y / A x) on the
    'valid' model (:class:`ValidBlur`); dividing by A^T 1 (Bertero & Boccacci) accounts for the
    latent pixels outside the image that contribute to it, so the borders do not ring.
    """
    h, w = planes.shape[-2:]
    op = ValidBlur(psf, (h, w))
    y = planes.clamp_min(0)
    tiny = 1e-12
    x = op.extend(y).clamp_min(1e-6)
    norm = op.adjoint(torch.ones_like(y))
    # Latent pixels that no observed pixel sees (where the PSF has zero rows/columns at its
    # edge) have A^T 1 = 0; they carry no information and are left as they start.
    seen = norm > 1e-6 * norm.amax(dim=(-2, -1), keepdim=True)
    norm = torch.where(seen, norm, torch.ones_like(norm))
    tv_weight = torch.as_tensor(tv_weight, dtype=planes.dtype, device=planes.device)
    use_tv = bool((tv_weight > 0).any())
    for i in range(iterations):
        ratio = y / op(x).clamp_min(tiny)
        denom = norm
        if use_tv:
            denom = (norm - tv_weight * _tv_divergence(x)).clamp_min(1e-3 * norm)
        update = op.adjoint(ratio).clamp_min(0) / denom
        x = torch.where(seen, x * update, x)
        if step(i + 1, iterations):
            break
    return op.crop(x)


def _tv_divergence(x: torch.Tensor, eps: float = 1e-3) -> torch.Tensor:
    """div(grad x / |grad x|) with forward differences and their adjoint (replicated borders)."""
    gx = F.pad(x[..., :, 1:] - x[..., :, :-1], (0, 1))
    gy = F.pad(x[..., 1:, :] - x[..., :-1, :], (0, 0, 0, 1))
    mag = torch.sqrt(gx**2 + gy**2 + eps**2)
    nx, ny = gx / mag, gy / mag
    div_x = nx - F.pad(nx[..., :, :-1], (1, 0))
    div_y = ny - F.pad(ny[..., :-1, :], (0, 0, 1, 0))
    return div_x + div_y
