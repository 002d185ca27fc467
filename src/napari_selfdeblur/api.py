"""The public blind entry points: :func:`deblur` and :func:`deblur_stack`.

They check the input, map it to [0, 1], run the blind engine the preset names (:mod:`.engine`),
handle colour and, where the preset asks for it, a non-blind step (:mod:`.nonblind`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from .config import DEFAULT_PRESET, DeblurConfig, get_preset
from .engine.checks import check_count, check_kernel_size, check_seed, resolve_config
from .engine.diagnostics import Diagnosis, diagnose, touches_border
from .engine.resources import check_memory
from .engine.restarts import with_restarts
from .engine.solver import Progress
from .errors import InvalidInputError
from .imaging.image import Intensity, check_image, rgb_to_ycbcr, ycbcr_to_rgb
from .imaging.noise import estimate_noise_sigma
from .provenance import blind_kernel_options, header


@dataclass
class DeblurResult:
    """Outcome of :func:`deblur`.

    ``latent`` has the input's shape, dtype and value range; ``kernel`` is the PSF (float32, unit
    sum, blurry ≈ convolve(latent, kernel)). ``noise_sigma`` is in the input's units.
    ``history`` holds (iteration, loss) pairs. A cancelled run holds the result of the last
    completed iteration and ``cancelled=True``.
    """

    latent: np.ndarray
    kernel: np.ndarray
    noise_sigma: float
    history: list[tuple[int, float]]
    config: DeblurConfig
    seed: int = 0
    device: str = "cpu"
    runtime_s: float = 0.0
    iterations_run: int = 0
    cancelled: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    diagnosis: Diagnosis | None = None  # failure checks (see napari_selfdeblur.engine.diagnostics)

    @property
    def warnings(self) -> list[str]:
        """Messages of the failure checks that fired (empty when the result looks sound)."""
        return list(self.diagnosis.messages) if self.diagnosis is not None else []

    @property
    def final_loss(self) -> float:
        """The last recorded loss (NaN before the first)."""
        return self.history[-1][1] if self.history else float("nan")

    @property
    def refine_options(self) -> dict[str, Any]:
        """The arguments of :func:`~napari_selfdeblur.nonblind.api.refine` that describe this
        kernel: ``kernel_estimated=True``, and ``kernel_uncertain`` where the run found it
        uncertain (``refine(image, result.kernel, **result.refine_options)``).
        """
        return blind_kernel_options(self.metadata(), self.kernel.shape)

    def metadata(self) -> dict[str, Any]:
        """JSON-ready description of the run (parameters, seed, device, noise, loss, runtime)."""
        return {
            **header(),
            "kernel_size": list(self.kernel.shape),
            "seed": self.seed,
            "device": self.device,
            "noise_sigma": self.noise_sigma,
            "final_loss": self.final_loss,
            "iterations_run": self.iterations_run,
            "cancelled": self.cancelled,
            "runtime_s": round(self.runtime_s, 3),
            "config": self.config.to_dict(),
            **({"diagnosis": self.diagnosis.to_dict()} if self.diagnosis is not None else {}),
            **self.extra,
        }


def deblur(
    image: np.ndarray,
    kernel_size: int | str | tuple[int, int],
    *,
    preset: str | DeblurConfig = DEFAULT_PRESET,
    iterations: int | None = None,
    seed: int = 0,
    device: str = "auto",
    callback: Callable[[Progress], None] | None = None,
    callback_every: int = 10,
    preview_every: int = 0,
    should_stop: Callable[[], bool] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    restarts: int = 1,
    restart_iterations: int | None = None,
) -> DeblurResult:
    """Blind deconvolution of one image with SelfDeblur.

    Parameters
    ----------
    image
        (H, W) grey or (H, W, 3|4) RGB(A), any real dtype. Colour images are deblurred on their
        luminance; the chroma channels are deconvolved non-blind with the estimated kernel and
        alpha is passed through.
    kernel_size
        Odd kernel size in pixels: ``31``, ``"31x25"`` (height x width) or ``(31, 25)``. Choose
        it a little larger than the blur's extent, or pass ``"auto"``: the MAP estimator run with
        a generous size finds the blur's support, and the size is chosen from it (reported in
        ``metadata()["kernel_size_auto"]``).
    preset, iterations
        A preset name (a key of :data:`napari_selfdeblur.config.PRESETS`; default
        :data:`~napari_selfdeblur.config.DEFAULT_PRESET`) or a :class:`DeblurConfig`;
        ``iterations`` overrides its length and scales its schedule.
    seed, device
        The same seed on the same device gives the same result. ``device``: ``auto`` (CUDA, then
        MPS, then CPU), ``cpu``, ``cuda[:N]`` or ``mps``.
    callback, callback_every, preview_every, should_stop
        Progress reporting and cancellation; see :func:`napari_selfdeblur.engine.solver.fit`.
    checkpoint, checkpoint_every
        Save the optimiser state to this file every ``checkpoint_every`` iterations and resume
        from it when it matches the run (long runs survive interruption); see
        :func:`napari_selfdeblur.engine.solver.fit`.
    restarts, restart_iterations
        With ``restarts`` = K > 1, K short runs with seeds ``seed .. seed + K - 1`` are run for
        ``restart_iterations`` full-size iterations (default a tenth of them); the one with the
        lowest loss (the best fit to the input, never the ground truth) is continued to the end.
        With coarse-to-fine (``coarse_levels`` > 0) every probe first runs all coarse levels, so
        a probe costs a large share of a run. The result equals a plain run with the chosen seed
        (``result.seed``); ``metadata()["restarts"]`` lists the probes.
    """
    from .engine.device import resolve_device

    arr = check_image(image)
    cfg = resolve_config(preset, iterations)
    restarts = check_count(restarts, "restarts")
    seed = check_seed(seed, restarts)
    if cfg.engine == "map" and restarts > 1:
        raise InvalidInputError("restarts need SelfDeblur's random starts; this preset has none")
    dev = resolve_device(device)
    prep = _prepare(arr)
    kernel_size, auto = _resolve_kernel_size(prep.grey, kernel_size, cfg, dev)
    kshape = check_kernel_size(arr.shape[:2], kernel_size, cfg)
    check_memory(arr.shape[:2], kshape, cfg, dev)

    if restarts > 1 and checkpoint is not None:
        raise InvalidInputError("restarts and checkpoint cannot be combined")
    start = time.perf_counter()
    common = dict(
        device=dev,
        noise_sigma=prep.sigma,
        callback=callback,
        callback_every=callback_every,
        preview_every=preview_every,
        should_stop=should_stop,
    )
    extra: dict[str, Any] = {"preset": preset if isinstance(preset, str) else "custom"}
    if auto is not None:
        extra["kernel_size_auto"] = auto
    raw, seed, map_start = _run_engine(
        prep.grey,
        kshape,
        cfg,
        seed=seed,
        restarts=restarts,
        restart_iterations=restart_iterations,
        checkpoint=checkpoint,
        checkpoint_every=checkpoint_every,
        common=common,
        extra=extra,
    )
    raw = _final_step(prep, raw, cfg, map_start, extra, device=dev)
    result = _finish(prep, raw, cfg, seed, dev, time.perf_counter() - start, extra)
    if raw.resumed_from and restarts == 1:
        result.extra.update(
            resumed_from_iteration=raw.resumed_from,
            resumed_runtime_s=round(raw.resumed_runtime_s, 3),
        )
    return result


def _resolve_kernel_size(grey, kernel_size, cfg, device):
    """``kernel_size``, or for ``"auto"`` the size found by the MAP estimator; (size, details)."""
    from .engine.map_kernel import auto_kernel_size, is_auto

    if not is_auto(kernel_size):
        return kernel_size, None
    auto = auto_kernel_size(grey, cfg.map, device=device)
    return auto["chosen"], auto


def _run_engine(
    grey,
    kshape,
    cfg,
    *,
    seed,
    restarts,
    restart_iterations,
    checkpoint,
    checkpoint_every,
    common,
    extra,
):
    """Run the blind engine of ``cfg``; (raw result, seed used, MAP start or None)."""
    from .engine.map_kernel import fit_map
    from .engine.solver import fit

    if cfg.engine == "map" or cfg.init == "map":
        map_start = fit_map(
            grey,
            kshape,
            cfg.map,
            device=common["device"],
            callback=common["callback"],
            should_stop=common["should_stop"],
        )
        extra.update(map_start.notes)
        if cfg.engine == "map" or map_start.cancelled:
            return map_start, seed, map_start
        common = {**common, "start": map_start}
    else:
        map_start = None
    if restarts > 1:
        raw, seed, extra["restarts"] = with_restarts(
            grey, kshape, cfg, seed=seed, restarts=restarts, probe=restart_iterations, common=common
        )
    else:
        raw = fit(
            grey,
            kshape,
            cfg,
            seed=seed,
            checkpoint=checkpoint,
            checkpoint_every=checkpoint_every,
            **common,
        )
    return raw, seed, map_start


def _final_step(prep, raw, cfg, map_start, extra, *, device):
    """The preset's non-blind step on the whole image, and the safeguard against its MAP start
    (:func:`_safeguard`).
    """
    if raw.cancelled:
        return raw
    if raw is map_start:
        raw.kernel, raw.latent = _finish_map_kernel(
            prep.grey, prep.sigma, map_start, cfg, extra, device
        )
        return raw
    raw.kernel, raw.latent = _finish_kernel(prep.grey, raw.kernel, raw.latent, cfg, extra, device)
    if cfg.safeguard and map_start is not None:
        raw.kernel, raw.latent = _safeguard(prep, raw, cfg, map_start, extra, device=device)
    return raw


def _safeguard(prep, raw, cfg, map_start, extra, *, device):
    """(kernel, latent): SelfDeblur's finished ``raw`` or, where it loses without the truth,
    the MAP start finished; both scores (:func:`_quality`) and the choice are recorded.

    ``cfg.safeguard_against`` "map": the MAP start after the last non-blind pass alone (the start
    as SelfDeblur received it), kept when SelfDeblur's residual is more than 10 % higher and its
    latent not sharper (normalised sparsity, Krishnan et al. 2011: lower is sharper); a start it
    keeps is then finished as the preset finishes MAP estimates (with ``cfg.polish``, polished).
    "quick": the MAP start finished as ``quick`` finishes it, kept only when it both fits the
    input better and is sharper, and its kernel does not reach the edge of its window.
    """
    grey, sigma = prep.grey, prep.sigma
    ours = _quality(grey, raw.latent, raw.kernel)
    if cfg.safeguard_against == "quick":
        notes = {"map_candidates": dict(extra.get("map_candidates", {}))}
        quick = get_preset("quick")
        quick_cfg = cfg.replace(polish_rounds=quick.polish_rounds, polish_warm=quick.polish_warm)
        kernel, latent = _finish_map_kernel(grey, sigma, map_start, quick_cfg, notes, device)
        theirs = _quality(grey, latent, kernel)
        theirs["at_border"] = touches_border(kernel)
        keep = (
            theirs["residual"] < ours["residual"]
            and theirs["sparsity"] < ours["sparsity"]
            and not theirs["at_border"]
        )
        name = "quick"
    else:
        latent = _final_pass(grey, map_start.kernel, map_start.latent, cfg, device)
        kernel, notes = map_start.kernel, extra
        theirs = _quality(grey, latent, kernel)
        keep = (
            ours["residual"] > 1.1 * theirs["residual"] and ours["sparsity"] >= theirs["sparsity"]
        )
        name = "map"
        if keep and cfg.polish:  # polished too, as quick polishes it
            kernel, latent = _finish_map_kernel(grey, sigma, map_start, cfg, extra, device)
    extra["safeguard"] = {"selfdeblur": ours, name: theirs, "kept": name if keep else "selfdeblur"}
    if not keep:
        return raw.kernel, raw.latent
    kept_notes = ("polish", "map_candidates", "uncertain_kernel_boost")
    extra.update({k: v for k, v in notes.items() if k in kept_notes})
    return kernel, latent


def _finish_kernel(grey, kernel, latent, cfg, extra, device):
    """(kernel, latent) after the final step: with ``cfg.polish`` the cheap non-blind pass, the
    refit and the last pass (:func:`_polish`); otherwise the last pass alone.
    """
    if cfg.polish and cfg.final != "none":
        params = polish_first_pass(cfg.final)
        first = _nonblind(grey, kernel, cfg.final, latent, device, **params)
        return _polish(grey, kernel, first, cfg, extra, device=device)
    return kernel, _final_pass(grey, kernel, latent, cfg, device)


def _finish_map_kernel(grey, sigma, start, cfg, extra, device):
    """:func:`_finish_kernel` for the MAP estimate ``start``, whose last pass is
    :func:`uncertain_kernel_boost` times stronger (the boost is recorded when it is not 1); with
    ``cfg.candidate_choice`` "sparsity", from the sharpest candidate (:func:`_sharpest_candidate`).
    """
    from .nonblind.base import estimated_kernel_factor

    boost = uncertain_kernel_boost(_agreement(extra), sigma)
    if boost != 1.0:
        extra["uncertain_kernel_boost"] = boost
        factor = cfg.final_strength_factor or estimated_kernel_factor(sigma)
        cfg = cfg.replace(final_strength_factor=boost * factor)
    choose = cfg.candidate_choice == "sparsity" and cfg.final != "none"
    if not (choose and len(start.alternatives) > 1):
        return _finish_kernel(grey, start.kernel, start.latent, cfg, extra, device)
    kernel, first = _sharpest_candidate(grey, start.alternatives, cfg, extra, device)
    if not cfg.polish:
        return kernel, first
    return _polish(grey, kernel, first, cfg, extra, device=device)


def _sharpest_candidate(grey, kernels, cfg, extra, device):
    """(kernel, first pass) of the MAP candidate whose first non-blind pass (with
    ``cfg.polish`` the polish's cheap one, else the last pass) is sharpest: lowest normalised
    sparsity. The candidate chosen and every candidate's sparsity are recorded under
    ``map_candidates``.
    """
    from .engine.map_kernel import ORIENTATIONS

    if cfg.polish:
        params = polish_first_pass(cfg.final)
        firsts = [_nonblind(grey, k, cfg.final, None, device, **params) for k in kernels]
    else:
        firsts = [_final_pass(grey, k, None, cfg, device) for k in kernels]
    scores = [normalised_sparsity(x) for x in firsts]
    best = int(np.argmin(scores))
    notes = extra.setdefault("map_candidates", {})
    notes["sparsity"] = [round(v, 3) for v in scores]
    notes["chosen"] = list(ORIENTATIONS)[best]
    return kernels[best], firsts[best]


#: Settings of the non-blind pass that only feeds the polish refit: cheaper than the final pass
#: (on the design photographs, 1 reweighting and 50 CG steps cost 0.04 dB against the full pass,
#: at a third of its time).
POLISH_FIRST_PASS: dict[str, dict[str, Any]] = {
    "sparse": {"reweightings": 1, "cg_iterations": 50},
}


def polish_first_pass(method: str) -> dict[str, Any]:
    """``refine`` parameters of the non-blind pass that feeds the polish refit with ``method``:
    :data:`POLISH_FIRST_PASS`, and the clean-image estimated-kernel factor at every noise level
    (with the weaker noisy-image prior the refit fitted the noise it left, and its kernels got
    worse: design photographs, noise 0.01 and 0.03, docs/benchmarks.md, round 9).
    """
    from .nonblind.base import ESTIMATED_KERNEL_FACTOR

    return {"strength_factor": ESTIMATED_KERNEL_FACTOR, **POLISH_FIRST_PASS.get(method, {})}


#: Settings of the non-blind pass after the polish refit: 50 CG steps per reweighting instead of
#: 100 gave the same PSNR to 0.01 dB on the design photographs (noise 0.002 and 0.005) in about
#: half the time.
POLISH_FINAL_PASS: dict[str, dict[str, Any]] = {
    "sparse": {"cg_iterations": 50},
}


def _polish(grey, kernel, latent, cfg, extra, *, device):
    """(kernel, latent) after ``cfg.polish_rounds`` rounds of the full-resolution kernel refit
    (against ``latent``, then against the previous round's result) and a non-blind pass (the
    last pass in the last round, the polish's cheap first pass before it). How far
    the kernel moved in each round is recorded: the L1 distance between the two PSFs (0:
    unchanged, 2: disjoint supports) from the first kernel to the last and, with more than one
    round, in each round.
    """
    from .engine.map_kernel import refit_kernel

    cheaper = POLISH_FINAL_PASS.get(cfg.final, {})
    cheap_first = polish_first_pass(cfg.final)
    changes, new, out = [], kernel, latent
    for r in range(cfg.polish_rounds):
        previous = new
        new = refit_kernel(grey, out, kernel.shape, cfg.map, device=device)
        if new is None:  # the kernel is nearly as large as the image: nothing to refit against
            new = previous
        changes.append(round(float(np.abs(new - previous).sum()), 4))
        if r < cfg.polish_rounds - 1:  # only feeds the next refit: the cheap pass
            warm = {"start": out} if cfg.polish_warm else {}
            out = _nonblind(grey, new, cfg.final, out, device, **cheap_first, **warm)
        else:
            out = _final_pass(grey, new, out, cfg, device, **cheaper)
    extra["polish"] = {"kernel_change_l1": round(float(np.abs(new - kernel).sum()), 4)}
    if len(changes) > 1:
        extra["polish"]["round_changes_l1"] = changes
    if cfg.joint_iterations:  # refine the kernel jointly with that result, then the pass again
        new = _joint_kernel(grey, new, out, cfg, extra, device=device)
        out = _final_pass(grey, new, out, cfg, device, **cheaper)
    return new, out


#: Weight of the joint refinement's prior, in multiples of the sparse method's noise-derived
#: strength (chosen on the design photographs: benchmarks/joint_design.py).
JOINT_WEIGHT_FACTOR = 3.0


def _joint_kernel(grey, kernel, latent, cfg, extra, *, device):
    """The kernel after the joint refinement of ``latent`` and ``kernel``
    (:func:`~napari_selfdeblur.engine.joint.joint_refine`). How far the kernel moved (L1
    distance between the PSFs) and the objective before and after are recorded.
    """
    from .engine.joint import joint_refine
    from .nonblind import get_method

    weight = JOINT_WEIGHT_FACTOR * float(
        get_method("sparse").strength_rule(estimate_noise_sigma(grey))
    )
    res = joint_refine(
        grey, latent, kernel, weight=weight, iterations=cfg.joint_iterations, device=device
    )
    new = res.kernel
    extra["joint"] = {
        "iterations": cfg.joint_iterations,
        "kernel_change_l1": round(float(np.abs(new - kernel).sum()), 4),
        "objective": [float(f"{v:.6g}") for v in res.objective],
    }
    return new


def _final_pass(grey, kernel, latent, cfg, device, **params):
    """The preset's last non-blind pass (``cfg.final``, at ``cfg.final_strength_factor``);
    ``params`` go to the method.
    """
    factor = cfg.final_strength_factor
    extra = {} if factor is None else {"strength_factor": factor}
    return _nonblind(grey, kernel, cfg.final, latent, device, **extra, **params)


#: MAP kernels whose candidates agree less than this (``map_candidates.agreement``: the kept
#: candidate's mean similarity to the others) get a stronger last pass on nearly noise-free
#: images; see :func:`uncertain_kernel_boost`.
UNCERTAIN_AGREEMENT = 0.8


def uncertain_kernel_boost(agreement: float | None, sigma: float) -> float:
    """How much stronger the last non-blind pass is for a MAP kernel whose candidates agree
    ``agreement`` (None: one candidate, nothing known) on an image with noise ``sigma``:
    :func:`~napari_selfdeblur.nonblind.base.uncertain_kernel_factor` below
    :data:`UNCERTAIN_AGREEMENT`, else 1.
    """
    from .nonblind.base import uncertain_kernel_factor

    if agreement is None or agreement >= UNCERTAIN_AGREEMENT:
        return 1.0
    return uncertain_kernel_factor(sigma)


def _nonblind(grey, kernel, method: str, latent, device, **params):
    """``method``'s deconvolution of ``grey`` with an estimated ``kernel`` ("none": ``latent``);
    ``params`` go to :func:`~napari_selfdeblur.nonblind.api.refine`.
    """
    if method == "none":
        return latent
    from .nonblind.api import refine

    out = refine(grey, kernel, method, kernel_estimated=True, device=str(device), **params).image
    return np.clip(out, 0, 1).astype(np.float32)


def _quality(grey: np.ndarray, latent: np.ndarray, kernel: np.ndarray) -> dict[str, float]:
    """Ground-truth-free scores of a result: data residual (mean squared, [0, 1] units) and the
    normalised sparsity ||grad x||_1 / ||grad x||_2 of the latent (lower is sharper).
    """
    import torch

    from .engine.map_kernel import residual

    res = residual(
        torch.from_numpy(latent.astype(np.float64)),
        kernel,
        torch.from_numpy(grey.astype(np.float64)),
    )
    return {"residual": round(res, 8), "sparsity": round(normalised_sparsity(latent), 3)}


def normalised_sparsity(image: np.ndarray) -> float:
    """Normalised sparsity ||grad x||_1 / ||grad x||_2 of a grey image (Krishnan et al. 2011:
    blur raises it, so lower is sharper).
    """
    gy, gx = np.diff(image, axis=0), np.diff(image, axis=1)
    grads = np.concatenate([gy.ravel(), gx.ravel()]).astype(np.float64)
    return float(np.abs(grads).sum() / max(np.sqrt((grads**2).sum()), 1e-12))


@dataclass
class _Prepared:
    """One checked image mapped to [0, 1]; ``grey`` (float32) is what the engine fits."""

    intensity: Intensity
    unit: np.ndarray
    grey: np.ndarray
    ycc: np.ndarray | None  # YCbCr of a colour image
    sigma: float  # noise estimate of ``grey``, in [0, 1] units


def _prepare(arr: np.ndarray) -> _Prepared:
    intensity = Intensity.of(arr)
    unit = intensity.to_unit(arr)
    ycc = None
    if arr.ndim == 3:
        ycc = rgb_to_ycbcr(unit[..., :3].astype(np.float64))
        grey = np.clip(ycc[..., 0], 0, 1).astype(np.float32)
    else:
        grey = unit
    return _Prepared(intensity, unit, grey, ycc, estimate_noise_sigma(grey))


def engine_input(image: np.ndarray) -> np.ndarray:
    """The grey image in [0, 1] (float32) that the blind engines fit for ``image``: the image
    itself mapped to [0, 1], or a colour image's luminance.
    """
    return _prepare(check_image(image)).grey


def _finish(prep: _Prepared, raw, cfg, seed, dev, runtime, extra) -> DeblurResult:
    """The :class:`DeblurResult` of a fit: colour recombined, input range, failure checks."""
    if prep.ycc is not None:
        latent_unit = _color_latent(raw.latent, raw.kernel, prep.ycc, prep.unit, prep.sigma)
    else:
        latent_unit = raw.latent
    diagnosis = diagnose(
        prep.unit,
        latent_unit,
        raw.kernel,
        raw.history,
        completed=not raw.cancelled,
        loss_switch=cfg.ssim_start,
        noise_sigma=prep.sigma,
        kernel_agreement=_agreement(extra),
    )
    return DeblurResult(
        latent=prep.intensity.from_unit(latent_unit),
        kernel=raw.kernel.astype(np.float32),
        noise_sigma=prep.sigma * prep.intensity.scale,
        history=raw.history,
        config=cfg,
        seed=seed,
        device=str(dev),
        runtime_s=runtime,
        iterations_run=raw.iterations_run,
        cancelled=raw.cancelled,
        diagnosis=diagnosis,
        extra=extra,
    )


def _agreement(extra: dict[str, Any]) -> float | None:
    """The kept MAP candidate's agreement with the others (None: no MAP start, one candidate)."""
    agreement = extra.get("map_candidates", {}).get("agreement")
    return max(agreement) if agreement else None


def deblur_stack(
    planes,
    kernel_size: int | str | tuple[int, int],
    *,
    preset: str | DeblurConfig = DEFAULT_PRESET,
    iterations: int | None = None,
    seed: int = 0,
    device: str = "auto",
    callback: Callable[[Progress], None] | None = None,
    callback_every: int = 10,
    should_stop: Callable[[], bool] | None = None,
    preview_every: int = 0,
    restarts: int = 1,
    restart_iterations: int | None = None,
    batch_size: int | None = None,
) -> list[DeblurResult]:
    """Blind deconvolution of every plane of a stack, each with its own kernel.

    ``planes``: a sequence of equally shaped images, or an array whose first axis indexes them
    (each (H, W) or (H, W, 3|4), as for :func:`deblur`). Every plane is deblurred as
    :func:`deblur` would with the same seed. With ``batch_size`` B > 1 (default: 8 on CUDA,
    1 elsewhere) up to B planes are optimised at once (:mod:`napari_selfdeblur.engine.batched`;
    results equal plane-by-plane runs up to float rounding), when the configuration allows it
    (:func:`napari_selfdeblur.engine.batched.can_batch`) and ``restarts`` is 1; batched runs send
    no previews. ``Progress.planes`` says which planes a callback is about. When ``should_stop``
    ends the run, the planes being fitted return their current result with ``cancelled=True``
    and the planes not started are left out.
    """
    from .engine.batched import can_batch, fit_planes
    from .engine.device import resolve_device

    arrs = _check_planes(planes)
    cfg = resolve_config(preset, iterations)
    restarts = check_count(restarts, "restarts")
    seed = check_seed(seed, restarts)
    dev = resolve_device(device)
    if batch_size is None:
        batch_size = 8 if dev.type == "cuda" else 1
    batch_size = check_count(batch_size, "batch_size")
    n = len(arrs)
    if batch_size == 1 or n == 1 or restarts != 1 or not can_batch(cfg):
        out = []
        for i, a in enumerate(arrs):
            cb = None if callback is None else (lambda p, i=i: callback(replace(p, planes=(i,))))
            r = deblur(
                a,
                kernel_size,
                preset=preset,
                iterations=iterations,
                seed=seed,
                device=device,
                callback=cb,
                callback_every=callback_every,
                should_stop=should_stop,
                preview_every=preview_every,
                restarts=restarts,
                restart_iterations=restart_iterations,
            )
            out.append(r)
            if r.cancelled:
                break
        return out
    kernel_size, _ = _resolve_kernel_size(_prepare(arrs[0]).grey, kernel_size, cfg, dev)
    kshape = check_kernel_size(arrs[0].shape[:2], kernel_size, cfg)
    check_memory(arrs[0].shape[:2], kshape, cfg, dev, batch=min(int(batch_size), n))
    out = []
    for first in range(0, n, batch_size):
        idx = tuple(range(first, min(n, first + batch_size)))
        preps = [_prepare(arrs[i]) for i in idx]
        cb = None if callback is None else (lambda p, idx=idx: callback(replace(p, planes=idx)))
        start = time.perf_counter()
        raws = fit_planes(
            np.stack([p.grey for p in preps]),
            kshape,
            cfg,
            device=dev,
            seed=seed,
            callback=cb,
            callback_every=callback_every,
            should_stop=should_stop,
        )
        runtime = (time.perf_counter() - start) / len(idx)  # the batch's time, shared
        for prep, raw in zip(preps, raws, strict=True):
            extra = {"preset": preset if isinstance(preset, str) else "custom"}
            extra["batched_planes"] = len(idx)
            out.append(_finish(prep, raw, cfg, seed, dev, runtime, extra))
        if raws[0].cancelled:
            break
    return out


def _check_planes(planes) -> list[np.ndarray]:
    """The planes of a stack as checked arrays of one shape."""
    arrs = [check_image(p) for p in planes]
    if not arrs:
        raise InvalidInputError("the stack has no planes")
    if len({a.shape for a in arrs}) > 1:
        raise InvalidInputError("all planes of a stack must have the same shape")
    return arrs


def _color_latent(
    luma: np.ndarray, kernel: np.ndarray, ycc: np.ndarray, unit: np.ndarray, sigma: float
) -> np.ndarray:
    """Recombine the deblurred luminance with non-blind deconvolved chroma (and alpha)."""
    import torch

    from .imaging.fourier import wiener_filter
    from .imaging.noise import wiener_strength

    # Chroma carries little detail: the closed-form Wiener filter (padded, tapered) is enough.
    strength = wiener_strength(sigma)
    chroma = torch.from_numpy(np.moveaxis(ycc[..., 1:], -1, 0).copy())
    chroma = wiener_filter(chroma, torch.from_numpy(kernel.astype(np.float64)), strength).numpy()
    out = np.stack([luma.astype(np.float64), chroma[0], chroma[1]], axis=-1)
    rgb = np.clip(ycbcr_to_rgb(out), 0, 1)
    if unit.shape[-1] == 4:
        rgb = np.concatenate([rgb, unit[..., 3:]], axis=-1)
    return rgb.astype(np.float32)
