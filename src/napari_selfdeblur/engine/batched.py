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
from .solver import (
    FitResult,
    Progress,
    _data_loss,
    _outputs,
    _warm_start,
    build_generators,
    gaussian_kernel,
)


def can_batch(cfg: DeblurConfig) -> bool:
    """Whether :func:`fit_planes` supports this configuration."""
    return (cfg.mode == "joint" and cfg.coarse_levels == 0 and cfg.tv_factor == 0
            and cfg.precision == "float32")  # fmt: skip


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

    Returns one :class:`~napari_selfdeblur.solver.FitResult` per plane, as
    :func:`~napari_selfdeblur.solver.fit` would with the same seed (up to float rounding).
    ``callback`` receives the mean loss over the planes every ``callback_every`` iterations; each
    result's ``history`` holds its own plane's loss. ``should_stop`` cancels all planes at once.
    """
    if not can_batch(config):
        raise ValueError("fit_planes needs joint mode, float32, no TV and no coarse levels")
    try:
        with deterministic_cudnn():
            return _fit_planes(ys, kernel_shape, config, device, seed, callback,
                               max(1, callback_every), should_stop)  # fmt: skip
    except Exception as exc:
        if is_out_of_memory(exc):
            p, h, w = ys.shape
            raise OutOfMemoryError(
                f"{device.type.upper()} ran out of memory fitting {p} planes of {h}x{w} at once "
                f"with a {kernel_shape[0]}x{kernel_shape[1]} kernel; batch fewer planes."
            ) from exc
        raise


def _fit_planes(ys, kernel_shape, cfg, device, seed, callback, every, should_stop):
    from torch.func import functional_call, replace_all_batch_norm_modules_, vmap

    from .physics import select_blur

    n, h, w = ys.shape
    gx, gk, zx, zk = build_generators(cfg, kernel_shape, (h, w), seed, device)
    targets = torch.from_numpy(np.ascontiguousarray(ys, dtype=np.float32))[:, None, None]
    targets = targets.to(device)  # (P, 1, 1, H, W)
    gx.train()
    gk.train()
    params_x, params_k = [], []
    if cfg.init == "noblur":
        k0 = gaussian_kernel(kernel_shape, cfg.init_kernel_sigma).to(device)
        for i in range(n):  # the warm start is short: plane by plane, from the same networks
            gxi, gki = copy.deepcopy(gx), copy.deepcopy(gk)
            _warm_start(gxi, gki, zx, zk, targets[i], k0, cfg, kernel_shape, (h, w), None)
            params_x.append(dict(gxi.named_parameters()))
            params_k.append(dict(gki.named_parameters()))
    else:
        params_x = [dict(gx.named_parameters())] * n
        params_k = [dict(gk.named_parameters())] * n

    def stack(dicts):
        return {k: torch.stack([d[k].detach() for d in dicts]).requires_grad_() for k in dicts[0]}

    px, pk = stack(params_x), stack(params_k)
    # Train-mode BatchNorm normalises with the batch's statistics; without running statistics
    # (never read in training mode) the module has no buffers to update inside vmap.
    replace_all_batch_norm_modules_(gx)
    blur = select_blur(cfg.blur)
    opt = torch.optim.Adam([{"params": list(px.values()), "lr": cfg.lr_image},
                            {"params": list(pk.values()), "lr": cfg.lr_kernel}])  # fmt: skip
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(cfg.lr_milestones), cfg.lr_gamma)
    perturb = torch.Generator(device=device).manual_seed(seed + 1)

    def one_plane(p_x, p_k, target, z, it):
        x = functional_call(gx, p_x, (z,))
        k = functional_call(gk, p_k, (zk,))
        return _data_loss(cfg, it, blur(x, k), target), x, k

    results = [FitResult(latent=np.empty(0), kernel=np.empty(0)) for _ in range(n)]
    x = k = losses = None
    for it in range(cfg.iterations):
        if should_stop is not None and it > 0 and should_stop():
            for r in results:
                r.cancelled = True
            break
        z = zx + cfg.input_noise_std * torch.randn(zx.shape, generator=perturb, device=device)
        losses, x, k = vmap(one_plane, in_dims=(0, 0, 0, None, None))(px, pk, targets, z, it)
        opt.zero_grad(set_to_none=True)
        losses.sum().backward()
        opt.step()
        sched.step()
        done = it + 1
        for r in results:
            r.iterations_run = done
        if done % every == 0 or done == cfg.iterations:
            values = losses.detach().cpu().numpy().astype(float)
            if not np.isfinite(values).all():
                raise FloatingPointError(f"the loss became non-finite at iteration {done}")
            for r, v in zip(results, values, strict=True):
                r.history.append((done, float(v)))
            if callback is not None:
                callback(Progress(done, cfg.iterations, float(values.mean())))
    if x is None:  # stopped before the first iteration: report the starting point
        with torch.no_grad():
            _, x, k = vmap(one_plane, in_dims=(0, 0, 0, None, None))(px, pk, targets, zx, 0)
    for i, r in enumerate(results):
        if r.cancelled and losses is not None and (not r.history or r.history[-1][0] != done):
            r.history.append((r.iterations_run, float(losses[i].detach())))
        r.latent, r.kernel = _outputs(x[i], k[i], (h, w))
    return results
