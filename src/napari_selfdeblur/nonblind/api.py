"""Non-blind refinement: deconvolve images and stacks with a known or estimated kernel.

One :class:`Method` description per algorithm (name, parameters with defaults, ranges and help)
drives the API (:func:`refine`), the CLI (``selfdeblur refine``) and the napari widget. Every
method's ``strength`` means the same thing: the weight of the image prior against the data, so
larger is smoother; left unset it is derived from the noise level estimated on each plane.

Layouts: (H, W) grey, (H, W, 3|4) RGB(A), and stacks (..., H, W) or (..., H, W, 3|4). Each
image (plane) is processed on its own (its own intensity mapping, noise estimate and default
strength), so a stack gives the same planes as calls on its planes one by one. RGB channels are
deconvolved with the same kernel; alpha passes through.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..imaging.image import Intensity
from ..imaging.layout import split_planes
from ..imaging.noise import estimate_noise_sigma
from ..imaging.psf import prepare_kernels
from . import DEFAULT_METHOD, get_method
from .base import estimated_kernel_factor, uncertain_kernel_factor

# -- the methods ---------------------------------------------------------------------------------
# Strength rules a * max(sigma, SIGMA_FLOOR)**p: power laws fitted by
# benchmarks/calibrate_nonblind.py
# to the best strengths on natural photographs (scikit-image) blurred by random shake kernels at
# noise levels 0.001-0.03 (not the Levin set). Richardson-Lucy's TV weight was not calibrated.


# -- inputs --------------------------------------------------------------------------------------


def _is_blank(plane: np.ndarray, is_rgb: bool) -> bool:
    values = plane[..., :3] if is_rgb else plane
    return values.size > 0 and bool(np.all(values == values.flat[0]))


# -- API -----------------------------------------------------------------------------------------


@dataclass
class RefineProgress:
    """What a refinement callback receives: planes finished and the step within the batch."""

    planes_done: int
    planes_total: int
    step: int
    steps: int


@dataclass
class RefineResult:
    """Outcome of :func:`refine`: ``image`` has the input's shape, dtype and value range.

    ``strengths`` and ``noise_sigmas`` ([0, 1] units of each plane) hold one value per plane.
    A cancelled run returns the planes finished so far, the rest unchanged (``planes_done``).
    """

    image: np.ndarray
    method: str
    params: dict[str, Any]
    strengths: list[float | None]
    noise_sigmas: list[float]
    planes_done: int
    planes_total: int
    runtime_s: float
    device: str
    cancelled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description of the run (method, parameters, strengths, noise)."""
        from ..provenance import header

        return {
            **header(),
            "method": self.method,
            "params": self.params,
            "strengths": self.strengths,
            "noise_sigmas": self.noise_sigmas,
            "planes_done": self.planes_done,
            "planes_total": self.planes_total,
            "cancelled": self.cancelled,
            "runtime_s": round(self.runtime_s, 3),
            "device": self.device,
            **self.extra,
        }


