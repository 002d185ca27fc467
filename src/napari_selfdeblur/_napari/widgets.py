"""napari widgets: a thin magicgui layer over :mod:`napari_selfdeblur._napari.tasks`.

Each widget collects its inputs, builds a task generator and hands it to a napari
``thread_worker``; progress arrives on the GUI thread through ``yielded``, the layer tuples
through ``returned``. Torch is imported only when a run starts.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import (
    CheckBox,
    ComboBox,
    Container,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from qtpy.QtCore import QPointF, Qt
from qtpy.QtGui import QPainter, QPen, QPolygonF
from qtpy.QtWidgets import QSizePolicy, QWidget

from ..config import DEFAULT_PRESET, DEVICE_CHOICES, PRESETS
from ..errors import SelfDeblurError
from ..nonblind import DEFAULT_METHOD, METHODS, Param
from .tasks import LayerGeometry, TaskProgress, blind_task, kernel_layer, refine_task, roi_box

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
        self.setMinimumHeight(70)
        self.setSizePolicy(QSizePolicy.Expanding, QSizePolicy.Fixed)

    def clear(self) -> None:
        self.points = []
        self.update()

    def add(self, iteration: int, loss: float) -> None:
        if loss is not None and math.isfinite(loss) and loss > 0:
            self.points.append((iteration, loss))
            self.update()

    def paintEvent(self, event) -> None:  # Qt's name
        painter = QPainter(self)
        painter.fillRect(self.rect(), Qt.black)
        if len(self.points) < 2:
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
        painter.drawText(6, 14, f"loss {self.points[-1][1]:.4g}")
        painter.end()


class _RunnerMixin:
    """Image choice, Run/Cancel button, progress bar and status shared by both widgets."""

    def _setup_runner(self, viewer) -> None:
        self._viewer = viewer
        self.image = ComboBox(label="image", choices=lambda _: _image_layers(viewer), nullable=True)
        self._worker = None
        self._cancel: threading.Event | None = None
        self.run_button = PushButton(text="Run")
        self.progress = ProgressBar(value=0, min=0, max=1, label="progress")
        # Outer bar for stacks: plane i of n (the inner bar counts iterations of that plane).
        self.plane_progress = ProgressBar(value=0, min=0, max=1, label="planes")
        self.status = Label(value="")
        self.run_button.changed.connect(self._on_run_clicked)

    @property
    def running(self) -> bool:
        return self._worker is not None

    def _place_controls(self, controls: list, *, planes: bool = False) -> None:
        """Show ``controls`` (declared once, in display order), then Run, progress and status."""
        self._controls = controls
        bars = [self.plane_progress, self.progress] if planes else [self.progress]
        self.extend([*controls, self.run_button, *bars, self.status])

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
        worker.start()
        return worker

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

    def _on_finished(self) -> None:
        self._worker = None
        self._cancel = None
        self._set_running(False)


# -- blind deconvolution ------------------------------------------------------------------------


class BlindDeblurWidget(Container, _RunnerMixin):
    """Estimate the kernel and the sharp image of the selected image layer (SelfDeblur)."""

    def __init__(self, napari_viewer: napari.viewer.Viewer):
        super().__init__()
        self._setup_runner(napari_viewer)
        viewer = napari_viewer
        self.kernel_height = SpinBox(label="kernel height", value=31, min=3, max=255, step=2)
        self.kernel_width = SpinBox(label="kernel width", value=31, min=3, max=255, step=2)
        self.auto_size = CheckBox(
            text="find the kernel size (auto)",
            value=False,
            tooltip="run the MAP estimator with a generous size first and choose the size from "
            "the blur it finds; the choice is shown in the status line and the layer metadata",
        )
        self.preset = ComboBox(
            label="preset",
            choices=[(p.label, name) for name, p in PRESETS.items()],
            value=DEFAULT_PRESET,
            tooltip="; ".join(f"{name}: {p.help}" for name, p in PRESETS.items()),
        )
        self.iterations = SpinBox(label="iterations (0: preset)", value=0, min=0, max=100000)
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self._add_start_controls()
        self.restarts = SpinBox(
            label="restarts (seeds to probe)",
            value=1,
            min=1,
            max=50,
            tooltip="probe this many seeds briefly and continue the best fit",
        )
        self.device = ComboBox(label="device", choices=list(DEVICE_CHOICES), value="auto")
        self.device_info = Label(value="")
        self.roi = ComboBox(
            label="region (Shapes)",
            nullable=True,
            value=None,
            choices=lambda _: self._shapes_layers(),
        )
        self.preview_every = SpinBox(label="preview every", value=50, min=0, max=100000)
        self.stack_mode = ComboBox(
            label="stacks",
            choices=[
                ("kernel per plane", "per-plane"),
                ("kernel from current plane, refine all", "refine"),
            ],
            value="refine",
        )
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
            data = np.asarray(layer.data)
            lead_ndim = data.ndim - (3 if layer.rgb else 2)
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
                cancel=self._cancel,
            )
        except (SelfDeblurError, ValueError) as exc:
            return self._bad_input(exc)
        self.loss_plot.clear()
        self._preview_latent = None
        self._source = layer
        return self._start(task)

    def _on_progress(self, p: TaskProgress) -> None:
        self.progress.max = max(1, p.iterations)
        self.progress.value = min(p.iteration, p.iterations)
        self.plane_progress.visible = p.planes > 1
        self.plane_progress.max = p.planes
        self.plane_progress.value = p.plane
        plane = f"plane {p.plane + 1}/{p.planes}, " if p.planes > 1 else ""
        loss = f", loss {p.loss:.4g}" if p.loss is not None else ""
        self.status.value = f"{p.stage}: {plane}iteration {p.iteration}/{p.iterations}{loss}"
        if p.stage == "blind" and p.loss is not None:
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
                    "name": f"{geo.name} latent",
                    "scale": geo.scale,
                    "translate": geo.translate,
                    "rgb": geo.rgb,
                    **geo.extra,
                },
            )
        hw = layer.data.shape[-3:-1] if layer.rgb else layer.data.shape[-2:]
        data, kwargs, _ = kernel_layer(p.kernel, geo, (), hw, {})
        _put_layer(self._viewer, data, kwargs)

    def _on_returned(self, layers) -> None:
        for data, kwargs, _ in layers:
            _put_layer(self._viewer, data, kwargs)
        meta = layers[0][1]["metadata"]
        for run in meta.get("runs", []):
            plane = f" (plane {run['plane'] + 1})" if meta.get("planes", 1) > 1 else ""
            for message in run.get("diagnosis", {}).get("warnings", []):
                _notify_warning(f"SelfDeblur{plane}: {message}")
        its = meta.get("iterations_run")
        if meta.get("cancelled"):
            msg = "cancelled: kept the result of the last completed iteration"
            msg += f" ({its} iterations)" if its is not None else ""
            _notify_info(f"SelfDeblur {msg}")
        else:
            msg = f"done in {meta['runtime_s']:.1f} s"
        if "kernel_size_auto" in meta:
            msg += f"; kernel size {meta['kernel_size_auto']['chosen']} (auto)"
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
        self.kernel_source = ComboBox(
            label="kernel", choices=["layer", "gaussian", "disk", "motion"], value="layer"
        )
        self.kernel_layer = ComboBox(
            label="kernel layer", nullable=True, choices=lambda _: _image_layers(viewer)
        )
        self.sigma = FloatSpinBox(label="sigma (px)", value=2.0, min=0.1, max=50, step=0.1)
        self.radius = FloatSpinBox(label="radius (px)", value=3.0, min=0.5, max=50, step=0.5)
        self.length = FloatSpinBox(label="length (px)", value=9.0, min=1, max=100, step=1)
        self.angle = FloatSpinBox(label="angle (deg)", value=0.0, min=-180, max=180, step=5)
        choices = [(m.label, m.name) for m in METHODS.values()]
        self.method = ComboBox(label="method", choices=choices, value=DEFAULT_METHOD)
        self.auto_strength = CheckBox(text="strength from the noise level", value=True)
        self.strength = FloatSpinBox(label="strength", value=1e-3, min=0.0, max=10.0, step=1e-5)
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
            ]
        )
        self.kernel_source.changed.connect(self._update_visibility)
        self.method.changed.connect(self._update_visibility)
        self.auto_strength.changed.connect(self._update_visibility)
        for event in (viewer.layers.events.inserted, viewer.layers.events.removed):
            event.connect(lambda *_: self.reset_choices())
        self.reset_choices()
        self._update_visibility()

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

    def _kernel_estimated(self) -> bool:
        """Whether the kernel is a layer that a blind run made (its metadata names a preset)."""
        layer = self.kernel_layer.value
        return (
            self.kernel_source.value == "layer"
            and layer is not None
            and ("preset" in getattr(layer, "metadata", {}))
        )

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
                np.asarray(layer.data),
                _geometry(layer),
                self.kernel(),
                self.method.value,
                self.params(),
                kernel_estimated=self._kernel_estimated(),
                cancel=self._cancel,
            )
        except (SelfDeblurError, ValueError) as exc:
            return self._bad_input(exc)
        return self._start(task)

    def _on_progress(self, p: TaskProgress) -> None:
        self.progress.max = max(1, p.planes)
        self.progress.value = min(p.plane, p.planes)
        self.status.value = f"plane {min(p.plane + 1, p.planes)}/{p.planes}, step {p.iteration}"

    def _on_returned(self, layers) -> None:
        for data, kwargs, _ in layers:
            _put_layer(self._viewer, data, kwargs)
        meta = layers[0][1]["metadata"]
        if meta.get("cancelled"):
            _notify_info(
                f"SelfDeblur refinement cancelled: {meta['planes_done']} of "
                f"{meta['planes_total']} planes refined, the others left as they were"
            )
            self.status.value = "cancelled"
        else:
            self.status.value = f"done in {meta['runtime_s']:.2f} s"
        self.progress.value = self.progress.max
