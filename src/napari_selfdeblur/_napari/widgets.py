"""napari widgets: a thin magicgui layer over :mod:`napari_selfdeblur._napari.tasks`.

Each widget collects its inputs, builds a task generator and hands it to a napari
``thread_worker``; progress arrives on the GUI thread through ``yielded``, the layer tuples
through ``returned``. Torch is imported only when a run starts.
"""

from __future__ import annotations

import math
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    LineEdit,
    ProgressBar,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from ..config import DEFAULT_PRESET, DEVICE_CHOICES, PRESETS, offered_presets
from ..errors import SelfDeblurError
from ..nonblind import DEFAULT_METHOD, METHODS, Param
from .saving import result_files, save_result
from .tasks import (
    LayerGeometry,
    TaskProgress,
    blind_task,
    kernel_layer,
    refine_task,
    roi_box,
)

if TYPE_CHECKING:
    import napari


# -- helpers -------------------------------------------------------------------------------------


def _notify_error(message: str) -> None:
    from napari.utils.notifications import show_error

    show_error(message)


def _notify_warning(message: str) -> None:
    from napari.utils.notifications import show_warning

    show_warning(message)


def _notify_info(message: str) -> None:
    from napari.utils.notifications import show_info

    show_info(message)


def _image_layers(viewer: napari.viewer.Viewer) -> list:
    from napari.layers import Image

    return [layer for layer in viewer.layers if isinstance(layer, Image)]


def _geometry(layer) -> LayerGeometry:
    extra: dict[str, Any] = {}
    if not layer.rgb:
        extra["contrast_limits"] = tuple(layer.contrast_limits)
    return LayerGeometry(
        layer.name,
        tuple(float(s) for s in layer.scale),
        tuple(float(t) for t in layer.translate),
        bool(layer.rgb),
        extra,
    )


def _keep_odd(box, value: int) -> None:
    """Kernel sizes are odd: an even value typed in becomes the next odd one."""
    if value % 2 == 0:
        box.value = min(value + 1, box.max)


def _put_layer(viewer, data, kwargs: dict[str, Any]):
    """Add a layer, or update the layer of that name if it has the same dimensionality."""
    name = kwargs["name"]
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer.ndim == np.ndim(data) - (1 if kwargs.get("rgb") else 0) and layer.rgb == bool(
            kwargs.get("rgb")
        ):
            layer.data = data
            for key in ("metadata", "scale", "translate"):
                if key in kwargs:
                    setattr(layer, key, kwargs[key])
            return layer
        viewer.layers.remove(name)
    return viewer.add_image(data, **kwargs)


