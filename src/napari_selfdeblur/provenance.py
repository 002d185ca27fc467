"""Where a result came from: the one header that every sidecar and layer's metadata starts with."""

from __future__ import annotations

import functools
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
