"""Batches of files, in this process or on a Dask cluster: one output plan, then one task per input.

The plan (:mod:`napari_selfdeblur.plan`) is made once, up front, in the calling process. Each
input is then one task: read, deconvolve, write its outputs and sidecar atomically. On a cluster
(``distributed``) a stack is split further: one task per plane, and a last task that assembles
the planes and writes them, so every write happens on a worker with the same writers as
in-process. A task that fails is reported for its input; the others go on. A batch run again
skips what is done (the plan's resume rules), so a rerun finishes an interrupted batch.

Schedulers (``scheduler``): ``None`` runs in this process; ``"local"`` or ``"local:N"`` starts a
``distributed.LocalCluster`` of N single-threaded worker processes (default: CPU cores divided by
the torch threads per task); anything else is the address of a running scheduler
(``tcp://host:8786``), e.g. one started by ``dask_jobqueue.SLURMCluster``. Every task sets torch's
thread count to ``threads`` first, so results match an in-process run with the same seeds and
thread count bit for bit.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from .config import DEFAULT_PRESET, DeblurConfig
from .errors import InvalidInputError, SelfDeblurError
from .fileio import MAX_PIXELS, image_shape, read_image, read_plane
from .imaging.layout import plane_count, split_layout
from .plan import Task, sidecar_fields, write_task
from .provenance import blind_kernel_options

#: Seconds to wait for a scheduler address to answer before giving up.
CONNECT_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class BlindJob:
    """What every input of a blind batch shares (the arguments of :func:`~.api.deblur`).

    ``init`` overrides the preset's initialisation; ``threads``: torch threads per task (None:
    leave torch's setting); ``batch_size``: planes fitted at once in-process (CUDA).
    """

    kernel_size: int | str | tuple[int, int]
    preset: str | DeblurConfig = DEFAULT_PRESET
    iterations: int | None = None
    init: str | None = None
    seed: int = 0
    device: str = "auto"
    restarts: int = 1
    restart_iterations: int | None = None
    batch_size: int | None = None
    threads: int | None = None
    max_pixels: int = MAX_PIXELS

    def engine_args(self) -> dict[str, Any]:
        """The keyword arguments of :func:`~.api.deblur` shared by every plane."""
        from .engine.checks import resolve_config

        preset, iterations = self.preset, self.iterations
        if self.init is not None:  # a changed preset: pass the configuration itself
            preset, iterations = resolve_config(preset, iterations).replace(init=self.init), None
        return {
            "preset": preset,
            "iterations": iterations,
            "seed": self.seed,
            "device": self.device,
            "restarts": self.restarts,
            "restart_iterations": self.restart_iterations,
        }

    @property
    def preset_name(self) -> str:
        """The preset's name as results record it (``"standard (init=map)"``)."""
        name = self.preset if isinstance(self.preset, str) else "custom"
        return f"{name} (init={self.init})" if self.init is not None else name

    def request(self) -> dict[str, Any]:
        """What a sidecar records so that a later batch knows whether its outputs are current."""
        from .engine.checks import resolve_config

        cfg = resolve_config(self.preset, self.iterations)
        return {
            "command": "deblur",
            "kernel_size": str(self.kernel_size).strip().lower(),
            "preset": self.preset if isinstance(self.preset, str) else "custom",
            "init": self.init,
            "config": (cfg.replace(init=self.init) if self.init else cfg).to_dict(),
            "seed": self.seed,
            "restarts": self.restarts,
            "restart_iterations": self.restart_iterations,
        }


@dataclass(frozen=True)
class RefineJob:
    """What every input of a non-blind batch shares (the arguments of :func:`~.nonblind.refine`)."""

    kernel: np.ndarray
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    kernel_estimated: bool = False
    kernel_uncertain: bool | tuple[bool, ...] = False  # per plane for a stack of kernels
    kernel_path: str | None = None
    device: str = "cpu"
    threads: int | None = None
    max_pixels: int = MAX_PIXELS


@dataclass(frozen=True)
class Outcome:
    """What became of one input: ``status`` is ``"done"``, ``"skip"``, ``"stale"`` or ``"error"``.

    ``value``: the output paths (file inputs) or the result object (array inputs); ``message``
    says what was written, or the one-line error.
    """

    source: Any
    status: str
    value: Any = None
    message: str = ""
    warnings: tuple[str, ...] = ()


def _set_threads(threads: int | None) -> None:
    if threads is not None:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(int(threads))


# -- blind: work that runs in a task --------------------------------------------------------------