class LossPlot(QWidget):
    """A small loss-versus-iteration curve (log scale), drawn with QPainter."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.points: list[tuple[int, float]] = []
        self.title = ""  # e.g. "plane 2/5: "
        self.setMinimumHeight(70)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)

    def clear(self) -> None:
        self.points = []
        self.title = ""
        self.update()

    def add(self, iteration: int, loss: float) -> None:
        if loss is not None and math.isfinite(loss) and loss > 0:
            self.points.append((iteration, loss))
            self.update()

    def paintEvent(self, event) -> None:  # Qt's name
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.black)
        painter.setPen(Qt.gray)
        if len(self.points) < 2:
            painter.drawText(6, 14, "loss (log scale) against iteration: shown during a run")
            painter.end()
            return
        its = np.array([p[0] for p in self.points], float)
        logs = np.log10([p[1] for p in self.points])
        w, h = self.width() - 8, self.height() - 8
        span_i = max(its.max() - its.min(), 1)
        span_l = max(logs.max() - logs.min(), 1e-6)
        poly = QPolygonF(
            [
                QPointF(4 + w * (i - its.min()) / span_i, 4 + h * (logs.max() - v) / span_l)
                for i, v in zip(its, logs, strict=True)
            ]
        )
        painter.setPen(QPen(Qt.yellow, 1.5))
        painter.drawPolyline(poly)
        painter.setPen(Qt.gray)
        label = f"{self.title}loss {self.points[-1][1]:.4g} (log scale)"
        painter.drawText(6, 14, label)
        painter.drawText(6, self.height() - 4, f"iteration {int(its.min())}")
        end = f"{int(its.max())}"
        painter.drawText(self.width() - 8 * len(end) - 4, self.height() - 4, end)
        painter.end()


class _RunnerMixin:
    """Image choice, Run/Cancel button, progress bar and status shared by both widgets."""

    def _setup_runner(self, viewer) -> None:
        self._viewer = viewer
        self.image = ComboBox(
            label="image",
            choices=lambda _: _image_layers(viewer),
            nullable=True,
            tooltip="the image layer to deblur: a 2-D image, an RGB picture or a stack (every "
            "leading axis is planes)",
        )
        self.keep_results = CheckBox(
            text="keep earlier results",
            value=False,
            tooltip="add each run's result as new layers named with its settings, to compare "
            "runs; unticked, a run replaces the previous result layers of the same image",
        )
        self._worker = None
        self._cancel: threading.Event | None = None
        self.run_button = PushButton(text="Run", tooltip="start a run; press again to cancel it")
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress")
        # Outer bar for stacks: plane i of n (the inner bar counts iterations of that plane).
        self.plane_progress = ProgressBar(value=0, min=0, max=1, label="planes")
        self.status = Label(value="")
        self.save_button = PushButton(
            text="Save result...",
            enabled=False,
            tooltip="write the last result as a TIFF (its kernel beside it) with a JSON sidecar "
            "holding every parameter of the run, as the command line does",
        )
        self.scheduler = LineEdit(
            label="cluster",
            value="",
            tooltip="empty: run in napari's process. local or local:N: start N Dask worker "
            "processes on this computer; an address such as tcp://host:8786: the scheduler of a "
            "running Dask cluster (e.g. dask-jobqueue on SLURM). Every plane of a stack is then "
            "one task, and progress counts finished planes. Needs the 'distributed' package",
        )
        self._results: list = []  # the layers of the last run's result, image first
        self.run_button.changed.connect(self._on_run_clicked)
        self.save_button.changed.connect(self._on_save_clicked)

    @property
    def running(self) -> bool:
        return self._worker is not None

    @property
    def scheduler_spec(self) -> str | None:
        """The cluster field: None (in-process), ``local[:N]`` or a scheduler address."""
        return self.scheduler.value.strip() or None

    def _place_controls(self, controls: list, *, planes: bool = False) -> None:
        """Show ``controls`` (declared once, in display order), then Run, progress and status."""
        self._controls = controls
        bars = [self.plane_progress, self.progress] if planes else [self.progress]
        self.extend([*controls, self.run_button, *bars, self.status, self.save_button])

    def _inputs(self) -> list:
        """The controls a run reads (disabled while it runs); labels are not inputs."""
        return [w for w in self._controls if not isinstance(w, Label)]

    def _set_running(self, running: bool) -> None:
        for w in self._inputs():
            w.enabled = not running
        self.run_button.text = "Cancel" if running else "Run"

    def _on_run_clicked(self, *_):
        if self.running:
            self.cancel()
        else:
            self.run()

    def cancel(self) -> None:
        """Ask the running task to stop; it returns what it has so far."""
        if self._cancel is not None:
            self._cancel.set()
            self.status.value = "cancelling..."

    def _start(self, task) -> Any:
        from napari.qt.threading import create_worker

        def drain():
            return (yield from task)

        # Errors are reported by _on_errored as notifications; napari need not re-raise them.
        worker = create_worker(drain, _start_thread=False, _ignore_errors=True)
        worker.yielded.connect(self._on_progress)
        worker.returned.connect(self._on_returned)
        worker.errored.connect(self._on_errored)
        worker.finished.connect(self._on_finished)
        self._worker = worker
        self._set_running(True)
        self._activity = _activity_bar(type(self).__name__)
        _stop_on_exit(self.native, worker, self._cancel)
        worker.start()
        return worker

    def _show_results(self, layers) -> None:
        """Remember the layers a run put, for 'Save result...'."""
        self._results = list(layers)
        self.save_button.enabled = bool(self._results)

    def _on_save_clicked(self, *_) -> None:
        from qtpy.QtWidgets import QFileDialog

        if not self._results:
            return
        path, _ = QFileDialog.getSaveFileName(
            self.native,
            "Save result with its sidecar",
            f"{self._results[0].name}.tif",
            "TIFF (*.tif *.tiff)",
        )
        if path:  # the dialog has asked before replacing the file chosen, and only that one
            chosen = Path(path)
            self.save_result(chosen, replace=result_files(chosen, with_kernel=False)[0] == chosen)

    def save_result(self, path, *, replace: bool = False) -> tuple[Path, ...] | None:
        """Save the last result's image (and kernel) with a sidecar; the files, or None.

        Never over the file of an open layer, nor over a kernel or sidecar this tool did not
        write; ``replace`` allows replacing an existing image file (confirmed by the user).
        """
        layers = [layer for layer in self._results if layer in self._viewer.layers]
        if not layers or layers[0] is not self._results[0]:
            _notify_error("SelfDeblur: the result layer was closed; nothing to save")
            return None
        image, kernel = layers[0], (layers[1] if len(layers) > 1 else None)
        protected = [layer.source.path for layer in self._viewer.layers if layer.source.path]
        try:
            files = save_result(
                path,
                image.data,  # a lazy (dask) result is written plane by plane
                dict(image.metadata),
                kernel=None if kernel is None else np.asarray(kernel.data),
                protected=protected,
                replace=replace,
            )
        except (SelfDeblurError, OSError) as exc:
            _notify_error(f"SelfDeblur: not saved: {exc}")
            self.status.value = f"not saved: {exc}"
            return None
        self.status.value = f"saved {files[0].name} with its sidecar {files[-1].name}"
        return files

    def _cluster_progress(self, p: TaskProgress) -> bool:
        """Show a cluster run's progress (connecting, planes done); whether ``p`` was one."""
        if p.stage.startswith("connecting"):
            self.status.value = f"{p.stage}..."
            return True
        if not p.stage.endswith("(cluster)"):
            return False
        self.progress.max, self.progress.value = max(1, p.planes), min(p.plane, p.planes)
        self.status.value = f"{p.stage}: {p.plane}/{p.planes} planes done"
        self._report_activity(p.plane, p.planes, "SelfDeblur on a cluster")
        return True

    def _bad_input(self, exc: Exception) -> None:
        """Report input that was rejected before a run started; nothing runs."""
        _notify_error(f"SelfDeblur: {exc}")
        self.status.value = f"error: {exc}"
        self._cancel = None

    def _on_errored(self, exc: BaseException) -> None:
        if isinstance(exc, SelfDeblurError | ValueError | FloatingPointError):
            _notify_error(f"SelfDeblur: {exc}")
        else:
            _notify_error(f"SelfDeblur failed: {type(exc).__name__}: {exc}")
        self.status.value = f"error: {exc}"

    def _report_activity(self, done: int, total: int, text: str) -> None:
        """Mirror the progress in napari's activity panel."""
        bar = getattr(self, "_activity", None)
        if bar is not None:
            bar.total = max(1, total)
            bar.n = min(done, bar.total)
            bar.set_description(text)
            bar.refresh()

    def _on_finished(self) -> None:
        bar = getattr(self, "_activity", None)
        if bar is not None:
            bar.close()
            self._activity = None
        self._worker = None
        self._cancel = None
        self._set_running(False)


