"""The SelfDeblur optimisation: fit Gx and Gk to one grey image in [0, 1].

A run is assembled from small pieces that the batched solver and the analysis tools share:

- :func:`build_problem` makes a :class:`Problem` (networks, their fixed inputs, the target, the
  objective and the random stream that perturbs Gx's input);
- :func:`make_steppers` makes the optimisers (one joint Adam, or one per network);
- :func:`iterate` is a generator that runs the iterations and yields a :class:`Step` after each;
- a :class:`Recorder` keeps the loss history, checks for NaN and calls the progress callback;
- :mod:`.checkpoint` saves and restores the state of a run.

:func:`fit` runs them, coarse levels first; :func:`napari_selfdeblur.deblur` wraps it with input
checks, colour handling and intensity mapping.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..config import INIT_KERNEL_LR, DeblurConfig
from ..errors import NumericalError, OutOfMemoryError
from .checkpoint import Checkpoint
from .device import deterministic_cudnn, is_out_of_memory
from .map_kernel import fit_map
from .networks import ImageGenerator, KernelGenerator, min_image_size
from .objective import Objective
from .physics import (
    centroid_offset,
    crop_latent,
    gaussian_kernel,
    latent_shape,
    resample,
    select_blur,
    shift_kernel,
)
from .results import FitResult, Progress

# -- the problem -----------------------------------------------------------------------------


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
        zx = (
            torch.rand((1, cfg.image_net.input_channels, hp, wp), generator=gen)
            * cfg.image_net.input_scale
        ).to(device)
        zk = (
            torch.rand((cfg.kernel_net.input_size,), generator=gen) * cfg.kernel_net.input_scale
        ).to(device)
    return gx, gk, zx, zk


@dataclass
class Problem:
    """One level of a run: what is optimised, against what, and the seeded random streams."""

    cfg: DeblurConfig
    kernel_shape: tuple[int, int]
    image_shape: tuple[int, int]
    device: torch.device
    gx: ImageGenerator
    gk: KernelGenerator
    zx: torch.Tensor
    zk: torch.Tensor
    target: torch.Tensor  # (1, 1, H, W)
    objective: Objective
    perturb: torch.Generator  # redraws the perturbation of Gx's input every iteration
    fixed: torch.Tensor | None = None  # a known kernel: a non-blind run, Gk unused

    def image(self, z: torch.Tensor) -> torch.Tensor:
        """Gx's output for input ``z`` (under bfloat16 autocast if the config asks for it)."""
        if self.cfg.precision == "float32":
            return self.gx(z)
        with torch.autocast(self.device.type, dtype=torch.bfloat16):
            return self.gx(z).float()

    def kernel(self) -> torch.Tensor:
        """The fixed kernel, or Gk's output."""
        return self.fixed if self.fixed is not None else self.gk(self.zk)

    def perturbed_input(self) -> torch.Tensor:
        """Zx plus fresh Gaussian noise of ``cfg.input_noise_std`` (one draw per iteration)."""
        z = self.zx + self.cfg.input_noise_std * torch.randn(
            self.zx.shape, generator=self.perturb, device=self.device
        )
        if self.cfg.channels_last:
            z = z.contiguous(memory_format=torch.channels_last)
        return z

    def outputs(self, x: torch.Tensor, k: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        """The aligned latent window and the kernel, as numpy (see :func:`outputs`)."""
        return outputs(x, k, self.image_shape, centre=self.fixed is None)


def build_problem(
    y: np.ndarray,
    kernel_shape: tuple[int, int],
    cfg: DeblurConfig,
    *,
    device: torch.device,
    seed: int,
    noise_sigma: float = 0.0,
    fixed_kernel: np.ndarray | None = None,
) -> Problem:
    """The :class:`Problem` of fitting ``y`` (H, W, float in [0, 1]) with ``cfg`` and ``seed``."""
    h, w = y.shape
    gx, gk, zx, zk = build_generators(cfg, kernel_shape, (h, w), seed, device)
    if cfg.channels_last:
        gx = gx.to(memory_format=torch.channels_last)
        zx = zx.contiguous(memory_format=torch.channels_last)
    perturb = torch.Generator(device=device).manual_seed(seed + 1)
    target = torch.from_numpy(np.ascontiguousarray(y, dtype=np.float32))[None, None].to(device)
    objective = Objective(cfg, select_blur(cfg.blur), target, cfg.tv_factor * noise_sigma)
    fixed = None
    if fixed_kernel is not None:
        fixed = torch.from_numpy(np.ascontiguousarray(fixed_kernel, dtype=np.float32)).to(device)
    gx.train()
    gk.train()
    return Problem(
        cfg, tuple(kernel_shape), (h, w), device, gx, gk, zx, zk, target, objective, perturb, fixed
    )


# -- optimisers and iterations ---------------------------------------------------------------


@dataclass
class Stepper:
    """An Adam optimiser and its learning-rate schedule."""

    opt: torch.optim.Adam
    sched: torch.optim.lr_scheduler.MultiStepLR

    def step(self, loss: torch.Tensor) -> None:
        """One gradient step on ``loss``, then one schedule step."""
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        self.sched.step()


def make_steppers(problem: Problem) -> list[Stepper]:
    """One joint stepper (joint mode, or non-blind), or one for Gx and one for Gk (alternating)."""
    cfg = problem.cfg

    def stepper(groups) -> Stepper:
        opt = torch.optim.Adam(groups)
        sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.lr_milestones), cfg.lr_gamma)
        return Stepper(opt, sched)

    x_groups = [{"params": problem.gx.parameters(), "lr": cfg.lr_image}]
    k_groups = [{"params": problem.gk.parameters(), "lr": cfg.lr_kernel}]
    if problem.fixed is not None:
        return [stepper(x_groups)]
    if cfg.mode == "joint":
        return [stepper(x_groups + k_groups)]
    return [stepper(x_groups), stepper(k_groups)]


