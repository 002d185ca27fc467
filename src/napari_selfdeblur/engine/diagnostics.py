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

Thresholds were set on constructed cases (a delta kernel, a true kernel; see tests) and are
deliberately loose: a flag is a warning to look, not a verdict.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

DELTA_SUPPORT_PX = 2.0
DELTA_PEAK_FRACTION = 0.6
NO_CHANGE_FRACTION = 0.02
STALL_RELATIVE = 1e-3
STALL_LOSS = 0.1
BORDER_FRACTION = 0.2  # kernel values on the window's edge this close to the peak: too small


@dataclass
class Diagnosis:
    """Measurements and warnings of one result; ``flags`` is empty when nothing looks wrong."""

    kernel_support_px: float
    kernel_peak_fraction: float
    latent_change: float  # ||latent - input|| / ||input - mean||
    late_improvement: float | None  # relative loss decrease over the last quarter (None: n/a)
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
            "flags": list(self.flags),
            "warnings": list(self.messages),
        }


def diagnose(
    image: np.ndarray,
    latent: np.ndarray,
    kernel: np.ndarray,
    history: list[tuple[int, float]] | None = None,
    *,
    completed: bool = True,
    loss_switch: int = 0,
) -> Diagnosis:
    """Check a result (``latent`` in the same units as ``image``) for the known failure modes.

    ``loss_switch``: the iteration where the loss changed type (MSE to 1 - SSIM); losses from
    before it are not compared with losses after it.
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
    d = Diagnosis(support, peak, change, late)
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
    ring = np.concatenate([k[0], k[-1], k[1:-1, 0], k[1:-1, -1]]) if min(k.shape) > 2 else k
    if k.size and ring.max() >= BORDER_FRACTION * peak and peak > 0:
        d.flags.append("kernel_at_border")
        d.messages.append(
            f"the kernel reaches the edge of its {k.shape[0]}x{k.shape[1]} window: the blur may "
            "be larger than the kernel size; try a larger size or kernel_size='auto'"
        )
    if late is not None and late < STALL_RELATIVE and history[-1][1] > STALL_LOSS:
        d.flags.append("stalled")
        d.messages.append(
            f"the loss stopped improving at {history[-1][1]:.3g} (last quarter: "
            f"{late:+.2%}); the fit does not reproduce the input well"
        )
    return d
