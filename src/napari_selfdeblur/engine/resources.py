"""Memory needed by a run, estimated before it starts, and checked against what is available.

The model is linear in the number of pixels, fitted to peak resident memory measured on the CPU
(``benchmarks/speed.py``: the paper and demo presets at 128 to 1024 px, kernels 15 to 75 px;
docs/benchmarks.md). A SelfDeblur run needs about ``PER_CHANNEL_PIXEL`` bytes per U-Net channel
per pixel (each level's channels weighted by its share of the pixels, 4^-level) plus
``PER_PIXEL`` bytes per pixel; the non-blind steps work on a few dozen float64 copies of the
padded image, the MAP estimator on as many float32 copies per candidate. The estimate excludes
the ~0.5 GiB that Python and torch take before any run, and is good to about 25 %.
"""

from __future__ import annotations

import os

import torch

from ..config import DeblurConfig
from ..errors import OutOfMemoryError

#: Bytes per U-Net channel per pixel (activations and their gradients), fitted.
PER_CHANNEL_PIXEL = 26
#: Bytes per pixel besides the U-Net's channels (blur, loss, optimiser), fitted.
PER_PIXEL = 420
#: Bytes per padded pixel of the FFT-based non-blind steps (float64 copies) and of the MAP
#: estimator (float32: half as much; on 1024x1024 with a 25 px kernel, measured peaks
#: of 195 and 490 MiB for one and three candidates against estimates of 211 and 634 MiB).
FFT_PER_PIXEL = 48 * 8
MAP_FFT_PER_PIXEL = FFT_PER_PIXEL // 2

#: Set this environment variable to 1 to skip the check (the estimate is only an estimate).
SKIP_VARIABLE = "SELFDEBLUR_NO_MEMORY_CHECK"


def estimate_bytes(
    image_shape: tuple[int, int], kernel_shape: tuple[int, int], cfg: DeblurConfig, batch: int = 1
) -> int:
    """Bytes a blind run of ``cfg`` needs beyond the loaded libraries, for ``batch`` planes."""
    (h, w), (kh, kw) = image_shape, kernel_shape
    padded = (h + kh - 1) * (w + kw - 1)
    padded_fft = (h + 2 * kh) * (w + 2 * kw)
    fft = FFT_PER_PIXEL * padded_fft
    map_fft = MAP_FFT_PER_PIXEL * padded_fft * cfg.map.candidates  # candidates: one batch
    if cfg.engine == "map":
        return batch * max(map_fft, fft if cfg.final != "none" else 0)
    net = cfg.image_net
    channels = sum(
        (d + u + s) / 4**level
        for level, (d, u, s) in enumerate(
            zip(net.channels_down, net.channels_up, net.channels_skip, strict=True)
        )
    )
    # Non-local blocks: an (n x n/4) float32 attention matrix and its gradient, n the positions.
    nonlocal_bytes = sum(2 * (padded / 4 ** (level + 1)) ** 2 for level in net.nonlocal_levels)
    gx = padded * (PER_PIXEL + PER_CHANNEL_PIXEL * channels) + nonlocal_bytes
    final = fft if cfg.final != "none" else 0
    start = max(map_fft, final) if cfg.init == "map" else final
    return int(batch * (gx + start))


def available_bytes(device: torch.device) -> int | None:
    """Free memory on ``device`` in bytes, or None where it cannot be told."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_memory(
    image_shape: tuple[int, int],
    kernel_shape: tuple[int, int],
    cfg: DeblurConfig,
    device: torch.device,
    batch: int = 1,
) -> int:
    """Raise :class:`OutOfMemoryError` with advice when a run would not fit; the estimate.

    Skipped (the estimate is still returned) when the environment variable
    :data:`SKIP_VARIABLE` is 1 or the free memory cannot be told.
    """
    need = estimate_bytes(image_shape, kernel_shape, cfg, batch)
    free = available_bytes(device)
    if free is None or os.environ.get(SKIP_VARIABLE) == "1" or need <= free:
        return need
    (h, w), (kh, kw) = image_shape, kernel_shape
    raise OutOfMemoryError(
        f"deblurring a {h}x{w} image with a {kh}x{kw} kernel needs about {need / 2**30:.1f} GiB "
        f"on {device.type.upper()}, which has {free / 2**30:.1f} GiB free. Crop a region of "
        "interest to estimate the kernel and refine the whole image non-blind, or use the "
        f"'quick' or 'standard' preset ({SKIP_VARIABLE}=1 skips this check)"
    )
