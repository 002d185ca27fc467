"""Take the README's screenshot: both widgets docked after a run on the built-in sample.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/make_screenshot.py

Runs the blind widget (demo preset, 300 iterations) on the sample, then refines the image with the
estimated kernel, and saves the window as docs/images/napari_widgets.png.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import napari
from napari.qt import get_qapp

from napari_selfdeblur._napari.widgets import BlindDeblurWidget, RefineWidget

OUT = Path(__file__).parent / "images" / "napari_widgets.png"


def wait(widget, timeout_s: float = 1800) -> None:
    app = get_qapp()
    end = time.monotonic() + timeout_s
    while widget.running and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.05)


def main() -> None:
    # Keep backend deprecation notices out of the picture.
    warnings.filterwarnings("ignore", message=".*PyQt5.*")
    warnings.filterwarnings("ignore", message=".*theme.*")
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1500, 950)
    viewer.open_sample("napari-selfdeblur", "blurred")
    blind = BlindDeblurWidget(viewer)
    refine = RefineWidget(viewer)
    viewer.window.add_dock_widget(blind, name="Blind deblur", area="right")
    viewer.window.add_dock_widget(refine, name="Non-blind refinement", area="right")
    blind.image.value = viewer.layers["sample blurry"]
    blind.kernel_height.value = blind.kernel_width.value = 17
    blind.iterations.value = 300
    blind.preview_every.value = 50
    blind.run()
    wait(blind)
    refine.image.value = viewer.layers["sample blurry"]
    refine.kernel_layer.value = viewer.layers["sample blurry kernel"]
    refine.run()
    wait(refine)
    for name in ("sample sharp (truth)", "sample kernel (truth)"):
        viewer.layers[name].visible = False
    # Blurry, latent and refined side by side, the kernel next to them.
    blurry = viewer.layers["sample blurry"]
    viewer.layers["sample blurry latent"].translate = (0, 200)
    viewer.layers["sample blurry refined"].translate = (0, 400)
    viewer.layers["sample blurry kernel"].translate = (0, 600)
    viewer.layers["sample blurry kernel"].scale = (4, 4)
    viewer.reset_view()
    viewer.text_overlay.visible = True
    viewer.text_overlay.text = "blurry | SelfDeblur latent | refined (hyper-Laplacian) | kernel x4"
    blurry.visible = True
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.hide()  # napari's own notices (e.g. about the Qt backend) would cover the canvas
    get_qapp().processEvents()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    viewer.screenshot(str(OUT), canvas_only=False, flash=False)
    print(f"saved {OUT}; blind run: {blind.status.value}; refine: {refine.status.value}")
    viewer.close()


if __name__ == "__main__":
    main()
