"""Command-line interface: ``selfdeblur deblur``, ``selfdeblur refine``, ``selfdeblur demo``.

Outputs go to ``--out`` as ``<name>_latent.tif`` (the input's dtype and range),
``<name>_kernel.tif``
(float32 PSF, unit sum; a stack of kernels for a stack input) and ``<name>.json`` (parameters,
noise level, final loss, runtime, version). Every file is written atomically; a batch can be
re-run and skips inputs whose outputs exist unless ``--overwrite`` is given.

``refine`` deconvolves with a known kernel (e.g. a ``_kernel.tif`` written by ``deblur``) and writes
``<name>_refined.tif`` and ``<name>_refined.json``; its method options are generated from the
method descriptions in :mod:`napari_selfdeblur.nonblind`.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .config import DEFAULT_PRESET, DEVICE_CHOICES, PRESETS, offered_presets
from .errors import SelfDeblurError
from .fileio import MAX_PIXELS
from .provenance import package_version


def _add_run_options(p: argparse.ArgumentParser, preset: str) -> None:
    offered = offered_presets()
    retired = [n for n in PRESETS if n not in offered]
    p.add_argument(
        "--preset",
        default=preset,
        choices=list(PRESETS),  # retired ones still run, to reproduce earlier results
        help="; ".join(f"{n}: {PRESETS[n].help}" for n in offered)
        + f" (default {preset})"
        + (f"; retired, still accepted: {', '.join(retired)}" if retired else ""),
    )
    p.add_argument("--iterations", type=int, default=None, help="override the preset's length")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--init",
        choices=["random", "noblur", "map"],
        default=None,
        help="initialisation (default: the preset's); noblur starts from the input "
        "and a small centred kernel",
    )
    p.add_argument(
        "--restarts",
        type=int,
        default=1,
        help="probe this many seeds (seed, seed+1, ...) and continue the best fit",
    )
    p.add_argument(
        "--restart-iterations",
        type=int,
        default=None,
        help="length of each probe in full-size iterations, after any coarse "
        "levels (default: a tenth of them)",
    )
    p.add_argument(
        "--device", default="auto", help=f"{', '.join(DEVICE_CHOICES)} or cuda:N (default auto)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _add_file_options(p: argparse.ArgumentParser) -> None:
    """Options shared by the commands that read files and write results into a folder."""
    p.add_argument("-o", "--out", type=Path, default=Path("."), help="output folder")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace earlier or stale outputs and files this tool did not write (never inputs)",
    )
    p.add_argument(
        "--max-pixels",
        type=int,
        default=MAX_PIXELS,
        help=f"refuse files that decode to more pixels than this (default {MAX_PIXELS})",
    )
    p.add_argument(
        "--scheduler",
        default=None,
        metavar="local[:N]|ADDRESS",
        help="run the inputs as tasks on a Dask cluster: local[:N] starts N worker processes "
        "here (default: cores / threads), ADDRESS (tcp://host:8786) connects to a running "
        "scheduler; default: in this process",
    )
    p.add_argument(
        "--threads-per-worker",
        type=int,
        default=None,
        metavar="T",
        help="torch threads per task (default: torch's own in-process, 1 on a cluster)",
    )
    p.add_argument(
        "--scheduler-timeout",
        type=float,
        default=10.0,
        metavar="S",
        help="seconds to wait for a scheduler address to answer (default 10)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``selfdeblur`` and its subcommands."""
    parser = argparse.ArgumentParser(
        prog="selfdeblur", description="Zero-shot blind deconvolution (SelfDeblur)."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {package_version()}")
    sub = parser.add_subparsers(dest="command", required=True)

    d = sub.add_parser("deblur", help="estimate the kernel and the sharp image of each input")
    d.add_argument("inputs", nargs="+", type=Path, help="PNG, JPEG or TIFF files (TIFF stacks ok)")
    d.add_argument(
        "-k",
        "--kernel-size",
        required=True,
        help="odd kernel size: 31 or 31x25 (height x width), or auto (found by the MAP estimator)",
    )
    _add_file_options(d)
    d.add_argument(
        "--batch",
        type=int,
        default=None,
        help="planes fitted at once (default: 8 on CUDA, 1 elsewhere)",
    )
    _add_run_options(d, DEFAULT_PRESET)

    r = sub.add_parser(
        "refine",
        help="non-blind deconvolution with a known kernel",
        description="Deconvolve images or stacks with a known PSF. Methods: "
        + "; ".join(f"{m.name}: {m.help}" for m in _methods().values()),
    )
    r.add_argument("inputs", nargs="+", type=Path, help="PNG, JPEG or TIFF files (TIFF stacks ok)")
    r.add_argument(
        "-K",
        "--kernel",
        type=Path,
        required=True,
        help="PSF file (TIFF/PNG); a stack of kernels gives one per plane",
    )
    r.add_argument("-m", "--method", default=_default_method(), choices=list(_methods()))
    _add_file_options(r)
    r.add_argument("--device", default="cpu", help="cpu (default), auto, cuda[:N] or mps")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    _add_method_options(r)

    _add_analyze(sub)

    m = sub.add_parser("demo", help="deblur the built-in sample and report PSNR against the truth")
    m.add_argument("-o", "--out", type=Path, default=Path("selfdeblur-demo"), help="output folder")
    m.add_argument("--size", type=int, default=128, help="sample side in pixels (default 128)")
    _add_run_options(m, DEFAULT_PRESET)
    return parser


def _add_analyze(sub) -> None:
    """The ``analyze`` subcommand: spectra, landscapes and seed studies."""
    a = sub.add_parser("analyze", help="spectra, loss landscape or seed study (plots and CSV)")
    a.add_argument(
        "study",
        choices=["spectral", "landscape", "seeds"],
        help="spectral: power spectra and band errors over iterations; landscape: "
        "loss between the no-blur start and a converged run (line and Bezier); "
        "seeds: PSNR over seeds for each initialisation (needs --truth)",
    )
    a.add_argument("input", type=Path, help="a 2-D grey image")
    a.add_argument("-k", "--kernel-size", required=True, help="odd kernel size: 31 or 31x25")
    a.add_argument("--truth", type=Path, default=None, help="the sharp image, if known")
    a.add_argument(
        "--snapshots",
        type=int,
        nargs="+",
        default=None,
        help="spectral: iterations to record (default: 5 spread over the run)",
    )
    a.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="seeds: seeds")
    a.add_argument(
        "--inits",
        nargs="+",
        default=["random", "noblur"],
        choices=["random", "noblur"],
        help="seeds: initialisations",
    )
    a.add_argument("--fit-steps", type=int, default=200, help="landscape: Bezier fitting steps")
    a.add_argument("-o", "--out", type=Path, default=Path("analysis"), help="output folder")
    _add_run_options(a, "demo")


