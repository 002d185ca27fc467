"""Failure detection for blind deconvolution results (numpy only).

SelfDeblur can end at the "no-blur" solution (kernel = delta, latent = the blurry input) or stop
improving at a poor fit. :func:`diagnose` looks only at what a run produced (no ground truth), so
it runs on every result:

- **delta kernel**: the kernel's effective support, 1 / sum(k^2) pixels (1 for a delta, n for a
  flat kernel of n pixels), is below ``DELTA_SUPPORT_PX``, or its peak holds more than
  ``DELTA_PEAK_FRACTION`` of its mass;
- **latent = input**: ||latent - input|| is below ``NO_CHANGE_FRACTION`` of the input's spread
  ||input - mean(input)|| (in the same value units), i.e. the run hardly changed the image;
- **stalled**: over the last quarter of a completed run the loss improved by less than
  ``STALL_RELATIVE`` (relative), while it is still above ``STALL_LOSS`` (a 1 - SSIM fit that poor
  does not reproduce the input); a fit that converged to a good loss is not flagged.

- **kernel at border**: kernel values on the window's edge reach ``BORDER_FRACTION`` of the peak:
  the window may be too small for the blur, or the estimate failed;
- **latent out of range**: the latent goes beyond the input's range by more than
  ``RANGE_EXCESS`` times the input's span on either side (a sharp image overshoots a little;
  striped or exploding latents of unconverged runs go far beyond);
- **unconverged**: the latent, blurred by the kernel, does not reproduce the input: the mean
  squared residual (away from the borders) exceeds ``UNCONVERGED_NOISE`` times the noise
  variance and ``UNCONVERGED_SPREAD`` squared times the input's variance. Measured on the
  built-in sample (64 and 96 px): 45 to 73 times the noise variance after 40 to 100 iterations
  of the demo network, 1.0 to 4.2 after complete ``demo``, ``standard`` or ``quick`` runs.
- **kernel uncertain** (MAP starts only): the MAP estimator ran on the image and on its flipped
  copies, and the kernel it kept agrees with the others by less than ``AGREEMENT_MIN`` (mean
  kernel similarity, 1 = identical). A kernel that is not reproducible under a flip of the
  image is not determined by the data. On the design photographs (``quick``, 8 images, 9 to
  55 px, noise 0.001 to 0.03) the 20 flagged kernels of 69 had a similarity to the truth of
  0.18 to 0.71, and the flag caught failed kernels that stay inside their window, which
  ``kernel at border`` cannot see; on the 32 Levin images the agreement was 0.83 to 1.00.

Thresholds were set on constructed cases (a delta kernel, a true kernel; see tests), and
``AGREEMENT_MIN`` on the design photographs; all are deliberately loose: a flag is a warning to
look, not a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .physics import convolve_same

DELTA_SUPPORT_PX = 2.0
DELTA_PEAK_FRACTION = 0.6
NO_CHANGE_FRACTION = 0.02
STALL_RELATIVE = 1e-3
STALL_LOSS = 0.1
BORDER_FRACTION = 0.2  # kernel values on the window's edge this close to the peak: too small
RANGE_EXCESS = 0.5
UNCONVERGED_NOISE = 10.0
UNCONVERGED_SPREAD = 0.02
NOISE_FLOOR = 1e-3  # the noise level assumed at least (intensities in [0, 1])
AGREEMENT_MIN = 0.5  # MAP candidates that agree less than this: the kernel is uncertain


@dataclass
class Diagnosis:
    """Measurements and warnings of one result; ``flags`` is empty when nothing looks wrong."""

    kernel_support_px: float
    kernel_peak_fraction: float
    latent_change: float  # ||latent - input|| / ||input - mean||
    late_improvement: float | None  # relative loss decrease over the last quarter (None: n/a)
    range_excess: float = 0.0  # how far the latent leaves the input's range, in input spans
    residual_noise_ratio: float | None = None  # mean squared residual / noise variance
    kernel_agreement: float | None = None  # the kept MAP candidate's agreement (None: no MAP)
    flags: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no failure check fired."""
        return not self.flags

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form: flags, messages and the measured values."""
        return {
            "kernel_support_px": round(self.kernel_support_px, 3),
            "kernel_peak_fraction": round(self.kernel_peak_fraction, 4),
            "latent_change": round(self.latent_change, 5),
            "late_improvement": None
            if self.late_improvement is None
            else round(self.late_improvement, 6),
            "range_excess": round(self.range_excess, 4),
            "residual_noise_ratio": None
            if self.residual_noise_ratio is None
            else round(self.residual_noise_ratio, 3),
            "kernel_agreement": None
            if self.kernel_agreement is None
            else round(self.kernel_agreement, 3),
            "flags": list(self.flags),
            "warnings": list(self.messages),
        }


def touches_border(kernel: np.ndarray) -> bool:
    """Whether the kernel reaches the edge of its window: some value on its outermost rows
    or columns is at least :data:`BORDER_FRACTION` of its peak (the blur may be larger than the
    window, or the estimate failed). False for an all-zero kernel.
    """
    k = np.clip(np.asarray(kernel, dtype=np.float64), 0, None)
    peak = float(k.max()) if k.size else 0.0
    ring = np.concatenate([k[0], k[-1], k[1:-1, 0], k[1:-1, -1]]) if min(k.shape) > 2 else k
    return peak > 0 and float(ring.max()) >= BORDER_FRACTION * peak


def diagnose(
    image: np.ndarray,
    latent: np.ndarray,
    kernel: np.ndarray,
    history: list[tuple[int, float]] | None = None,
    *,
    completed: bool = True,
    loss_switch: int = 0,
    noise_sigma: float | None = None,
    kernel_agreement: float | None = None,
) -> Diagnosis:
    """Check a result (``latent`` in the same units as ``image``) for the known failure modes.

    ``loss_switch``: the iteration where the loss changed type (MSE to 1 - SSIM); losses from
    before it are not compared with losses after it. ``noise_sigma`` (in the image's units)
    enables the convergence check; ``kernel_agreement`` (the MAP start's candidate agreement,
    0 to 1) the kernel-uncertainty check.
    """
    k = np.clip(np.asarray(kernel, dtype=np.float64), 0, None)
    total = k.sum()
    k = k / total if total > 0 else k
    support = float(1.0 / max((k**2).sum(), 1e-300))
    peak = float(k.max()) if k.size else 0.0
    x = np.asarray(image, dtype=np.float64)
    lat = np.asarray(latent, dtype=np.float64)
    spread = float(np.linalg.norm(x - x.mean()))
    change = float(np.linalg.norm(lat - x) / spread) if spread > 0 else 0.0
    late = None
    if history and completed and len(history) >= 4:
        iters = np.array([h[0] for h in history], float)
        losses = np.array([h[1] for h in history], float)
        cut = 0.75 * iters[-1]
        same_loss = iters > loss_switch if iters[-1] > loss_switch else iters <= loss_switch
        before = losses[(iters <= cut) & same_loss]
        if before.size:
            ref = float(before[-1])
            late = (ref - float(losses[-1])) / max(abs(ref), 1e-12)
    d = Diagnosis(support, peak, change, late, kernel_agreement=kernel_agreement)
    if support < DELTA_SUPPORT_PX or peak > DELTA_PEAK_FRACTION:
        d.flags.append("delta_kernel")
        d.messages.append(
            f"the kernel is close to a single point (effective support {support:.1f} px, peak "
            f"{peak:.0%} of its mass): the run may have ended at the no-blur solution; try "
            "another seed or a smaller kernel size"
        )
    if change < NO_CHANGE_FRACTION:
        d.flags.append("latent_is_input")
        d.messages.append(
            f"the latent differs from the input by only {change:.1%} of the image's contrast: "
            "nothing was deblurred"
        )
    if touches_border(k):
        d.flags.append("kernel_at_border")
        d.messages.append(
            f"the kernel reaches the edge of its {k.shape[0]}x{k.shape[1]} window: the blur may "
            "be larger than the kernel size (try a larger size or kernel_size='auto'), or the "
            "estimate failed (compare the result with the input)"
        )
    _agreement_check(d)
    _fit_checks(d, x, lat, k, noise_sigma if completed else None)
    if late is not None and late < STALL_RELATIVE and history[-1][1] > STALL_LOSS:
        d.flags.append("stalled")
        d.messages.append(
            f"the loss stopped improving at {history[-1][1]:.3g} (last quarter: "
            f"{late:+.2%}); the fit does not reproduce the input well"
        )
    return d


def _agreement_check(d: Diagnosis) -> None:
    """Flag a MAP start whose candidates (the image and its flips) disagree."""
    agreement = d.kernel_agreement
    if agreement is None or agreement >= AGREEMENT_MIN:
        return
    d.flags.append("kernel_uncertain")
    d.messages.append(
        f"the MAP kernel estimates from the image and its flipped copies disagree (agreement "
        f"{agreement:.2f}; 1 = identical): the data do not determine the kernel, so it is "
        "probably wrong; compare the result with the input, and try a kernel size close to the "
        "blur (or 'auto') or a larger, less noisy image"
    )


def _fit_checks(d: Diagnosis, x: np.ndarray, lat: np.ndarray, k: np.ndarray, sigma) -> None:
    """The latent-range and convergence checks (grey or colour; colour averaged)."""
    lo, hi = float(x.min()), float(x.max())
    span = max(hi - lo, 1e-12)
    d.range_excess = max(0.0, (lo - float(lat.min())) / span, (float(lat.max()) - hi) / span)
    if d.range_excess > RANGE_EXCESS:
        d.flags.append("latent_out_of_range")
        d.messages.append(
            f"the latent spans {float(lat.min()):.3g} to {float(lat.max()):.3g}, far outside the "
            f"input's {lo:.3g} to {hi:.3g}: the result is not trustworthy; run longer or check "
            "the kernel size"
        )
    if sigma is None or k.sum() <= 0 or min(x.shape[:2]) <= 2 * max(k.shape):
        return
    grey_x = x.mean(-1) if x.ndim == 3 else x
    grey_l = lat.mean(-1) if lat.ndim == 3 else lat
    m = max(k.shape)
    residual = float(((convolve_same(grey_l, k) - grey_x)[m:-m, m:-m] ** 2).mean())
    noise = max(float(sigma), NOISE_FLOOR * span) ** 2
    d.residual_noise_ratio = residual / noise
    floor = (UNCONVERGED_SPREAD * float(grey_x.std())) ** 2
    if residual > UNCONVERGED_NOISE * noise and residual > floor:
        d.flags.append("unconverged")
        d.messages.append(
            f"the result does not reproduce the input (residual {d.residual_noise_ratio:.0f} "
            "times the noise variance): the fit has not converged; run more iterations or a "
            "longer preset"
        )
