"""Several planes fitted at once: one SelfDeblur run per plane, batched with ``torch.func``.

Every plane gets its own copy of Gx and Gk, started from the same seed as a run of that plane
alone. The copies' parameters are stacked along a leading axis and the per-plane forward pass is
vectorised with :func:`torch.func.vmap`, which turns the convolutions into grouped ones and the
kernel net's layers into batched matrix products. The loss is the sum of the per-plane losses, so
each copy receives exactly its own gradient, and Adam (element-wise) updates it as it would alone:
the results equal plane-by-plane runs up to float rounding. This pays off on a GPU, where one
256x256 run leaves most of the device idle; on a CPU it gains little.

Supported: joint optimisation from random or no-blur initialisation in float32, without TV,
coarse levels or checkpoints; :func:`can_batch` says whether a configuration qualifies.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import numpy as np
import torch

from ..config import DeblurConfig
from ..errors import OutOfMemoryError
from .device import deterministic_cudnn, is_out_of_memory
from .objective import data_loss
from .physics import gaussian_kernel, select_blur
from .solver import (
    FitResult,
    Progress,
    Recorder,
    Step,
    Stepper,
    build_generators,
    outputs,
    warm_start,
)


def can_batch(cfg: DeblurConfig) -> bool:
    """Whether :func:`fit_planes` supports this configuration."""
    return (
        cfg.engine == "selfdeblur"
        and cfg.init in ("random", "noblur")
        and cfg.final == "none"
        and cfg.mode == "joint"
        and cfg.coarse_levels == 0
        and cfg.tv_factor == 0
        and cfg.precision == "float32"
    )


def fit_planes(
    ys: np.ndarray,
    kernel_shape: tuple[int, int],
    config: DeblurConfig,
    *,
    device: torch.device,
    seed: int = 0,
    callback: Callable[[Progress], None] | None = None,
    callback_every: int = 10,
    should_stop: Callable[[], bool] | None = None,
) -> list[FitResult]:
    """Fit every plane of ``ys`` (P, H, W), float in [0, 1], in one batched optimisation.

    Returns one :class:`~napari_selfdeblur.engine.solver.FitResult` per plane, as
    :func:`~napari_selfdeblur.engine.solver.fit` would with the same seed (up to float rounding).
    ``callback`` receives the mean loss over the planes every ``callback_every`` iterations; each
    result's ``history`` holds its own plane's loss. ``should_stop`` cancels all planes at once.
    """
    if not can_batch(config):
        raise ValueError("fit_planes needs joint mode, float32, no TV and no coarse levels")
    try:
        with deterministic_cudnn():
            return _fit_planes(
                ys,
                kernel_shape,
                config,
                device=device,
                seed=seed,
                callback=callback,
                every=max(1, callback_every),
                should_stop=should_stop,
            )
    except Exception as exc:
        if is_out_of_memory(exc):
            p, h, w = ys.shape
            raise OutOfMemoryError(
                f"{device.type.upper()} ran out of memory fitting {p} planes of {h}x{w} at once "
                f"with a {kernel_shape[0]}x{kernel_shape[1]} kernel; batch fewer planes."
            ) from exc
        raise


def _fit_planes(ys, kernel_shape, cfg, *, device, seed, callback, every, should_stop):
    from torch.func import replace_all_batch_norm_modules_

    n, h, w = ys.shape
    gx, gk, zx, zk = build_generators(cfg, kernel_shape, (h, w), seed, device)
    targets = torch.from_numpy(np.ascontiguousarray(ys, dtype=np.float32))[:, None, None]
    targets = targets.to(device)  # (P, 1, 1, H, W)
    gx.train()
    gk.train()
    px, pk = _plane_parameters(gx, gk, zx, zk, targets, cfg, kernel_shape)
    # Train-mode BatchNorm normalises with the batch's statistics; without running statistics
    # (never read in training mode) the module has no buffers to update inside vmap.
    replace_all_batch_norm_modules_(gx)
    forward = _batched_forward(gx, gk, zk, cfg)
    opt = torch.optim.Adam(
        [
            {"params": list(px.values()), "lr": cfg.lr_image},
            {"params": list(pk.values()), "lr": cfg.lr_kernel},
        ]
    )
    stepper = Stepper(
        opt, torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.lr_milestones), cfg.lr_gamma)
    )
    perturb = torch.Generator(device=device).manual_seed(seed + 1)
    results = [FitResult(latent=np.empty(0), kernel=np.empty(0)) for _ in range(n)]
    recorders = [
        Recorder(r, callback=None, every=every, preview=0, last=cfg.iterations) for r in results
    ]
    last = None
    for it in range(cfg.iterations):
        if should_stop is not None and it > 0 and should_stop():
            break
        z = zx + cfg.input_noise_std * torch.randn(zx.shape, generator=perturb, device=device)
        losses, x, k = forward(px, pk, targets, z, it)
        stepper.step(losses.sum())
        last = [Step(it + 1, losses[i], x[i], k[i]) for i in range(n)]
        for rec, step in zip(recorders, last, strict=True):
            rec.record(step, outputs=None)
        due = (it + 1) % every == 0 or it + 1 == cfg.iterations
        if callback is not None and due:
            mean = float(np.mean([r.final_loss for r in results]))
            callback(Progress(it + 1, cfg.iterations, mean))
    if last is None:  # stopped before the first iteration: report the starting point
        with torch.no_grad():
            _, x, k = forward(px, pk, targets, zx, 0)
    for i, (r, rec) in enumerate(zip(results, recorders, strict=True)):
        rec.close(None if last is None else last[i], r.iterations_run < cfg.iterations)
        r.latent, r.kernel = outputs(x[i], k[i], (h, w))
    return results


def _plane_parameters(gx, gk, zx, zk, targets, cfg, kernel_shape):
    """Every plane's parameters of Gx and Gk, stacked along a new leading axis.

    All planes start from the same networks (the seed's); with ``init="noblur"`` each copy is
    first warm-started on its own plane.
    """
    n, h, w = targets.shape[0], targets.shape[-2], targets.shape[-1]
    if cfg.init == "noblur":
        params_x, params_k = [], []
        k0 = gaussian_kernel(kernel_shape, cfg.init_kernel_sigma).to(targets.device)
        for i in range(n):  # the warm start is short: plane by plane, from the same networks
            gxi, gki = copy.deepcopy(gx), copy.deepcopy(gk)
            warm_start(
                gxi,
                gki,
                zx,
                zk,
                x_target=targets[i],
                k_target=k0,
                cfg=cfg,
                kernel_shape=kernel_shape,
                image_shape=(h, w),
            )
            params_x.append(dict(gxi.named_parameters()))
            params_k.append(dict(gki.named_parameters()))
    else:
        params_x = [dict(gx.named_parameters())] * n
        params_k = [dict(gk.named_parameters())] * n

    def stack(dicts):
        return {k: torch.stack([d[k].detach() for d in dicts]).requires_grad_() for k in dicts[0]}

    return stack(params_x), stack(params_k)


def _batched_forward(gx, gk, zk, cfg):
    """``forward(px, pk, targets, z, it)`` -> (losses (P,), latents, kernels), vectorised."""
    from torch.func import functional_call, vmap

    blur = select_blur(cfg.blur)

    def one_plane(p_x, p_k, target, z, it):
        x = functional_call(gx, p_x, (z,))
        k = functional_call(gk, p_k, (zk,))
        return data_loss(cfg, it, blur(x, k), target), x, k

    return vmap(one_plane, in_dims=(0, 0, 0, None, None))