def _methods():
    from .nonblind import METHODS

    return METHODS


def _default_method() -> str:
    from .nonblind import DEFAULT_METHOD

    return DEFAULT_METHOD


def _add_method_options(p: argparse.ArgumentParser) -> None:
    """One option per parameter name across all methods; defaults come from the method."""
    from .nonblind import shared_params

    kinds = {name: p.kind for name, p in shared_params().items()}  # one type per name
    seen: dict[str, list[str]] = {}
    for method in _methods().values():
        for param in method.params:
            default = "from the noise level" if param.default is None else param.default
            seen.setdefault(param.name, []).append(f"{method.name}: {default}")
    for name, defaults in seen.items():
        p.add_argument(
            f"--{name.replace('_', '-')}",
            dest=f"param_{name}",
            type=kinds[name],
            default=None,
            help=f"method parameter (default {'; '.join(defaults)})",
        )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); the exit status."""
    args = build_parser().parse_args(argv)
    _exit_cleanly_on_sigterm()
    try:
        with warnings.catch_warnings():  # restores the caller's warning display on the way out
            warnings.showwarning = _one_line_warning
            return _dispatch(args)
    except SelfDeblurError as exc:
        print(f"selfdeblur: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("selfdeblur: interrupted; finished outputs are kept", file=sys.stderr)
        return 130


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "deblur":
        return _cmd_deblur(args)
    if args.command == "refine":
        return _cmd_refine(args)
    if args.command == "analyze":
        return _cmd_analyze(args)
    return _cmd_demo(args)


def _one_line_warning(message, category, filename, lineno, file=None, line=None) -> None:
    """Print a Python warning (a retired preset, a library's notice) as one line on stderr."""
    print(f"selfdeblur: warning: {message}", file=sys.stderr)


def _exit_cleanly_on_sigterm() -> None:
    """Turn SIGTERM (a scheduler's or ``kill``'s default) into SystemExit, so that pending
    temporary files are removed on the way out (SIGKILL cannot be caught: the next run sweeps
    what it leaves behind).
    """
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))


