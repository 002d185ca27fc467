"""Reading images and writing results atomically (a file is complete or absent, never half)."""

from __future__ import annotations

import contextlib
import functools
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


#: Largest number of values (pixels x channels x planes) a file may decode to by default:
#: 2**28, 1 GiB as float32. Checked from the header, before anything is decompressed.
MAX_PIXELS = 2**28


def read_image(path: str | os.PathLike, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read a PNG/JPEG/BMP (grey, RGB or RGBA) or TIFF (any shape) file into an array.

    A TIFF must hold one image series (a stack counts as one); files with several series
    (e.g. an image and its thumbnail) are refused rather than guessed. Files whose header
    declares more than ``max_pixels`` values are refused before decoding.
    """
    p = Path(path)
    if not p.is_file():
        raise InvalidInputError(f"cannot read {p}: no such file")
    suffix = p.suffix.lower()
    if suffix not in TIFF_SUFFIXES | PIL_SUFFIXES:
        raise InvalidInputError(
            f"cannot read {p}: unsupported file type {suffix!r} "
            f"(use {', '.join(sorted(TIFF_SUFFIXES | PIL_SUFFIXES))})"
        )
    try:
        return _read_tiff(p, max_pixels) if suffix in TIFF_SUFFIXES else _read_pil(p, max_pixels)
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError(f"cannot read {p}: {_one_line(exc)}") from exc


def image_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The array shape ``read_image`` would return, from the file's header alone (no decoding).

    Raises :class:`InvalidInputError` for what ``read_image`` would refuse to open.
    """
    p = Path(path)
    try:
        if p.suffix.lower() in TIFF_SUFFIXES:
            import tifffile

            with tifffile.TiffFile(p) as tif:
                if len(tif.series) != 1:
                    return read_image(p, max_pixels=0).shape  # raises the one-series error
                return tuple(tif.series[0].shape)
        from PIL import Image

        with Image.open(p) as im:
            converted = {"P": 3, "CMYK": 3, "YCbCr": 3, "LA": 4, "PA": 4}  # as read_image does
            bands = converted.get(im.mode, len(im.getbands()))
            return (im.size[1], im.size[0]) + ((bands,) if bands > 1 else ())
    except InvalidInputError:
        raise
    except Exception as exc:
        raise InvalidInputError(f"cannot read {p}: {_one_line(exc)}") from exc


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def _check_pixels(p: Path, shape: tuple[int, ...], max_pixels: int) -> None:
    count = int(np.prod(shape, dtype=object))
    if count > max_pixels:
        raise InvalidInputError(
            f"{p} declares {count} values (shape {tuple(shape)}), more than the limit of "
            f"{max_pixels}; crop it, or raise the limit (--max-pixels)"
        )


def _read_tiff(p: Path, max_pixels: int) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(p) as tif:
        series = tif.series
        if not series:
            raise InvalidInputError(f"cannot read {p}: the TIFF holds no image")
        if len(series) > 1:
            shapes = ", ".join(str(tuple(s.shape)) for s in series[:4])
            raise InvalidInputError(
                f"{p} holds {len(series)} image series ({shapes}); save the one to deblur "
                "as its own file"
            )
        _check_pixels(p, tuple(series[0].shape), max_pixels)
        return np.asarray(series[0].asarray())


def _read_pil(p: Path, max_pixels: int) -> np.ndarray:
    from PIL import Image

    with Image.open(p) as im:
        _check_pixels(p, (im.size[1], im.size[0], len(im.getbands())), max_pixels)
        if im.mode in ("P", "CMYK", "YCbCr", "LA", "PA"):
            im = im.convert("RGBA" if "A" in im.mode else "RGB")
        return np.asarray(im)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it into place in one step."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".part", dir=target.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # as a plain open() would; mkstemp makes 0600
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process's umask (read once: reading it means setting it, briefly)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


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
