"""Reading images and writing results atomically (a file is complete or absent, never half)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from .errors import InvalidInputError

TIFF_SUFFIXES = {".tif", ".tiff"}
PIL_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp"}


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a PNG/JPEG/BMP (grey, RGB or RGBA) or TIFF (any shape) file into an array."""
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"cannot read {p}: no such file")
    suffix = p.suffix.lower()
    try:
        if suffix in TIFF_SUFFIXES:
            import tifffile

            return np.asarray(tifffile.imread(p))
        if suffix in PIL_SUFFIXES:
            from PIL import Image

            with Image.open(p) as im:
                if im.mode in ("P", "CMYK", "YCbCr", "LA", "PA"):
                    im = im.convert("RGBA" if "A" in im.mode else "RGB")
                return np.asarray(im)
    except Exception as exc:
        raise InvalidInputError(f"cannot read {p}: {exc}") from exc
    raise InvalidInputError(
        f"cannot read {p}: unsupported file type {suffix!r} "
        f"(use {', '.join(sorted(TIFF_SUFFIXES | PIL_SUFFIXES))})"
    )


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place in one step."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def write_tiff(path: str | os.PathLike, data: np.ndarray, description: str | None = None) -> None:
    """Write ``data`` as a TIFF atomically; (H, W, 3|4) is stored as RGB(A), anything else as grey
    planes (a stack of shape (N, H, W) stays N pages of (H, W)).
    """
    import tifffile

    arr = np.asarray(data)
    rgb = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp, arr, description=description, photometric="rgb" if rgb else "minisblack"
        )


def write_json(path: str | os.PathLike, obj: dict[str, Any]) -> None:
    """Write ``obj`` as indented JSON atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, default=_jsonable) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
