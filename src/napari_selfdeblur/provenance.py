"""Where a result came from: the one header that every sidecar and layer's metadata starts with,
and what such a record says about a kernel (made by a blind run; found uncertain by it).
"""

from __future__ import annotations

import functools
import math
import sys
from importlib import metadata
from typing import Any

PACKAGE = "napari-selfdeblur"


@functools.lru_cache(maxsize=1)
def package_version() -> str:
    """The installed version of this package (``0+unknown`` when run from an uninstalled tree).

    Read once per process: every result's metadata carries it, and reading the installed
    metadata parses files each time.
    """
    try:
        return metadata.version(PACKAGE)
    except metadata.PackageNotFoundError:
        return "0+unknown"


def header(device: str | None = None) -> dict[str, Any]:
    """Package, version, torch version, CPU thread count and device of a result.

    Torch's fields are filled only when torch is already loaded (it always is after a run), so
    building a header never imports it.
    """
    out: dict[str, Any] = {"package": PACKAGE, "version": package_version()}
    torch = sys.modules.get("torch")
    if torch is not None:
        out["torch"] = torch.__version__
        out["threads"] = torch.get_num_threads()
    if device is not None:
        out["device"] = device
    return out


def from_blind_run(meta: Any) -> bool:
    """Whether ``meta`` (a sidecar or a layer's metadata) describes a blind run (it names a
    preset or a configuration): a kernel it made is an estimate.
    """
    return isinstance(meta, dict) and ("preset" in meta or "config" in meta)


def uncertain_kernel_flags(meta: Any, n_planes: int) -> bool | list[bool]:
    """Which kernels of the blind run described by ``meta`` it found uncertain (it recorded
    ``uncertain_kernel_boost`` > 1): one flag for a single kernel, one per plane for the
    ``n_planes`` planes of a stack. Anything unreadable or not matching ``n_planes`` reads as
    not uncertain.
    """
    if not from_blind_run(meta):
        return False
    boost = meta.get("uncertain_kernel_boost")
    runs = meta.get("runs")
    if isinstance(boost, list):
        per_plane = [_boosted(b) for b in boost]
    elif boost is not None:
        return _boosted(boost)
    elif isinstance(runs, list) and len(runs) > 1:  # a widget's per-plane runs, in plane order
        per_plane = [
            isinstance(r, dict) and _boosted(r.get("uncertain_kernel_boost")) for r in runs
        ]
    else:
        return False
    return per_plane if len(per_plane) == n_planes else False


def blind_kernel_options(meta: Any, kernel_shape: tuple[int, ...]) -> dict[str, Any]:
    """``kernel_estimated`` and ``kernel_uncertain`` (the arguments of
    :func:`~napari_selfdeblur.nonblind.api.refine`) for a kernel of ``kernel_shape``
    ((..., kh, kw): one or a stack) made by the blind run that ``meta`` describes (None: not
    made by one).
    """
    lead = tuple(kernel_shape[:-2])
    flags = uncertain_kernel_flags(meta, math.prod(lead))
    if isinstance(flags, list):
        flags = tuple(flags) if lead else flags[0]
    return {"kernel_estimated": from_blind_run(meta), "kernel_uncertain": flags}


def _boosted(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value > 1
