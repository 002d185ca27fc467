"""Checkpoints of a run: save and restore its whole state, tied to its inputs by a fingerprint.

Files are loaded with ``torch.load(weights_only=True)``, which never executes code from the file.
A file that cannot be read that way, or does not hold a checkpoint of this very run, is treated
as missing (with a warning when it is malformed).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import DeblurConfig

#: What a checkpoint's dict must hold to be resumed from.
REQUIRED_KEYS = (
    "fingerprint",
    "iteration",
    "runtime_s",
    "history",
    "gx",
    "gk",
    "optimizers",
    "perturb",
)


class Checkpoint:
    """One run's checkpoint file, written every ``every`` iterations (and when cancelled)."""

    def __init__(
        self,
        path: str | Path,
        *,
        every: int,
        y: np.ndarray,
        kernel_shape: tuple[int, int],
        cfg: DeblurConfig,
        seed: int,
        noise_sigma: float,
        fixed_kernel: np.ndarray | None = None,
    ):
        self.path, self.every = Path(path), max(1, every)
        digest = hashlib.sha256(np.ascontiguousarray(y, dtype=np.float32).tobytes())
        key = [list(kernel_shape), cfg.fingerprint_dict(), seed, float(noise_sigma)]
        digest.update(json.dumps(key, sort_keys=True).encode())
        if fixed_kernel is not None:
            digest.update(np.ascontiguousarray(fixed_kernel, dtype=np.float64).tobytes())
        self.fingerprint = digest.hexdigest()

    def load(self) -> dict[str, Any] | None:
        """The saved state of this run, or None (no file, another run's, or malformed)."""
        if not self.path.is_file():
            return None
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        except Exception as exc:  # not a checkpoint torch can read without executing code
            warnings.warn(
                f"ignoring checkpoint {self.path}: not a checkpoint that can be loaded safely "
                f"({type(exc).__name__})",
                stacklevel=2,
            )
            return None
        if not isinstance(state, dict) or any(k not in state for k in REQUIRED_KEYS):
            warnings.warn(f"ignoring malformed checkpoint {self.path}", stacklevel=2)
            return None
        return state if state["fingerprint"] == self.fingerprint else None

    def save(self, state: dict[str, Any]) -> None:
        """Write ``state`` atomically (a reader never sees a half-written file)."""
        from ..fileio import atomic_path

        with atomic_path(self.path) as tmp:
            torch.save({"fingerprint": self.fingerprint, **state}, tmp)

    def remove(self) -> None:
        """Delete the file (a completed run needs no checkpoint)."""
        self.path.unlink(missing_ok=True)