@dataclass
class Step:
    """What :func:`iterate` yields after each iteration (``iteration`` is 1-based)."""

    iteration: int
    loss: torch.Tensor
    x: torch.Tensor
    k: torch.Tensor


def iterate(
    problem: Problem,
    steppers: list[Stepper],
    *,
    first: int = 0,
    stop_at: int | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> Iterator[Step]:
    """Run iterations ``first`` .. ``cfg.iterations - 1``, yielding a :class:`Step` after each.

    Ends early, before an iteration, at ``stop_at`` or when ``should_stop()`` returns True
    (polled from the second iteration on).
    """
    cfg, objective = problem.cfg, problem.objective
    for it in range(first, cfg.iterations):
        if (stop_at is not None and it >= stop_at) or (
            should_stop is not None and it > first and should_stop()
        ):
            return
        z = problem.perturbed_input()
        if len(steppers) == 1:
            x, k = problem.image(z), problem.kernel()
            loss = objective(it, x, k)
            steppers[0].step(loss)
        else:  # alternating: a Gx step with Gk frozen, then a Gk step with Gx frozen
            x = problem.image(z)
            steppers[0].step(objective(it, x, problem.kernel().detach()))
            x = x.detach()
            k = problem.kernel()
            loss = objective(it, x, k)
            steppers[1].step(loss)
        yield Step(it + 1, loss, x, k)


# -- recording -------------------------------------------------------------------------------


class Recorder:
    """Loss history, NaN checks, progress callbacks and previews of one level of a run.

    The loss is read back from the device every ``every`` iterations and at ``last``; every
    ``preview`` iterations (0: never) the callback also gets the current latent and kernel.
    ``offset``, ``total`` and ``stage`` place the level within the whole run.
    """

    def __init__(
        self,
        result: FitResult,
        *,
        callback: Callable[[Progress], None] | None,
        every: int,
        preview: int,
        last: int,
        offset: int = 0,
        total: int | None = None,
        stage: str = "",
    ):
        self.result, self.callback, self.every, self.preview = result, callback, every, preview
        self.last, self.offset, self.stage = last, offset, stage
        self.total = last if total is None else total

    def record(self, step: Step, outputs: Callable[[torch.Tensor, torch.Tensor], Any]) -> None:
        """Note that ``step`` completed; log, check and report it when it is due."""
        done = self.result.iterations_run = step.iteration
        if done % self.every and done != self.last:
            return
        value = float(step.loss.detach())
        if not np.isfinite(value):
            raise NumericalError(f"the loss became {value} at iteration {done}")
        self.result.history.append((done, value))
        if self.callback is None:
            return
        show = self.preview > 0 and (done % self.preview == 0 or done == self.last)
        latent, kernel = outputs(step.x, step.k) if show else (None, None)
        self.callback(
            Progress(self.offset + done, self.total, value, latent, kernel, stage=self.stage)
        )

    def close(self, last_step: Step | None, cancelled: bool) -> None:
        """Log the loss of a cancelled run's last iteration if it was not logged yet."""
        self.result.cancelled = cancelled
        history = self.result.history
        logged = history[-1][0] if history else None
        if cancelled and last_step is not None and logged != self.result.iterations_run:
            history.append((self.result.iterations_run, float(last_step.loss.detach())))


# -- checkpoint state ------------------------------------------------------------------------


def snapshot(problem: Problem, steppers: list[Stepper], result: FitResult, started: float):
    """The full state of a run, to save in a :class:`~.checkpoint.Checkpoint`."""
    return {
        "runtime_s": result.resumed_runtime_s + time.perf_counter() - started,
        "iteration": result.iterations_run,
        "history": list(result.history),
        "gx": problem.gx.state_dict(),
        "gk": problem.gk.state_dict(),
        "optimizers": [(s.opt.state_dict(), s.sched.state_dict()) for s in steppers],
        "perturb": problem.perturb.get_state(),
    }


def restore(problem: Problem, steppers: list[Stepper], state: dict, result: FitResult) -> int:
    """Load a :func:`snapshot` into the problem and steppers; the iteration to go on from."""
    problem.gx.load_state_dict(state["gx"])
    problem.gk.load_state_dict(state["gk"])
    for s, (opt_state, sched_state) in zip(steppers, state["optimizers"], strict=True):
        s.opt.load_state_dict(opt_state)
        s.sched.load_state_dict(sched_state)
    problem.perturb.set_state(state["perturb"])
    result.iterations_run = result.resumed_from = int(state["iteration"])
    result.resumed_runtime_s = float(state["runtime_s"])
    result.history = [(int(i), float(v)) for i, v in state["history"]]
    return result.iterations_run


# -- running a fit ---------------------------------------------------------------------------


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
    start: FitResult | None = None,
) -> FitResult:
    """Run SelfDeblur on ``y`` (H, W), float in [0, 1]; inputs are assumed checked.

    The loss is read back from the device every ``callback_every`` iterations (and at the end)
    and passed to ``callback``; every ``preview_every`` iterations (0: never) the callback also
    gets the current latent and kernel. ``should_stop`` is polled before each iteration; when it
    returns True the run ends and the result of the last completed iteration is returned with
    ``cancelled=True``.

    ``checkpoint``: a file that the full optimiser state is saved to (atomically) every
    ``checkpoint_every`` iterations and when the run is cancelled. If the file exists and was
    written for the same image, kernel size, configuration and seed, the run resumes from it and
    ends with the same result as an uninterrupted run on the same device; otherwise it is
    ignored and overwritten. It is deleted when the run completes.

    ``stop_at``: end after that many iterations as if cancelled (the checkpoint, if any, is saved
    so the run can be continued later with the same arguments and no ``stop_at``).

    ``keep_state``: return the final parameters of both networks in ``result.state``.

    ``start``: with ``init="map"``, the MAP estimate to start from (computed here when None).

    ``fixed_kernel`` (a PSF of ``kernel_shape``) turns the run non-blind: Gk is not used and Gx
    alone is fitted to explain ``y`` through that kernel (the reference's non-blind variant).
    """
    run = dict(y=y, kernel_shape=kernel_shape, cfg=config, seed=seed, noise_sigma=noise_sigma)
    ckpt = None
    if checkpoint is not None:
        ckpt = Checkpoint(checkpoint, every=checkpoint_every, fixed_kernel=fixed_kernel, **run)
    watch = dict(callback=callback, should_stop=should_stop)
    report = dict(every=max(1, callback_every), **watch)
    try:
        with deterministic_cudnn():
            state = ckpt.load() if ckpt is not None else None
            levels = coarse_levels(y.shape, kernel_shape, config) if fixed_kernel is None else []
            offset = len(levels) * config.coarse_iterations
            total = offset + config.iterations
            warm = None
            if state is None and fixed_kernel is None and config.init == "map":
                start = start or fit_map(y, kernel_shape, config.map, device=device, **watch)
                warm = (start.latent, start.kernel)
                if start.cancelled:
                    return start
            if levels and state is None:  # a checkpoint is past the coarse levels
                warm, coarse = coarse_to_fine(
                    y,
                    kernel_shape,
                    levels,
                    config,
                    device=device,
                    seed=seed,
                    noise_sigma=noise_sigma,
                    total=total,
                    warm=warm,
                    **report,
                )
                if coarse.cancelled:
                    return coarse
            problem = build_problem(
                y,
                kernel_shape,
                config,
                device=device,
                seed=seed,
                noise_sigma=noise_sigma,
                fixed_kernel=fixed_kernel,
            )
            return fit_level(
                problem,
                preview=preview_every,
                checkpoint=ckpt,
                stop_at=stop_at,
                keep_state=keep_state,
                state=state,
                warm=warm,
                offset=offset,
                total=total,
                **report,
            )
    except Exception as exc:
        if is_out_of_memory(exc):
            raise _out_of_memory(device, y.shape, kernel_shape) from exc
        raise


