"""The SelfDeblur optimisation: fit Gx and Gk to one grey image in [0, 1].

This is the numerical core; :func:`napari_selfdeblur.deblur` wraps it with input checks, colour
handling and intensity mapping.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..config import DeblurConfig
from ..errors import OutOfMemoryError
from .device import deterministic_cudnn, is_out_of_memory
from .losses import ssim, total_variation
from .networks import ImageGenerator, KernelGenerator
from .physics import centroid_offset, crop_latent, latent_shape, select_blur, shift_kernel


@dataclass
class Progress:
    """What a callback receives. ``latent`` (H, W) and ``kernel`` (kh, kw) only on preview steps."""

    iteration: int  # iterations completed over all levels, 1-based
    total: int  # iterations over all levels (coarse ones first)
    loss: float
    latent: np.ndarray | None = None
    kernel: np.ndarray | None = None
    stage: str = ""  # "" at full resolution, "coarse i/L" on a coarse level (no previews there)
    planes: tuple[int, ...] = ()  # set by api.deblur_stack: the planes this progress is about


@dataclass
class FitResult:
    """Raw outcome of :func:`fit`: latent (H, W) in [0, 1], PSF (kh, kw) with unit sum."""

    latent: np.ndarray
    kernel: np.ndarray
    history: list[tuple[int, float]] = field(default_factory=list)
    iterations_run: int = 0
    cancelled: bool = False
    resumed_from: int = 0  # iteration a checkpoint was resumed at (0: a fresh run)
    resumed_runtime_s: float = 0.0  # seconds the earlier, checkpointed part of the run took
    state: dict | None = None  # {"gx": ..., "gk": ...} parameters on the CPU, with keep_state

    @property
    def final_loss(self) -> float:
        return self.history[-1][1] if self.history else float("nan")


def _data_loss(cfg: DeblurConfig, iteration: int, pred: torch.Tensor, target: torch.Tensor):
    if iteration < cfg.ssim_start:
        return F.mse_loss(pred, target)
    return 1 - ssim(pred, target, window=cfg.ssim_window, sigma=cfg.ssim_sigma)


def fit(
    y: np.ndarray,
    kernel_shape: tuple[int, int],
    config: DeblurConfig,
    *,
    device: torch.device,
    seed: int = 0,
    noise_sigma: float = 0.0,
    callback: Callable[[Progress], None] | None = None,
    callback_every: int = 10,
    preview_every: int = 0,
    should_stop: Callable[[], bool] | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 100,
    fixed_kernel: np.ndarray | None = None,
    stop_at: int | None = None,
    keep_state: bool = False,
) -> FitResult:
    """Run SelfDeblur on ``y`` (H, W), float in [0, 1]; inputs are assumed checked.

    The loss is read back from the device every ``callback_every`` iterations (and at the end) and
    passed to ``callback``; every ``preview_every`` iterations (0: never) the callback also gets
    the current latent and kernel. ``should_stop`` is polled before each iteration; when it returns
    True the run ends and the result of the last completed iteration is returned with
    ``cancelled=True``.

    ``checkpoint``: a file that the full optimiser state is saved to (atomically) every
    ``checkpoint_every`` iterations and when the run is cancelled. If the file exists and was
    written for the same image, kernel size, configuration and seed, the run resumes from it and
    ends with the same result as an uninterrupted run on the same device; otherwise it is
    ignored and overwritten. It is deleted when the run completes.

    ``stop_at``: end after that many iterations as if cancelled (the checkpoint, if any, is saved
    so the run can be continued later with the same arguments and no ``stop_at``).

    ``keep_state``: return the final parameters of both networks in ``result.state`` (for
    analysis, e.g. :mod:`napari_selfdeblur.analysis`).

    ``fixed_kernel`` (a PSF of ``kernel_shape``) turns the run non-blind: Gk is not used and Gx
    alone is fitted to explain ``y`` through that kernel (the reference's non-blind variant).
    """
    ckpt = _Checkpoint(Path(checkpoint), max(1, checkpoint_every), y, kernel_shape, config, seed,
                       noise_sigma, fixed_kernel) if checkpoint is not None else None  # fmt: skip
    every = max(1, callback_every)
    try:
        with deterministic_cudnn():
            state = ckpt.load() if ckpt is not None else None
            levels = coarse_levels(y.shape, kernel_shape, config) if fixed_kernel is None else []
            warm, offset = None, 0
            total = len(levels) * config.coarse_iterations + config.iterations
            if levels and state is None:  # a checkpoint is past the coarse levels
                warm, coarse = _coarse_to_fine(
                    y, kernel_shape, levels, config, device, seed, noise_sigma, callback, every,
                    should_stop, total,
                )  # fmt: skip
                if coarse.cancelled:
                    return coarse
            if levels:
                offset = len(levels) * config.coarse_iterations
            return _fit(
                y, kernel_shape, config, device, seed, noise_sigma,
                callback, every, preview_every, should_stop, ckpt, fixed_kernel,
                stop_at, keep_state, state=state, warm=warm, offset=offset, total=total,
            )  # fmt: skip
    except Exception as exc:
        if is_out_of_memory(exc):
            raise OutOfMemoryError(
                f"{device.type.upper()} ran out of memory deblurring a {y.shape[0]}x{y.shape[1]} "
                f"image with a {kernel_shape[0]}x{kernel_shape[1]} kernel. Estimate the kernel on "
                "a crop (a region of interest) and refine the whole image non-blind, use a lighter "
                "preset, or run on the CPU."
            ) from exc
        raise


def build_generators(cfg: DeblurConfig, kernel_shape, image_shape, seed: int, device):
    """Gx, Gk and their fixed inputs zx, zk for a run, all determined by the seed.

    Networks and inputs are drawn on the CPU from the seed, so they are the same on every device.
    """
    hp, wp = latent_shape(image_shape, kernel_shape)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        gx = ImageGenerator(cfg.image_net).to(device)
        gk = KernelGenerator(cfg.kernel_net, kernel_shape).to(device)
        gen = torch.Generator().manual_seed(seed)
        zx = (torch.rand((1, cfg.image_net.input_channels, hp, wp), generator=gen)
              * cfg.image_net.input_scale).to(device)  # fmt: skip
        zk = (torch.rand((cfg.kernel_net.input_size,), generator=gen)
              * cfg.kernel_net.input_scale).to(device)  # fmt: skip
    return gx, gk, zx, zk


class _Checkpoint:
    """Save and restore the state of one run; a fingerprint ties the file to its inputs."""

    def __init__(self, path, every, y, kernel_shape, cfg, seed, noise_sigma, fixed=None):
        self.path, self.every = path, every
        digest = hashlib.sha256(np.ascontiguousarray(y, dtype=np.float32).tobytes())
        digest.update(json.dumps([list(kernel_shape), cfg.fingerprint_dict(), seed,
                                  float(noise_sigma)], sort_keys=True).encode())  # fmt: skip
        if fixed is not None:
            digest.update(np.ascontiguousarray(fixed, dtype=np.float64).tobytes())
        self.fingerprint = digest.hexdigest()

    def load(self) -> dict | None:
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=False)
        except Exception:  # a damaged or foreign file: start afresh
            return None
        return state if state.get("fingerprint") == self.fingerprint else None

    def save(self, state: dict) -> None:
        from ..fileio import atomic_path

        with atomic_path(self.path) as tmp:
            torch.save({"fingerprint": self.fingerprint, **state}, tmp)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


def coarse_levels(image_shape, kernel_shape, cfg: DeblurConfig):
    """(image shape, kernel shape) of each coarse level of a run, coarsest first.

    Level i of L has scale 2^-(L - i); its kernel extent (size - 1) is scaled and rounded up to an
    even number, so sizes stay odd (at least 3). Levels whose latent would be too small for the
    U-Net, or whose image is smaller than the kernel or the SSIM window, are left out.
    """
    from .networks import min_image_size

    need = min_image_size(cfg.image_net)
    out = []
    for level in range(cfg.coarse_levels, 0, -1):
        s = 0.5**level
        img = tuple(max(1, round(n * s)) for n in image_shape)
        ker = tuple(max(3, 2 * int(np.ceil((k - 1) * s / 2 - 1e-9)) + 1) for k in kernel_shape)
        fits = all(k <= n and n >= cfg.ssim_window for k, n in zip(ker, img, strict=True))
        if fits and min(latent_shape(img, ker)) >= need:
            out.append((img, ker))
    return out


def resample(a: np.ndarray, shape: tuple[int, int], *, kernel: bool = False) -> np.ndarray:
    """Bilinear resampling of a 2-D array to ``shape`` (antialiased when shrinking).

    ``kernel=True`` maps the corner pixels onto each other (so centre stays on centre for odd
    sizes), clips negatives and renormalises to unit sum.
    """
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))[None, None]
    if kernel:
        out = F.interpolate(t, size=shape, mode="bilinear", align_corners=True)[0, 0].clamp_min(0)
        return (out / out.sum()).numpy()
    shrink = shape[0] < a.shape[0] or shape[1] < a.shape[1]
    return F.interpolate(t, size=shape, mode="bilinear", align_corners=False,
                         antialias=shrink)[0, 0].numpy()  # fmt: skip


def _coarse_to_fine(y, kernel_shape, levels, cfg, device, seed, noise_sigma, callback, every,
                    should_stop, total):  # fmt: skip
    """Solve the coarse levels in turn; the last one's latent and kernel, and its FitResult."""
    # A level's own schedule is scaled to its length; its warm-start steps stay the run's.
    level_cfg = cfg.replace(coarse_levels=0).with_iterations(cfg.coarse_iterations,
                                                             warm_steps=False)  # fmt: skip
    warm, offset, result = None, 0, None
    for i, (shape, ker) in enumerate(levels):
        ys = resample(y, shape)
        if warm is not None:
            warm = (resample(warm[0], shape), resample(warm[1], ker, kernel=True))
        result = _fit(ys, ker, level_cfg, device, seed, noise_sigma * shape[0] / y.shape[0],
                      callback, every, 0, should_stop, warm=warm, offset=offset, total=total,
                      stage=f"coarse {i + 1}/{len(levels)}")  # fmt: skip
        offset += level_cfg.iterations
        if result.cancelled:  # report the coarse result at full size, no iteration of the run
            result.latent = np.clip(resample(result.latent, y.shape), 0, 1)
            result.kernel = resample(result.kernel, kernel_shape, kernel=True)
            result.iterations_run, result.history = 0, []
            break
        warm = (result.latent, result.kernel)
    return warm, result


def _fit(y, kernel_shape, cfg, device, seed, noise_sigma, callback, every, preview, should_stop,
         ckpt=None, fixed_kernel=None, stop_at=None, keep_state=False, *, state=None, warm=None,
         offset=0, total=None, stage=""):  # fmt: skip
    """One level of a run. ``warm``: a (latent, kernel) pair, at any size, to start from;
    ``offset``/``total``/``stage`` only change how progress is reported."""
    h, w = y.shape
    total = cfg.iterations if total is None else total
    gx, gk, zx, zk = build_generators(cfg, kernel_shape, (h, w), seed, device)
    if cfg.channels_last:
        gx = gx.to(memory_format=torch.channels_last)
        zx = zx.contiguous(memory_format=torch.channels_last)
    blur = select_blur(cfg.blur)
    perturb = torch.Generator(device=device).manual_seed(seed + 1)
    target = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None, None].to(device)
    tv_weight = cfg.tv_factor * noise_sigma
    gx.train()
    gk.train()

    def make_opt(groups):
        opt = torch.optim.Adam(groups)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.lr_milestones), cfg.lr_gamma)
        return opt, sched

    x_groups = [{"params": gx.parameters(), "lr": cfg.lr_image}]
    k_groups = [{"params": gk.parameters(), "lr": cfg.lr_kernel}]
    fixed = None
    if fixed_kernel is not None:
        fixed = torch.from_numpy(np.ascontiguousarray(fixed_kernel, dtype=np.float32)).to(device)
        steppers = [make_opt(x_groups)]
    elif cfg.mode == "joint":
        steppers = [make_opt(x_groups + k_groups)]
    else:
        steppers = [make_opt(x_groups), make_opt(k_groups)]

    def gen_x(z):
        if cfg.precision == "float32":
            return gx(z)
        with torch.autocast(device.type, dtype=torch.bfloat16):
            return gx(z).float()

    def objective(it, x, k):
        loss = _data_loss(cfg, it, blur(x, k), target)
        if tv_weight > 0:
            loss = loss + tv_weight * total_variation(x)
        return loss

    def step(opt, sched, loss):
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()

    result = FitResult(latent=np.empty(0), kernel=np.empty(0))
    x = k = loss = None
    first = 0
    started = time.perf_counter()

    def snapshot() -> dict:
        return {
            "runtime_s": result.resumed_runtime_s + time.perf_counter() - started,
            "iteration": result.iterations_run,
            "history": list(result.history),
            "gx": gx.state_dict(),
            "gk": gk.state_dict(),
            "optimizers": [(o.state_dict(), s.state_dict()) for o, s in steppers],
            "perturb": perturb.get_state(),
        }

    if state is None and warm is not None:
        x_warm = torch.from_numpy(np.clip(resample(warm[0], (h, w)), 0, 1))[None, None]
        k_warm = torch.from_numpy(resample(warm[1], kernel_shape, kernel=True))
        _warm_start(gx, gk, zx, zk, x_warm.to(device), k_warm.to(device), cfg, kernel_shape,
                    (h, w), should_stop, fit_image=cfg.warm_image)  # fmt: skip
    elif state is None and cfg.init == "noblur" and fixed is None:
        _warm_start(gx, gk, zx, zk, target, gaussian_kernel(kernel_shape, cfg.init_kernel_sigma)
                    .to(device), cfg, kernel_shape, (h, w), should_stop)  # fmt: skip
    if state is not None:
        gx.load_state_dict(state["gx"])
        gk.load_state_dict(state["gk"])
        for (o, s), (os_, ss) in zip(steppers, state["optimizers"], strict=True):
            o.load_state_dict(os_)
            s.load_state_dict(ss)
        perturb.set_state(state["perturb"])
        first = result.iterations_run = result.resumed_from = state["iteration"]
        result.resumed_runtime_s = float(state["runtime_s"])
        result.history = list(state["history"])
    for it in range(first, cfg.iterations):
        if (stop_at is not None and it >= stop_at) or (
            should_stop is not None and it > first and should_stop()
        ):
            result.cancelled = True
            break
        z = zx + cfg.input_noise_std * torch.randn(zx.shape, generator=perturb, device=device)
        if cfg.channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
        if fixed is not None or cfg.mode == "joint":
            x, k = gen_x(z), (fixed if fixed is not None else gk(zk))
            loss = objective(it, x, k)
            step(*steppers[0], loss)
        else:
            x = gen_x(z)
            step(*steppers[0], objective(it, x, gk(zk).detach()))
            x = x.detach()
            k = gk(zk)
            loss = objective(it, x, k)
            step(*steppers[1], loss)
        result.iterations_run = it + 1
        done = it + 1
        if ckpt is not None and done % ckpt.every == 0 and done < cfg.iterations:
            ckpt.save(snapshot())
        if done % every == 0 or done == cfg.iterations:
            value = float(loss.detach())
            if not np.isfinite(value):
                raise FloatingPointError(f"the loss became {value} at iteration {done}")
            result.history.append((done, value))
            if callback is not None:
                show = preview > 0 and (done % preview == 0 or done == cfg.iterations)
                callback(
                    Progress(
                        offset + done,
                        total,
                        value,
                        *(_outputs(x, k, (h, w), fixed is None) if show else (None, None)),
                        stage=stage,
                    )
                )
    last_logged = result.history[-1][0] if result.history else None
    if result.cancelled and loss is not None and last_logged != result.iterations_run:
        result.history.append((result.iterations_run, float(loss.detach())))
    if x is None:  # stopped before the first iteration: report the starting point
        with torch.no_grad():
            x, k = gen_x(zx), (fixed if fixed is not None else gk(zk))
    if ckpt is not None:
        if result.cancelled:
            ckpt.save(snapshot())
        else:
            ckpt.remove()
    result.latent, result.kernel = _outputs(x, k, (h, w), fixed is None)
    if keep_state:
        result.state = {
            name: {key: v.detach().cpu().clone() for key, v in net.state_dict().items()}
            for name, net in (("gx", gx), ("gk", gk))
        }
    return result


