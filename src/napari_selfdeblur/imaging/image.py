"""Input checks, intensity normalisation and colour conversion (numpy only).

Intensity convention: the solver works on values in [0, 1]. ``uint8`` images are divided by 255
(as the reference does). Any other real dtype is mapped linearly so that the data's range, widened
by 10 % on each side (headroom for the sharper latent, clamped to the dtype's limits), becomes
[0, 1]. :class:`Intensity` maps results back to the input's dtype and range.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import InvalidInputError

# BT.601 full-range (JPEG) YCbCr, for values in [0, 1].
_RGB_TO_YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]]
)
_YCBCR_TO_RGB = np.linalg.inv(_RGB_TO_YCBCR)
_HEADROOM = 0.1

#: Largest magnitude a floating-point image may hold (larger ones overflow the range arithmetic).
MAX_FLOAT_VALUE = 1e300


def check_image(image: np.ndarray, *, allow_color: bool = True, name: str = "image") -> np.ndarray:
    """Return ``image`` as an array after checking it can be deblurred.

    Accepts 2-D grey images and, with ``allow_color``, (H, W, 3) RGB or (H, W, 4) RGBA. Raises
    :class:`InvalidInputError` naming the problem otherwise.
    """
    arr = np.asarray(image)
    if arr.size == 0:
        raise InvalidInputError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype == np.bool_:
        raise InvalidInputError(
            f"{name} is boolean (a mask, not an image); convert it to a number type to deblur it"
        )
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise InvalidInputError(f"{name} has dtype {arr.dtype}; a real-valued image is needed")
    color = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    if arr.ndim == 3 and arr.shape[-1] in (1, 2):
        raise InvalidInputError(
            f"{name} has shape {arr.shape}: {arr.shape[-1]} channel(s) is neither grey (H, W) "
            "nor RGB(A) (H, W, 3|4)"
        )
    if arr.ndim != 2 and not (allow_color and color):
        expected = "(H, W) grey or (H, W, 3|4) RGB(A)" if allow_color else "(H, W)"
        raise InvalidInputError(
            f"{name} has {arr.ndim} dimensions with shape {arr.shape}; expected {expected}. "
            "Process stacks plane by plane."
        )
    if arr.ndim >= 2 and min(arr.shape[:2]) < 3:
        raise InvalidInputError(
            f"{name} is {arr.shape[0]}x{arr.shape[1]} pixels; at least 3x3 are needed"
        )
    if np.issubdtype(arr.dtype, np.floating) and not np.isfinite(arr).all():
        n_bad = int((~np.isfinite(arr)).sum())
        raise InvalidInputError(f"{name} contains {n_bad} NaN or infinite values")
    plane = arr if arr.ndim == 2 else arr[..., :3]
    if np.issubdtype(arr.dtype, np.floating) and float(np.abs(plane).max()) > MAX_FLOAT_VALUE:
        raise InvalidInputError(
            f"{name} has values up to {float(np.abs(plane).max()):.3g}; values beyond "
            f"{MAX_FLOAT_VALUE:.0e} in magnitude cannot be processed: rescale the image"
        )
    if plane.min() == plane.max():
        raise InvalidInputError(
            f"{name} is constant (every pixel is {plane.flat[0]}); there is nothing to deblur"
        )
    return arr


@dataclass(frozen=True)
class Intensity:
    """Linear map between an image's values and the solver's [0, 1] range."""

    offset: float
    scale: float
    dtype: np.dtype

    @classmethod
    def of(cls, image: np.ndarray) -> Intensity:
        """The mapping to [0, 1] that suits ``image``'s dtype and values."""
        dtype = np.dtype(image.dtype)
        if dtype == np.uint8:
            return cls(0.0, 255.0, dtype)
        lo, hi = float(np.min(image)), float(np.max(image))
        span = hi - lo
        lo, hi = lo - _HEADROOM * span, hi + _HEADROOM * span
        if np.issubdtype(dtype, np.integer):
            info = np.iinfo(dtype)
            lo, hi = max(lo, info.min), min(hi, info.max)
        return cls(lo, hi - lo, dtype)

    def to_unit(self, image: np.ndarray) -> np.ndarray:
        """Image values -> float32 in [0, 1]."""
        return ((np.asarray(image, dtype=np.float64) - self.offset) / self.scale).astype(np.float32)

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """[0, 1] values -> the image's dtype and range (rounded and clipped for integers)."""
        values = np.asarray(unit, dtype=np.float64) * self.scale + self.offset
        if np.issubdtype(self.dtype, np.integer):
            return _to_integer(np.rint(values), self.dtype)
        return values.astype(self.dtype if self.dtype.itemsize >= 4 else np.float32)


def _to_integer(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Whole float64 values -> ``dtype``, saturating at its limits exactly.

    float64 cannot hold int64/uint64's largest value (it rounds up to 2**63 or 2**64, which a
    plain cast wraps around), so values at or beyond either limit are set to the limit itself.
    """
    info = np.iinfo(dtype)
    top, bottom = values >= float(info.max), values <= float(info.min)
    inside = np.where(top | bottom, 0.0, values)
    out = inside.astype(dtype)
    out[top] = info.max
    out[bottom] = info.min
    return out


def rgb_to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0, 1] -> (..., 3) YCbCr with Y in [0, 1] and chroma centred at 0.5."""
    ycc = rgb @ _RGB_TO_YCBCR.T
    ycc[..., 1:] += 0.5
    return ycc


def ycbcr_to_rgb(ycc: np.ndarray) -> np.ndarray:
    """Inverse of :func:`rgb_to_ycbcr`."""
    shifted = np.array(ycc, dtype=np.float64)
    shifted[..., 1:] -= 0.5
    return shifted @ _YCBCR_TO_RGB.T