def _out_of_memory(device: torch.device, image_shape, kernel_shape) -> OutOfMemoryError:
    """The error for a run that ran out of memory on ``device``, with advice that fits it."""
    (h, w), (kh, kw) = image_shape, kernel_shape
    return OutOfMemoryError(
        f"{device.type.upper()} ran out of memory deblurring a {h}x{w} image with a {kh}x{kw} "
        "kernel. Estimate the kernel on a crop (a region of interest) and refine the whole "
        "image non-blind, or use a lighter preset"
        + (", or run on the CPU." if device.type != "cpu" else ".")
    )


def fit_level(
    problem: Problem,
    *,
    callback: Callable[[Progress], None] | None = None,
    every: int = 10,
    preview: int = 0,
    should_stop: Callable[[], bool] | None = None,
    checkpoint: Checkpoint | None = None,
    stop_at: int | None = None,
    keep_state: bool = False,
    state: dict | None = None,
    warm: tuple[np.ndarray, np.ndarray] | None = None,
    offset: int = 0,
    total: int | None = None,
    stage: str = "",
) -> FitResult:
    """Fit one level: start (warm, no-blur, random or from ``state``), iterate, record, finish.

    ``warm``: a (latent, kernel) pair, at any size, to start from. ``offset``, ``total`` and
    ``stage`` only change how progress is reported.
    """
    cfg = problem.cfg
    steppers = make_steppers(problem)
    result = FitResult(latent=np.empty(0), kernel=np.empty(0))
    started = time.perf_counter()
    _initialise(problem, warm, state is None, should_stop)
    first = restore(problem, steppers, state, result) if state is not None else 0
    recorder = Recorder(
        result,
        callback=callback,
        every=every,
        preview=preview,
        last=cfg.iterations,
        offset=offset,
        total=total,
        stage=stage,
    )
    last = None
    for last in iterate(problem, steppers, first=first, stop_at=stop_at, should_stop=should_stop):
        recorder.record(last, problem.outputs)
        done = last.iteration
        if checkpoint is not None and done % checkpoint.every == 0 and done < cfg.iterations:
            checkpoint.save(snapshot(problem, steppers, result, started))
    recorder.close(last, cancelled=result.iterations_run < cfg.iterations)
    if checkpoint is not None:
        if result.cancelled:
            checkpoint.save(snapshot(problem, steppers, result, started))
        else:
            checkpoint.remove()
    if last is None:  # stopped before the first iteration: report the starting point
        with torch.no_grad():
            x, k = problem.image(problem.zx), problem.kernel()
    else:
        x, k = last.x, last.k
    result.latent, result.kernel = problem.outputs(x, k)
    if keep_state:
        result.state = {
            name: {key: v.detach().cpu().clone() for key, v in net.state_dict().items()}
            for name, net in (("gx", problem.gx), ("gk", problem.gk))
        }
    return result


