"""A fast MAP estimate of the blur kernel: L0 gradient prior, alternating, coarse to fine.

The estimator follows the classical recipe of Xu, Zheng & Jia (CVPR 2013) and Pan et al. (CVPR
2014), with the parameter choices discussed by Anger, Facciolo & Delbracio (IPOL 2019):

- a pyramid whose kernel size shrinks by sqrt(2) per level (odd at every level), the image by the
  same ratio; each level starts from the previous kernel, upsampled;
- at each level, ``rounds`` alternations of
  - a latent step: min_x |k * x - y|^2 + lambda |grad x|_0, by half-quadratic splitting (the L0
    step is a hard threshold on the gradients, the quadratic step is closed form by FFT on a
    padded, edge-tapered copy of y, so nothing wraps), optionally with an L0 term on the dark
    channel (Pan et al. 2016; ``MapConfig.dark``, off in every preset);
  - a kernel step: min_k |grad x * k - grad y|^2 + gamma |k|^2 in the Fourier domain, cropped to
    the kernel's support, then non-negative, small values and isolated specks pruned, unit sum,
    centred;
- lambda decreases from round to round (sharp salient edges first, finer detail later), which is
  how alternating MAP avoids the no-blur solution that naive joint MAP prefers (Levin et al.,
  CVPR 2011).

Planes are processed as a batch (N, H, W) in [0, 1], each with its own kernel.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np
import torch
import torch.nn.functional as F

from ..config import MapConfig
from ..imaging.fourier import fast_margins, pad_and_taper, psf_to_otf
from ..imaging.psf import kernel_similarity
from .physics import centroid_offset, resample, shift_kernel


@dataclass
class MapProgress:
    """What a MAP callback receives: level ``level`` of ``levels``, round within it."""

    step: int  # alternations completed over all levels, 1-based
    total: int
    level: int
    levels: int
    kernel_shape: tuple[int, int]
    loss: float  # the first plane's data residual (mean squared) at this level


@dataclass
class MapResult:
    """Kernels (N, kh, kw), the L0 latents (N, H, W), and whether the run was cancelled."""

    kernels: np.ndarray
    latents: np.ndarray
    cancelled: bool = False
    levels: list[tuple[int, int]] = field(default_factory=list)  # kernel shape of each level
    # With MapConfig.candidates > 1, per plane: the orientation kept and each candidate's mean
    # kernel similarity to the others (1: all candidates found the same kernel).
    candidates: list[dict] = field(default_factory=list)
    # With MapConfig.candidates > 1, per plane: every candidate's kernel, (C, kh, kw), in the
    # order of ORIENTATIONS.
    alternatives: list[np.ndarray] = field(default_factory=list)


#: The orientations that ``MapConfig.candidates`` estimates from, in order: as is, flipped
#: up-down, flipped left-right, rotated by 180 degrees (flip rows, flip columns).
ORIENTATIONS = {
    "as is": (False, False),
    "up-down": (True, False),
    "left-right": (False, True),
    "rotated": (True, True),
}


def pyramid(kernel_shape: tuple[int, int], ratio: float = math.sqrt(2), smallest: int = 5):
    """(scale, kernel shape) of each level, coarsest first.

    Level j below the finest has image scale ``ratio``^-j; its kernel is the finest one scaled
    likewise, rounded up to an odd size. There are as many levels as keep the smaller kernel side
    at ``smallest`` pixels or more (the coarsest kernel still has a shape to find).
    """
    small = min(kernel_shape)
    depth = math.floor(math.log(small / smallest) / math.log(ratio)) if small > smallest else 0
    out = []
    for j in range(depth, -1, -1):
        scale = ratio**-j
        out.append((scale, tuple(max(3, _odd_up(k * scale)) for k in kernel_shape)))
    return out


def _odd_up(value: float) -> int:
    n = math.ceil(value - 1e-9)
    return n if n % 2 else n + 1


def _grad(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Circular differences x[i - 1] - x[i] along columns and rows: the convolutions whose OTFs
    :func:`_diff_otfs` gives, so the L0 step and the FFT step see the same gradients.
    """
    return torch.roll(x, 1, dims=-1) - x, torch.roll(x, 1, dims=-2) - x


