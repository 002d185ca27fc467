"""napari-selfdeblur: zero-shot blind deconvolution (SelfDeblur) for napari and scripts.

The engine is importable without napari or Qt, and this package imports torch only when an engine
function is first used, so napari starts quickly::

    from napari_selfdeblur import deblur
    result = deblur(image, kernel_size=31, preset="paper", seed=0)
    result.latent, result.kernel

    from napari_selfdeblur import refine
    refined = refine(stack, result.kernel, "hyper-laplacian")  # non-blind, every plane
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .provenance import package_version

__version__ = package_version()

_LAZY = {
    "deblur": ".api",
    "deblur_stack": ".api",
    "deblur_many": ".batch",
    "refine_many": ".batch",
    "DeblurResult": ".api",
    "DeblurConfig": ".config",
    "ImageNetConfig": ".config",
    "KernelNetConfig": ".config",
    "PRESETS": ".config",
    "get_preset": ".config",
    "Progress": ".engine.solver",
    "refine": ".nonblind.api",
    "RefineResult": ".nonblind.api",
    "RefineProgress": ".nonblind.api",
    "METHODS": ".nonblind",
    "estimate_noise_sigma": ".imaging.noise",
    "SelfDeblurError": ".errors",
    "InvalidInputError": ".errors",
    "DeviceError": ".errors",
    "OutOfMemoryError": ".errors",
}

__all__ = [  # noqa: RUF022 - grouped by module, as in _LAZY
    "__version__",
    "deblur",
    "deblur_stack",
    "deblur_many",
    "refine_many",
    "DeblurResult",
    "DeblurConfig",
    "ImageNetConfig",
    "KernelNetConfig",
    "PRESETS",
    "get_preset",
    "Progress",
    "refine",
    "RefineResult",
    "RefineProgress",
    "METHODS",
    "estimate_noise_sigma",
    "SelfDeblurError",
    "InvalidInputError",
    "DeviceError",
    "OutOfMemoryError",
]

if TYPE_CHECKING:
    from .api import DeblurResult, deblur, deblur_stack
    from .batch import deblur_many, refine_many
    from .config import PRESETS, DeblurConfig, ImageNetConfig, KernelNetConfig, get_preset
    from .engine.solver import Progress
    from .errors import DeviceError, InvalidInputError, OutOfMemoryError, SelfDeblurError
    from .imaging.noise import estimate_noise_sigma
    from .nonblind.api import METHODS, RefineProgress, RefineResult, refine


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value  # later look-ups find the function, never a submodule
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