def _initialise(problem: Problem, warm, fresh: bool, should_stop) -> None:
    """Warm-start a fresh run from ``warm`` (coarse-to-fine) or the no-blur solution."""
    if not fresh:
        return
    cfg, (h, w), ks = problem.cfg, problem.image_shape, problem.kernel_shape
    if warm is not None:
        x_warm = torch.from_numpy(np.clip(resample(warm[0], (h, w)), 0, 1))[None, None]
        k_warm = torch.from_numpy(resample(warm[1], ks, kernel=True))
        warm_start(
            problem.gx,
            problem.gk,
            problem.zx,
            problem.zk,
            x_target=x_warm.to(problem.device),
            k_target=k_warm.to(problem.device),
            cfg=cfg,
            kernel_shape=ks,
            image_shape=(h, w),
            should_stop=should_stop,
            fit_image=cfg.warm_image,
        )
    elif cfg.init == "noblur" and problem.fixed is None:
        k0 = gaussian_kernel(ks, cfg.init_kernel_sigma).to(problem.device)
        warm_start(
            problem.gx,
            problem.gk,
            problem.zx,
            problem.zk,
            x_target=problem.target,
            k_target=k0,
            cfg=cfg,
            kernel_shape=ks,
            image_shape=(h, w),
            should_stop=should_stop,
        )