def _diff_otfs(shape, like):
    dx = psf_to_otf(like.new_tensor([[0.0, -1.0, 1.0]]), shape)
    dy = psf_to_otf(like.new_tensor([[0.0], [-1.0], [1.0]]), shape)
    return dx, dy


def window_min(x: torch.Tensor, width: int, dim: int) -> torch.Tensor:
    """The minimum over centred windows of odd ``width`` along ``dim`` (-1 or -2), windows cut
    at the borders: by doubling (log2(width) elementwise minima; max_pool2d with such windows is
    about 20 times slower on a CPU).
    """
    r, n = width // 2, x.shape[dim]
    pad = (r, r, 0, 0) if dim == -1 else (0, 0, r, r)
    m = F.pad(x, pad, value=float("inf"))
    span = 1
    while 2 * span <= width:
        m = torch.minimum(m, torch.roll(m, -span, dims=dim))
        span *= 2
    # Now m[i] is the minimum of the padded x[i : i + span]; two such runs cover each window.
    return torch.minimum(m.narrow(dim, 0, n), m.narrow(dim, width - span, n))


#: Largest weight of the dark-channel splitting penalty (Pan et al. 2016 stop there too).
DARK_BETA_MAX = 8.0


def l0_latent(
    y_padded,
    kernels,
    lam,
    *,
    kappa: float = 2.0,
    beta_max: float = 1e5,
    dark: float = 0.0,
    dark_patch: int = 35,
):
    """min_x |k * x - y|^2 + lam |grad x|_0 + dark lam |D(x)|_0 for (N, H, W) padded planes, one
    kernel each. D(x) is the dark channel, the minimum over ``dark_patch`` x ``dark_patch``
    windows (Pan et al. 2016; a patch of 1 is the intensity L0 term of Pan et al. 2014); with
    ``dark`` 0 (the default) the term is off.

    Half-quadratic splitting: beta rises from 2 lam to ``beta_max`` by ``kappa``; the gradient
    step is a hard threshold (keep where |grad x|^2 >= lam / beta), the x step closed form by FFT
    (circular: the planes are padded and edge-tapered). The dark-channel penalty rises with it,
    from 2 dark lam up to :data:`DARK_BETA_MAX`: pixels that are some window's minimum are set to
    0 where their square is below dark lam / beta_dark.
    """
    shape = y_padded.shape[-2:]
    otf = torch.stack([psf_to_otf(k, shape) for k in kernels])  # (N, H, W//2 + 1)
    dx, dy = _diff_otfs(shape, y_padded)
    fy = torch.fft.rfft2(y_padded)
    num_data = otf.conj() * fy
    den_data = otf.abs() ** 2
    den_grad = dx.abs() ** 2 + dy.abs() ** 2
    lam = y_padded.new_tensor(lam).reshape(-1, 1, 1)
    x = y_padded.clone()
    beta = 2 * float(lam.min())
    beta_dark = 2 * dark * lam
    while beta < beta_max:
        gx, gy = _grad(x)
        keep = (gx**2 + gy**2) >= lam / beta
        gx, gy = gx * keep, gy * keep
        num = num_data + beta * (dx.conj() * torch.fft.rfft2(gx) + dy.conj() * torch.fft.rfft2(gy))
        den = den_data + beta * den_grad
        if dark > 0:
            dark_x = dark_thresholded(x, dark * lam / beta_dark, dark_patch)
            num = num + beta_dark * torch.fft.rfft2(dark_x)
            den = den + beta_dark
            beta_dark = torch.clamp(beta_dark * kappa, max=DARK_BETA_MAX)
        x = torch.fft.irfft2(num / den, s=shape)
        beta *= kappa
    return x


