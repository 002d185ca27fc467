"""Plain functions for napari workflow tools: ImageData in, ImageData out."""

import numpy as np
from napari.types import ImageData  # resolved at run time: magicgui reads the annotations


def refine_image(
    image: ImageData,
    kernel: ImageData,
    method: str = "hyper-laplacian",
    strength: float = 0.0,
) -> ImageData:
    """Deconvolve ``image`` (2-D or a stack of 2-D planes) with the PSF ``kernel``.

    ``strength`` 0 means: derive it from each plane's noise level. ``method`` is one of
    hyper-laplacian, sparse, wiener, richardson-lucy, deep-prior.
    """
    from ..nonblind.api import refine

    params = {"strength": strength} if strength > 0 else {}
    return refine(np.asarray(image), np.asarray(kernel), method, rgb=False, **params).image
