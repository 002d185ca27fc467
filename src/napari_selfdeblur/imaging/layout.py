"""Array layouts: how images, colour and stacks are laid out, and how to split them into planes.

A plane is (H, W) grey or (H, W, 3|4) RGB(A). A stack adds leading axes (time, z, ...) in front,
``(..., H, W)`` or ``(..., H, W, 3|4)``; stack axes are never spatial. This module imports
neither torch nor napari.
"""

from __future__ import annotations

import numpy as np

from ..errors import InvalidInputError


def split_layout(shape: tuple[int, ...], rgb: bool | None) -> tuple[bool, tuple[int, ...]]:
    """(is_rgb, stack shape) of an image array."""
    if rgb is None:
        if len(shape) == 3 and shape[-1] in (1, 2) and min(shape[:2]) >= 8:
            raise InvalidInputError(
                f"an image of shape {shape} has {shape[-1]} channel(s), neither grey (H, W) nor "
                "RGB(A) (H, W, 3|4); save one channel, or pass a stack as (planes, H, W)"
            )
        rgb = len(shape) >= 3 and shape[-1] in (3, 4)
    if rgb:
        if len(shape) < 3 or shape[-1] not in (3, 4):
            raise InvalidInputError(f"an RGB image needs a last axis of 3 or 4, got shape {shape}")
        return True, tuple(shape[:-3])
    if len(shape) < 2:
        raise InvalidInputError(
            f"image has {len(shape)} dimension(s) with shape {shape}; expected (H, W), "
            "(H, W, 3|4) or a stack (..., H, W)"
        )
    return False, tuple(shape[:-2])


def plane_count(shape: tuple[int, ...], rgb: bool | None = None) -> int:
    """How many planes an array of ``shape`` holds (1 for a single image)."""
    return int(np.prod(split_layout(shape, rgb)[1]))


def split_planes(
    image: np.ndarray, rgb: bool | None = None
) -> tuple[np.ndarray, tuple[int, ...], bool]:
    """An image or stack as (N, H, W) or (N, H, W, C) planes, its stack shape, and the RGB flag."""
    arr = np.asarray(image)
    is_rgb, lead = split_layout(arr.shape, rgb)
    return arr.reshape((int(np.prod(lead)), *arr.shape[len(lead) :])), lead, is_rgb
