"""What the napari widgets run, without napari: generators that yield progress, return layers.

:func:`blind_task` and :func:`refine_task` take plain arrays and layer geometry, yield
:class:`TaskProgress` while they work and return napari layer tuples ``(data, kwargs, "image")``
(the value of ``StopIteration``). The inputs are checked when the task is created, so bad input
raises at once; the work starts with the first ``next()``. A napari ``thread_worker`` drains the
generator off the GUI thread; tests
and scripts can drain them too (:func:`run_to_end`). The engine itself runs in a helper thread so
that its per-iteration progress can be yielded; setting the ``cancel`` event stops it at the next
iteration, and the task then returns what it has (``metadata["cancelled"]``).

Stacks: every leading axis of a non-RGB layer (time, z, ...) indexes 2-D planes (for RGB layers,
(H, W, 3|4) planes). ``stack_mode="per-plane"`` estimates a kernel for every plane;
``"refine"`` estimates it on one plane (``current_plane``) and deconvolves all planes non-blind.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import numpy as np

from ..errors import InvalidInputError
from ..fileio import is_lazy
from ..imaging.image import Intensity
from ..imaging.layout import split_layout, split_planes
from ..imaging.psf import prepare_kernels
from ..nonblind import DEFAULT_METHOD
from ..provenance import header, uncertain_kernel_flags

LayerTuple = tuple[np.ndarray, dict[str, Any], str]
STACK_MODES = ("per-plane", "refine")


@dataclass
class TaskProgress:
    """One progress report: plane ``plane`` (0-based) of ``planes``, step within that plane."""

    plane: int
    planes: int
    iteration: int
    iterations: int
    loss: float | None = None
    stage: str = "blind"  # "blind" or "refine"
    latent: np.ndarray | None = None  # preview of the plane, in the input's value range
    kernel: np.ndarray | None = None


@dataclass(frozen=True)
class LayerGeometry:
    """Where a layer sits in the world: its name, per-axis scale and translate, and RGB flag."""

    name: str
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    rgb: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def plain(cls, name: str, ndim: int, rgb: bool = False) -> LayerGeometry:
        return cls(name, (1.0,) * ndim, (0.0,) * ndim, rgb)


def run_to_end(task: Generator[TaskProgress, None, Any], on_progress=None) -> Any:
    """Drain a task generator and return its result (for scripts and tests)."""
    while True:
        try:
            event = next(task)
        except StopIteration as stop:
            return stop.value
        if on_progress is not None:
            on_progress(event)


_DONE = object()


def _drive(work: Callable, cancel: threading.Event | None) -> Generator[TaskProgress, None, Any]:
    """Run ``work(emit, should_stop)`` in a helper thread and yield what it emits."""
    events: queue.Queue = queue.Queue()
    closing = threading.Event()
    box: dict[str, Any] = {}

    def should_stop() -> bool:
        return closing.is_set() or (cancel is not None and cancel.is_set())

    def target() -> None:
        try:
            box["result"] = work(events.put, should_stop)
        except BaseException as exc:  # re-raised in the generator's thread
            box["error"] = exc
        finally:
            events.put(_DONE)

    thread = threading.Thread(target=target, name="selfdeblur-task", daemon=True)
    thread.start()
    try:
        while True:
            item = events.get()
            if item is _DONE:
                break
            yield item
    finally:
        closing.set()  # the consumer went away (generator closed): stop the work too
        thread.join()
    if "error" in box:
        raise box["error"]
    return box["result"]


def roi_box(corners: np.ndarray, image_shape: tuple[int, int]) -> tuple[int, int, int, int]:
    """Integer box (y0, y1, x0, x1) of a rectangle given by its corners in pixel coordinates.

    The box is clipped to the image; a rectangle entirely outside it is an error.
    """
    pts = np.asarray(corners, dtype=np.float64).reshape(-1, 2)
    y0, x0 = np.floor(pts.min(0)).astype(int)
    y1, x1 = np.ceil(pts.max(0)).astype(int)
    return clip_box((int(y0), int(y1), int(x0), int(x1)), image_shape)


def clip_box(
    box: tuple[int, int, int, int], image_shape: tuple[int, int]
) -> tuple[int, int, int, int]:
    """A pixel box (y0, y1, x0, x1), end exclusive, clipped to the image and checked."""
    y0, y1, x0, x1 = (int(v) for v in box)
    h, w = image_shape
    if y1 <= 0 or x1 <= 0 or y0 >= h or x0 >= w:
        raise InvalidInputError(
            f"the region of interest (rows {y0}..{y1}, columns {x0}..{x1}) is outside the "
            f"{h}x{w} image"
        )
    y0, x0, y1, x1 = max(y0, 0), max(x0, 0), min(y1, h), min(x1, w)
    if y1 - y0 < 3 or x1 - x0 < 3:
        raise InvalidInputError(
            f"the region of interest is only {y1 - y0}x{x1 - x0} pixels inside the image"
        )
    return y0, y1, x0, x1


def _planes(data: Any, rgb: bool) -> tuple[Any, tuple[int, ...]]:
    """A layer's data as planes: an (N, H, W[, C]) array, or :class:`LazyPlanes` for lazy data."""
    if math.prod(np.shape(data)) == 0:
        raise InvalidInputError(f"the image layer is empty (shape {np.shape(data)})")
    if is_lazy(data):
        lead = split_layout(tuple(data.shape), rgb)[1]
        return LazyPlanes(data, lead), lead
    planes, lead, _ = split_planes(data, rgb)
    return planes, lead


