"""Take the screenshots of the README and docs/napari.md by following two of the walkthroughs.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot.py [photo|stack|all]

- ``photo`` (docs/images/napari_widgets.png): the photograph sample; the blind widget with the
  default preset (``standard``) and kernel 25 on the whole image; then the refinement widget
  deconvolves it again with the estimated kernel and the default method (hyper-Laplacian).
- ``stack`` (docs/images/napari_stack.png): the 5-plane nuclear-stain stack; the blind widget
  (``quick``, kernel 15) on the plane on screen, every plane refined with that kernel.

Each prints the PSNR of the input and the results against the sample's hidden truth layer.
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import napari
import numpy as np
from napari.qt import get_qapp

from napari_selfdeblur._napari.widgets import BlindDeblurWidget, RefineWidget
from napari_selfdeblur.evaluation.metrics import psnr

IMAGES = Path(__file__).parent / "images"


def wait(widget, timeout_s: float = 1800) -> None:
    app = get_qapp()
    end = time.monotonic() + timeout_s
    while widget.running and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.05)


def open_viewer(sample: str):
    warnings.filterwarnings("ignore", message=".*PyQt5.*")  # backend notices, not ours
    warnings.filterwarnings("ignore", message=".*theme.*")
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-selfdeblur", sample)
    blind, refine = BlindDeblurWidget(viewer), RefineWidget(viewer)
    viewer.window.add_dock_widget(blind, name="Blind deblur", area="right")
    viewer.window.add_dock_widget(refine, name="Non-blind refinement", area="right")
    return viewer, blind, refine


def report(viewer, truth: str, names: list[str]) -> str:
    """PSNR (dB, peak = the truth's range) of each layer against the hidden truth."""
    sharp = np.asarray(viewer.layers[truth].data, np.float64)
    peak = float(sharp.max() - sharp.min())
    parts = []
    for name in names:
        data = np.asarray(viewer.layers[name].data, np.float64)
        parts.append(f"{name}: {psnr(data, sharp, peak=peak):.2f} dB")
    return "; ".join(parts)


def save(viewer, out: Path, caption: str) -> None:
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    viewer.reset_view()
    overlay = viewer.canvas.overlays.text if hasattr(viewer, "canvas") else viewer.text_overlay
    overlay.visible = True
    overlay.text = caption
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.hide()  # napari's own notices would cover the canvas
    get_qapp().processEvents()
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(out), canvas_only=False, flash=False)


def photo() -> None:
    viewer, blind, refine = open_viewer("photo")
    image = viewer.layers["photo blurry"]
    blind.image.value = image
    blind.kernel_height.value = blind.kernel_width.value = 25
    blind.run()
    wait(blind)
    refine.image.value = image
    refine.kernel_layer.value = viewer.layers["photo blurry kernel"]
    refine.run()
    wait(refine)
    print(blind.status.value, "|", refine.status.value)
    names = ["photo blurry", "photo blurry latent", "photo blurry refined"]
    print(report(viewer, "photo sharp (truth)", names))
    viewer.layers["photo blurry latent"].translate = (0, 270)
    viewer.layers["photo blurry refined"].translate = (0, 540)
    kernel = viewer.layers["photo blurry kernel"]
    kernel.translate, kernel.scale = (0, 810), (4, 4)
    caption = "blurry | latent (standard) | refined (hyper-Laplacian) | kernel x4"
    save(viewer, IMAGES / "napari_widgets.png", caption)
    viewer.close()


def stack() -> None:
    viewer, blind, _ = open_viewer("stack")
    image = viewer.layers["nuclei stack blurry"]
    blind.image.value = image
    blind.preset.value = "quick"
    blind.kernel_height.value = blind.kernel_width.value = 15
    blind.stack_mode.value = "refine"
    blind.run()
    wait(blind)
    print(blind.status.value)
    print(
        report(
            viewer,
            "nuclei stack sharp (truth)",
            ["nuclei stack blurry", "nuclei stack blurry latent"],
        )
    )
    viewer.layers["nuclei stack blurry latent"].translate = (0, 0, 140)
    kernel = viewer.layers["nuclei stack blurry kernel"]
    kernel.translate, kernel.scale = (0, 280), (4, 4)
    viewer.dims.set_current_step(0, 2)
    save(
        viewer,
        IMAGES / "napari_stack.png",
        "plane 3 of 5: blurry | all planes refined | kernel x4",
    )
    viewer.close()


def main() -> None:
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    for name, take in (("photo", photo), ("stack", stack)):
        if which in (name, "all"):
            take()


if __name__ == "__main__":
    main()
