"""What every non-blind method shares: its description (:class:`Method`, :class:`Param`) and the
progress hook of its iterations.

Every method's ``strength`` means the same thing: the weight of the image prior against the data,
so larger is smoother; left unset it is derived from each plane's noise level by the method's
``strength_rule``. This module imports neither torch nor napari.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import InvalidInputError

#: Default strengths are multiplied by this when the kernel is an estimate (a blind result) and
#: the image is nearly noise-free: an estimated kernel is never exact, and a stronger prior
#: suppresses the ringing its errors cause. Chosen on blurred photographs that are not the
#: benchmark (benchmarks/map_design.py, noise 0.002): 3 to 10 times the noise-derived strength
#: did best with MAP kernels; 5 is in the middle (log scale).
ESTIMATED_KERNEL_FACTOR = 5.0
#: The factor for estimated kernels on noisy images: at noise 0.005 to 0.03 the noise-derived
#: strength already grows with the noise, and 2 times it did better than 5 with every usable
#: kernel on the design photographs (benchmarks/strength_design.py).
NOISY_ESTIMATED_KERNEL_FACTOR = 2.0
#: Estimated noise levels (intensities in [0, 1]) between which the factor falls from
#: ESTIMATED_KERNEL_FACTOR to NOISY_ESTIMATED_KERNEL_FACTOR, geometrically in the noise level.
ESTIMATED_KERNEL_NOISE_RAMP = (0.003, 0.005)


def estimated_kernel_factor(sigma: float) -> float:
    """The multiple of the noise-derived default strength used with an estimated kernel on a
    plane whose noise standard deviation is ``sigma`` (intensities in [0, 1]).
    """
    lo, hi = ESTIMATED_KERNEL_NOISE_RAMP
    if sigma <= lo:
        return ESTIMATED_KERNEL_FACTOR
    if sigma >= hi:
        return NOISY_ESTIMATED_KERNEL_FACTOR
    t = math.log(sigma / lo) / math.log(hi / lo)
    return ESTIMATED_KERNEL_FACTOR * (NOISY_ESTIMATED_KERNEL_FACTOR / ESTIMATED_KERNEL_FACTOR) ** t


#: The extra multiple of the estimated-kernel strength for a blind kernel that its run found
#: uncertain (its MAP candidates disagreed; the run records ``uncertain_kernel_boost``). On the
#: design photographs (benchmarks/reliability_design.py: 61 problems, noise 0.002 and 0.005) the
#: best last-pass strength was 1 to 3 times the noise-derived one for kernels whose candidates
#: agreed, and 5 to 13 times for the failed, disagreeing ones.
UNCERTAIN_KERNEL_BOOST = 2.5
#: Noise level (intensities in [0, 1]) above which no boost is given: at noise 0.01 even good
#: kernels agree only 0.68 to 0.82, and they did best with a weaker pass, not a stronger one.
UNCERTAIN_MAX_NOISE = 0.006


def uncertain_kernel_factor(sigma: float) -> float:
    """The extra multiple of the estimated-kernel strength for an uncertain blind kernel on a
    plane whose noise standard deviation is ``sigma``: :data:`UNCERTAIN_KERNEL_BOOST` up to
    :data:`UNCERTAIN_MAX_NOISE`, else 1.
    """
    return UNCERTAIN_KERNEL_BOOST if sigma <= UNCERTAIN_MAX_NOISE else 1.0


#: ``step(done, total)`` is called after each step of an iterative method and returns whether to
#: stop (cancel); the methods then return their current iterate.
StepHook = Callable[[int, int], bool]


def no_hook(done: int, total: int) -> bool:
    """A :data:`StepHook` that never stops."""
    return False


@dataclass(frozen=True)
class Param:
    """One tunable parameter of a method: what the CLI option and the widget control show."""

    name: str
    kind: type
    default: Any  # None for "derived from the noise level"
    low: float | None = None
    high: float | None = None
    help: str = ""
    choices: tuple[str, ...] | None = None

    def check(self, value: Any) -> Any:
        """``value`` converted to the parameter's type and checked; None stays None."""
        if value is None:
            return None
        try:
            value = self.kind(value)
        except (TypeError, ValueError):
            raise InvalidInputError(
                f"parameter {self.name!r} must be {self.kind.__name__}, got {value!r}"
            ) from None
        if self.choices is not None and value not in self.choices:
            raise InvalidInputError(f"{self.name} must be one of {self.choices}, got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise InvalidInputError(f"{self.name} must be finite, got {value}")
        if self.low is not None and value < self.low:
            raise InvalidInputError(f"{self.name} must be >= {self.low}, got {value}")
        if self.high is not None and value > self.high:
            raise InvalidInputError(f"{self.name} must be <= {self.high}, got {value}")
        return value


@dataclass(frozen=True)
class Method:
    """A non-blind deconvolution method as users see it.

    ``strength_rule`` maps the noise level sigma ([0, 1] units) to the default strength.
    ``run(planes, psf, strengths, params, step, device)`` deconvolves an (N, H, W) float64 batch
    in [0, 1] with one strength per plane and returns the batch; ``step(done, total)`` reports
    progress and returns True to stop. ``batched`` methods take several planes at once.
    ``warm_start`` methods also accept ``start=``, an (N, H, W) estimate in [0, 1] to continue
    from (:func:`~napari_selfdeblur.nonblind.api.refine`'s ``start``).
    """

    name: str
    label: str
    help: str
    params: tuple[Param, ...]
    strength_rule: Callable[[float], float] | None
    run: Callable[..., Any]
    batched: bool = True
    warm_start: bool = False

    def param(self, name: str) -> Param:
        """The parameter called ``name`` (KeyError if the method has none)."""
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    def resolve(self, values: dict[str, Any]) -> dict[str, Any]:
        """Checked parameters with defaults filled in (``strength`` may stay None)."""
        unknown = set(values) - {p.name for p in self.params}
        if unknown:
            raise InvalidInputError(
                f"method {self.name!r} has no parameter(s) {', '.join(sorted(unknown))}; "
                f"it takes {', '.join(p.name for p in self.params) or 'none'}"
            )
        return {p.name: p.check(values.get(p.name, p.default)) for p in self.params}


def strength_param(help_text: str, high: float = 10.0) -> Param:
    """The ``strength`` parameter (None: derived from the noise level) with ``help_text``."""
    return Param("strength", float, None, 0.0, high, help_text)


def per_plane(strengths, planes):
    """Per-plane strengths as a (N, 1, 1) tensor like ``planes``."""
    return planes.new_tensor(strengths)[:, None, None]
