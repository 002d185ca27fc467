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
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InvalidInputError
from .image import Intensity
from .noise import estimate_noise_sigma

# Noise levels below this (in [0, 1] units) are treated as this when deriving a strength, so that
# a noise-free synthetic image still gets a little regularisation.
SIGMA_FLOOR = 1e-3


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
    """

    name: str
    label: str
    help: str
    params: tuple[Param, ...]
    strength_rule: Callable[[float], float] | None
    run: Callable[..., Any]
    batched: bool = True

    def param(self, name: str) -> Param:
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


def _strength_param(help_text: str, high: float = 10.0) -> Param:
    return Param("strength", float, None, 0.0, high, help_text)


# -- the methods ---------------------------------------------------------------------------------
# Strength rules a * max(sigma, SIGMA_FLOOR)**p: power laws fitted by
# benchmarks/calibrate_nonblind.py
# to the best strengths on natural photographs (scikit-image) blurred by random shake kernels at
# noise levels 0.001-0.03 (not the Levin set). Richardson-Lucy's TV weight was not calibrated.


def _per_plane(strengths, planes):
    return planes.new_tensor(strengths)[:, None, None]


def _run_hyper_laplacian(planes, psf, strengths, params, step, device):
    from .nonblind import hyper_laplacian

    weight = 1.0 / _per_plane(strengths, planes)
    return hyper_laplacian(planes, psf, weight, alpha=params["alpha"], step=step)


def _run_sparse(planes, psf, strengths, params, step, device):
    from .nonblind import sparse_prior

    return sparse_prior(
        planes, psf, _per_plane(strengths, planes), alpha=params["alpha"],
        reweightings=params["reweightings"], cg_iterations=params["cg_iterations"], step=step,
    )  # fmt: skip


def _run_wiener(planes, psf, strengths, params, step, device):
    from .nonblind import wiener

    out = wiener(planes, psf, _per_plane(strengths, planes))
    step(1, 1)
    return out


def _run_richardson_lucy(planes, psf, strengths, params, step, device):
    from .nonblind import richardson_lucy

    return richardson_lucy(
        planes, psf, params["iterations"], tv_weight=_per_plane(strengths, planes), step=step
    )


def _run_deep_prior(planes, psf, strengths, params, step, device):
    """Refit the image generator alone with the kernel fixed, one plane at a time."""
    import torch

    from .api import check_fits_network, resolve_config
    from .solver import fit

    cfg = resolve_config(params["preset"], params["iterations"]).replace(ssim_start=0)
    kernel = psf.detach().cpu().numpy()
    check_fits_network(tuple(planes.shape[-2:]), kernel.shape, cfg)
    outs = []
    n = planes.shape[0]
    total = n * cfg.iterations
    for i in range(n):
        seen = {"it": 0}

        def callback(p, seen=seen):
            seen["it"] = p.iteration

        def poll(base=i * cfg.iterations, seen=seen):
            return step(base + seen["it"], total)

        res = fit(
            planes[i].detach().cpu().numpy().astype(np.float32), kernel.shape, cfg,
            device=device, seed=params["seed"], noise_sigma=0.0, callback=callback,
            callback_every=1, should_stop=poll, fixed_kernel=kernel,
        )  # fmt: skip
        outs.append(res.latent)
        if res.cancelled:
            outs.extend(p.detach().cpu().numpy() for p in planes[i + 1 :])
            break
    return torch.from_numpy(np.stack(outs).astype(np.float64))


METHODS: dict[str, Method] = {
    m.name: m
    for m in (
        Method(
            "hyper-laplacian",
            "Hyper-Laplacian (fast)",
            "Krishnan & Fergus 2009: |gradient|^alpha prior, half-quadratic splitting. The fast "
            "default; sharp edges, little ringing.",
            (
                _strength_param("prior weight; larger is smoother (default: from the noise)"),
                Param("alpha", float, 2 / 3, 0.3, 1.0, "prior exponent; smaller is sparser"),
            ),
            lambda sigma: 1.87 * max(sigma, SIGMA_FLOOR) ** 1.83,
            _run_hyper_laplacian,
        ),
        Method(
            "sparse",
            "Sparse prior, IRLS (quality)",
            "Levin et al. 2007: |derivative|^0.8 prior on first and second derivatives, "
            "iteratively reweighted least squares. Slower, the best quality.",
            (
                _strength_param("prior weight; larger is smoother (default: from the noise)"),
                Param("alpha", float, 0.8, 0.3, 2.0, "prior exponent; smaller is sparser"),
                Param("reweightings", int, 2, 0, 20, "IRLS passes after the quadratic one"),
                Param("cg_iterations", int, 100, 1, 2000, "conjugate-gradient steps per pass"),
            ),
            lambda sigma: 29.9 * max(sigma, SIGMA_FLOOR) ** 1.98,
            _run_sparse,
        ),
        Method(
            "wiener",
            "Wiener / Tikhonov",
            "Closed-form deconvolution with a gradient penalty; the fastest, some ringing.",
            (_strength_param("gradient-penalty weight; larger is smoother (default: noise)"),),
            lambda sigma: 25.0 * max(sigma, SIGMA_FLOOR) ** 1.66,
            _run_wiener,
        ),
        Method(
            "richardson-lucy",
            "Richardson-Lucy (+TV)",
            "Multiplicative maximum-likelihood updates for Poisson noise, with an optional "
            "total-variation term (Dey et al. 2006); non-negative output.",
            (
                Param(
                    "strength", float, None, 0.0, 1.0,
                    "total-variation weight; 0 is plain RL (default: from the noise)",
                ),
                Param("iterations", int, 30, 1, 10000, "RL iterations; more is sharper, noisier"),
            ),
            lambda sigma: min(0.05, 2.0 * max(sigma, SIGMA_FLOOR)),
            _run_richardson_lucy,
        ),
        Method(
            "deep-prior",
            "Deep prior refit (slow)",
            "SelfDeblur's non-blind variant: refit the image generator alone with the kernel "
            "fixed, 1 - SSIM loss. Minutes per image on a CPU.",
            (
                Param("iterations", int, 1000, 1, 100000, "optimiser iterations per plane"),
                Param("preset", str, "demo", help="network preset", choices=("paper", "demo")),
                Param("seed", int, 0, 0, 2**31 - 1, "random seed"),
            ),
            None,
            _run_deep_prior,
            batched=False,
        ),
    )
}

DEFAULT_METHOD = "hyper-laplacian"


def get_method(name: str) -> Method:
    try:
        return METHODS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown refinement method {name!r}; choose one of {', '.join(METHODS)}"
        ) from None


# -- inputs --------------------------------------------------------------------------------------


def prepare_kernel(kernel: np.ndarray, name: str = "kernel") -> np.ndarray:
    """Check one PSF and return it float64, odd-sized and with unit sum.

    Small negative lobes (at most 5 % of the total mass, as estimated kernels can have) are
    clipped with a warning; an even-sized kernel gets a zero row/column at the bottom/right so
    its centre stays at (kh // 2, kw // 2).
    """
    k = np.asarray(kernel)
    if k.size == 0:
        raise InvalidInputError(f"{name} is empty (shape {k.shape})")
    if k.ndim != 2:
        raise InvalidInputError(f"{name} must be 2-D, got shape {k.shape}")
    if not (np.issubdtype(k.dtype, np.number) or k.dtype == np.bool_):
        raise InvalidInputError(f"{name} has dtype {k.dtype}; a real-valued kernel is needed")
    k = k.astype(np.float64)
    if not np.isfinite(k).all():
        raise InvalidInputError(f"{name} contains NaN or infinite values")
    positive = k.clip(min=0).sum()
    negative = -k.clip(max=0).sum()
    if positive <= 0 or k.sum() <= 0:
        raise InvalidInputError(f"{name} sums to {k.sum():g}; a PSF must have a positive sum")
    if negative > 0:
        if negative > 0.05 * positive:
            raise InvalidInputError(
                f"{name} has large negative values ({negative / positive:.0%} of its positive "
                "mass); a PSF must be non-negative"
            )
        warnings.warn(f"{name}: clipped small negative values to 0", stacklevel=3)
        k = k.clip(min=0)
    k = np.pad(k, ((0, 1 - k.shape[0] % 2), (0, 1 - k.shape[1] % 2)))
    return k / k.sum()


def split_layout(shape: tuple[int, ...], rgb: bool | None) -> tuple[bool, tuple[int, ...]]:
    """(is_rgb, stack shape) of an image array."""
    if rgb is None:
        rgb = len(shape) >= 3 and shape[-1] in (3, 4)
    if rgb:
        if len(shape) < 3 or shape[-1] not in (3, 4):
            raise InvalidInputError(f"an RGB image needs a last axis of 3 or 4, got shape {shape}")
        return True, tuple(shape[:-3])
    if len(shape) < 2:
        raise InvalidInputError(
            f"image has {len(shape)} dimension(s) with shape {shape}; expected (H, W), "
            "(H, W, 3|4) or a stack (..., H, W)"
        )
    return False, tuple(shape[:-2])


def split_planes(
    image: np.ndarray, rgb: bool | None = None
) -> tuple[np.ndarray, tuple[int, ...], bool]:
    """An image or stack as (N, H, W) or (N, H, W, C) planes, its stack shape, and the RGB flag."""
    arr = np.asarray(image)
    is_rgb, lead = split_layout(arr.shape, rgb)
    n = int(np.prod(lead)) if lead else 1
    return arr.reshape((n, *arr.shape[len(lead) :])), lead, is_rgb


def prepare_kernels(kernel: np.ndarray, stack_shape: tuple[int, ...]) -> list[np.ndarray]:
    """One checked PSF (a 2-D kernel) or one per plane (shape ``(*stack_shape, kh, kw)``)."""
    kern = np.asarray(kernel)
    if kern.ndim == 2:
        return [prepare_kernel(kern)]
    if kern.ndim >= 3 and tuple(kern.shape[:-2]) == tuple(stack_shape):
        flat = kern.reshape((-1, *kern.shape[-2:]))
        return [prepare_kernel(k, f"kernel of plane {i}") for i, k in enumerate(flat)]
    raise InvalidInputError(
        f"kernel shape {kern.shape} does not fit an image with stack shape {tuple(stack_shape)}: "
        f"give one 2-D kernel or one per plane, shape {(*stack_shape, 'kh', 'kw')}"
    )


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
        from . import __version__

        return {
            "package": "napari-selfdeblur",
            "version": __version__,
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
    """
    import torch

    from .device import is_out_of_memory, resolve_device
    from .errors import OutOfMemoryError
    from .image import check_image

    spec = get_method(method)
    values = spec.resolve(params)
    arr = np.asarray(image)
    planes, stack_shape, is_rgb = split_planes(arr, rgb)
    n_planes = planes.shape[0]
    plane_shape = planes.shape[1:]
    h, w = plane_shape[:2]
    kernels = prepare_kernels(kernel, stack_shape)
    kh, kw = kernels[0].shape
    if kh > h or kw > w:
        raise InvalidInputError(f"kernel {kh}x{kw} is larger than the image {h}x{w}")

    # Per plane: checks, intensity map, noise level, strength. In a stack, constant (blank)
    # planes have nothing to deconvolve and pass through unchanged.
    maps, units, sigmas, strengths, todo = [], [], [], [], []
    for i, plane in enumerate(planes):
        if n_planes > 1 and _is_blank(plane, is_rgb):
            maps.append(None)
            units.append(None)
            sigmas.append(0.0)
            strengths.append(None)
            continue
        label = "image" if n_planes == 1 else f"plane {i} of the image"
        checked = check_image(plane, name=label)
        intensity = Intensity.of(checked[..., :3] if is_rgb else checked)
        unit = intensity.to_unit(checked).astype(np.float64)
        grey = unit[..., :3].mean(-1) if is_rgb else unit
        sigma = estimate_noise_sigma(grey) if min(h, w) >= 3 else 0.0
        strength = values.get("strength")
        if strength is None and spec.strength_rule is not None:
            strength = float(spec.strength_rule(sigma))
        maps.append(intensity)
        units.append(unit)
        sigmas.append(float(sigma))
        strengths.append(strength)
        todo.append(i)

    dev = resolve_device(device)
    channels = 3 if is_rgb else 1
    # Work items: (plane, channel); a batch holds planes sharing one kernel.
    items = [(i, c) for i in todo for c in range(channels)]
    latent_px = (h + kh - 1) * (w + kw - 1)
    per_item = latent_px * 8 * 48  # float64 arrays the heaviest method (sparse) keeps alive
    batch = max(1, int(max_batch_bytes // per_item)) if spec.batched else len(items)
    if len(kernels) > 1:
        batch = min(batch, channels)
    outputs = {i: units[i].copy() for i in todo}
    channels_done = dict.fromkeys(todo, 0)
    finished = n_planes - len(todo)  # blank planes are done from the start
    cancelled = False
    start = time.perf_counter()
    try:
        for pos in range(0, len(items), batch):
            chunk = items[pos : pos + batch]
            psf = torch.from_numpy(kernels[chunk[0][0]] if len(kernels) > 1 else kernels[0])
            stack = np.stack([units[i][..., c] if is_rgb else units[i] for i, c in chunk])
            y = torch.from_numpy(stack).to(dev)
            stop = {"now": False}

            def step(done: int, total: int, stop=stop, finished=finished) -> bool:
                if callback is not None:
                    callback(RefineProgress(finished, n_planes, done, total))
                stop["now"] = bool(should_stop is not None and should_stop())
                return stop["now"]

            est = spec.run(y, psf.to(dev), [strengths[i] or 0.0 for i, _ in chunk], values,
                           step, dev)  # fmt: skip
            if stop["now"]:
                cancelled = True
                break
            est = est.detach().to("cpu", torch.float64).numpy()
            for (i, c), plane in zip(chunk, est, strict=True):
                if is_rgb:
                    outputs[i][..., c] = plane
                else:
                    outputs[i] = plane
                channels_done[i] += 1
                finished += channels_done[i] == channels
    except Exception as exc:
        if is_out_of_memory(exc):
            raise OutOfMemoryError(
                f"{dev.type.upper()} ran out of memory refining {n_planes} plane(s) of {h}x{w} "
                f"with a {kh}x{kw} kernel; lower max_batch_bytes, crop, or use the CPU"
            ) from exc
        raise
    result = np.array(arr, copy=True)
    out_planes = result.reshape((n_planes, *plane_shape))
    for i in todo:
        if channels_done[i] == channels:
            out_planes[i] = maps[i].from_unit(outputs[i])
    return RefineResult(
        image=result,
        method=spec.name,
        params={k: v for k, v in values.items() if k != "strength"},
        strengths=strengths,
        noise_sigmas=sigmas,
        planes_done=finished,
        planes_total=n_planes,
        runtime_s=time.perf_counter() - start,
        device=str(dev),
        cancelled=cancelled,
    )