def deblur_plane(source: Path, index: int, job: BlindJob):
    """Blind deconvolution of plane ``index`` of the file ``source`` (a task of a cluster run)."""
    from .api import deblur

    _set_threads(job.threads)
    shape = image_shape(source)
    plane_ndim = len(shape) - len(split_layout(shape, None)[1])
    plane = read_plane(source, index, plane_ndim, max_pixels=job.max_pixels)
    return _labelled(deblur(plane, job.kernel_size, **job.engine_args()), job)


def _labelled(result, job: BlindJob):
    result.extra["preset"] = job.preset_name
    return result


def deblur_file(task: Task, job: BlindJob, request: dict[str, Any], callback=None) -> Outcome:
    """Read, deblur (every plane) and write one planned input; its outcome."""
    from .api import deblur_stack
    from .imaging.layout import split_planes

    _set_threads(job.threads)
    data = read_image(task.source, max_pixels=job.max_pixels)
    planes, _, _ = split_planes(data)
    start = time.perf_counter()
    results = deblur_stack(
        list(planes),
        job.kernel_size,
        callback=callback,
        batch_size=job.batch_size,
        **job.engine_args(),
    )
    results = [_labelled(r, job) for r in results]
    return write_blind(task, request, results, data.shape, time.perf_counter() - start)


def write_blind(
    task: Task, request: dict[str, Any], results: Sequence, shape: tuple[int, ...], runtime: float
) -> Outcome:
    """Assemble the per-plane results of one input and write its outputs and sidecar."""
    _, lead = split_layout(shape, None)
    latent = np.stack([r.latent for r in results]).reshape(shape)
    kernels = np.stack([r.kernel for r in results])
    kernels = kernels.reshape(*lead, *kernels.shape[1:]) if lead else kernels[0]
    meta = results[0].metadata()
    meta.update(
        planes=len(results),
        noise_sigma=[r.noise_sigma for r in results] if lead else meta["noise_sigma"],
        final_loss=[r.final_loss for r in results] if lead else meta["final_loss"],
        runtime_s=round(runtime, 3),
        **sidecar_fields(task, request),
    )
    boosts = [r.extra.get("uncertain_kernel_boost", 1.0) for r in results]
    if lead and any(b != 1.0 for b in boosts):  # per plane, for `selfdeblur refine` to read
        meta["uncertain_kernel_boost"] = boosts
    write_task(task, [latent, kernels.astype(np.float32)], meta)
    warnings = tuple(
        f"{task.source} [plane {i + 1}]: {m}" if lead else f"{task.source}: {m}"
        for i, r in enumerate(results)
        for m in r.warnings
    )
    losses = ", ".join(f"{r.final_loss:.4g}" for r in results)
    message = f"wrote {task.outputs[0]}, {task.outputs[1]} (final loss {losses})"
    return Outcome(task.source, "done", task.files, message, warnings)


def _assemble(task: Task, request: dict[str, Any], shape: tuple[int, ...], *results) -> Outcome:
    """The last task of a split stack: write what its plane tasks computed."""
    runtime = sum(r.runtime_s for r in results)
    return write_blind(task, request, list(results), shape, runtime)


# -- refine: work that runs in a task -------------------------------------------------------------


def refine_file(task: Task, job: RefineJob, request: dict[str, Any], callback=None) -> Outcome:
    """Read, deconvolve and write one planned input of a non-blind batch; its outcome."""
    from .nonblind.api import refine

    _set_threads(job.threads)
    data = read_image(task.source, max_pixels=job.max_pixels)
    result = refine(
        data,
        job.kernel,
        job.method,
        device=job.device,
        callback=callback,
        kernel_estimated=job.kernel_estimated,
        kernel_uncertain=job.kernel_uncertain,
        **job.params,
    )
    meta = {**result.metadata(), "kernel": job.kernel_path, **sidecar_fields(task, request)}
    write_task(task, [result.image], meta)
    message = f"wrote {task.outputs[0]} ({result.method}, {result.runtime_s:.2f} s)"
    return Outcome(task.source, "done", task.files, message)


# -- schedulers ----------------------------------------------------------------------------------