def gaussian_kernel(kernel_shape: tuple[int, int], sigma: float) -> torch.Tensor:
    """A centred isotropic Gaussian PSF of ``kernel_shape`` (unit sum, float32, on the CPU)."""
    kh, kw = kernel_shape
    yy = torch.arange(kh, dtype=torch.float32) - kh // 2
    xx = torch.arange(kw, dtype=torch.float32) - kw // 2
    g = torch.exp(-0.5 * (yy[:, None] ** 2 + xx[None, :] ** 2) / sigma**2)
    return g / g.sum()


def _warm_start(gx, gk, zx, zk, x_target, k_target, cfg, kernel_shape, image_shape, should_stop,
                fit_image: bool = True):  # fmt: skip
    """Fit Gk to ``k_target`` (a PSF) and, with ``fit_image``, Gx to ``x_target`` (the (H, W)
    window aligned with the input), ``cfg.init_iterations`` Adam steps each.

    ``init="noblur"`` uses the blurry image and a small Gaussian; coarse-to-fine runs use the
    previous level's latent and kernel, upsampled.
    """
    from ..config import INIT_KERNEL_LR

    k_target = k_target.reshape(-1)
    opt_x = torch.optim.Adam(gx.parameters(), lr=cfg.lr_image)
    opt_k = torch.optim.Adam(gk.parameters(), lr=INIT_KERNEL_LR)
    for _ in range(cfg.init_iterations):
        if should_stop is not None and should_stop():
            break
        if fit_image:
            x = crop_latent(gx(zx), kernel_shape, image_shape)
            loss_x = F.mse_loss(x, x_target)
            opt_x.zero_grad(set_to_none=True)
            loss_x.backward()
            opt_x.step()
        k = gk(zk).reshape(-1)
        loss_k = -(k_target * torch.log(k.clamp_min(1e-30))).sum()  # KL up to a constant
        opt_k.zero_grad(set_to_none=True)
        loss_k.backward()
        opt_k.step()


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float32).numpy().copy()


def _outputs(
    x: torch.Tensor, k: torch.Tensor, image_shape, centre: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Latent (H, W) and kernel as numpy, the kernel moved so its centre of mass is central.

    Blind deconvolution cannot tell a shifted kernel from a shifted image; centring the kernel
    (and moving the latent's window the other way) keeps the latent aligned with the input. Only
    the kernel's support (entries above 5 % of its peak) counts: SoftMax leaves a faint
    background everywhere, and what of it is pushed over the border is dropped. The kernel stays
    where it is if centring would push part of its support out.
    """
    kernel = _np(k)
    if not centre:
        return _np(crop_latent(x[0, 0], kernel.shape, image_shape)), kernel
    support = kernel >= 0.05 * kernel.max()
    dy, dx = centroid_offset(kernel * support)
    shift = (0, 0)
    if (dy or dx) and shift_kernel(support, -dy, -dx).sum() == support.sum():
        centred = shift_kernel(kernel, -dy, -dx)
        kernel, shift = centred / centred.sum(), (dy, dx)
    return _np(crop_latent(x[0, 0], kernel.shape, image_shape, shift)), kernel