def dark_thresholded(x: torch.Tensor, threshold, patch: int) -> torch.Tensor:
    """``x`` (N, H, W) with its dark-channel pixels set to 0 where their square is below
    ``threshold`` (a scalar or (N, 1, 1)): the L0 step on the dark channel.

    A pixel belongs to the dark channel when it is the minimum of some ``patch`` x ``patch``
    window, i.e. where x equals its grey-level opening (a separable min filter, then a max
    filter); ties all count.
    """
    if patch > 1:
        eroded = window_min(window_min(x, patch, -1), patch, -2)
        opened = -window_min(window_min(-eroded, patch, -1), patch, -2)
        in_dark = x <= opened
    else:
        in_dark = torch.ones_like(x, dtype=torch.bool)
    return torch.where(in_dark & (x**2 < threshold), torch.zeros_like(x), x)


#: The constant in the denominator of :func:`usefulness`: 0.5 grey levels of 255, as published.
USEFULNESS_FLOOR = 0.5 / 255


def usefulness(y: torch.Tensor, window: int) -> torch.Tensor:
    """How useful each pixel's edges in the blurry planes ``y`` (N, H, W) are for the kernel
    step (Xu & Jia, ECCV 2010): |sum of the gradients| / (sum of |gradients| + a floor) over a
    centred ``window`` x ``window`` square, in [0, 1). Near 1 at an isolated straight edge (the
    gradients add up); near 0 in fine texture, thin lines and flat regions, whose blurred
    gradients cancel or are weak.
    """
    gx, gy = _grad(y)
    pad = window // 2

    def box(a):
        return F.avg_pool2d(a[:, None], window, stride=1, padding=pad, count_include_pad=True)[
            :, 0
        ] * (window * window)

    total = torch.sqrt(box(gx) ** 2 + box(gy) ** 2)
    return total / (box(torch.sqrt(gx**2 + gy**2)) + USEFULNESS_FLOOR)


def salient_threshold(gx: torch.Tensor, gy: torch.Tensor, count: int):
    """Per-plane gradient magnitude above which edges count as salient (Cho & Lee 2009).

    Gradient orientations (modulo pi) are put in 4 bins; in each, the ``count``-th largest
    magnitude is found, and the smallest of the four is returned, shape (N, 1, 1): every
    orientation keeps at least ``count`` edge pixels to constrain the kernel.
    """
    mag = torch.sqrt(gx**2 + gy**2).flatten(1)
    angle = torch.atan(gy / gx.where(gx != 0, gx.new_tensor(1e-12))).flatten(1)
    bins = torch.clamp(torch.floor((angle + math.pi / 2) / (math.pi / 4)).long(), 0, 3)
    out = []
    for m, b in zip(mag, bins, strict=True):
        values = []
        for i in range(4):
            sel = m[b == i]
            values.append(
                torch.topk(sel, min(count, sel.numel())).values[-1]
                if sel.numel()
                else m.new_tensor(0.0)
            )
        out.append(torch.stack(values).min())
    return torch.stack(out).reshape(-1, 1, 1)


