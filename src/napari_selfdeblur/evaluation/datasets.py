"""Loader for the Levin et al. (CVPR 2009) benchmark as redistributed with SelfDeblur.

The data are not shipped with the package: pass the folder (``imN_kernelK_img.png``, ``gt/imN.png``,
``gt/kernelK.png``). Ground-truth kernels are stored with inconsistent orientation, so each one is
oriented by re-blurring: the PSF is whichever of the kernel and its 180-degree rotation best
reproduces the blurry image from the sharp one (least squared error over integer shifts within
5 px, by :func:`.metrics.shift_search`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..engine.physics import convolve_same
from ..fileio import read_image
from .metrics import shift_search

# Kernel sizes the reference implementation passes for kernels 1..8.
REFERENCE_KERNEL_SIZES = {1: 17, 2: 15, 3: 13, 4: 27, 5: 11, 6: 19, 7: 21, 8: 21}
SUBSETS = {
    "all": [(i, k) for i in range(1, 5) for k in range(1, 9)],
    "levin-8": [(1, 1), (1, 2), (2, 3), (2, 4), (3, 5), (3, 6), (4, 7), (4, 8)],
}


@dataclass(frozen=True)
class LevinCase:
    """One benchmark image: blurry input, sharp truth and PSF, floats in [0, 1]."""

    name: str
    image: int
    kernel_index: int
    blurry: np.ndarray
    sharp: np.ndarray
    psf: np.ndarray

    @property
    def reference_kernel_size(self) -> int:
        """The kernel size the SelfDeblur reference passes for this kernel."""
        return REFERENCE_KERNEL_SIZES[self.kernel_index]


def _grey01(path: Path) -> np.ndarray:
    return read_image(path).astype(np.float64) / 255.0


@functools.lru_cache(maxsize=16)
def oriented_psf(root: str, kernel_index: int) -> np.ndarray:
    """Ground-truth kernel ``kernel_index`` as a unit-sum PSF, orientation fixed by re-blurring."""
    folder = Path(root)
    k = _grey01(folder / "gt" / f"kernel{kernel_index}.png")
    k /= k.sum()
    pairs = [  # all four images vote
        (
            _grey01(folder / "gt" / f"im{i}.png"),
            _grey01(folder / f"im{i}_kernel{kernel_index}_img.png"),
        )
        for i in range(1, 5)
    ]
    errors = [
        sum(
            shift_search(convolve_same(sharp, cand), blurry, crop=6, max_shift=5, step=1.0)[2]
            for sharp, blurry in pairs
        )
        for cand in (k, k[::-1, ::-1])
    ]
    return np.ascontiguousarray(k if errors[0] <= errors[1] else k[::-1, ::-1])


def levin_cases(root: str | Path, subset: str = "all") -> Iterator[LevinCase]:
    """Yield the cases of a subset (``all`` or ``levin-8``) from the folder ``root``."""
    if subset not in SUBSETS:
        raise ValueError(f"unknown subset {subset!r}; choose one of {', '.join(SUBSETS)}")
    folder = Path(root)
    for i, k in SUBSETS[subset]:
        name = f"im{i}_kernel{k}"
        yield LevinCase(
            name=name,
            image=i,
            kernel_index=k,
            blurry=_grey01(folder / f"{name}_img.png"),
            sharp=_grey01(folder / "gt" / f"im{i}.png"),
            psf=oriented_psf(str(folder.resolve()), k),
        )


def default_levin_root() -> Path:
    """``$SELFDEBLUR_LEVIN``, else ``shared/data/levin`` beside the repository checkout."""
    env = os.environ.get("SELFDEBLUR_LEVIN")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3].parent / "shared" / "data" / "levin"