class _Bar:
    """tqdm progress bar fed by the engine's callback; restarts for each plane (or batch)."""

    def __init__(self, desc: str, quiet: bool, planes: int = 1):
        from tqdm import tqdm

        self.desc, self.planes, self.current = desc, planes, None
        self.bar = tqdm(desc=desc, unit="it", disable=quiet, leave=False)

    def __call__(self, p) -> None:
        if p.planes != self.current:
            self.current = p.planes
            self.bar.reset(total=p.total)
            if self.planes > 1 and p.planes:
                span = f"{p.planes[0] + 1}" + (f"-{p.planes[-1] + 1}" if len(p.planes) > 1 else "")
                self.bar.set_description(f"{self.desc} [{span}/{self.planes}]")
        if p.total != self.bar.total:  # coarse-to-fine runs count their coarse levels too
            self.bar.total = p.total
        self.bar.update(p.iteration - self.bar.n)
        self.bar.set_postfix(loss=f"{p.loss:.4g}", refresh=False)

    def close(self) -> None:
        self.bar.close()


def _blind_job(args):
    """The :class:`~.batch.BlindJob` of ``deblur`` or ``demo`` arguments."""
    from .batch import BlindJob

    return BlindJob(
        args.kernel_size,
        preset=args.preset,
        iterations=args.iterations,
        init=args.init,
        seed=args.seed,
        device=args.device,
        restarts=args.restarts,
        restart_iterations=args.restart_iterations,
        batch_size=getattr(args, "batch", None),
        threads=getattr(args, "threads_per_worker", None),
        max_pixels=getattr(args, "max_pixels", MAX_PIXELS),
    )


def _cmd_deblur(args) -> int:
    from .batch import BLIND_OUTPUTS, BLIND_SIDECAR, deblur_file, submit_deblur
    from .engine.checks import check_seed
    from .engine.map_kernel import is_auto
    from .engine.physics import parse_kernel_size
    from .plan import make_plan

    if not is_auto(args.kernel_size):
        parse_kernel_size(args.kernel_size)  # fail before any work on a bad size
    check_seed(args.seed, args.restarts)
    job = _blind_job(args)
    request = job.request()
    plan = make_plan(
        args.inputs,
        args.out,
        BLIND_OUTPUTS,
        BLIND_SIDECAR,
        request=request,
        overwrite=args.overwrite,
    )

    def local(task):
        bar = _Bar(task.source.name, args.quiet, _planes_in(task.source))
        try:
            return deblur_file(task, job, request, callback=bar)
        finally:
            bar.close()

    return _run_plan(plan, args, local, lambda c, t: submit_deblur(c, t, job, request))


def _planes_in(path: Path) -> int:
    from .fileio import image_shape
    from .imaging.layout import plane_count

    try:
        return plane_count(image_shape(path))
    except SelfDeblurError:
        return 1  # the read reports the problem


