"""Save a widget's result layers as files with a JSON sidecar, as the CLI writes them.

Napari-free: the widgets pass plain arrays and the layer's metadata. The chosen path receives the
result image (a TIFF); a kernel, when the result has one, goes beside it as ``<stem>_kernel.tif``;
``<stem>.json`` is the sidecar: the layer's metadata (the full parameters of the run) plus the
names of the files written, so that the result can be reproduced and is recognised as this
tool's. The same safety rules as the CLI apply: no file is written over an input layer's file,
and the kernel and sidecar never replace a file this tool did not write. The image file itself
replaces an existing file only when the user confirmed it (``replace``: the save dialog asks).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..plan import Task, claim, path_key, write_task
from ..provenance import header

RESULT_SUFFIXES = (".tif", ".tiff")


def result_files(path: str | os.PathLike, *, with_kernel: bool) -> tuple[Path, ...]:
    """The files a save to ``path`` writes: the image, the kernel (if any), the sidecar last.

    A path without a TIFF suffix gets ``.tif`` appended.
    """
    p = Path(path)
    if p.suffix.lower() not in RESULT_SUFFIXES:
        p = p.with_name(p.name + ".tif")
    kernel = (p.with_name(f"{p.stem}_kernel.tif"),) if with_kernel else ()
    return (p, *kernel, p.with_name(f"{p.stem}.json"))


def save_result(
    path: str | os.PathLike,
    image: np.ndarray,
    metadata: dict[str, Any],
    *,
    kernel: np.ndarray | None = None,
    protected: Sequence[str | os.PathLike] = (),
    replace: bool = False,
) -> tuple[Path, ...]:
    """Write ``image`` (and ``kernel``) with a sidecar; return the files written, sidecar last.

    A lazily loaded ``image`` (the result of a big stack) is written one plane at a time.

    ``protected`` are files that must never be written (the inputs' files). Raises
    :class:`InvalidInputError`, before writing anything, when a file would replace a protected
    file, or a file this tool did not write (the image file only without ``replace``).
    """
    files = result_files(path, with_kernel=kernel is not None)
    image_path, side = files[0], files[-1]
    keys = {path_key(p) for p in protected}
    for f in files:
        if path_key(f) in keys:
            raise InvalidInputError(f"{f} is the file of an open layer; choose another name")
    if not image_path.parent.is_dir():
        raise InvalidInputError(f"cannot save to {image_path}: {image_path.parent} is not a folder")
    claim(files[1:], side)  # the kernel and the sidecar were not confirmed by the user
    claim(files[:1], side, overwrite=replace)
    arrays = [image] + ([np.asarray(kernel)] if kernel is not None else [])  # image may be lazy
    meta = {
        **header(),
        **{k: v for k, v in metadata.items() if k not in ("complete", "outputs")},
        "outputs": [f.name for f in files[:-1]],
        "saved_from": "napari",
    }
    write_task(Task(image_path, files[:-1], side, "run"), arrays, meta)
    return files
