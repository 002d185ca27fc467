"""The SelfDeblur objective: how well ``blur(latent, kernel)`` explains the observation.

The data term is MSE before ``cfg.ssim_start`` and 1 - SSIM from then on; an optional total
variation term on the latent has weight ``cfg.tv_factor * noise_sigma`` ([0, 1] units). The
solver, the batched solver and the analysis tools all use these functions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..config import DeblurConfig
from .losses import ssim, total_variation


def data_loss(
    cfg: DeblurConfig, iteration: int, pred: torch.Tensor, target: torch.Tensor
) -> torch.Tensor:
    """The data term at 0-based ``iteration``: MSE, then 1 - SSIM from ``cfg.ssim_start``."""
    if iteration < cfg.ssim_start:
        return F.mse_loss(pred, target)
    return 1 - ssim(pred, target, window=cfg.ssim_window, sigma=cfg.ssim_sigma)


def final_data_loss(cfg: DeblurConfig, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The data term a run ends with (1 - SSIM, or MSE when the run never switches)."""
    return data_loss(cfg, cfg.iterations - 1, pred, target)


@dataclass(frozen=True)
class Objective:
    """The loss of one level: ``blur`` ('valid' model), ``target`` (1, 1, H, W), TV weight."""

    cfg: DeblurConfig
    blur: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    target: torch.Tensor
    tv_weight: float = 0.0

    def __call__(self, iteration: int, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """The loss at 0-based ``iteration`` for latent ``x`` and kernel ``k``."""
        loss = data_loss(self.cfg, iteration, self.blur(x, k), self.target)
        if self.tv_weight > 0:
            loss = loss + self.tv_weight * total_variation(x)
        return loss