def _activity_bar(kind: str):
    """A ``napari.utils.progress`` bar, so that a run shows in napari's activity panel."""
    from napari.utils import progress

    label = "SelfDeblur blind" if kind == "BlindDeblurWidget" else "SelfDeblur refine"
    return progress(total=1, desc=label)


def _stop_on_exit(widget: QWidget, worker, cancel: threading.Event | None) -> None:
    """Stop ``worker`` cleanly when ``widget`` is destroyed or the application quits.

    The task is asked to stop (its engine thread ends at the next iteration), the worker's
    signals are disconnected so that nothing reaches the deleted widgets, and the quit waits for
    the thread to end: a QThread destroyed while running aborts the process.
    """
    from napari.qt.threading import WorkerBase
    from qtpy.QtWidgets import QApplication

    def stop(*_) -> None:
        if cancel is not None:
            cancel.set()
        try:  # a worker that has finished may have had its Qt objects deleted already
            for signal in (worker.yielded, worker.returned, worker.errored, worker.finished):
                _disconnect(signal, None)
            worker.quit()
        except RuntimeError:
            pass

    def stop_and_wait() -> None:
        stop()
        WorkerBase.await_workers(msecs=60_000)

    widget.destroyed.connect(stop)
    app = QApplication.instance()
    if app is not None:
        app.aboutToQuit.connect(stop_and_wait)
        worker.finished.connect(lambda: _disconnect(app.aboutToQuit, stop_and_wait))