def kernel_layer(
    kernels: np.ndarray, geo: LayerGeometry, lead: Sequence[int], image_hw, meta: dict[str, Any]
) -> LayerTuple:
    """The kernel as a layer placed just right of the image, at the image's pixel size.

    ``lead`` is the stack shape of a kernel per plane, ``()`` for one 2-D kernel.
    """
    nlead = len(lead)
    scale = tuple(geo.scale[:nlead]) + tuple(geo.scale[-2:] if not geo.rgb else geo.scale[-3:-1])
    translate = list(geo.translate[:nlead]) + list(
        geo.translate[-2:] if not geo.rgb else geo.translate[-3:-1]
    )
    translate[-1] += (image_hw[1] + 4) * scale[-1]
    return (
        kernels.astype(np.float32),
        {
            "name": f"{geo.name} kernel",
            "scale": scale,
            "translate": tuple(translate),
            "colormap": "magma",
            "metadata": meta,
            "interpolation2d": "nearest",
        },
        "image",
    )


def blind_task(
    data: np.ndarray,
    geometry: LayerGeometry,
    kernel_size: int | str | tuple[int, int],
    *,
    preset: str = "demo",
    iterations: int | None = None,
    seed: int = 0,
    device: str = "auto",
    roi: tuple[int, int, int, int] | None = None,
    stack_mode: str = "refine",
    current_plane: int = 0,
    preview_every: int = 0,
    refine_method: str = DEFAULT_METHOD,
    restarts: int = 1,
    preset_name: str | None = None,
    scheduler: str | None = None,
    cancel: threading.Event | None = None,
) -> Generator[TaskProgress, None, list[LayerTuple]]:
    """Blind deconvolution of a layer's data; returns ``[latent layer, kernel layer]``.

    With ``roi`` (y0, y1, x0, x1 in pixels) the kernel is estimated on that crop and the whole
    image is then deconvolved with it by ``refine_method``. The latent layer has the input's
    shape, dtype, value range, scale and translate; its metadata describes the run. A lazily
    loaded stack is read one plane at a time and its latent written to a ``.npy`` file
    (:class:`PlaneOutput`); with a ``scheduler`` (``local[:N]`` or an address) every plane is a
    task on that Dask cluster, and progress counts finished planes.
    """
    from ..engine.checks import check_kernel_size, resolve_config
    from ..engine.map_kernel import is_auto

    scheduler = cluster_spec(scheduler)  # a malformed address is reported now
    if stack_mode not in STACK_MODES:
        raise InvalidInputError(f"stack mode must be one of {STACK_MODES}, got {stack_mode!r}")
    planes, lead = _planes(data, geometry.rgb)
    cfg = resolve_config(preset, iterations)
    n = planes.shape[0]
    h, w = planes.shape[1:3]
    if roi is not None:
        roi = clip_box(roi, (h, w))
    # The kernel is estimated on the region of interest, or on the whole plane without one.
    region = (roi[1] - roi[0], roi[3] - roi[2]) if roi is not None else (h, w)
    # "auto": the size is found when the work starts (it runs the MAP estimator).
    kshape = None if is_auto(kernel_size) else check_kernel_size(region, kernel_size, cfg)
    if not 0 <= current_plane < n:
        raise InvalidInputError(f"current plane {current_plane} is outside 0..{n - 1}")
    job = _BlindJob(
        planes=planes,
        lead=lead,
        shape=np.shape(data),
        geometry=geometry,
        kshape=kshape,
        cfg=cfg,
        preset_name=preset if isinstance(preset, str) else (preset_name or "custom"),
        seed=seed,
        device=device,
        roi=roi,
        stack_mode=stack_mode,
        current_plane=current_plane,
        preview_every=preview_every,
        refine_method=refine_method,
        restarts=restarts,
    )
    return _drive(_with_client(scheduler, job.work), cancel)