def _run_plan(plan, args, local, remote) -> int:
    """Run a checked plan in this process or on ``--scheduler``; print each outcome; the exit
    status (1 if any input failed or is stale).
    """
    from .batch import open_client, parse_scheduler, run_tasks

    threads = args.threads_per_worker or 1
    spec = parse_scheduler(args.scheduler, threads)
    todo = sum(t.action == "run" for t in plan)
    if spec is None or todo == 0:
        outcomes = run_tasks(plan, local=local, remote=remote, on_outcome=_print_outcome)
    else:
        from tqdm import tqdm

        with open_client(args.scheduler, threads=threads, timeout=args.scheduler_timeout) as c:
            bar = tqdm(total=todo, desc="inputs", unit="input", disable=args.quiet)

            def report(outcome) -> None:
                bar.update(outcome.status in ("done", "error"))
                _print_outcome(outcome)

            try:
                outcomes = run_tasks(plan, local=local, remote=remote, client=c, on_outcome=report)
            finally:
                bar.close()
    return 1 if any(o.status in ("error", "stale") for o in outcomes) else 0


def _print_outcome(outcome) -> None:
    if outcome.status == "done":
        print(f"{outcome.source}: {outcome.message}")
        for message in outcome.warnings:
            print(f"selfdeblur: warning: {message}", file=sys.stderr)
    elif outcome.status == "error":
        print(f"selfdeblur: error: {outcome.source}: {outcome.message}", file=sys.stderr)
    elif outcome.status == "stale":
        print(
            f"{outcome.source}: {outcome.message}; use --overwrite to replace them", file=sys.stderr
        )
    else:
        print(f"{outcome.source}: {outcome.message}, skipped")


def _cmd_refine(args) -> int:
    from .batch import REFINE_OUTPUTS, REFINE_SIDECAR, refine_file, refine_job, submit_refine
    from .plan import make_plan

    params = {
        k.removeprefix("param_"): v
        for k, v in vars(args).items()
        if k.startswith("param_") and v is not None
    }
    job, request = refine_job(
        args.kernel,
        args.method,
        params=params,
        device=args.device,
        threads=args.threads_per_worker,
        max_pixels=args.max_pixels,
    )
    plan = make_plan(
        args.inputs,
        args.out,
        REFINE_OUTPUTS,
        REFINE_SIDECAR,
        request=request,
        protected=(args.kernel,),
        overwrite=args.overwrite,
    )

    def local(task):
        from tqdm import tqdm

        bar = tqdm(desc=task.source.name, unit="plane", disable=args.quiet, leave=False)

        def progress(p) -> None:
            bar.total = p.planes_total
            bar.update(p.planes_done - bar.n)

        try:
            return refine_file(task, job, request, callback=progress)
        finally:
            bar.close()

    return _run_plan(plan, args, local, lambda c, t: submit_refine(c, t, job, request))


def _analyze_inputs(args):
    """Read and check everything ``analyze`` needs before any work: (image, truth, kshape, cfg)."""
    from .engine.checks import check_seed, resolve_config
    from .engine.physics import parse_kernel_size
    from .fileio import read_image
    from .imaging.image import check_image

    image = check_image(read_image(args.input), allow_color=False, name=str(args.input))
    truth = None
    if args.truth is not None:
        truth = check_image(read_image(args.truth), allow_color=False, name="--truth")
        if truth.shape != image.shape:
            raise SelfDeblurError(f"--truth has shape {truth.shape}, the input {image.shape}")
    if args.snapshots is not None and min(args.snapshots) < 1:
        raise SelfDeblurError("--snapshots must be iterations of 1 or more")
    for seed in [args.seed, *args.seeds]:
        check_seed(seed)
    kshape = parse_kernel_size(args.kernel_size)
    cfg = resolve_config(args.preset, args.iterations)
    if args.init is not None:
        cfg = cfg.replace(init=args.init)
    return image, truth, kshape, cfg