def _disconnect(signal, slot) -> None:
    """Disconnect ``slot`` (None: every slot) from a Qt signal; no error if not connected."""
    try:
        signal.disconnect() if slot is None else signal.disconnect(slot)
    except (TypeError, RuntimeError):
        pass


def _result_name(kwargs: dict[str, Any], suffix: str) -> dict[str, Any]:
    """Layer kwargs with `` (suffix)`` appended to the name."""
    return {**kwargs, "name": f"{kwargs['name']} ({suffix})"}


def _put_results(viewer, layers, *, suffix: str | None, keep: bool) -> list:
    """Put a run's result layers: under their own names (replacing), or with ``suffix``
    (a cancelled or partial result never replaces a complete one), or as new layers (``keep``).
    Returns the napari layers, in the order given.
    """
    out = []
    for data, kwargs, _ in layers:
        if suffix is not None:
            kwargs = _result_name(kwargs, suffix)
        if keep:
            out.append(viewer.add_image(data, **kwargs))  # napari numbers a repeated name
        else:
            out.append(_put_layer(viewer, data, kwargs))
    return out


# -- blind deconvolution ------------------------------------------------------------------------


class BlindDeblurWidget(Container, _RunnerMixin):
    """Estimate the kernel and the sharp image of the selected image layer (SelfDeblur)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self._setup_runner(napari_viewer)
        viewer = napari_viewer
        self._add_size_controls()
        self.iterations = SpinBox(
            label="iterations (0: preset)",
            value=0,
            min=0,
            max=100000,
            tooltip="0 runs the preset's own length; more iterations fit longer (the schedule "
            "is scaled); the status line warns when a run ends unconverged",
        )
        self.seed = SpinBox(
            label="seed",
            value=0,
            min=0,
            max=2**31 - 1,
            tooltip="the random start of SelfDeblur's networks: the same seed on the same "
            "device gives the same result; try another when a run fails",
        )
        self._add_start_controls()
        self.restarts = SpinBox(
            label="restarts (seeds to probe)",
            value=1,
            min=1,
            max=50,
            tooltip="probe this many seeds briefly and continue the best fit",
        )
        self._add_run_controls()
        self._place_controls(
            [
                self.image,
                self.kernel_height,
                self.kernel_width,
                self.auto_size,
                self.preset,
                self.iterations,
                self.seed,
                self.init,
                self.restarts,
                self.device,
                self.device_info,
                self.roi,
                self.preview_every,
                self.stack_mode,
                self.scheduler,
                self.keep_results,
            ],
            planes=True,
        )
        self.loss_plot = LossPlot()
        self.plane_progress.visible = False
        self.native.layout().addWidget(self.loss_plot)
        self.device.changed.connect(self._show_device)
        self._show_device()
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(self._refresh_choices)
        self._refresh_choices()
        self._preview_latent: np.ndarray | None = None  # full-size array the previews fill

    def _add_size_controls(self) -> None:
        """Kernel height and width (odd) and the auto-size checkbox."""
        size_tip = (
            "odd, in pixels: a little larger than the blur's extent (a kernel that is too small "
            "fails; one much too large costs quality); or tick 'auto'"
        )
        self.kernel_height = SpinBox(
            label="kernel height", value=31, min=3, max=255, step=2, tooltip=size_tip
        )
        self.kernel_width = SpinBox(
            label="kernel width", value=31, min=3, max=255, step=2, tooltip=size_tip
        )
        for box in (self.kernel_height, self.kernel_width):
            box.changed.connect(lambda value, box=box: _keep_odd(box, value))
        self.auto_size = CheckBox(
            text="find the kernel size (auto)",
            value=False,
            tooltip="run the MAP estimator with a generous size first and choose the size from "
            "the blur it finds; the choice is shown in the status line and the layer metadata",
        )
        self.preset = ComboBox(
            label="preset",
            choices=[(PRESETS[name].label, name) for name in offered_presets()],
            value=DEFAULT_PRESET,
            tooltip="; ".join(f"{name}: {PRESETS[name].help}" for name in offered_presets()),
        )

    def _add_run_controls(self) -> None:
        """Device, region, previews and stack mode."""
        self.device = ComboBox(
            label="device",
            choices=list(DEVICE_CHOICES),
            value="auto",
            tooltip="auto: CUDA if available, else the CPU; the line below says which",
        )
        self.device_info = Label(value="", tooltip="the device a run will use")
        self.roi = ComboBox(
            label="region (Shapes)",
            nullable=True,
            value=None,
            choices=lambda _: self._shapes_layers(),
            tooltip="a Shapes layer whose last rectangle is the region to estimate the kernel "
            "on (faster; choose a sharp, textured region); the kernel then refines the image",
        )
        self.preview_every = SpinBox(
            label="preview every",
            value=50,
            min=0,
            max=100000,
            tooltip="show the latent and kernel every this many iterations while running "
            "(0: no previews); previews go to '(running)' layers",
        )
        self.stack_mode = ComboBox(
            label="stacks",
            choices=[
                ("kernel per plane", "per-plane"),
                ("kernel from current plane, refine all", "refine"),
            ],
            value="refine",
            tooltip="for stacks: a kernel for every plane (slow), or the kernel of the plane "
            "on screen used to deconvolve every plane non-blind (fast; one blur for all)",
        )

    def _add_start_controls(self) -> None:
        """The controls of how a run starts: the initialisation choice."""
        self.init = ComboBox(
            label="initialisation",
            value="preset",
            choices=[
                ("the preset's", "preset"),
                ("MAP estimate", "map"),
                ("random (paper)", "random"),
                ("no-blur: start from the input", "noblur"),
            ],
            tooltip="how SelfDeblur's networks start; the preset's choice unless changed here",
        )

    def _shapes_layers(self) -> list:
        from napari.layers import Shapes

        return [layer for layer in self._viewer.layers if isinstance(layer, Shapes)]

    def _refresh_choices(self, *_):
        current = self.image.value
        self.reset_choices()
        selected = self._viewer.layers.selection.active
        if current is None and selected is not None and selected in self.image.choices:
            self.image.value = selected

    def _show_device(self, *_):
        from ..errors import DeviceError

        try:
            from ..engine.device import resolve_device

            resolved = resolve_device(self.device.value)
            self.device_info.value = f"runs on: {resolved}"
        except DeviceError as exc:
            self.device_info.value = f"unavailable: {exc}"

    def _config(self):
        from ..engine.checks import resolve_config

        cfg = resolve_config(self.preset.value, self.iterations.value or None)
        return cfg if self.init.value == "preset" else cfg.replace(init=self.init.value)

    def _roi(self, layer) -> tuple[int, int, int, int] | None:
        shapes = self.roi.value
        if shapes is None:
            return None
        if len(shapes.data) == 0:
            raise SelfDeblurError(f"the Shapes layer {shapes.name!r} has no rectangle")
        kind = shapes.shape_type[-1]
        if kind != "rectangle":
            raise SelfDeblurError(
                f"the last shape of {shapes.name!r} is a {kind}; the region must be a rectangle"
            )
        corners = np.asarray(shapes.data[-1], dtype=np.float64)[:, -2:]
        world = corners * np.asarray(shapes.scale[-2:]) + np.asarray(shapes.translate[-2:])
        sdims = slice(-3, -1) if layer.rgb else slice(-2, None)
        pixels = (world - np.asarray(layer.translate[sdims])) / np.asarray(layer.scale[sdims])
        hw = layer.data.shape[-3:-1] if layer.rgb else layer.data.shape[-2:]
        return roi_box(pixels, tuple(hw))

    def run(self) -> Any:
        """Start a run on the chosen layer; returns the worker (None when the input is bad)."""
        layer = self.image.value
        try:
            if layer is None:
                raise SelfDeblurError("no image layer selected: add or choose an image")
            data = layer.data  # a lazy (dask) stack is read one plane at a time
            lead_ndim = len(data.shape) - (3 if layer.rgb else 2)
            step = self._viewer.dims.current_step
            current = 0
            if lead_ndim > 0:
                lead_shape = data.shape[:lead_ndim]
                idx = [min(int(step[d]), lead_shape[d] - 1) for d in range(lead_ndim)]
                current = int(np.ravel_multi_index(idx, lead_shape))
            self._cancel = threading.Event()
            task = blind_task(
                data,
                _geometry(layer),
                "auto"
                if self.auto_size.value
                else (self.kernel_height.value, self.kernel_width.value),
                preset=self._config(),
                iterations=None,
                preset_name=self.preset.value,
                seed=self.seed.value,
                device=self.device.value,
                roi=self._roi(layer),
                stack_mode=self.stack_mode.value,
                current_plane=current,
                preview_every=self.preview_every.value,
                restarts=self.restarts.value,
                scheduler=self.scheduler_spec,
                cancel=self._cancel,
            )
        except (SelfDeblurError, ValueError) as exc:
            return self._bad_input(exc)
        self.loss_plot.clear()
        self._preview_latent = None
        self._source = layer
        return self._start(task)

    def _on_progress(self, p: TaskProgress) -> None:
        if self._cluster_progress(p):
            self.plane_progress.visible = False
            return
        self.progress.max = max(1, p.iterations)
        self.progress.value = min(p.iteration, p.iterations)
        self.plane_progress.visible = p.planes > 1
        self.plane_progress.max = p.planes
        self.plane_progress.value = p.plane
        plane = f"plane {p.plane + 1}/{p.planes}, " if p.planes > 1 else ""
        loss = f", loss {p.loss:.4g}" if p.loss is not None else ""
        self.status.value = f"{p.stage}: {plane}iteration {p.iteration}/{p.iterations}{loss}"
        self._report_activity(p.iteration, p.iterations, f"SelfDeblur {p.stage} {plane}".strip())
        if p.stage == "blind" and p.loss is not None:
            title = f"plane {p.plane + 1}/{p.planes}: " if p.planes > 1 else ""
            if title != self.loss_plot.title:  # one curve per plane
                self.loss_plot.clear()
            self.loss_plot.title = title
            self.loss_plot.add(p.iteration, p.loss)
        if p.kernel is not None:
            self._preview(p)

    def _preview(self, p: TaskProgress) -> None:
        layer = self._source
        geo = _geometry(layer)
        if p.latent is not None:
            if self._preview_latent is None:
                self._preview_latent = np.array(layer.data, copy=True)
            full = self._preview_latent
            full.reshape(-1, *p.latent.shape)[p.plane] = p.latent
            _put_layer(
                self._viewer,
                full,
                {
                    "name": f"{geo.name} latent (running)",
                    "scale": geo.scale,
                    "translate": geo.translate,
                    "rgb": geo.rgb,
                    **geo.extra,
                },
            )
        hw = layer.data.shape[-3:-1] if layer.rgb else layer.data.shape[-2:]
        data, kwargs, _ = kernel_layer(p.kernel, geo, (), hw, {})
        _put_layer(self._viewer, data, _result_name(kwargs, "running"))

    def _drop_previews(self, *_) -> None:
        """Remove the '(running)' preview layers of the current run."""
        source = getattr(self, "_source", None)
        if source is None:
            return
        for what in ("latent", "kernel"):
            name = f"{source.name} {what} (running)"
            if name in self._viewer.layers:
                self._viewer.layers.remove(name)

    def _on_errored(self, exc: BaseException) -> None:
        self._drop_previews()
        super()._on_errored(exc)

    def _on_returned(self, layers) -> None:
        meta = layers[0][1]["metadata"]
        self._drop_previews()
        cancelled = bool(meta.get("cancelled"))
        suffix = "cancelled" if cancelled else None
        if self.keep_results.value and not cancelled:
            suffix = f"{meta.get('preset', 'custom')}, seed {meta.get('seed', '?')}"
        self._show_results(
            _put_results(self._viewer, layers, suffix=suffix, keep=self.keep_results.value)
        )
        for run in meta.get("runs", []):
            plane = f" (plane {run['plane'] + 1})" if meta.get("planes", 1) > 1 else ""
            for message in run.get("diagnosis", {}).get("warnings", []):
                _notify_warning(f"SelfDeblur{plane}: {message}")
        its = meta.get("iterations_run")
        if meta.get("cancelled"):
            msg = "cancelled: the last iteration's result is in the '(cancelled)' layers"
            msg += f" ({its} iterations)" if its is not None else ""
            _notify_info(f"SelfDeblur {msg}")
        else:
            msg = f"done in {meta['runtime_s']:.1f} s"
        if "kernel_size_auto" in meta:
            msg += f"; kernel size {meta['kernel_size_auto']['chosen']} (auto)"
        runs = meta.get("runs", [])
        flags = sorted({f for run in runs for f in run.get("diagnosis", {}).get("flags", [])})
        if flags:
            msg += "; warnings: " + ", ".join(flags)
        self.status.value = msg
        self.progress.value = self.progress.max
        self.plane_progress.value = self.plane_progress.max


# -- non-blind refinement -----------------------------------------------------------------------


def _param_widget(p: Param):
    if p.choices is not None:
        return ComboBox(
            name=p.name, label=p.name, choices=list(p.choices), value=p.default, tooltip=p.help
        )
    if p.kind is int:
        return SpinBox(
            name=p.name,
            label=p.name,
            value=p.default,
            min=int(p.low or 0),
            max=int(p.high or 10**6),
            tooltip=p.help,
        )
    return FloatSpinBox(
        name=p.name,
        label=p.name,
        value=p.default,
        min=p.low or 0.0,
        max=p.high or 1e6,
        step=0.01,
        tooltip=p.help,
    )


class RefineWidget(Container, _RunnerMixin):
    """Deconvolve an image or a stack with a kernel layer or a parametric PSF."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self._setup_runner(napari_viewer)
        viewer = napari_viewer
        self._add_kernel_controls(viewer)
        choices = [(m.label, m.name) for m in METHODS.values()]
        self.method = ComboBox(
            label="method",
            choices=choices,
            value=DEFAULT_METHOD,
            tooltip="; ".join(f"{m.name}: {m.help}" for m in METHODS.values()),
        )
        self.auto_strength = CheckBox(
            text="strength from the noise level",
            value=True,
            tooltip="derive the regularisation strength from each plane's noise level (the "
            "calibrated default); untick to set it yourself",
        )
        self.strength = FloatSpinBox(
            label="strength",
            value=1e-3,
            min=0.0,
            max=10.0,
            step=1e-5,
            tooltip="regularisation weight: larger is smoother with less ringing, smaller is "
            "sharper and noisier",
        )
        self.method_params: dict[str, Container] = {}
        for m in METHODS.values():
            box = Container(
                widgets=[_param_widget(p) for p in m.params if p.name != "strength"], labels=True
            )
            self.method_params[m.name] = box
        self._place_controls(
            [
                self.image,
                self.kernel_source,
                self.kernel_layer,
                self.sigma,
                self.radius,
                self.length,
                self.angle,
                self.method,
                self.auto_strength,
                self.strength,
                *self.method_params.values(),
                self.scheduler,
                self.keep_results,
            ]
        )
        self.kernel_source.changed.connect(self._update_visibility)
        self.method.changed.connect(self._update_visibility)
        self.auto_strength.changed.connect(self._update_visibility)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(lambda *_: self.reset_choices())
        self.reset_choices()
        self._update_visibility()

    def _add_kernel_controls(self, viewer) -> None:
        """Where the kernel comes from: a layer or a parametric PSF and its parameters."""
        self.kernel_source = ComboBox(
            label="kernel",
            choices=["layer", "gaussian", "disk", "motion"],
            value="layer",
            tooltip="a kernel layer (e.g. from a blind run, or a measured PSF), or a parametric "
            "PSF: Gaussian (defocus, microscopy), disk (out of focus), motion (a straight shake)",
        )
        self.kernel_layer = ComboBox(
            label="kernel layer",
            nullable=True,
            choices=lambda _: _image_layers(viewer),
            tooltip="the PSF: a 2-D layer, or a stack with one kernel per plane; a kernel from "
            "a blind run gets the stronger default for estimated kernels",
        )
        self.sigma = FloatSpinBox(
            label="sigma (px)", value=2.0, min=0.1, max=50, step=0.1, tooltip="Gaussian width"
        )
        self.radius = FloatSpinBox(
            label="radius (px)", value=3.0, min=0.5, max=50, step=0.5, tooltip="disk radius"
        )
        self.length = FloatSpinBox(
            label="length (px)", value=9.0, min=1, max=100, step=1, tooltip="motion length"
        )
        self.angle = FloatSpinBox(
            label="angle (deg)",
            value=0.0,
            min=-180,
            max=180,
            step=5,
            tooltip="motion direction, counter-clockwise from the x axis",
        )

    def _update_visibility(self, *_):
        src = self.kernel_source.value
        self.kernel_layer.visible = src == "layer"
        self.sigma.visible = src == "gaussian"
        self.radius.visible = src == "disk"
        self.length.visible = self.angle.visible = src == "motion"
        spec = METHODS[self.method.value]
        has_strength = any(p.name == "strength" for p in spec.params)
        self.auto_strength.visible = has_strength
        self.strength.visible = has_strength and not self.auto_strength.value
        for name, box in self.method_params.items():
            box.visible = name == spec.name and len(box) > 0

    def kernel(self) -> np.ndarray:
        from ..imaging.psf import disk_psf, gaussian_psf, motion_psf

        src = self.kernel_source.value
        if src == "gaussian":
            return gaussian_psf(self.sigma.value)
        if src == "disk":
            return disk_psf(self.radius.value)
        if src == "motion":
            return motion_psf(self.length.value, self.angle.value)
        layer = self.kernel_layer.value
        if layer is None:
            raise SelfDeblurError("no kernel layer chosen: pick one, or a parametric PSF")
        k = np.asarray(layer.data)
        if layer.rgb:
            raise SelfDeblurError(f"the kernel layer {layer.name!r} is RGB; a kernel is grey 2-D")
        return k

    def _blind_kernel(self) -> dict[str, Any]:
        """``kernel_estimated`` and ``kernel_uncertain`` for the chosen kernel: what the metadata
        of a kernel layer that a blind run made says (a parametric PSF is exact).
        """
        from ..provenance import blind_kernel_options

        layer = self.kernel_layer.value
        meta = getattr(layer, "metadata", None) if self.kernel_source.value == "layer" else None
        shape = np.shape(layer.data) if layer is not None else (1, 1)
        return blind_kernel_options(meta, shape)

    def params(self) -> dict[str, Any]:
        """The chosen method's parameters from the controls (strength only when not auto)."""
        spec = METHODS[self.method.value]
        values = {w.name: w.value for w in self.method_params[spec.name]}
        if any(p.name == "strength" for p in spec.params) and not self.auto_strength.value:
            values["strength"] = self.strength.value
        return values

    def run(self) -> Any:
        layer = self.image.value
        try:
            if layer is None:
                raise SelfDeblurError("no image layer selected: add or choose an image")
            self._cancel = threading.Event()
            task = refine_task(
                layer.data,  # a lazy (dask) stack is refined plane by plane
                _geometry(layer),
                self.kernel(),
                self.method.value,
                self.params(),
                **self._blind_kernel(),
                scheduler=self.scheduler_spec,
                cancel=self._cancel,
            )
        except (SelfDeblurError, ValueError) as exc:
            return self._bad_input(exc)
        return self._start(task)

    def _on_progress(self, p: TaskProgress) -> None:
        if self._cluster_progress(p):
            return
        self.progress.max = max(1, p.planes)
        self.progress.value = min(p.plane, p.planes)
        self.status.value = f"plane {min(p.plane + 1, p.planes)}/{p.planes}, step {p.iteration}"
        self._report_activity(p.plane, p.planes, "SelfDeblur refine")

    def _on_returned(self, layers) -> None:
        meta = layers[0][1]["metadata"]
        cancelled = bool(meta.get("cancelled"))
        suffix = meta.get("method") if self.keep_results.value else None
        suffix = "partial" if cancelled else suffix
        self._show_results(
            _put_results(self._viewer, layers, suffix=suffix, keep=self.keep_results.value)
        )
        if meta.get("cancelled"):
            _notify_info(
                f"SelfDeblur refinement cancelled: {meta['planes_done']} of "
                f"{meta['planes_total']} planes refined, the others left as they were, in a "
                "'(partial)' layer; earlier results are untouched"
            )
            self.status.value = "cancelled"
        else:
            self.status.value = f"done in {meta['runtime_s']:.2f} s"
        self.progress.value = self.progress.max