@dataclass
class _BlindJob:
    """The checked inputs of :func:`blind_task` and the steps of its work."""

    planes: Any  # (N, H, W) or (N, H, W, C): an array, or LazyPlanes
    lead: tuple[int, ...]
    shape: tuple[int, ...]  # the layer data's shape
    geometry: LayerGeometry
    kshape: tuple[int, int] | None  # None: "auto", chosen by the MAP estimator in work()
    cfg: Any
    preset_name: str
    seed: int
    device: str
    roi: tuple[int, int, int, int] | None
    stack_mode: str
    current_plane: int
    preview_every: int
    refine_method: str
    restarts: int

    @property
    def blind_planes(self) -> list[int]:
        n = self.planes.shape[0]
        return list(range(n)) if self.stack_mode == "per-plane" else [self.current_plane]

    @property
    def lazy(self) -> bool:
        return isinstance(self.planes, LazyPlanes)

    def work(self, emit, should_stop, client) -> list[LayerTuple]:
        """Estimate, then refine what needs it; the latent and kernel layers. ``client``: a
        ``distributed.Client`` whose cluster runs the planes, or None (this process).
        """
        start = time.perf_counter()
        auto = self._choose_size(emit) if self.kshape is None else None
        latent = PlaneOutput(self.planes, self.lead)
        kernels = np.zeros((self.planes.shape[0], *self.kshape), np.float32)
        if client is None and not (self.lazy and len(self.blind_planes) > 1):
            runs, cancelled = self._estimate(emit, should_stop, latent, kernels)
        else:  # plane by plane: on a cluster, or a lazy stack never held whole
            runs, cancelled = self._estimate_each(emit, should_stop, latent, kernels, client)
        refined_with = None
        todo = [] if cancelled else self._refine_todo(kernels)
        if todo:
            refined_with = self.refine_method
            uncertain = self._uncertain(runs)
            cancelled = self._refine(emit, should_stop, todo, latent, kernels, client, uncertain)
        meta = self._metadata(runs, cancelled, refined_with, time.perf_counter() - start)
        if auto is not None:
            meta["kernel_size_auto"] = auto
        if latent.store is not None:
            meta["store"] = latent.store
        return self._layers(latent.layer_data(), kernels, meta)

    def _choose_size(self, emit) -> dict:
        """Find the kernel size on the current plane's region (``kernel_size="auto"``)."""
        from ..api import engine_input
        from ..engine.checks import check_kernel_size
        from ..engine.device import resolve_device
        from ..engine.map_kernel import auto_kernel_size

        emit(TaskProgress(self.current_plane, self.planes.shape[0], 0, 1, None, "kernel size"))
        plane, roi = self.planes[self.current_plane], self.roi
        crop = plane if roi is None else plane[roi[0] : roi[1], roi[2] : roi[3]]
        grey = engine_input(crop)
        auto = auto_kernel_size(grey, self.cfg.map, device=resolve_device(self.device))
        self.kshape = check_kernel_size(grey.shape, auto["chosen"], self.cfg)
        return auto

    def _estimate(self, emit, should_stop, latent, kernels):
        """Blind runs on the blind planes (on the ROI if any); (run metadata, cancelled)."""
        from ..api import deblur_stack

        blind = self.blind_planes
        crops = [self._crop(i) for i in blind]

        def callback(p):
            j = p.planes[0] if p.planes else 0
            self._progress(emit, blind[j], crops[j])(p)

        results = deblur_stack(
            crops,
            self.kshape,
            preset=self.cfg,
            seed=self.seed,
            device=self.device,
            callback=callback,
            callback_every=max(1, self.cfg.iterations // 200),
            preview_every=self.preview_every,
            should_stop=should_stop,
            restarts=self.restarts,
        )
        runs = [self._keep(i, r, latent, kernels) for i, r in zip(blind, results, strict=False)]
        return runs, any(r.cancelled for r in results)

    def _crop(self, i: int) -> np.ndarray:
        """Plane ``i`` (read now if lazy), cut to the region of interest if there is one."""
        plane, roi = np.asarray(self.planes[i]), self.roi
        return plane if roi is None else plane[roi[0] : roi[1], roi[2] : roi[3]]

    def _progress(self, emit, i: int, crop: np.ndarray):
        """An engine callback that reports plane ``i``'s iterations (with previews if asked)."""
        n, scale = self.planes.shape[0], Intensity.of(crop[..., :3] if self.geometry.rgb else crop)
        show = not (self.geometry.rgb or self.roi is not None or self.lazy)

        def callback(p):
            preview = scale.from_unit(p.latent) if show and p.latent is not None else None
            stage = f"blind ({p.stage})" if p.stage else "blind"
            emit(TaskProgress(i, n, p.iteration, p.total, p.loss, stage, preview, p.kernel))

        return callback

    def _keep(self, i: int, result, latent: PlaneOutput, kernels: np.ndarray) -> dict[str, Any]:
        """Store plane ``i``'s blind result; its run record for the metadata."""
        kernels[i] = result.kernel
        meta = result.metadata()
        if self.roi is None:
            latent[i] = result.latent
        else:
            meta["roi"] = list(self.roi)
        return {"plane": i, **meta}

    def _estimate_each(self, emit, should_stop, latent, kernels, client):
        """Blind runs one plane at a time, in this process or as tasks on ``client``'s cluster;
        (run metadata in plane order, cancelled).
        """
        from ..batch import BlindJob, deblur_array, stream

        blind, n, runs = self.blind_planes, self.planes.shape[0], []
        job = BlindJob(
            self.kshape, self.cfg, seed=self.seed, device=self.device, restarts=self.restarts
        )

        def keep(outcome) -> None:
            if outcome.status == "error":
                raise InvalidInputError(f"plane {outcome.source + 1}: {outcome.message}")
            runs.append(self._keep(outcome.source, outcome.value, latent, kernels))
            if client is not None:
                emit(TaskProgress(len(runs), n, 1, 1, outcome.value.final_loss, "blind (cluster)"))

        def local(i, crop, plane_job):
            return deblur_array(
                crop,
                plane_job,
                callback=self._progress(emit, i, crop),
                callback_every=max(1, self.cfg.iterations // 200),
                should_stop=should_stop,
            )

        fn = local if client is None else partial(_call, deblur_array)
        items = ((i, (i, self._crop(i), job)) for i in blind)
        stream(items, fn, client=client, should_stop=should_stop, on_outcome=keep)
        runs.sort(key=lambda r: r["plane"])
        cancelled = len(runs) < len(blind) or any(r.get("cancelled") for r in runs)
        return runs, cancelled

    def _refine_todo(self, kernels) -> list[int]:
        """Planes for the non-blind pass: the whole image when the kernel came from a crop, and
        every other plane in "refine" mode (which shares the current plane's kernel).
        """
        n = self.planes.shape[0]
        if self.stack_mode == "refine":
            kernels[:] = kernels[self.current_plane]
            return [i for i in range(n) if self.roi is not None or i != self.current_plane]
        return list(range(n)) if self.roi is not None else []

    def _uncertain(self, runs) -> list[bool]:
        """Per plane: whether the blind run whose kernel refines it found that kernel uncertain."""
        found = {r["plane"]: uncertain_kernel_flags(r, 1) is True for r in runs}
        if self.stack_mode == "per-plane":
            return [found.get(i, False) for i in range(self.planes.shape[0])]
        return [found.get(self.current_plane, False)] * self.planes.shape[0]

    def _refine(self, emit, should_stop, todo, latent, kernels, client, uncertain) -> bool:
        """Non-blind pass over ``todo`` (``uncertain``: per plane, see :meth:`_uncertain`);
        whether it was cancelled.
        """
        from ..batch import RefineJob
        from ..nonblind.api import refine

        n, n_todo = self.planes.shape[0], len(todo)
        per_plane = self.stack_mode == "per-plane"
        if client is not None or self.lazy:

            def job(i: int) -> RefineJob:
                kernel = kernels[i] if per_plane else kernels[self.current_plane]
                return RefineJob(
                    kernel,
                    self.refine_method,
                    kernel_estimated=True,
                    kernel_uncertain=uncertain[i],
                    device="cpu",
                )

            done = refine_planes(
                self.planes, todo, job, latent, client=client, emit=emit, should_stop=should_stop
            )
            return len(done) < n_todo

        def on_refine(p):  # planes count over the whole stack, blind ones included
            emit(TaskProgress(n - n_todo + p.planes_done, n, p.step, p.steps, None, "refine"))

        res = refine(
            self.planes[todo],
            kernels[todo] if per_plane else kernels[self.current_plane],
            self.refine_method,
            rgb=self.geometry.rgb,
            kernel_estimated=True,  # the kernel is this run's blind estimate
            kernel_uncertain=[uncertain[i] for i in todo],
            device="cpu",
            callback=on_refine,
            should_stop=should_stop,
        )
        for i, plane in zip(todo[: res.planes_done], res.image, strict=False):
            latent[i] = plane
        return res.cancelled

    def _metadata(self, runs, cancelled, refined_with, runtime) -> dict[str, Any]:
        meta: dict[str, Any] = {
            **header(),
            "source_layer": self.geometry.name,
            "kernel_size": list(self.kshape),
            "preset": self.preset_name,
            "init": self.cfg.init,
            "seed": self.seed,
            "cancelled": cancelled,
            "runtime_s": round(runtime, 3),
            "planes": self.planes.shape[0],
            "stack_mode": self.stack_mode if self.lead else None,
            "refined_with": refined_with,
            "runs": runs,
        }
        if len(runs) == 1:  # the common single-image case: its fields at the top level
            meta.update({k: v for k, v in runs[0].items() if k not in meta})
        return meta

    def _layers(self, latent, kernels, meta) -> list[LayerTuple]:
        geo, per_plane = self.geometry, self.stack_mode == "per-plane"
        kernel_out = (
            kernels.reshape(*self.lead, *self.kshape)
            if per_plane and self.lead
            else kernels[self.current_plane]
        )
        latent_layer = (
            latent.reshape(self.shape),
            {
                "name": f"{geo.name} latent",
                "scale": geo.scale,
                "translate": geo.translate,
                "rgb": geo.rgb,
                "metadata": meta,
                **geo.extra,
            },
            "image",
        )
        klead = self.lead if per_plane else ()
        hw = self.planes.shape[1:3]
        return [latent_layer, kernel_layer(kernel_out, geo, klead, hw, meta)]


def refine_task(
    data: np.ndarray,
    geometry: LayerGeometry,
    kernel: np.ndarray,
    method: str = DEFAULT_METHOD,
    params: dict[str, Any] | None = None,
    *,
    device: str = "cpu",
    kernel_estimated: bool = False,
    kernel_uncertain: bool | Sequence[bool] = False,
    scheduler: str | None = None,
    cancel: threading.Event | None = None,
) -> Generator[TaskProgress, None, list[LayerTuple]]:
    """Non-blind deconvolution of a layer's data; returns ``[refined layer]``.

    ``kernel_estimated``: the kernel came from a blind run (a stronger default strength);
    ``kernel_uncertain``: that run found it uncertain (stronger still on clean planes; one flag,
    or one per plane).
    A lazily loaded stack (dask, zarr) is read and refined one plane at a time into a ``.npy``
    file (:class:`PlaneOutput`); with a ``scheduler`` (``local[:N]`` or an address, as the
    command line's ``--scheduler``) every plane is a task on that Dask cluster.
    """
    from ..nonblind.api import refine

    scheduler = cluster_spec(scheduler)  # a malformed address is reported now
    planes, lead = _planes(data, geometry.rgb)
    n = planes.shape[0]
    prepare_kernels(kernel, lead)  # report a bad kernel now, before any work is queued
    if is_lazy(data) or scheduler is not None:
        work = _plane_refine_work(
            planes,
            lead,
            geometry,
            kernel,
            method=method,
            params=params,
            device=device,
            kernel_estimated=kernel_estimated,
            kernel_uncertain=kernel_uncertain,
        )
        return _drive(_with_client(scheduler, work), cancel)

    def work(emit, should_stop):
        def on_progress(p):
            emit(TaskProgress(p.planes_done, n, p.step, p.steps, None, "refine"))

        res = refine(
            data,
            kernel,
            method,
            rgb=geometry.rgb,
            device=device,
            callback=on_progress,
            should_stop=should_stop,
            kernel_estimated=kernel_estimated,
            kernel_uncertain=kernel_uncertain,
            **(params or {}),
        )
        meta = {
            **res.metadata(),
            "source_layer": geometry.name,
            "kernel_shape": list(np.shape(kernel)),
        }
        return [_refined_layer(res.image, geometry, meta)]

    return _drive(work, cancel)


def _refined_layer(data, geometry: LayerGeometry, meta: dict[str, Any]) -> LayerTuple:
    kwargs = {
        "name": f"{geometry.name} refined",
        "scale": geometry.scale,
        "translate": geometry.translate,
        "rgb": geometry.rgb,
        "metadata": meta,
        **geometry.extra,
    }
    return (data, kwargs, "image")


def stack_index(i: int, lead: tuple[int, ...]) -> tuple[int, ...]:
    """The index over the stack axes ``lead`` of plane ``i`` (C order); ``()`` for no stack."""
    return tuple(int(j) for j in np.unravel_index(i, lead)) if lead else ()


class LazyPlanes:
    """The planes of a lazily loaded layer, read when indexed: ``planes[i]`` is plane ``i``
    (C order over the stack axes) as a NumPy array; ``shape`` is (N, H, W[, C]).
    """

    def __init__(self, data: Any, lead: tuple[int, ...]) -> None:
        self.data, self.lead = data, lead
        self.shape = (math.prod(lead), *tuple(data.shape)[len(lead) :])
        self.dtype = np.dtype(data.dtype)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(self.data[stack_index(i, self.lead)])


class PlaneOutput:
    """Where a task puts its per-plane results; planes never written keep the input's values.

    In memory for an in-memory input; for a lazy input (:class:`LazyPlanes`) a ``.npy`` file in
    a new temporary folder (``store``), which the result layer reads through dask one plane at
    a time, so a stack larger than memory can be processed.
    """

    def __init__(self, planes, lead: tuple[int, ...]) -> None:
        self.planes, self.lead, self.written = planes, lead, set()
        self.lazy = isinstance(planes, LazyPlanes)
        shape = (*lead, *planes.shape[1:])
        self.array = _open_store(shape, planes.dtype) if self.lazy else np.array(planes, copy=True)
        self.store = self.array.filename if self.lazy else None

    def __setitem__(self, i: int, plane: np.ndarray) -> None:
        self.array[stack_index(i, self.lead) if self.lazy else i] = plane
        self.written.add(i)

    def layer_data(self):
        """The result as layer data (the stack axes, then the plane's): a NumPy array, or a dask
        array over the file.
        """
        if not self.lazy:
            return self.array.reshape(*self.lead, *self.planes.shape[1:])
        for i in range(self.planes.shape[0]):
            if i not in self.written:
                self[i] = self.planes[i]
        self.array.flush()
        return _lazy_view(self.array, len(self.lead))


def cluster_spec(scheduler: str | None) -> str | None:
    """``scheduler`` checked (as ``--scheduler``): None for in-process (``None``, ``""``,
    ``"none"``, ``"in-process"``), else the spec itself; a malformed value raises now.
    """
    from ..batch import parse_scheduler

    return scheduler if parse_scheduler(scheduler) is not None else None


def _with_client(scheduler: str | None, work: Callable) -> Callable:
    """``work(emit, should_stop, client)`` as a task's work: ``client`` is None (in-process) or a
    ``distributed.Client`` of ``scheduler``, closed (its local cluster stopped) at the end.
    """

    def run(emit, should_stop):
        if scheduler is None:
            return work(emit, should_stop, None)
        from ..batch import open_client

        emit(TaskProgress(0, 1, 0, 1, None, f"connecting to {scheduler}"))
        with open_client(scheduler) as client:
            return work(emit, should_stop, client)

    return run


def _call(work: Callable, i: int, plane: np.ndarray, job: Any) -> Any:
    """``work(plane, job)``: a plane's task as a module-level function (a cluster pickles it)."""
    return work(plane, job)


def refine_planes(
    planes,
    todo: Sequence[int],
    job: Callable[[int], Any],
    output: PlaneOutput,
    *,
    client,
    emit: Callable[[TaskProgress], None],
    should_stop: Callable[[], bool],
) -> list:
    """Refine planes ``todo`` (``job(i)``: the :class:`~..batch.RefineJob` of plane ``i``) into
    ``output``, one at a time in this process or as tasks on ``client``'s cluster; progress
    counts planes over the whole stack. Returns the finished planes' metadata, in plane order
    (the images go to ``output`` only).
    """
    from ..batch import refine_array, stream

    n, done = planes.shape[0], {}

    def keep(outcome) -> None:
        if outcome.status == "error":
            raise InvalidInputError(f"plane {outcome.source + 1}: {outcome.message}")
        if outcome.value.cancelled:  # stopped within the plane: it keeps the input's values
            return
        output[outcome.source] = outcome.value.image
        done[outcome.source] = outcome.value.metadata()
        stage = "refine" if client is None else "refine (cluster)"
        emit(TaskProgress(n - len(todo) + len(done), n, 1, 1, None, stage))

    def local(i, plane, plane_job):
        def on_step(p):
            emit(TaskProgress(n - len(todo) + len(done), n, p.step, p.steps, None, "refine"))

        return refine_array(plane, plane_job, callback=on_step, should_stop=should_stop)

    fn = local if client is None else partial(_call, refine_array)
    items = ((i, (i, planes[i], job(i))) for i in todo)
    stream(items, fn, client=client, should_stop=should_stop, on_outcome=keep)
    return [done[i] for i in sorted(done)]


def _plane_refine_work(
    planes, lead, geometry, kernel, *, method, params, device, kernel_estimated, kernel_uncertain
):
    """The work of :func:`refine_task` plane by plane (a lazy input, or on a cluster)."""
    from ..batch import RefineJob

    kernels = prepare_kernels(kernel, lead)
    n = planes.shape[0]

    def job(i: int) -> RefineJob:
        kernel_i = kernels[i % len(kernels)]
        uncertain = kernel_uncertain if isinstance(kernel_uncertain, bool) else kernel_uncertain[i]
        return RefineJob(
            kernel_i, method, dict(params or {}), kernel_estimated, uncertain, device=device
        )

    def work(emit, should_stop, client):
        start, output = time.perf_counter(), PlaneOutput(planes, lead)
        results = refine_planes(
            planes, range(n), job, output, client=client, emit=emit, should_stop=should_stop
        )
        meta = {
            **(results[0] if results else {"method": method}),
            "strengths": [s for r in results for s in r["strengths"]],
            "noise_sigmas": [s for r in results for s in r["noise_sigmas"]],
            "source_layer": geometry.name,
            "kernel_shape": list(np.shape(kernel)),
            "planes_done": len(results),
            "planes_total": n,
            "cancelled": len(results) < n,
            "runtime_s": round(time.perf_counter() - start, 3),
            "store": output.store,
        }
        return [_refined_layer(output.layer_data(), geometry, meta)]

    return work


def _open_store(shape: tuple[int, ...], dtype) -> np.memmap:
    """A writable ``.npy`` array on disk, in a new temporary folder (removed by the OS's cleanup
    of temporary files, or by the user; napari can save the layer elsewhere).
    """
    import tempfile
    from pathlib import Path

    folder = Path(tempfile.mkdtemp(prefix="selfdeblur-result-"))
    return np.lib.format.open_memmap(folder / "result.npy", mode="w+", dtype=dtype, shape=shape)


class NpyFile:
    """A ``.npy`` file as an array-like that reads only what is indexed (for dask; a memmap
    given to ``dask.array.from_array`` would be copied into memory whole).
    """

    def __init__(self, path: str, shape: tuple[int, ...], dtype) -> None:
        self.path, self.shape, self.dtype = path, tuple(shape), np.dtype(dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key) -> np.ndarray:
        return np.array(np.load(self.path, mmap_mode="r")[key])


def _lazy_view(store: np.memmap, leading: int):
    """A dask array over ``store``'s file, one plane per chunk."""
    import dask.array as da

    chunks = (1,) * leading + tuple(store.shape[leading:])
    source = NpyFile(store.filename, store.shape, store.dtype)
    return da.from_array(source, chunks=chunks, asarray=False, fancy=False)
