"""The plugin in a real napari viewer (Xvfb): manifest, widgets, stacks, cancel, errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

napari = pytest.importorskip("napari")
pytestmark = pytest.mark.qt

from napari_selfdeblur._napari import widgets  # noqa: E402
from napari_selfdeblur._napari.widgets import BlindDeblurWidget, RefineWidget  # noqa: E402
from napari_selfdeblur.evaluation.metrics import psnr  # noqa: E402
from napari_selfdeblur.evaluation.sample import sharp_scene  # noqa: E402
from napari_selfdeblur.nonblind.base import UNCERTAIN_KERNEL_BOOST, UNCERTAIN_MAX_NOISE  # noqa: E402

TIMEOUT_MS = 120_000


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def errors(monkeypatch):
    seen: list[str] = []
    monkeypatch.setattr(widgets, "_notify_error", seen.append)
    return seen


def wait_idle(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.running, timeout=TIMEOUT_MS)


def test_the_preset_dropdown_offers_what_is_not_retired(viewer):
    from napari_selfdeblur.config import DEFAULT_PRESET, offered_presets

    widget = BlindDeblurWidget(viewer)
    assert list(widget.preset.choices) == list(offered_presets())
    assert "fast" not in widget.preset.choices and widget.preset.value == DEFAULT_PRESET


def test_manifest_is_valid_and_imports():
    from npe2 import PluginManifest

    path = Path(__file__).parents[1] / "src" / "napari_selfdeblur" / "napari.yaml"
    manifest = PluginManifest.from_file(path)
    manifest.validate_imports()
    ids = {c.id for c in manifest.contributions.commands}
    assert {"napari-selfdeblur.blind_widget", "napari-selfdeblur.refine_widget"} <= ids
    menu = manifest.contributions.menus["napari/layers/filter"]
    assert len(menu) == 3


def test_blind_widget_on_the_sample(viewer, qtbot):
    viewer.open_sample("napari-selfdeblur", "blurred")
    layer = viewer.layers["sample blurry"]
    layer.scale = (0.5, 0.25)
    layer.translate = (10.0, -4.0)
    widget = BlindDeblurWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = layer
    widget.kernel_height.value = widget.kernel_width.value = 17
    widget.iterations.value = 4
    widget.preview_every.value = 2
    assert widget.device_info.value.startswith("runs on:")
    widget.run()
    assert widget.running and widget.run_button.text == "Cancel"
    assert not widget.kernel_height.enabled  # inputs are locked while it runs
    wait_idle(qtbot, widget)
    latent = viewer.layers["sample blurry latent"]
    kernel = viewer.layers["sample blurry kernel"]
    assert latent.data.shape == layer.data.shape and latent.data.dtype == layer.data.dtype
    np.testing.assert_allclose(latent.scale, layer.scale)
    np.testing.assert_allclose(latent.translate, layer.translate)
    assert kernel.data.shape == (17, 17) and kernel.translate[1] > layer.translate[1]
    meta = latent.metadata
    for key in ("seed", "device", "noise_sigma", "final_loss", "runtime_s", "version", "config"):
        assert key in meta
    assert meta["iterations_run"] == 4 and not meta["cancelled"]
    assert len(widget.loss_plot.points) >= 1
    assert widget.run_button.text == "Run" and widget.kernel_height.enabled


@pytest.mark.slow
def test_cancel_keeps_the_best_result_so_far(viewer, qtbot):
    image = sharp_scene((48, 48), seed=1).astype(np.float32)
    layer = viewer.add_image(image, name="cells")
    widget = BlindDeblurWidget(viewer)
    widget.image.value = layer
    widget.kernel_height.value = widget.kernel_width.value = 5
    widget.preset.value = "demo"  # no coarse levels: the cancel lands in the full-size run
    widget.iterations.value = 100000
    widget.run()
    qtbot.waitUntil(lambda: "iteration" in widget.status.value, timeout=TIMEOUT_MS)
    widget._on_run_clicked()  # the Run button reads Cancel now
    wait_idle(qtbot, widget)
    meta = viewer.layers["cells latent (cancelled)"].metadata
    assert meta["cancelled"] and 0 < meta["iterations_run"] < 100000
    assert "cells latent" not in viewer.layers and "cells latent (running)" not in viewer.layers
    assert widget._worker is None and widget.run_button.text == "Run"
    assert "cancelled" in widget.status.value
    np.testing.assert_array_equal(layer.data, image)  # the input is untouched


@pytest.mark.parametrize(("mode", "kernel_shape"), [("per-plane", (3, 5, 5)), ("refine", (5, 5))])
def test_three_plane_stack(viewer, qtbot, mode, kernel_shape):
    stack = np.stack([sharp_scene((40, 40), seed=s) for s in range(3)]).astype(np.float32)
    layer = viewer.add_image(stack, name="movie")
    viewer.dims.set_current_step(0, 2)
    widget = BlindDeblurWidget(viewer)
    widget.image.value = layer
    widget.kernel_height.value = widget.kernel_width.value = 5
    widget.iterations.value = 3
    widget.stack_mode.value = mode
    planes_seen = []
    widget.plane_progress.changed.connect(planes_seen.append)
    widget.run()
    wait_idle(qtbot, widget)
    # isHidden is the widget's own flag (visible also needs a shown window).
    assert not widget.plane_progress.native.isHidden() and widget.plane_progress.max == 3
    if mode == "per-plane":
        assert {1, 2, 3} <= set(planes_seen)  # the outer bar counted every plane done
    assert viewer.layers["movie latent"].data.shape == stack.shape
    assert viewer.layers["movie kernel"].data.shape == kernel_shape
    runs = viewer.layers["movie latent"].metadata["runs"]
    assert [r["plane"] for r in runs] == ([0, 1, 2] if mode == "per-plane" else [2])


def test_refine_widget_with_the_true_kernel_raises_psnr(viewer, qtbot):
    viewer.open_sample("napari-selfdeblur", "blurred")
    blurry = viewer.layers["sample blurry"]
    sharp = viewer.layers["sample sharp (truth)"].data
    widget = RefineWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = blurry
    widget.kernel_source.value = "layer"
    widget.kernel_layer.value = viewer.layers["sample kernel (truth)"]
    widget.method.value = "hyper-laplacian"
    assert widget.method_params["richardson-lucy"].native.isHidden()
    assert not widget.method_params["hyper-laplacian"].native.isHidden()  # its alpha control
    widget.run()
    wait_idle(qtbot, widget)
    refined = viewer.layers["sample blurry refined"].data
    inner = (slice(10, -10), slice(10, -10))
    gain = psnr(refined[inner], sharp[inner]) - psnr(blurry.data[inner], sharp[inner])
    print(f"refinement gain {gain:.2f} dB")
    assert gain > 2.0
    assert viewer.layers["sample blurry refined"].metadata["method"] == "hyper-laplacian"
    assert "kernel_estimated" not in viewer.layers["sample blurry refined"].metadata  # the truth

    # A kernel layer that a blind run made (its metadata names the preset) is an estimate.
    truth = viewer.layers["sample kernel (truth)"]
    blind = viewer.add_image(truth.data, name="blind kernel", metadata={"preset": "quick"})
    widget.kernel_layer.value = blind
    widget.run()
    wait_idle(qtbot, widget)
    assert viewer.layers["sample blurry refined"].metadata["kernel_estimated"] is True
    assert "kernel_uncertain" not in viewer.layers["sample blurry refined"].metadata
    blind.metadata = {"preset": "quick", "uncertain_kernel_boost": 2.5}  # candidates disagreed
    widget.run()
    wait_idle(qtbot, widget)
    assert viewer.layers["sample blurry refined"].metadata["kernel_uncertain"] is True


def test_refine_function_uses_the_estimated_kernel_strength_for_blind_kernels():
    from napari.layers import Image

    from napari_selfdeblur._napari.functions import refine_image
    from napari_selfdeblur.evaluation.sample import blurred_sample

    sample = blurred_sample((48, 48))
    image = Image(sample.blurry, name="b")
    loaded = Image(sample.kernel, name="psf")
    blind = Image(sample.kernel, name="b kernel", metadata={"preset": "quick"})
    exact, _, _ = refine_image(image, loaded, "sparse")
    estimated, kwargs, _ = refine_image(image, blind, "sparse")
    assert kwargs["metadata"]["kernel_estimated"] is True
    assert np.abs(estimated - exact).max() > 1e-3  # a stronger prior: a different result
    # A kernel its blind run found uncertain: stronger still on a nearly noise-free image.
    from napari_selfdeblur.engine.physics import convolve_same

    clean = Image(convolve_same(sharp_scene((48, 48)), sample.kernel), name="clean")
    meta = {"preset": "quick", "uncertain_kernel_boost": UNCERTAIN_KERNEL_BOOST}
    uncertain = Image(sample.kernel, name="u kernel", metadata=meta)
    _, plain, _ = refine_image(clean, blind, "sparse")
    _, boosted, _ = refine_image(clean, uncertain, "sparse")
    assert boosted["metadata"]["kernel_uncertain"] is True
    ratio = boosted["metadata"]["strengths"][0] / plain["metadata"]["strengths"][0]
    assert plain["metadata"]["noise_sigmas"][0] < UNCERTAIN_MAX_NOISE
    assert ratio == pytest.approx(UNCERTAIN_KERNEL_BOOST)


def test_parametric_kernel_and_method_parameters(viewer, qtbot):
    layer = viewer.add_image(sharp_scene((48, 48)).astype(np.float32), name="x")
    widget = RefineWidget(viewer)
    widget.image.value = layer
    widget.kernel_source.value = "motion"
    widget.length.value = 7
    widget.method.value = "richardson-lucy"
    widget.method_params["richardson-lucy"]["iterations"].value = 5
    widget.auto_strength.value = False
    widget.strength.value = 0.0
    assert widget.params() == {"iterations": 5, "strength": 0.0}
    assert widget.kernel().shape[1] >= 7
    widget.run()
    wait_idle(qtbot, widget)
    meta = viewer.layers["x refined"].metadata
    assert meta["params"] == {"iterations": 5} and meta["strengths"] == [0.0]


def test_errors_become_notifications(viewer, qtbot, errors):
    blind = BlindDeblurWidget(viewer)
    assert blind.run() is None
    assert "no image layer" in errors[-1]

    layer = viewer.add_image(sharp_scene((48, 48)).astype(np.float32), name="img")
    blind.image.value = layer
    shapes = viewer.add_shapes([[[200, 200], [220, 230]]], shape_type="rectangle", name="roi")
    blind.reset_choices()
    blind.roi.value = shapes
    assert blind.run() is None and "outside" in errors[-1]

    blind.roi.value = None
    blind.kernel_height.value = blind.kernel_width.value = 101  # larger than the image
    blind.iterations.value = 2
    assert blind.run() is None and "larger than the image" in errors[-1]

    # An error raised inside the worker thread arrives as a notification too.
    blind.image.value = viewer.add_image(np.full((48, 48), 0.5, np.float32), name="flat")
    blind.kernel_height.value = blind.kernel_width.value = 5
    assert blind.run() is not None
    wait_idle(qtbot, blind)
    assert "constant" in errors[-1] and "flat latent" not in viewer.layers
    blind.image.value = layer

    refine = RefineWidget(viewer)
    refine.image.value = layer
    refine.kernel_layer.value = viewer.add_image(np.ones((2, 5, 5), np.float32), name="k3d")
    assert refine.run() is None and "2-D" in errors[-1]
    refine.kernel_layer.value = viewer.add_image(np.zeros((5, 5), np.float32), name="k0")
    assert refine.run() is None and "positive sum" in errors[-1]

    # The viewer still works: a valid run after the errors succeeds.
    blind.kernel_height.value = blind.kernel_width.value = 5
    blind.run()
    wait_idle(qtbot, blind)
    assert "img latent" in viewer.layers


def test_widgets_open_through_the_plugin_manifest(viewer, qtbot):
    plugin = "napari-selfdeblur"
    _, blind = viewer.window.add_plugin_dock_widget(plugin, "Blind deblur")
    assert isinstance(blind, BlindDeblurWidget)
    _, refine = viewer.window.add_plugin_dock_widget("napari-selfdeblur", "Non-blind refinement")
    assert isinstance(refine, RefineWidget)
    _, function = viewer.window.add_plugin_dock_widget(
        "napari-selfdeblur", "Refine with kernel (function)"
    )
    # The autogenerated function widget: layers in, a new image layer out.
    from napari_selfdeblur.engine.physics import convolve_same
    from napari_selfdeblur.imaging.psf import gaussian_psf

    sharp = sharp_scene((48, 48), seed=5)
    blurry = viewer.add_image(
        convolve_same(sharp, gaussian_psf(1.2)).astype(np.float32), name="b", scale=(2.0, 2.0)
    )
    kernel = viewer.add_image(gaussian_psf(1.2).astype(np.float32), name="psf")
    viewer.layers.selection.active = blurry
    assert function.image.value is blurry and function.kernel.value is kernel  # preselected
    n_layers = len(viewer.layers)
    function()
    assert len(viewer.layers) == n_layers + 1  # the result became a layer
    result = viewer.layers[-1]
    out = result.data
    assert result.name == "b refined (hyper-laplacian)" and tuple(result.scale) == (2.0, 2.0)
    assert out.shape == (48, 48) and result is not kernel
    with pytest.raises(ValueError):
        function.method.value = "Wiener"  # only the registry's names are offered
    inner = (slice(8, -8), slice(8, -8))
    assert psnr(out[inner], sharp[inner]) > psnr(blurry.data[inner], sharp[inner])


def test_plugin_modules_do_not_import_torch():
    import subprocess
    import sys

    code = (
        "import sys, napari_selfdeblur._napari.widgets, napari_selfdeblur._napari.sample_data, "
        "napari_selfdeblur._napari.functions; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_failure_warnings_become_notifications(viewer, qtbot, monkeypatch):
    import napari_selfdeblur.engine.diagnostics as diagnostics

    warnings_seen: list[str] = []
    monkeypatch.setattr(widgets, "_notify_warning", warnings_seen.append)
    monkeypatch.setattr(diagnostics, "DELTA_SUPPORT_PX", 1e9)  # every kernel looks like a delta
    layer = viewer.add_image(sharp_scene((48, 48), seed=2).astype(np.float32), name="w")
    widget = BlindDeblurWidget(viewer)
    widget.image.value = layer
    widget.kernel_height.value = widget.kernel_width.value = 5
    widget.iterations.value = 2
    widget.run()
    wait_idle(qtbot, widget)
    assert any("no-blur solution" in w for w in warnings_seen)


def test_blind_widget_auto_kernel_size(viewer, qtbot):
    viewer.open_sample("napari-selfdeblur", "blurred")
    widget = BlindDeblurWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = viewer.layers["sample blurry"]
    widget.preset.value = "quick"
    widget.auto_size.value = True
    widget.run()
    wait_idle(qtbot, widget)
    meta = viewer.layers["sample blurry latent"].metadata
    chosen = meta["kernel_size_auto"]["chosen"]
    assert viewer.layers["sample blurry kernel"].data.shape == (chosen, chosen)
    assert f"kernel size {chosen} (auto)" in widget.status.value
    assert meta["preset"] == "quick"


def test_every_control_has_a_tooltip(viewer):
    for widget in (BlindDeblurWidget(viewer), RefineWidget(viewer)):
        from magicgui.widgets import Container

        controls = [w for w in widget._inputs() if not isinstance(w, Container)]
        controls.append(widget.run_button)
        for box in widget.method_params.values() if isinstance(widget, RefineWidget) else ():
            controls += list(box)
        missing = [c.label or c.text for c in controls if not (c.tooltip or "").strip()]
        assert not missing, (type(widget).__name__, missing)


def test_kernel_sizes_stay_odd(viewer):
    widget = BlindDeblurWidget(viewer)
    widget.kernel_height.value = 16
    widget.kernel_width.value = 20
    assert (widget.kernel_height.value, widget.kernel_width.value) == (17, 21)


def test_a_non_rectangular_region_is_refused(viewer, errors):
    layer = viewer.add_image(sharp_scene((48, 48), seed=1).astype(np.float32), name="img")
    shapes = viewer.add_shapes([[2, 2], [30, 5], [10, 40]], shape_type="polygon")
    widget = BlindDeblurWidget(viewer)
    widget.image.value = layer
    widget.roi.value = shapes
    assert widget.run() is None
    assert errors and "polygon" in errors[-1] and "rectangle" in errors[-1]


@pytest.mark.parametrize("key", ["blurred", "photo", "fluorescence", "stack"])
def test_each_sample_opens_with_hidden_truth(viewer, key):
    viewer.open_sample("napari-selfdeblur", key)
    blurry = [layer for layer in viewer.layers if layer.name.endswith(" blurry")]
    truth = [layer for layer in viewer.layers if "(truth)" in layer.name]
    assert len(blurry) == 1 and len(truth) == 2 and not any(t.visible for t in truth)
    sharp = next(t for t in truth if "sharp" in t.name)
    assert sharp.data.shape == blurry[0].data.shape
    assert psnr(blurry[0].data, sharp.data, peak=float(np.ptp(sharp.data))) < 35


def test_a_cancelled_refinement_leaves_the_earlier_result_unchanged(viewer, qtbot):
    viewer.open_sample("napari-selfdeblur", "blurred")
    widget = RefineWidget(viewer)
    widget.image.value = viewer.layers["sample blurry"]
    widget.kernel_layer.value = viewer.layers["sample kernel (truth)"]
    widget.run()
    wait_idle(qtbot, widget)
    before = viewer.layers["sample blurry refined"].data.copy()
    widget.method.value = "deep-prior"
    widget.method_params["deep-prior"]["iterations"].value = 300
    widget.run()
    qtbot.waitUntil(lambda: "step" in widget.status.value, timeout=TIMEOUT_MS)
    widget.cancel()
    wait_idle(qtbot, widget)
    np.testing.assert_array_equal(viewer.layers["sample blurry refined"].data, before)
    assert "sample blurry refined (partial)" in viewer.layers


def test_keep_results_adds_layers_named_by_their_settings(viewer, qtbot):
    layer = viewer.add_image(sharp_scene((48, 48), seed=1).astype(np.float32), name="img")
    widget = BlindDeblurWidget(viewer)
    widget.image.value = layer
    widget.kernel_height.value = widget.kernel_width.value = 5
    widget.preset.value = "quick"
    widget.keep_results.value = True
    for seed in (0, 1):
        widget.seed.value = seed
        widget.run()
        wait_idle(qtbot, widget)
    names = [x.name for x in viewer.layers]
    assert "img latent (quick, seed 0)" in names and "img latent (quick, seed 1)" in names
    assert "img latent" not in names and not any("(running)" in n for n in names)


CLOSE_MID_RUN = """
import numpy as np, napari
from qtpy.QtCore import QTimer
from napari_selfdeblur._napari.widgets import BlindDeblurWidget
viewer = napari.Viewer()
layer = viewer.add_image(np.random.default_rng(0).random((64, 64)).astype("float32"))
widget = BlindDeblurWidget(viewer)
viewer.window.add_dock_widget(widget)
widget.image.value = layer
widget.kernel_height.value = widget.kernel_width.value = 9
widget.preset.value = "demo"
widget.iterations.value = 100000
widget.run()
QTimer.singleShot(4000, viewer.close)
napari.run()
print("closed cleanly")
"""


@pytest.mark.slow
def test_closing_the_viewer_mid_run_exits_cleanly():
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-c", CLOSE_MID_RUN], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "closed cleanly" in proc.stdout


def test_runs_show_in_napari_activity_panel(viewer, qtbot, monkeypatch):
    created = []
    original = widgets._activity_bar
    monkeypatch.setattr(
        widgets, "_activity_bar", lambda kind: created.append(original(kind)) or created[-1]
    )
    layer = viewer.add_image(sharp_scene((48, 48), seed=1).astype(np.float32), name="img")
    widget = BlindDeblurWidget(viewer)
    widget.image.value = layer
    widget.kernel_height.value = widget.kernel_width.value = 5
    widget.preset.value = "quick"
    widget.run()
    wait_idle(qtbot, widget)
    assert len(created) == 1 and "SelfDeblur" in created[0].desc and created[0].n >= 1
    assert widget._activity is None  # closed at the end


def test_a_result_is_saved_with_its_sidecar(viewer, qtbot, tmp_path, monkeypatch, errors):
    import json

    import tifffile

    source = tmp_path / "scan.tif"
    tifffile.imwrite(source, sharp_scene((40, 40), seed=2).astype(np.float32))
    (layer,) = viewer.open(str(source))
    widget = BlindDeblurWidget(viewer)
    widget.image.value = layer
    widget.kernel_height.value = widget.kernel_width.value = 5
    widget.preset.value = "quick"
    assert not widget.save_button.enabled  # nothing to save yet
    widget.run()
    wait_idle(qtbot, widget)
    assert widget.save_button.enabled
    chosen = tmp_path / "result.tif"
    monkeypatch.setattr(
        "qtpy.QtWidgets.QFileDialog.getSaveFileName", lambda *a, **k: (str(chosen), "")
    )
    widget.save_button.clicked.emit(True)
    latent, kernel = viewer.layers["scan latent"], viewer.layers["scan kernel"]
    np.testing.assert_array_equal(tifffile.imread(chosen), latent.data)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "result_kernel.tif"), kernel.data)
    side = json.loads((tmp_path / "result.json").read_text())
    assert side["preset"] == "quick" and side["seed"] == 0 and side["kernel_size"] == [5, 5]
    assert side["outputs"] == ["result.tif", "result_kernel.tif"] and side["complete"] is True
    # Never over an open layer's file, nor over a sidecar name that is someone else's file.
    before = source.read_bytes()
    assert widget.save_result(source, replace=True) is None
    assert source.read_bytes() == before
    (tmp_path / "other.json").write_text("my notes")
    assert widget.save_result(tmp_path / "other.tif") is None
    assert (tmp_path / "other.json").read_text() == "my notes"
    assert not (tmp_path / "other.tif").exists()
    assert len(errors) == 2 and "not written by this tool" in errors[1]


def test_a_lazy_stack_goes_to_a_cluster_and_is_saved_plane_by_plane(viewer, qtbot, tmp_path):
    """A dask layer is never loaded whole: the cluster field runs its planes as tasks, the
    result is a dask layer over a file, and Save result writes it page by page.
    """
    import dask.array as da
    import tifffile

    distributed = pytest.importorskip("distributed")
    stack = np.stack([sharp_scene((40, 40), seed=s) for s in range(3)]).astype(np.float32)
    layer = viewer.add_image(da.from_array(stack, chunks=(1, 40, 40)), name="big")
    widget = RefineWidget(viewer)
    widget.image.value = layer
    widget.kernel_source.value = "gaussian"
    widget.method.value = "wiener"
    cluster = distributed.LocalCluster(
        n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None
    )
    with cluster:
        widget.scheduler.value = cluster.scheduler_address
        stages = []
        widget._report_activity = lambda done, total, text: stages.append((done, total, text))
        widget.run()
        wait_idle(qtbot, widget)
    result = viewer.layers["big refined"]
    assert not isinstance(result.data, np.ndarray) and result.data.shape == stack.shape
    assert (3, 3, "SelfDeblur on a cluster") in stages, stages  # progress per plane
    widget.scheduler.value = ""
    in_process = RefineWidget(viewer)
    in_process.image.value = viewer.add_image(stack, name="small")
    in_process.kernel_source.value = "gaussian"
    in_process.method.value = "wiener"
    in_process.run()
    wait_idle(qtbot, in_process)
    expected = viewer.layers["small refined"].data
    np.testing.assert_allclose(np.asarray(result.data), expected, rtol=1e-6, atol=1e-9)
    files = widget.save_result(tmp_path / "big.tif")
    np.testing.assert_array_equal(tifffile.imread(files[0]), np.asarray(result.data))


def test_a_bad_cluster_address_is_refused_before_any_work(viewer, errors):
    widget = RefineWidget(viewer)
    widget.image.value = viewer.add_image(sharp_scene((40, 40)), name="x")
    widget.kernel_source.value = "gaussian"
    widget.scheduler.value = "local:zero"
    assert widget.run() is None and "local or local:N" in errors[0]
