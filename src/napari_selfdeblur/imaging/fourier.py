"""FFT building blocks of deconvolution (torch): OTFs, edge tapering, the 'valid' blur operator,
batched conjugate gradients and the closed-form Wiener (Tikhonov) filter.

Planes are processed as a batch (N, H, W) of float tensors in [0, 1]; kernels follow the
convention of :mod:`napari_selfdeblur.engine.physics` (a PSF centred at (kh // 2, kw // 2)).
FFT methods either work on a padded, edge-tapered copy of each plane (:func:`pad_and_taper`) or
solve for a latent larger than the image (:class:`ValidBlur`), so the circular model of the FFT
never wraps one border into the other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def next_fast_len(n: int) -> int:
    """The smallest integer >= n whose only prime factors are 2, 3 and 5: FFTs of such sizes are
    several times faster than of sizes with a large prime factor (e.g. 371 = 7 x 53).
    """
    m = max(1, int(n))
    while True:
        r = m
        for p in (2, 3, 5):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def fast_margins(n: int, margin: int, *, centred: bool = True) -> tuple[int, int]:
    """Reflection margins (before, after) for an axis of ``n`` pixels: ``margin`` on each side,
    widened so the padded length is a fast FFT size (:func:`next_fast_len`), the extra split
    evenly (``centred``) or all after; each capped at ``n - 1``, the most a reflection can add.
    """
    margin = min(margin, n - 1)
    total = next_fast_len(n + 2 * margin) - n
    before = total // 2 if centred else margin
    return min(before, n - 1), min(total - before, n - 1)


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
    The margins are twice the kernel, widened evenly to a fast FFT size (:func:`fast_margins`).
    Returns the padded planes and the top and left margins (py, px): the image is
    ``padded[..., py : py + H, px : px + W]``.
    """
    kh, kw = psf.shape
    h, w = planes.shape[-2:]
    py, by = fast_margins(h, 2 * kh)
    px, bx = fast_margins(w, 2 * kw)
    padded = torch.nn.functional.pad(planes[:, None], (px, bx, py, by), mode="reflect")[:, 0]
    otf = psf_to_otf(psf, padded.shape[-2:])
    blurred = torch.fft.irfft2(torch.fft.rfft2(padded) * otf, s=padded.shape[-2:])

    def rise(m: int) -> torch.Tensor:  # m values rising smoothly from 0 to 1 (ends excluded)
        t = torch.linspace(0, 1, m + 2, dtype=planes.dtype, device=planes.device)[1:-1]
        return 0.5 - 0.5 * torch.cos(torch.pi * t)

    def ramp(n: int, first: int, last: int) -> torch.Tensor:
        r = torch.ones(n, dtype=planes.dtype, device=planes.device)
        r[:first], r[n - last :] = rise(first), rise(last).flip(0)
        return r

    alpha = ramp(padded.shape[-2], py, by)[:, None] * ramp(padded.shape[-1], px, bx)[None, :]
    return alpha * padded + (1 - alpha) * blurred, py, px


def wiener_filter(planes: torch.Tensor, psf: torch.Tensor, strength: float) -> torch.Tensor:
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


class ValidBlur:
    """y = A x: the 'valid' blur of an (N, H + kh - 1, W + kw - 1) latent to (N, H, W), by FFT.

    Same convention as :func:`napari_selfdeblur.engine.physics.blur_valid`. Methods built on it
    solve
    for the latent beyond the image border, so they need no padding heuristics at the edges.
    """

    def __init__(self, psf: torch.Tensor, image_shape: tuple[int, int]):
        self.kh, self.kw = psf.shape
        self.h, self.w = image_shape
        self.latent_shape = (self.h + self.kh - 1, self.w + self.kw - 1)
        # The circular model at the latent's size (for circulant preconditioners).
        self.otf = psf_to_otf(psf, self.latent_shape)
        # The products themselves are computed at a fast FFT size, the latent zero-extended: the
        # 'valid' window and the adjoint's support never wrap, so the values are the same.
        self.fft_shape = (next_fast_len(self.latent_shape[0]), next_fast_len(self.latent_shape[1]))
        same = self.fft_shape == self.latent_shape
        self._fft_otf = self.otf if same else psf_to_otf(psf, self.fft_shape)

    def crop(self, x: torch.Tensor) -> torch.Tensor:
        """The latent's window aligned with the observation."""
        oy, ox = self.kh // 2, self.kw // 2
        return x[..., oy : oy + self.h, ox : ox + self.w]

    def _product(self, x: torch.Tensor, otf: torch.Tensor) -> torch.Tensor:
        s = self.fft_shape
        out = torch.fft.irfft2(torch.fft.rfft2(x, s=s) * otf, s=s)
        return out[..., : self.latent_shape[0], : self.latent_shape[1]]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The 'valid' blur A x of an (N, H + kh - 1, W + kw - 1) latent."""
        return self.crop(self._product(x, self._fft_otf))

    def adjoint(self, r: torch.Tensor) -> torch.Tensor:
        """The adjoint A^T r of an (N, H, W) residual."""
        oy, ox = self.kh // 2, self.kw // 2
        big = F.pad(r, (ox, self.kw - 1 - ox, oy, self.kh - 1 - oy))
        return self._product(big, self._fft_otf.conj())

    def extend(self, y: torch.Tensor) -> torch.Tensor:
        """A starting latent: the observation with its border pixels replicated outwards."""
        oy, ox = self.kh // 2, self.kw // 2
        pads = (ox, self.kw - 1 - ox, oy, self.kh - 1 - oy)
        return F.pad(y[:, None], pads, mode="replicate")[:, 0]


def batched_cg(apply, b, x, iterations, *, precondition=None, tol=1e-6):
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
