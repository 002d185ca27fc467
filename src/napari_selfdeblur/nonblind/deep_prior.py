"""SelfDeblur's non-blind variant: refit the image generator alone with the kernel fixed."""

from __future__ import annotations

import numpy as np

from ..config import network_presets
from .base import Method, Param


def _run(planes, psf, strengths, params, step, device):
    """Refit the image generator alone with the kernel fixed, one plane at a time."""
    import torch

    from ..engine.checks import check_fits_network, resolve_config
    from ..engine.solver import fit

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
            planes[i].detach().cpu().numpy().astype(np.float32),
            kernel.shape,
            cfg,
            device=device,
            seed=params["seed"],
            noise_sigma=0.0,
            callback=callback,
            callback_every=1,
            should_stop=poll,
            fixed_kernel=kernel,
        )
        outs.append(res.latent)
        if res.cancelled:
            outs.extend(p.detach().cpu().numpy() for p in planes[i + 1 :])
            break
    return torch.from_numpy(np.stack(outs).astype(np.float64))


METHOD = Method(
    name="deep-prior",
    label="Deep prior refit (slow)",
    help="SelfDeblur's non-blind variant: refit the image generator alone with the kernel "
    "fixed, 1 - SSIM loss. Minutes per image on a CPU.",
    params=(
        Param("iterations", int, 1000, 1, 100000, "optimiser iterations per plane"),
        Param("preset", str, "demo", help="network preset", choices=network_presets()),
        Param("seed", int, 0, 0, 2**31 - 1, "random seed"),
    ),
    strength_rule=None,
    run=_run,
    batched=False,
)