def refine(
    image: np.ndarray,
    kernel: np.ndarray,
    method: str = DEFAULT_METHOD,
    *,
    rgb: bool | None = None,
    device: str = "cpu",
    callback: Callable[[RefineProgress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    max_batch_bytes: int = 512 * 2**20,
    kernel_estimated: bool = False,
    kernel_uncertain: bool | Sequence[bool] = False,
    strength_factor: float | None = None,
    start: np.ndarray | None = None,
    **params: Any,
) -> RefineResult:
    """Deconvolve ``image`` (2-D, RGB(A) or a stack) with the PSF ``kernel``.

    Parameters
    ----------
    image
        (H, W), (H, W, 3|4) or a stack (..., H, W) / (..., H, W, 3|4); any real dtype.
        ``rgb`` says whether the last axis is colour (default: when it has 3 or 4 entries).
    kernel
        The PSF (blurry = convolve(sharp, kernel), centred at (kh // 2, kw // 2)), normalised to
        unit sum; or a stack of kernels with the image's stack shape, one per plane.
    method, params
        A name from :data:`METHODS` and its parameters, e.g. ``strength=1e-3``.
    device
        ``cpu``, ``cuda[:N]``, ``mps`` or ``auto``.
    callback, should_stop
        Progress reporting and cancellation; a cancelled run keeps the planes finished so far.
    max_batch_bytes
        Bounds the memory of one batch of planes processed together.
    kernel_estimated
        The kernel came from a blind estimate: a default strength is multiplied by
        :func:`~napari_selfdeblur.nonblind.base.estimated_kernel_factor` of the plane's noise
        level (5 on clean images, 2 on noisy ones).
    kernel_uncertain
        The blind run found its kernel uncertain (it records ``uncertain_kernel_boost``): on
        nearly noise-free planes the estimated-kernel strength is multiplied by
        :func:`~napari_selfdeblur.nonblind.base.uncertain_kernel_factor` as well (implies
        ``kernel_estimated``). One flag for every plane, or one per plane of a stack.
    strength_factor
        Multiplies a default (noise-derived) strength instead: overrides the factors that
        ``kernel_estimated`` and ``kernel_uncertain`` imply (an explicit ``strength`` is never
        scaled).
    start
        An earlier estimate of the sharp image, shaped like ``image``, to continue from: only
        for methods with ``warm_start`` (``sparse``: its first reweighting starts from it,
        instead of from a quadratic pass). The result depends on it.
    """
    from ..engine.device import is_out_of_memory, resolve_device
    from ..errors import OutOfMemoryError

    spec = get_method(method)
    values = spec.resolve(params)
    arr = np.asarray(image)
    planes, stack_shape, is_rgb = split_planes(arr, rgb)
    n_planes, plane_shape = planes.shape[0], planes.shape[1:]
    h, w = plane_shape[:2]
    kernels = prepare_kernels(kernel, stack_shape)
    kh, kw = kernels[0].shape
    if kh > h or kw > w:
        raise InvalidInputError(f"kernel {kh}x{kw} is larger than the image {h}x{w}")
    uncertain = _plane_flags(kernel_uncertain, n_planes)
    kernel_estimated = kernel_estimated or any(uncertain)
    prepared = [
        _prepare_plane(
            p,
            i,
            n_planes,
            is_rgb,
            spec,
            values,
            _strength_scale(kernel_estimated, strength_factor, u),
        )
        for i, (p, u) in enumerate(zip(planes, uncertain, strict=True))
    ]
    dev = resolve_device(device)
    job = _Job(spec, values, prepared, kernels, is_rgb, dev, callback, should_stop)
    if start is not None:
        job.starts = _start_planes(spec, start, arr.shape, prepared, rgb=is_rgb)
    began = time.perf_counter()
    try:
        job.run(job.batch_size(max_batch_bytes, (h + kh - 1) * (w + kw - 1)))
    except Exception as exc:
        if is_out_of_memory(exc):
            raise OutOfMemoryError(
                f"{dev.type.upper()} ran out of memory refining {n_planes} plane(s) of {h}x{w} "
                f"with a {kh}x{kw} kernel; lower max_batch_bytes or crop"
                + (", or use the CPU" if dev.type != "cpu" else "")
            ) from exc
        raise
    result = np.array(arr, copy=True)
    out_planes = result.reshape((n_planes, *plane_shape))
    for i, plane in enumerate(prepared):
        if plane is not None and job.channels_done[i] == job.channels:
            out_planes[i] = plane.intensity.from_unit(job.outputs[i])
    return RefineResult(
        image=result,
        method=spec.name,
        params={k: v for k, v in values.items() if k != "strength"},
        strengths=[None if p is None else p.strength for p in prepared],
        noise_sigmas=[0.0 if p is None else p.sigma for p in prepared],
        planes_done=job.finished,
        planes_total=n_planes,
        runtime_s=time.perf_counter() - began,
        device=str(dev),
        cancelled=job.cancelled,
        extra=_refine_extra(kernel_estimated, strength_factor, uncertain),
    )


def _start_planes(spec, start, shape, prepared, *, rgb: bool) -> list[np.ndarray | None]:
    """``start`` split into planes in each plane's [0, 1] units, as :func:`refine` sees them."""
    if not spec.warm_start:
        raise InvalidInputError(f"method {spec.name!r} cannot start from an earlier estimate")
    start = np.asarray(start)
    if start.shape != shape:
        raise InvalidInputError(f"start has shape {start.shape}, the image {shape}")
    if not np.issubdtype(start.dtype, np.number) or not np.isfinite(start).all():
        raise InvalidInputError("start must hold finite numbers (it has NaN, inf or non-numbers)")
    planes, _, _ = split_planes(start, rgb)
    return [
        None if p is None else p.intensity.to_unit(s).astype(np.float64)
        for p, s in zip(prepared, planes, strict=True)
    ]


def _plane_flags(flags: bool | Sequence[bool], n_planes: int) -> list[bool]:
    """``flags`` as one bool per plane (a single bool holds for every plane)."""
    if isinstance(flags, (bool, np.bool_)):
        return [bool(flags)] * n_planes
    out = [bool(f) for f in flags]
    if len(out) != n_planes:
        raise InvalidInputError(f"kernel_uncertain has {len(out)} flags for {n_planes} planes")
    return out


def _strength_scale(
    kernel_estimated: bool, strength_factor: float | None, uncertain: bool = False
) -> Callable[[float], float]:
    """The multiple of a default strength as a function of the plane's noise level (an
    explicit ``strength_factor`` is used as it is).
    """
    if strength_factor is None:
        if uncertain:
            return lambda sigma: estimated_kernel_factor(sigma) * uncertain_kernel_factor(sigma)
        return estimated_kernel_factor if kernel_estimated else (lambda sigma: 1.0)
    factor = float(strength_factor)
    if not (math.isfinite(factor) and factor > 0):
        raise InvalidInputError(f"strength_factor must be positive, got {strength_factor}")
    return lambda sigma: factor


def _refine_extra(
    kernel_estimated: bool, strength_factor: float | None, uncertain: list[bool]
) -> dict[str, Any]:
    """What a :class:`RefineResult` records about how its default strengths were scaled."""
    extra: dict[str, Any] = {"kernel_estimated": True} if kernel_estimated else {}
    if any(uncertain) and strength_factor is None:
        extra["kernel_uncertain"] = uncertain if len(uncertain) > 1 else True
    if strength_factor is not None:
        extra["strength_factor"] = float(strength_factor)
    return extra


@dataclass
class _Plane:
    """One plane ready to deconvolve: its intensity map, [0, 1] values, noise and strength."""

    intensity: Intensity
    unit: np.ndarray
    sigma: float
    strength: float | None


def _prepare_plane(plane, index, n_planes, is_rgb, spec, values, scale) -> _Plane | None:
    """Check one plane and derive its strength; None for a blank plane of a stack (passed
    through unchanged: it has nothing to deconvolve).
    """
    from ..imaging.image import check_image

    if n_planes > 1 and _is_blank(plane, is_rgb):
        return None
    label = "image" if n_planes == 1 else f"plane {index} of the image"
    checked = check_image(plane, name=label)
    intensity = Intensity.of(checked[..., :3] if is_rgb else checked)
    unit = intensity.to_unit(checked).astype(np.float64)
    grey = unit[..., :3].mean(-1) if is_rgb else unit
    sigma = estimate_noise_sigma(grey) if min(unit.shape[:2]) >= 3 else 0.0
    strength = values.get("strength")
    if strength is None and spec.strength_rule is not None:
        strength = float(spec.strength_rule(sigma)) * scale(sigma)
    return _Plane(intensity, unit, float(sigma), strength)


class _Job:
    """The work of one :func:`refine` call: (plane, channel) items in batches sharing a kernel."""

    def __init__(self, spec, values, prepared, kernels, is_rgb, device, callback, should_stop):
        self.spec, self.values, self.kernels, self.is_rgb = spec, values, kernels, is_rgb
        self.device, self.callback, self.should_stop = device, callback, should_stop
        self.prepared = prepared
        self.channels = 3 if is_rgb else 1
        todo = [i for i, p in enumerate(prepared) if p is not None]
        self.items = [(i, c) for i in todo for c in range(self.channels)]
        self.outputs = {i: prepared[i].unit.copy() for i in todo}
        self.channels_done = dict.fromkeys(todo, 0)
        self.finished = len(prepared) - len(todo)  # blank planes are done from the start
        self.cancelled = False
        self.starts: list[np.ndarray | None] | None = None  # per plane, for warm starts

    def batch_size(self, max_batch_bytes: int, latent_px: int) -> int:
        """Items per batch: bounded by memory, and by one plane when kernels differ by plane."""
        per_item = latent_px * 8 * 48  # float64 arrays the heaviest method (sparse) keeps alive
        batch = max(1, int(max_batch_bytes // per_item)) if self.spec.batched else len(self.items)
        return min(batch, self.channels) if len(self.kernels) > 1 else batch

    def run(self, batch: int) -> None:
        """Deconvolve every item, batch by batch, until done or cancelled."""
        import torch

        n_planes = len(self.prepared)
        for pos in range(0, len(self.items), batch):
            chunk = self.items[pos : pos + batch]
            kernel = self.kernels[chunk[0][0]] if len(self.kernels) > 1 else self.kernels[0]
            stack = np.stack([self._channel(i, c) for i, c in chunk])
            stop = {"now": False}

            def step(done: int, total: int, stop=stop, finished=self.finished) -> bool:
                if self.callback is not None:
                    self.callback(RefineProgress(finished, n_planes, done, total))
                stop["now"] = bool(self.should_stop is not None and self.should_stop())
                return stop["now"]

            strengths = [self.prepared[i].strength or 0.0 for i, _ in chunk]
            warm = {}
            if self.starts is not None:
                starts = np.stack([self._channel(i, c, self.starts[i]) for i, c in chunk])
                warm["start"] = torch.from_numpy(starts).to(self.device)
            est = self.spec.run(
                torch.from_numpy(stack).to(self.device),
                torch.from_numpy(kernel).to(self.device),
                strengths,
                self.values,
                step,
                self.device,
                **warm,
            )
            if stop["now"]:
                self.cancelled = True
                return
            self._store(chunk, est.detach().to("cpu", torch.float64).numpy())

    def _channel(self, i: int, c: int, unit: np.ndarray | None = None) -> np.ndarray:
        """Channel ``c`` of plane ``i`` (of ``unit``, by default the plane's own values)."""
        unit = self.prepared[i].unit if unit is None else unit
        return unit[..., c] if self.is_rgb else unit

    def _store(self, chunk, est: np.ndarray) -> None:
        for (i, c), plane in zip(chunk, est, strict=True):
            if self.is_rgb:
                self.outputs[i][..., c] = plane
            else:
                self.outputs[i] = plane
            self.channels_done[i] += 1
            self.finished += self.channels_done[i] == self.channels