def _cmd_analyze(args) -> int:
    from .evaluation import analysis
    from .imaging.image import Intensity

    image, truth, kshape, cfg = _analyze_inputs(args)
    if args.study == "spectral":
        snaps = args.snapshots or sorted(
            {max(1, round(cfg.iterations * f)) for f in (0.05, 0.2, 0.4, 0.7, 1.0)}
        )
        study = analysis.spectral_study(
            image,
            kshape,
            snapshots=snaps,
            truth=truth,
            preset=cfg,
            seed=args.seed,
            device=args.device,
        )
        paths = analysis.write_spectral(study, args.out)
    elif args.study == "landscape":
        from .engine.device import resolve_device
        from .engine.solver import fit
        from .imaging.noise import estimate_noise_sigma

        unit = Intensity.of(image).to_unit(image)
        dev = resolve_device(args.device)
        sigma = estimate_noise_sigma(unit)
        start = fit(
            unit,
            kshape,
            cfg.replace(init="noblur"),
            device=dev,
            seed=args.seed,
            noise_sigma=sigma,
            stop_at=0,
            keep_state=True,
        )
        print(f"no-blur start fitted; running {cfg.iterations} iterations (seed {args.seed})")
        end = fit(unit, kshape, cfg, device=dev, seed=args.seed, noise_sigma=sigma, keep_state=True)
        land = analysis.loss_landscape(
            unit,
            kshape,
            cfg,
            start.state,
            end.state,
            seed=args.seed,
            device=str(dev),
            fit_steps=args.fit_steps,
        )
        paths = analysis.write_landscape(land, args.out, labels=("no-blur start", "converged"))
        print(f"mean loss: straight line {land.line_mean:.4g}, Bezier curve {land.curve_mean:.4g}")
    else:
        if truth is None:
            raise SelfDeblurError("the seed study needs --truth (the sharp image)")
        rows = analysis.seed_study(
            image, truth, kshape, seeds=args.seeds, inits=args.inits, preset=cfg, device=args.device
        )
        paths = analysis.write_seed_study(rows, args.out)
        for init, st in analysis.summarise_seeds(rows).items():
            print(
                f"{init:>7}: mean {st['mean']:.2f} dB, std {st['std']:.2f}, worst "
                f"{st['worst']:.2f}, flagged {st['flagged']} of {st['runs']}"
            )
    print("wrote " + ", ".join(str(p) for p in paths))
    return 0


def _cmd_demo(args) -> int:
    from .evaluation.metrics import kernel_similarity, psnr
    from .evaluation.sample import blurred_sample
    from .plan import Task, check_writable, claim, write_task

    names = ("sharp", "blurry", "latent", "kernel", "true_kernel")
    task = Task(
        Path("demo"),
        tuple(args.out / f"demo_{name}.tif" for name in names),
        args.out / "demo.json",
        "run",
    )
    check_writable(args.out)
    claim(task.files, task.sidecar)  # never replace a file the user wrote
    sample = blurred_sample((args.size, args.size))
    args.kernel_size = sample.kernel.shape[0] + 2
    print(
        f"demo: {args.size}x{args.size} sample blurred by the bundled "
        f"{sample.kernel.shape[0]}x{sample.kernel.shape[1]} camera-shake kernel; "
        f"preset {args.preset!r}, kernel size {args.kernel_size}"
    )
    from .api import deblur

    bar = _Bar("demo", args.quiet)
    try:
        job = _blind_job(args)
        result = deblur(
            sample.blurry.astype(np.float32), job.kernel_size, callback=bar, **job.engine_args()
        )
    finally:
        bar.close()
    p_blur, p_lat = psnr(sample.blurry, sample.sharp), psnr(result.latent, sample.sharp)
    sim = kernel_similarity(result.kernel, sample.kernel)
    arrays = [sample.sharp, sample.blurry, result.latent, result.kernel, sample.kernel]
    meta = result.metadata()
    meta.update(
        psnr_blurry=p_blur,
        psnr_latent=p_lat,
        kernel_similarity=sim,
        outputs=[f.name for f in task.outputs],
    )
    write_task(task, [np.asarray(a, np.float32) for a in arrays], meta)
    print(f"PSNR blurry vs sharp: {p_blur:6.2f} dB")
    print(f"PSNR latent vs sharp: {p_lat:6.2f} dB  ({p_lat - p_blur:+.2f} dB)")
    print(f"kernel similarity to the truth: {sim:.3f} (1 = identical up to a shift)")
    for message in result.warnings:
        print(f"selfdeblur: warning: {message}", file=sys.stderr)
    print(f"runtime {result.runtime_s:.1f} s on {result.device}; outputs in {args.out.resolve()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
