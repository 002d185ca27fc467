"""Restarts: probe several seeds briefly, then continue the one that fits the input best.

The choice uses only the loss (the fit to the input), never a ground truth. Each probe is a
checkpointed run stopped early, so the chosen one continues exactly where its probe ended and
equals a plain run with that seed.
"""

from __future__ import annotations

import numpy as np

from ..config import DeblurConfig, is_whole_number
from ..errors import InvalidInputError


def restart_probe_length(cfg: DeblurConfig, restart_iterations: int | None) -> int:
    """Full-size iterations of each restart probe: ``restart_iterations``, or a tenth of the run."""
    if restart_iterations is None:
        probe = max(1, cfg.iterations // 10)
    elif is_whole_number(restart_iterations):
        probe = int(restart_iterations)
    else:
        raise InvalidInputError(
            f"restart_iterations must be a whole number, got {restart_iterations!r}"
        )
    if not 1 <= probe < cfg.iterations:
        raise InvalidInputError(
            f"restart_iterations must be between 1 and {cfg.iterations - 1}, got {probe}"
        )
    return probe


def with_restarts(grey, kshape, cfg, *, seed, restarts, probe, common):
    """Probe ``restarts`` seeds for ``probe`` iterations, continue the best; see :func:`deblur`."""
    import tempfile
    from pathlib import Path

    from .solver import fit

    probe = restart_probe_length(cfg, probe)
    seeds = [seed + i for i in range(restarts)]
    losses: list[float] = []
    with tempfile.TemporaryDirectory(prefix="selfdeblur-restarts-") as tmp:
        for s in seeds:
            r = fit(
                grey,
                kshape,
                cfg,
                seed=s,
                checkpoint=Path(tmp) / f"{s}.pt",
                checkpoint_every=probe,
                stop_at=probe,
                **common,
            )
            if r.iterations_run < probe:  # the user cancelled during the probes
                return (
                    r,
                    s,
                    {
                        "seeds": seeds[: len(losses) + 1],
                        "probe_iterations": probe,
                        "probe_losses": losses,
                        "chosen_seed": s,
                    },
                )
            losses.append(r.final_loss)
        best = seeds[int(np.argmin(losses))]
        raw = fit(
            grey,
            kshape,
            cfg,
            seed=best,
            checkpoint=Path(tmp) / f"{best}.pt",
            checkpoint_every=cfg.iterations,
            **common,
        )
    info = {
        "seeds": seeds,
        "probe_iterations": probe,
        "probe_losses": [round(v, 6) for v in losses],
        "chosen_seed": best,
    }
    return raw, best, info
