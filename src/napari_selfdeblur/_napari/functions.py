"""Plain functions for napari workflow tools (magicgui builds their widgets)."""

from typing import Annotated

import numpy as np
from magicgui import magic_factory
from napari.layers import Image  # resolved at run time: magicgui reads the annotations
from napari.types import LayerDataTuple

from ..nonblind import DEFAULT_METHOD, METHODS

#: The method dropdown of :func:`refine_image`: (label, name) pairs from the method registry.
METHOD_CHOICES = [(m.label, m.name) for m in METHODS.values()]


def _looks_like_kernel(layer) -> bool:
    return layer is not None and any(w in layer.name.lower() for w in ("kernel", "psf"))


def pick_layers(widget) -> None:
    """Preselect sensible layers: the active (else first) non-kernel image, and a layer whose
    name says kernel or PSF; a choice the user made that fits is kept.
    """
    import napari

    viewer = napari.current_viewer()
    active = viewer.layers.selection.active if viewer is not None else None
    kernels = [c for c in widget.kernel.choices if _looks_like_kernel(c)]
    if kernels and not _looks_like_kernel(widget.kernel.value):
        widget.kernel.value = kernels[0]
    images = [c for c in widget.image.choices if not _looks_like_kernel(c)]
    if images and (widget.image.value is None or _looks_like_kernel(widget.image.value)):
        widget.image.value = active if active in images else images[0]


def _init(widget) -> None:
    import napari

    pick_layers(widget)
    viewer = napari.current_viewer()
    if viewer is None:
        return

    def refresh(*_) -> None:
        try:
            widget.reset_choices()
            pick_layers(widget)
        except RuntimeError:  # the widget's Qt objects were deleted: it was closed
            viewer.layers.events.inserted.disconnect(refresh)

    viewer.layers.events.inserted.connect(refresh)


def refine_image(
    image: Image,
    kernel: Image,
    method: Annotated[str, {"choices": METHOD_CHOICES}] = DEFAULT_METHOD,
    strength: float = 0.0,
) -> LayerDataTuple:
    """Deconvolve ``image`` (2-D, RGB or a stack of planes) with the PSF ``kernel``.

    ``strength`` 0 means: derive it from each plane's noise level (stronger when the kernel
    layer came from a blind run, whose metadata names its preset, and stronger still where
    that run found its kernel uncertain). ``method`` is one of the
    registered non-blind methods (:data:`napari_selfdeblur.nonblind.METHODS`). The result is a
    new layer ``<image> refined (<method>)`` with the image's scale and translate.
    """
    from ..nonblind import get_method
    from ..nonblind.api import refine
    from ..provenance import blind_kernel_options

    get_method(method)  # a name that is not registered is refused with a clear message
    params = {"strength": strength} if strength > 0 else {}
    kernel_data = np.asarray(kernel.data)
    result = refine(
        np.asarray(image.data),
        kernel_data,
        method,
        rgb=bool(image.rgb),
        **blind_kernel_options(getattr(kernel, "metadata", None), kernel_data.shape),
        **params,
    )
    kwargs = {
        "name": f"{image.name} refined ({method})",
        "scale": tuple(image.scale),
        "translate": tuple(image.translate),
        "rgb": bool(image.rgb),
        "metadata": {**result.metadata(), "kernel_layer": kernel.name},
    }
    return (result.image, kwargs, "image")


#: The dock widget of :func:`refine_image` (the manifest's), with sensible default layers.
refine_image_widget = magic_factory(refine_image, widget_init=_init)
