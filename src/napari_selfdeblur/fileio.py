"""Reading images and writing results atomically (a file is complete or absent, never half)."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from collections.abc import Callable, Iterator
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
    return _with_file(
        path,
        lambda p: _read_tiff(p, max_pixels),
        lambda p: _read_pil(p, max_pixels),
    )


def image_shape(path: str | os.PathLike) -> tuple[int, ...]:
    """The array shape ``read_image`` would return, from the file's header alone (no decoding).

    Raises :class:`InvalidInputError` for what ``read_image`` would refuse to open.
    """
    return _with_file(path, _tiff_shape, _pil_shape)


def read_plane(
    path: str | os.PathLike, index: int, plane_ndim: int, *, max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """Plane ``index`` (in the flattened order of the leading axes) of the image at ``path``,
    where a plane is the last ``plane_ndim`` axes: ``read_image(path)`` reshaped to planes,
    indexed. A TIFF stored one page per plane is read one page only; any other file is read whole.
    """

    def tiff(p: Path) -> np.ndarray:
        import tifffile

        with tifffile.TiffFile(p) as tif:
            series = _one_series(tif, p)
            _check_pixels(p, tuple(series.shape), max_pixels)
            plane = tuple(series.shape[len(series.shape) - plane_ndim :])
            planes = int(np.prod(series.shape[: len(series.shape) - plane_ndim]))
            if len(series.pages) == planes and tuple(series.pages[0].shape) == plane:
                return np.asarray(tif.asarray(key=index, series=0)).reshape(plane)
            return _planes_of(np.asarray(series.asarray()), plane_ndim)[index]

    return _with_file(path, tiff, lambda p: _planes_of(_read_pil(p, max_pixels), plane_ndim)[index])


def _planes_of(arr: np.ndarray, plane_ndim: int) -> np.ndarray:
    return arr.reshape((-1, *arr.shape[arr.ndim - plane_ndim :]))


def _with_file(path: str | os.PathLike, tiff: Callable, other: Callable) -> Any:
    """``tiff(p)`` or ``other(p)`` by the file's type; every failure one InvalidInputError."""
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
        return tiff(p) if suffix in TIFF_SUFFIXES else other(p)
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


def _one_series(tif, p: Path):
    """The one image series of an open TIFF; refuse files with none or several."""
    series = tif.series
    if not series:
        raise InvalidInputError(f"cannot read {p}: the TIFF holds no image")
    if len(series) > 1:
        shapes = ", ".join(str(tuple(s.shape)) for s in series[:4])
        raise InvalidInputError(
            f"{p} holds {len(series)} image series ({shapes}); save the one to deblur "
            "as its own file"
        )
    return series[0]


def _tiff_shape(p: Path) -> tuple[int, ...]:
    import tifffile

    with tifffile.TiffFile(p) as tif:
        return tuple(_one_series(tif, p).shape)


def _read_tiff(p: Path, max_pixels: int) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(p) as tif:
        series = _one_series(tif, p)
        _check_pixels(p, tuple(series.shape), max_pixels)
        return np.asarray(series.asarray())


#: PIL modes that are converted on reading, and what to.
_PIL_CONVERSIONS = {"P": "RGB", "CMYK": "RGB", "YCbCr": "RGB", "LA": "RGBA", "PA": "RGBA"}


def _read_pil(p: Path, max_pixels: int) -> np.ndarray:
    from PIL import Image

    with Image.open(p) as im:
        _check_pixels(p, (im.size[1], im.size[0], len(im.getbands())), max_pixels)
        if im.mode in _PIL_CONVERSIONS:
            im = im.convert(_PIL_CONVERSIONS[im.mode])
        return np.asarray(im)


def _pil_shape(p: Path) -> tuple[int, ...]:
    from PIL import Image

    with Image.open(p) as im:
        mode = _PIL_CONVERSIONS.get(im.mode, im.mode)
        bands = Image.getmodebands(mode)
        return (im.size[1], im.size[0]) + ((bands,) if bands > 1 else ())


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

    A lazily loaded grey stack (a dask array, say) is read and written one page at a time.
    """
    import tifffile

    shape = tuple(np.shape(data))
    lazy = is_lazy(data) and len(shape) >= 3 and shape[-1] not in (3, 4)
    arr = data if lazy else np.asarray(data)
    rgb = arr.ndim == 3 and arr.shape[-1] in (3, 4)
    with atomic_path(path) as tmp:
        tifffile.imwrite(
            tmp,
            _pages(arr) if lazy else arr,
            shape=shape,
            dtype=np.dtype(arr.dtype),
            description=description,
            photometric="rgb" if rgb else "minisblack",
        )


def is_lazy(data: Any) -> bool:
    """Whether array data is lazily loaded (a dask or zarr array): array-like, not NumPy."""
    return not isinstance(data, np.ndarray) and hasattr(data, "shape") and hasattr(data, "dtype")


def _pages(data) -> Iterator[np.ndarray]:
    """The (H, W) pages of a stack, read one at a time, in C order of the leading axes."""
    for index in np.ndindex(*data.shape[:-2]):
        yield np.asarray(data[index])


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
