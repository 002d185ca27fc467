"""Plain functions for napari workflow tools: ImageData in, ImageData out."""

from typing import Annotated

import numpy as np
from napari.types import ImageData  # resolved at run time: magicgui reads the annotations

from ..nonblind import DEFAULT_METHOD, METHODS

#: The method dropdown of :func:`refine_image`: (label, name) pairs from the method registry.
METHOD_CHOICES = [(m.label, m.name) for m in METHODS.values()]


def refine_image(
    image: ImageData,
    kernel: ImageData,
    method: Annotated[str, {"choices": METHOD_CHOICES}] = DEFAULT_METHOD,
    strength: float = 0.0,
) -> ImageData:
    """Deconvolve ``image`` (2-D or a stack of 2-D planes) with the PSF ``kernel``.

    ``strength`` 0 means: derive it from each plane's noise level. ``method`` is one of the
    registered non-blind methods (:data:`napari_selfdeblur.nonblind.METHODS`).
    """
    from ..nonblind.api import refine

    params = {"strength": strength} if strength > 0 else {}
    return refine(np.asarray(image), np.asarray(kernel), method, rgb=False, **params).image