def estimate_kernels(xs, ys, kernel_shape, gamma: float, mask, *, iterations: int = 30):
    """min_k sum_d |mask (x_d * k - y_d)|^2 + gamma |k|^2 over kernels of ``kernel_shape``.

    ``xs`` and ``ys`` are the latent's and the observation's gradients, (N, H, W) each, on the
    same padded grid; ``mask`` (H, W) is 1 where the observation is real (not padding), so the
    padding never feeds the estimate back into itself. Solved per plane by conjugate gradients on
    the kernel's support (products by FFT). Returns (N, kh, kw) raw kernels centred at
    (kh // 2, kw // 2), not yet projected onto PSFs.
    """
    from ..imaging.fourier import batched_cg

    shape = xs[0].shape[-2:]
    kh, kw = kernel_shape
    fx = [torch.fft.rfft2(a) for a in xs]

    def crop(full):  # the kernel-sized window around the origin of a circular correlation
        return torch.roll(full, shifts=(kh // 2, kw // 2), dims=(-2, -1))[..., :kh, :kw]

    def embed(k):
        big = k.new_zeros((*k.shape[:-2], *shape))
        big[..., :kh, :kw] = k
        return torch.fft.rfft2(torch.roll(big, shifts=(-(kh // 2), -(kw // 2)), dims=(-2, -1)))

    def correlate(images):  # sum_d x_d (correlation) images_d, cropped to the kernel
        spectra = sum(f.conj() * torch.fft.rfft2(m) for f, m in zip(fx, images, strict=True))
        return crop(torch.fft.irfft2(spectra, s=shape))

    def apply(k):
        fk = embed(k)
        blurred = [mask * torch.fft.irfft2(f * fk, s=shape) for f in fx]
        return correlate(blurred) + gamma * k

    b = correlate([mask * y for y in ys])
    return batched_cg(apply, b, torch.zeros_like(b), iterations)


def project_kernel(k: np.ndarray, threshold: float) -> np.ndarray:
    """Make a raw estimate a PSF: non-negative, values below ``threshold`` x max and isolated
    specks removed, unit sum, centre of mass moved to the centre pixel (when it fits).
    """
    k = np.clip(np.asarray(k, dtype=np.float64), 0, None)
    if k.max() <= 0:
        out = np.zeros_like(k)
        out[k.shape[0] // 2, k.shape[1] // 2] = 1.0
        return out
    k[k < threshold * k.max()] = 0
    k = _largest_components(k)
    k /= k.sum()
    dy, dx = centroid_offset(k)
    if dy or dx:
        moved = shift_kernel(k, -dy, -dx)
        if moved.sum() > 0.999:  # nothing pushed over the border
            k = moved / moved.sum()
    return k


def crop_kernel(k: np.ndarray, shape: tuple[int, int], threshold: float) -> np.ndarray:
    """The central ``shape`` window of a (centred) kernel, made a PSF again."""
    top, left = (k.shape[0] - shape[0]) // 2, (k.shape[1] - shape[1]) // 2
    if top == 0 and left == 0:
        return k
    return project_kernel(k[top : top + shape[0], left : left + shape[1]], threshold)


def _largest_components(k: np.ndarray, keep_fraction: float = 0.1) -> np.ndarray:
    """Zero the 8-connected components of the support holding < ``keep_fraction`` of the mass
    of the heaviest one (isolated noise specks).
    """
    labels = np.zeros(k.shape, dtype=np.int32)
    masses = [0.0]
    h, w = k.shape
    for start in zip(*np.nonzero(k), strict=True):
        if labels[start]:
            continue
        label = len(masses)
        labels[start] = label
        stack, mass = [start], 0.0
        while stack:
            i, j = stack.pop()
            mass += k[i, j]
            for a in (i - 1, i, i + 1):
                for b in (j - 1, j, j + 1):
                    if 0 <= a < h and 0 <= b < w and k[a, b] > 0 and not labels[a, b]:
                        labels[a, b] = label
                        stack.append((a, b))
        masses.append(mass)
    masses_arr = np.asarray(masses)
    weak = masses_arr < keep_fraction * masses_arr.max()
    weak[0] = True
    return np.where(weak[labels], 0.0, k)


def estimate_map(
    planes: np.ndarray,
    kernel_shape: tuple[int, int],
    cfg: MapConfig,
    *,
    device: torch.device,
    callback: Callable[[MapProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> MapResult:
    """MAP kernels of (N, H, W) planes in [0, 1], coarse to fine; see the module docstring.

    Deterministic: no random numbers are drawn. ``should_stop`` is polled before every round; a
    cancelled run returns the kernels reached so far (upsampled to ``kernel_shape``). With
    ``cfg.candidates`` C > 1 every plane is estimated in the first C :data:`ORIENTATIONS` (one
    batch of C x N planes, so C times the work), each kernel and latent is turned back, and the
    candidate whose kernel has the largest summed :func:`kernel_similarity` to the others is
    kept (a medoid: one estimate that went astray is outvoted).
    """
    names = list(ORIENTATIONS)[: cfg.candidates]
    if len(names) == 1:
        return _estimate(planes, kernel_shape, cfg, device, callback, should_stop)
    batch = np.concatenate([orient(planes, ORIENTATIONS[o]) for o in names])
    res = _estimate(batch, kernel_shape, cfg, device, callback, should_stop)
    n = len(planes)
    kernels = [
        orient(res.kernels[i * n : (i + 1) * n], ORIENTATIONS[o]) for i, o in enumerate(names)
    ]
    kept_kernels, kept_latents, notes = [], [], []
    for p in range(n):
        best, agreement = medoid([k[p] for k in kernels])
        kept_kernels.append(kernels[best][p])
        kept_latents.append(orient(res.latents[best * n + p], ORIENTATIONS[names[best]]))
        notes.append({"kept": names[best], "agreement": [round(a, 3) for a in agreement]})
    return MapResult(
        kernels=np.stack(kept_kernels),
        latents=np.stack(kept_latents),
        cancelled=res.cancelled,
        levels=res.levels,
        candidates=notes,
        alternatives=[np.stack([k[p] for k in kernels]) for p in range(n)],
    )


def medoid(kernels: list[np.ndarray]) -> tuple[int, list[float]]:
    """(index of the kernel with the highest mean :func:`kernel_similarity` to the others, each
    kernel's mean similarity to the others); the first wins a tie (to 1e-9, so that rounding
    does not decide between equal kernels).
    """
    c = len(kernels)
    sims = np.zeros((c, c))
    for i in range(c):
        for j in range(i + 1, c):  # symmetric: each pair once
            sims[i, j] = sims[j, i] = kernel_similarity(kernels[i], kernels[j])
    agreement = sims.sum(1) / (c - 1)
    return int(np.argmax(np.round(agreement, 9))), [float(a) for a in agreement]


def orient(a: np.ndarray, flips: tuple[bool, bool]) -> np.ndarray:
    """(..., H, W) ``a`` flipped up-down and/or left-right, contiguous (its own inverse)."""
    axes = tuple(axis for axis, flip in zip((-2, -1), flips, strict=True) if flip)
    return np.ascontiguousarray(np.flip(a, axes) if axes else a)


def _estimate(planes, kernel_shape, cfg: MapConfig, device, callback, should_stop) -> MapResult:
    """:func:`estimate_map` of every plane as it is."""
    # Single precision: as good as double on the design problems, 1.4 to 1.8 times faster.
    ys = torch.from_numpy(np.ascontiguousarray(planes, dtype=np.float32)).to(device)
    n, h, w = ys.shape
    asked = tuple(kernel_shape)
    kernel_shape = (asked[0] + 2 * cfg.margin, asked[1] + 2 * cfg.margin)
    levels = pyramid(kernel_shape, cfg.ratio)
    kernels = [_start_kernel(levels[0][1])] * n
    total, done, lam = len(levels) * cfg.rounds, 0, cfg.lambda_start
    latents, cancelled = None, False
    for li, (scale, kshape) in enumerate(levels):
        size = (max(kshape[0] + 2, round(h * scale)), max(kshape[1] + 2, round(w * scale)))
        y_level = _resize(ys, size) if size != (h, w) else ys
        kernels = [resample(k, kshape, kernel=True).astype(np.float64) for k in kernels]
        threshold = None
        for _ in range(cfg.rounds):
            if should_stop is not None and should_stop():
                cancelled = True
                break
            latents, kernels, threshold = _round(y_level, kernels, kshape, lam, threshold, cfg)
            lam = max(cfg.lambda_min, lam * cfg.lambda_decay)
            threshold = threshold / cfg.threshold_decay
            done += 1
            if callback is not None:
                loss = residual(latents[0], kernels[0], y_level[0])
                callback(MapProgress(done, total, li + 1, len(levels), kshape, loss))
        if cancelled:
            break
    final = [crop_kernel(resample(k, kernel_shape, kernel=True), asked, cfg.prune) for k in kernels]
    if latents is None or latents.shape[-2:] != (h, w):
        latents = ys
    return MapResult(
        kernels=np.stack(final).astype(np.float32),
        latents=latents.detach().cpu().numpy().astype(np.float32),
        cancelled=cancelled,
        levels=[shape for _, shape in levels],
    )


def _start_kernel(shape) -> np.ndarray:
    yy, xx = np.indices(shape) - np.array([shape[0] // 2, shape[1] // 2])[:, None, None]
    g = np.exp(-0.5 * (yy**2 + xx**2) / 0.5**2)
    return g / g.sum()


def _resize(planes: torch.Tensor, size) -> torch.Tensor:
    shrink = size[0] < planes.shape[-2] or size[1] < planes.shape[-1]
    return F.interpolate(
        planes[:, None], size=size, mode="bilinear", align_corners=False, antialias=shrink
    )[:, 0]


def _round(y, kernels, kshape, lam, threshold, cfg: MapConfig):
    """One alternation at one level: latent step, salient edges, kernel step.

    Returns (latents, kernels, threshold): ``threshold`` (N, 1, 1) is the salient-edge threshold
    used, computed on the first round of a level (None in) and passed on.
    """
    h, w = y.shape[-2:]
    psfs = [torch.from_numpy(k).to(y) for k in kernels]
    # Pad and taper each plane with its own kernel so the FFT's circular model fits the borders.
    padded, py, px = zip(
        *(pad_and_taper(y[i : i + 1], psfs[i]) for i in range(len(psfs))), strict=True
    )
    yp = torch.cat(padded)  # the same margins for every plane: they depend on sizes only
    x = l0_latent(yp, psfs, lam, kappa=cfg.kappa, dark=cfg.dark, dark_patch=cfg.dark_patch)
    gx, gy = _grad(x)
    if cfg.usefulness > 0:
        useful = usefulness(yp, cfg.usefulness_window) >= cfg.usefulness
        gx, gy = gx * useful, gy * useful
    if cfg.salient > 0:
        if threshold is None:
            threshold = salient_threshold(gx, gy, round(cfg.salient * max(kshape)))
        keep = torch.sqrt(gx**2 + gy**2) >= threshold
        gx, gy = gx * keep, gy * keep
    else:
        threshold = x.new_zeros((x.shape[0], 1, 1))
    mask = torch.zeros(yp.shape[-2:], dtype=yp.dtype, device=yp.device)
    mask[py[0] + 1 : py[0] + h - 1, px[0] + 1 : px[0] + w - 1] = 1  # real pixels, real gradients
    raw = estimate_kernels((gx, gy), _grad(yp), kshape, kernel_weights(psfs, cfg), mask)
    new = [project_kernel(k, cfg.prune) for k in raw.cpu().numpy()]
    latents = x[:, py[0] : py[0] + h, px[0] : px[0] + w]
    return latents, new, threshold


def refit_kernel(
    y: np.ndarray,
    latent: np.ndarray,
    kernel_shape: tuple[int, int],
    cfg: MapConfig,
    *,
    device: torch.device,
) -> np.ndarray | None:
    """The kernel step once more, at full resolution, against a sharp ``latent`` of ``y``.

    ``y`` and ``latent`` are (H, W) in [0, 1] on the same grid (the latent is typically the
    non-blind result with the MAP kernel, sharper and less cartoon-like than the L0 latent). Only
    the latent's strongest gradients (the top ``cfg.refit_salient`` fraction by magnitude) enter
    the least-squares kernel step (weight ``cfg.gamma``); pixels within half a kernel of the
    border are not used. Returns the kernel of ``kernel_shape`` made a PSF (:func:`project_kernel`),
    or None when no pixel is that far from the border (a kernel nearly as large as the image).
    """
    kh, kw = kernel_shape
    h, w = y.shape
    inner_h, inner_w = h - 2 * (kh // 2 + 1), w - 2 * (kw // 2 + 1)
    if inner_h <= 0 or inner_w <= 0:
        return None
    py, by = fast_margins(h, 2 * kh, centred=False)
    px, bx = fast_margins(w, 2 * kw, centred=False)
    planes = torch.from_numpy(np.stack([y, latent]).astype(np.float64)).to(device)
    yp, xp = F.pad(planes[:, None], (px, bx, py, by), mode="reflect")[:, 0]
    mask = torch.zeros(yp.shape, dtype=yp.dtype, device=yp.device)
    top, left = py + kh // 2 + 1, px + kw // 2 + 1
    mask[top : top + inner_h, left : left + inner_w] = 1
    gx, gy = _grad(xp[None])
    mag = torch.sqrt(gx**2 + gy**2)
    keep = mag >= top_fraction_threshold(mag[0][mask > 0], cfg.refit_salient)
    raw = estimate_kernels((gx * keep, gy * keep), _grad(yp[None]), kernel_shape, cfg.gamma, mask)
    return project_kernel(raw[0].cpu().numpy(), cfg.prune).astype(np.float32)


def top_fraction_threshold(values: torch.Tensor, fraction: float) -> torch.Tensor:
    """The smallest of the largest ``fraction`` of ``values`` (1-D, at least one kept).

    A selection, not ``torch.quantile``, which refuses inputs of more than 2^24 elements (a
    4096x4096 photograph).
    """
    n = values.numel()
    keep = max(1, round(fraction * n))
    return torch.kthvalue(values, n - keep + 1).values


def kernel_weights(psfs: list[torch.Tensor], cfg: MapConfig):
    """The kernel step's penalty weights: ``gamma`` (|k|^2), or for ``kernel_p`` < 2 per-pixel
    weights gamma ((k + e) / (peak + e))^(p - 2), e = peak / 10, from the previous kernels
    (one reweighted least-squares step towards |k|^p), shape (N, kh, kw).
    """
    if cfg.kernel_p >= 2:
        return cfg.gamma
    prev = torch.stack(psfs)
    e = prev.amax((-2, -1), keepdim=True) / 10
    return cfg.gamma * ((prev + e) / (11 * e)) ** (cfg.kernel_p - 2)


def residual(latent: torch.Tensor, kernel: np.ndarray, y: torch.Tensor) -> float:
    """Mean squared difference between the padded, circular blur of ``latent`` and ``y``."""
    psf = torch.from_numpy(np.ascontiguousarray(kernel, dtype=np.float64)).to(y)
    padded, py, px = pad_and_taper(latent[None], psf)
    h, w = y.shape[-2:]
    blurred = torch.fft.irfft2(
        torch.fft.rfft2(padded) * psf_to_otf(psf, padded.shape[-2:]), s=padded.shape[-2:]
    )[0, py : py + h, px : px + w]
    return float(((blurred - y) ** 2).mean())


def fit_map(
    y: np.ndarray,
    kernel_shape: tuple[int, int],
    cfg: MapConfig,
    *,
    device: torch.device,
    callback=None,
    should_stop: Callable[[], bool] | None = None,
):
    """The MAP estimate of one grey image ``y`` (H, W) in [0, 1] as a solver ``FitResult``.

    ``callback`` receives :class:`~napari_selfdeblur.engine.results.Progress` with stage
    ``"map i/L"`` (level i of L) and the data residual as the loss.
    """
    from .results import FitResult, Progress

    history: list[tuple[int, float]] = []

    def report(p: MapProgress) -> None:
        history.append((p.step, p.loss))
        if callback is not None:
            stage = f"map {p.level}/{p.levels}"
            callback(Progress(p.step, p.total, p.loss, stage=stage))

    res = estimate_map(
        y[None], kernel_shape, cfg, device=device, callback=report, should_stop=should_stop
    )
    latent = np.clip(res.latents[0], 0, 1)
    return FitResult(
        latent=latent,
        kernel=res.kernels[0],
        history=history,
        iterations_run=len(history),
        cancelled=res.cancelled,
        notes={"map_candidates": res.candidates[0]} if res.candidates else {},
        alternatives=list(res.alternatives[0]) if res.alternatives else [],
    )


#: Largest kernel side that ``kernel_size="auto"`` considers, in pixels.
AUTO_MAX_SIZE = 75


def is_auto(kernel_size) -> bool:
    """Whether ``kernel_size`` asks for the size to be found (``"auto"``)."""
    return isinstance(kernel_size, str) and kernel_size.strip().lower() == "auto"


#: Support threshold (fraction of the probe kernel's peak) and margin (pixels added to the
#: support's larger extent) of ``kernel_size="auto"``; chosen on design data, not the
#: benchmark (``benchmarks/auto_design.py``). Round 18 widened the margin from 2 to 4 px: with
#: the polished ``quick`` a window smaller than the blur costs more than a larger one (12 design
#: problems: 30.15 dB with 4 px, 29.64 with 2 px, which chose sizes below the true one twice).
AUTO_THRESHOLD, AUTO_MARGIN = 0.2, 4


def auto_kernel_size(
    y: np.ndarray, cfg: MapConfig, *, device: torch.device, should_stop=None
) -> dict:
    """Choose an odd square kernel size for ``y`` (H, W) in [0, 1] from a MAP estimate.

    The estimator runs with a generous kernel (a quarter of the smaller image side, odd, at most
    :data:`AUTO_MAX_SIZE`); the size is then chosen from its support (:func:`size_from_probe`).
    Returns ``{"probe": S, "support": [height, width], "chosen": n}``.
    """
    probe = probe_size(y.shape)
    # The support only: one estimate is enough (round 19: a medoid of three candidates chose
    # tighter windows but scored 0.13 dB lower on 24 design problems, at 3x the cost).
    one = replace(cfg, candidates=1)
    res = estimate_map(y[None], (probe, probe), one, device=device, should_stop=should_stop)
    return {"probe": probe, **size_from_probe(res.kernels[0])}


def probe_size(image_shape: tuple[int, int]) -> int:
    """The probe kernel's side for ``kernel_size="auto"``: a quarter of the smaller image side,
    odd, between 5 and :data:`AUTO_MAX_SIZE`.
    """
    return max(5, min(AUTO_MAX_SIZE, _odd_up(min(image_shape) / 4 - 1)))


def size_from_probe(
    k: np.ndarray, *, threshold: float = AUTO_THRESHOLD, margin: int = AUTO_MARGIN
) -> dict:
    """``{"support": [height, width], "chosen": n}`` for a probe kernel ``k``: the support is
    where rows or columns reach ``threshold`` x the peak; ``n`` is its larger extent plus
    ``margin`` pixels, made odd, at least 5 and at most the probe's size.
    """
    rows = np.nonzero(k.max(axis=1) >= threshold * k.max())[0]
    cols = np.nonzero(k.max(axis=0) >= threshold * k.max())[0]
    support = [int(rows[-1] - rows[0] + 1), int(cols[-1] - cols[0] + 1)] if rows.size else [1, 1]
    chosen = min(max(k.shape), max(5, _odd_up(max(support) + margin)))
    return {"support": support, "chosen": chosen}