def coarse_levels(image_shape, kernel_shape, cfg: DeblurConfig):
    """(image shape, kernel shape) of each coarse level of a run, coarsest first.

    Level i of L has scale 2^-(L - i); its kernel extent (size - 1) is scaled and rounded up to an
    even number, so sizes stay odd (at least 3). Levels whose latent would be too small for the
    U-Net, or whose image is smaller than the kernel or the SSIM window, are left out.
    """
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


def coarse_to_fine(
    y: np.ndarray,
    kernel_shape: tuple[int, int],
    levels,
    cfg: DeblurConfig,
    *,
    device: torch.device,
    seed: int,
    noise_sigma: float,
    callback: Callable[[Progress], None] | None,
    every: int,
    should_stop: Callable[[], bool] | None,
    total: int,
    warm: tuple[np.ndarray, np.ndarray] | None = None,
):
    """Solve the coarse levels in turn; the last one's (latent, kernel), and its FitResult.

    ``warm``: a (latent, kernel) pair at full size for the coarsest level to start from.
    """
    # A level's own schedule is scaled to its length; its warm-start steps stay the run's.
    level_cfg = cfg.replace(coarse_levels=0).with_iterations(
        cfg.coarse_iterations, warm_steps=False
    )
    offset, result = 0, None
    for i, (shape, ker) in enumerate(levels):
        ys = resample(y, shape)
        if warm is not None:
            warm = (resample(warm[0], shape), resample(warm[1], ker, kernel=True))
        problem = build_problem(
            ys,
            ker,
            level_cfg,
            device=device,
            seed=seed,
            noise_sigma=noise_sigma * shape[0] / y.shape[0],
        )
        result = fit_level(
            problem,
            callback=callback,
            every=every,
            should_stop=should_stop,
            warm=warm,
            offset=offset,
            total=total,
            stage=f"coarse {i + 1}/{len(levels)}",
        )
        offset += level_cfg.iterations
        if result.cancelled:  # report the coarse result at full size, no iteration of the run
            result.latent = np.clip(resample(result.latent, y.shape), 0, 1)
            result.kernel = resample(result.kernel, kernel_shape, kernel=True)
            result.iterations_run, result.history = 0, []
            break
        warm = (result.latent, result.kernel)
    return warm, result


def warm_start(
    gx: torch.nn.Module,
    gk: torch.nn.Module,
    zx: torch.Tensor,
    zk: torch.Tensor,
    *,
    x_target: torch.Tensor,
    k_target: torch.Tensor,
    cfg: DeblurConfig,
    kernel_shape: tuple[int, int],
    image_shape: tuple[int, int],
    should_stop: Callable[[], bool] | None = None,
    fit_image: bool = True,
) -> None:
    """Fit Gk to ``k_target`` (a PSF) and, with ``fit_image``, Gx to ``x_target`` (the (H, W)
    window aligned with the input), ``cfg.init_iterations`` Adam steps each.

    ``init="noblur"`` uses the blurry image and a small Gaussian; coarse-to-fine runs use the
    previous level's latent and kernel, upsampled.
    """
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


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A detached float32 copy on the CPU."""
    return t.detach().to("cpu", torch.float32).numpy().copy()


def outputs(
    x: torch.Tensor, k: torch.Tensor, image_shape, centre: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Latent (H, W) and kernel as numpy, the kernel moved so its centre of mass is central.

    Blind deconvolution cannot tell a shifted kernel from a shifted image; centring the kernel
    (and moving the latent's window the other way) keeps the latent aligned with the input. Only
    the kernel's support (entries above 5 % of its peak) counts: SoftMax leaves a faint
    background everywhere, and what of it is pushed over the border is dropped. The kernel stays
    where it is if centring would push part of its support out.
    """
    kernel = to_numpy(k)
    if not centre:
        return to_numpy(crop_latent(x[0, 0], kernel.shape, image_shape)), kernel
    support = kernel >= 0.05 * kernel.max()
    dy, dx = centroid_offset(kernel * support)
    shift = (0, 0)
    if (dy or dx) and shift_kernel(support, -dy, -dx).sum() == support.sum():
        centred = shift_kernel(kernel, -dy, -dx)
        kernel, shift = centred / centred.sum(), (dy, dx)
    return to_numpy(crop_latent(x[0, 0], kernel.shape, image_shape, shift)), kernel
