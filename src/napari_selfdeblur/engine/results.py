"""What the solvers report: progress while they run, and their raw result."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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
    notes: dict = field(default_factory=dict)  # JSON-ready facts for the metadata (MAP candidates)
    alternatives: list = field(default_factory=list)  # every MAP candidate's kernel, if several

    @property
    def final_loss(self) -> float:
        """The last recorded loss (NaN before the first)."""
        return self.history[-1][1] if self.history else float("nan")