def parse_scheduler(spec: str | None, threads: int = 1) -> tuple[str, int | None] | None:
    """``None``, ``("local", N)`` or ``("address", None)``; raise on a malformed ``local:N``."""
    if spec is None or spec.strip() in ("", "none", "in-process"):
        return None
    spec = spec.strip()
    if spec == "local" or spec.startswith("local:"):
        count = spec.partition(":")[2]
        if count and (not count.isdigit() or int(count) < 1):
            raise InvalidInputError(f"--scheduler {spec}: expected local or local:N with N >= 1")
        cores = os.cpu_count() or 1
        return "local", int(count) if count else max(1, cores // max(1, threads))
    if "://" not in spec and ":" not in spec:
        raise InvalidInputError(
            f"--scheduler {spec}: expected local, local:N or a scheduler address such as "
            "tcp://host:8786"
        )
    return spec, None


@contextlib.contextmanager
def open_client(
    spec: str, *, threads: int = 1, timeout: float = CONNECT_TIMEOUT_S
) -> Iterator[Any]:
    """A ``distributed.Client`` for ``spec`` (``local[:N]`` or an address), closed on exit."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise InvalidInputError(
            "a --scheduler needs the 'distributed' package: "
            "pip install 'napari-selfdeblur[cluster]'"
        ) from None
    parsed = parse_scheduler(spec, threads)
    if parsed is None:
        raise InvalidInputError(f"--scheduler {spec!r} names no cluster: use local[:N] or ADDRESS")
    kind, workers = parsed
    if kind == "local":
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        with cluster, Client(cluster) as client:
            yield client
        return
    try:
        client = Client(kind, timeout=timeout)
    except (OSError, TimeoutError) as exc:
        raise InvalidInputError(
            f"cannot reach the scheduler at {kind} within {timeout:g} s ({type(exc).__name__})"
        ) from None
    with client:
        yield client


def gather(
    client, submitted: dict[Any, Any], on_outcome: Callable[[Outcome], None] | None = None
) -> list[Outcome]:
    """Wait for ``{future: source}``; one outcome per future, in completion order.

    A task that raised (bad input, a worker that died too often) becomes an ``"error"``
    outcome naming its input; the other tasks are not disturbed.
    """
    from distributed import as_completed

    out = []
    for future in as_completed(list(submitted)):
        outcome = _outcome(future, submitted[future])
        out.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)
    return out


def _outcome(future, source) -> Outcome:
    """The outcome of a finished future: its value, or its error as one line."""
    if future.status == "error":
        exc = future.exception()
        text = str(exc) if isinstance(exc, SelfDeblurError) else f"{type(exc).__name__}: {exc}"
        return Outcome(source, "error", message=" ".join(text.split()))
    value = future.result()
    return value if isinstance(value, Outcome) else Outcome(source, "done", value)


def submit_deblur(client, task: Task, job: BlindJob, request: dict[str, Any]):
    """Submit one input: a single task, or for a stack one task per plane and an assembly."""
    shape = image_shape(task.source)
    n = plane_count(shape)
    if n == 1:
        return client.submit(deblur_file, task, job, request, pure=False)
    planes = [client.submit(deblur_plane, task.source, i, job, pure=False) for i in range(n)]
    return client.submit(_assemble, task, request, shape, *planes, pure=False)


def submit_refine(client, task: Task, job: RefineJob, request: dict[str, Any]):
    """Submit one input of a non-blind batch (non-blind methods are fast: one task per file)."""
    return client.submit(refine_file, task, job, request, pure=False)


# -- running a plan --------------------------------------------------------------------------------

#: Output names of a blind and a non-blind batch (``{stem}``: the input's name without suffix).
BLIND_OUTPUTS, BLIND_SIDECAR = ("{stem}_latent.tif", "{stem}_kernel.tif"), "{stem}.json"
REFINE_OUTPUTS, REFINE_SIDECAR = ("{stem}_refined.tif",), "{stem}_refined.json"


def run_tasks(
    tasks: Sequence[Task],
    *,
    local: Callable[[Task], Outcome],
    remote: Callable[[Any, Task], Any],
    client=None,
    on_outcome: Callable[[Outcome], None] | None = None,
) -> list[Outcome]:
    """Run a plan's tasks: ``local(task)`` in this process, or ``remote(client, task)`` (a
    future) on a cluster. Skipped and stale tasks are reported, not run; one outcome per task.
    """
    outcomes: list[Outcome] = []

    def report(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    todo = []
    for t in tasks:
        if t.action == "run":
            todo.append(t)
        else:
            report(Outcome(t.source, t.action, t.files if t.action == "skip" else None, t.reason))
    if client is None:
        for t in todo:
            try:
                report(local(t))
            except SelfDeblurError as exc:
                report(Outcome(t.source, "error", message=str(exc)))
        return outcomes
    submitted = {}
    for t in todo:
        try:
            submitted[remote(client, t)] = t.source
        except SelfDeblurError as exc:  # e.g. a file whose header cannot be read
            report(Outcome(t.source, "error", message=str(exc)))
    gather(client, submitted, report)
    return outcomes


def _is_path(x: Any) -> bool:
    return isinstance(x, str | os.PathLike)


def stream(
    items: Iterable[tuple[Any, tuple]],
    fn: Callable,
    *,
    client=None,
    window: int | None = None,
    should_stop: Callable[[], bool] | None = None,
    on_outcome: Callable[[Outcome], None],
) -> None:
    """``fn(*args)`` for each ``(key, args)`` of ``items``; ``on_outcome`` gets one
    :class:`Outcome` (``source`` = key) per item run, in completion order, and nothing is kept
    here, so a stack's results need not all be in memory at once.

    ``items`` is read lazily: on a cluster at most ``window`` tasks are in flight (default: twice
    the workers), so a lazily loaded stack is read a few planes ahead of the workers, never whole.
    ``should_stop()`` is polled between items (in-process) or while waiting (cluster); once it is
    true no item is started and tasks in flight are cancelled. An item that raises a
    :class:`SelfDeblurError` is an ``"error"`` outcome; the others go on.
    """
    stop = should_stop or (lambda: False)
    if client is None:
        for key, args in items:
            if stop():
                return
            try:
                outcome = Outcome(key, "done", fn(*args))
            except SelfDeblurError as exc:
                outcome = Outcome(key, "error", message=str(exc))
            on_outcome(outcome)
        return
    window = window or 2 * max(1, len(client.scheduler_info().get("workers", {})))
    _stream_remote(client, iter(items), fn, window=window, stop=stop, report=on_outcome)


def _stream_remote(client, items: Iterator, fn: Callable, *, window: int, stop, report) -> None:
    """The cluster side of :func:`stream`: keep ``window`` futures in flight, poll for results."""
    pending: dict[Any, Any] = {}
    exhausted = False
    try:
        while True:
            while not exhausted and len(pending) < window and not stop():
                try:
                    key, args = next(items)
                except StopIteration:
                    exhausted = True
                    break
                pending[client.submit(fn, *args, pure=False)] = key
            if not pending or stop():
                return
            finished = [f for f in pending if f.done()]
            if not finished:
                time.sleep(0.05)
            for future in finished:
                report(_outcome(future, pending.pop(future)))
    finally:
        if pending:
            client.cancel(list(pending))


def _run_arrays(arrays: Sequence, fn: Callable, client, on_outcome) -> list[Outcome]:
    """``fn(array)`` for each array, in this process or on the cluster; outcomes in input order."""
    outcomes: list[Outcome] = []

    def report(outcome: Outcome) -> None:
        outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    items = ((i, (a,)) for i, a in enumerate(arrays))
    stream(items, fn, client=client, window=len(arrays), on_outcome=report)
    return sorted(outcomes, key=lambda o: o.source)


def deblur_array(array: np.ndarray, job: BlindJob, **hooks: Any):
    """Blind deconvolution of one image array with the settings of ``job`` (a cluster task).

    ``hooks``: :func:`~.api.deblur`'s ``callback``, ``callback_every``, ``preview_every`` and
    ``should_stop``, for in-process use.
    """
    from .api import deblur

    _set_threads(job.threads)
    return _labelled(deblur(array, job.kernel_size, **hooks, **job.engine_args()), job)


def deblur_many(
    inputs: Sequence,
    kernel_size: int | str | tuple[int, int],
    *,
    out: str | os.PathLike | None = None,
    client=None,
    overwrite: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
    **options: Any,
) -> list[Outcome]:
    """Blind deconvolution of many images: file paths (results written to ``out``) or arrays.

    ``options`` are the fields of :class:`BlindJob` (``preset``, ``seed``, ``threads``, ...).
    With a ``distributed.Client`` the work runs on its cluster, one task per input (per plane of
    a file stack). File inputs follow the output plan of the CLI: nothing is written over an
    input or a file this tool did not write, and finished inputs are skipped. Returns one
    :class:`Outcome` per input; failed inputs are ``"error"`` outcomes, the others go on.
    """
    from .engine.checks import check_seed

    job = BlindJob(kernel_size, **options)
    check_seed(job.seed, job.restarts)
    if not all(_is_path(x) for x in inputs):
        return _run_arrays(list(inputs), partial(deblur_array, job=job), client, on_outcome)
    request = job.request()
    plan = _plan(inputs, out, BLIND_OUTPUTS, BLIND_SIDECAR, request, overwrite=overwrite)
    return run_tasks(
        plan,
        local=lambda t: deblur_file(t, job, request),
        remote=lambda c, t: submit_deblur(c, t, job, request),
        client=client,
        on_outcome=on_outcome,
    )


def _plan(inputs, out, names, sidecar, request, *, protected=(), overwrite=False) -> list[Task]:
    from .plan import make_plan

    if out is None:
        raise InvalidInputError("file inputs need an output folder (out=...)")
    paths = [Path(p) for p in inputs]
    return make_plan(
        paths, Path(out), names, sidecar, request=request, protected=protected, overwrite=overwrite
    )


def refine_job(
    kernel, method: str | None = None, *, max_pixels: int = MAX_PIXELS, **options: Any
) -> tuple[RefineJob, dict[str, Any]]:
    """A :class:`RefineJob` for ``kernel`` (an array, or a file such as ``<name>_kernel.tif``)
    and its request (what a sidecar records); checks the method's options before any work.
    """
    import hashlib

    from .nonblind import DEFAULT_METHOD, get_method
    from .plan import fingerprint

    method = method or DEFAULT_METHOD
    params = dict(options.pop("params", {}))
    get_method(method).resolve(dict(params))
    if _is_path(kernel):
        path = Path(kernel)
        if not path.is_file():
            raise InvalidInputError(f"cannot read kernel {path}: no such file")
        key: dict[str, Any] = {"path": str(path), **fingerprint(path)}
        array = _kernel_array(read_image(path, max_pixels=max_pixels))
        from_sidecar = blind_kernel_options(kernel_sidecar(path), array.shape)
        for name, value in from_sidecar.items():
            options.setdefault(name, value)
        options["kernel_path"] = str(path)
    else:
        array = np.asarray(kernel, dtype=np.float64)
        key = {"sha256": hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()}
    job = RefineJob(array, method, params, max_pixels=max_pixels, **options)
    return job, {"command": "refine", "method": method, "params": params, "kernel": key}


def _kernel_array(kernel: np.ndarray) -> np.ndarray:
    if kernel.ndim == 3 and kernel.shape[-1] in (3, 4):  # an RGB(A) picture of a kernel
        return kernel[..., :3].astype(np.float64).mean(-1)
    return kernel


def kernel_sidecar(kernel_path: Path) -> dict[str, Any] | None:
    """The sidecar ``<name>.json`` of this tool beside ``<name>_kernel.tif`` (None: there is
    none, it cannot be read, or the file is not named as a kernel output).
    """
    from .plan import read_sidecar

    if not kernel_path.stem.endswith("_kernel"):
        return None
    return read_sidecar(kernel_path.with_name(kernel_path.stem.removesuffix("_kernel") + ".json"))


def refine_array(array: np.ndarray, job: RefineJob, callback=None, should_stop=None):
    """Non-blind deconvolution of one image array with the settings of ``job`` (a cluster task)."""
    from .nonblind.api import refine

    _set_threads(job.threads)
    return refine(
        array,
        job.kernel,
        job.method,
        device=job.device,
        callback=callback,
        should_stop=should_stop,
        kernel_estimated=job.kernel_estimated,
        kernel_uncertain=job.kernel_uncertain,
        **job.params,
    )


def refine_many(
    inputs: Sequence,
    kernel,
    method: str | None = None,
    *,
    out: str | os.PathLike | None = None,
    client=None,
    overwrite: bool = False,
    on_outcome: Callable[[Outcome], None] | None = None,
    **options: Any,
) -> list[Outcome]:
    """Non-blind deconvolution of many images with one ``kernel`` (array or file), as
    :func:`deblur_many`; ``options``: ``params`` (the method's), ``device``, ``threads``, ...
    """
    job, request = refine_job(kernel, method, **options)
    if not all(_is_path(x) for x in inputs):
        return _run_arrays(list(inputs), partial(refine_array, job=job), client, on_outcome)
    protected = (Path(job.kernel_path),) if job.kernel_path else ()
    plan = _plan(
        inputs,
        out,
        REFINE_OUTPUTS,
        REFINE_SIDECAR,
        request,
        protected=protected,
        overwrite=overwrite,
    )
    return run_tasks(
        plan,
        local=lambda t: refine_file(t, job, request),
        remote=lambda c, t: submit_refine(c, t, job, request),
        client=client,
        on_outcome=on_outcome,
    )
