"""Seconds per SelfDeblur iteration and peak memory for presets, image and kernel sizes.

Each row times ``--iterations`` iterations after ``--warmup`` untimed ones, on a Levin image
(cropped or tiled to the size asked for) or on the built-in sample without the Levin data. Every
row runs in a fresh child process, so its peak memory is its own: the peak resident set size on
the CPU, torch's peak allocation on CUDA. Configurations (presets) are compared in the same run:
the ``ratio`` column is each row's time over the first preset's at the same sizes. Prints a table
and appends the rows to a CSV (default ``benchmarks/results/speed.csv``).

    python benchmarks/speed.py --preset paper demo --sizes 128 256 512 1024 \
        --kernel-sizes 15 31 75 --iterations 3 --warmup 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import time
from pathlib import Path

import numpy as np

from _rows import append_rows
from napari_selfdeblur import __version__, deblur
from napari_selfdeblur.config import config_from_spec
from napari_selfdeblur.engine.device import resolve_device

LEVIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "levin"


def test_image(size: int) -> tuple[np.ndarray, str]:
    path = LEVIN / "im1_kernel1_img.png"
    if path.exists():
        from napari_selfdeblur.fileio import read_image

        img = read_image(path).astype(np.float32) / 255
        source = path.name
    else:
        from napari_selfdeblur.evaluation.sample import blurred_sample

        img, source = blurred_sample((255, 255)).blurry.astype(np.float32), "built-in sample"
    reps = -(-size // img.shape[0])
    return np.tile(img, (reps, reps))[:size, :size], source


def time_run(image, kernel_size, preset, iterations, warmup, device) -> tuple[float, float]:
    """Seconds per iteration and peak memory in MiB (GPU allocation on CUDA, else the RSS)."""
    import resource

    import torch

    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    stamps: list[float] = []

    def tick(progress) -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        stamps.append(time.perf_counter())

    deblur(
        image,
        kernel_size,
        preset=config_from_spec(preset),
        iterations=warmup + iterations,
        device=device,
        callback=tick,
        callback_every=1,
    )
    per_it = (stamps[-1] - stamps[warmup - 1]) / iterations
    if dev.type == "cuda":
        peak = torch.cuda.max_memory_allocated(dev) / 2**20
    else:  # ru_maxrss is in KiB on Linux; the child process ran only this row
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return per_it, peak


def run_isolated(size, kernel_size, preset, iterations, warmup, device) -> tuple[float, float]:
    """:func:`time_run` in a fresh Python process (so the memory peak belongs to this row)."""
    import json
    import subprocess
    import sys

    here = str(Path(__file__).parent)
    code = (
        f"import json, sys; sys.path.insert(0, {here!r}); import speed; "
        f"img, _ = speed.test_image({size}); "
        f"print(json.dumps(speed.time_run(img, {kernel_size}, {preset!r}, {iterations}, "
        f"{warmup}, {device!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    per_it, peak = json.loads(out.stdout.strip().splitlines()[-1])
    return per_it, peak


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", nargs="+", default=["paper"])
    p.add_argument("--sizes", type=int, nargs="+", default=[255])
    p.add_argument("--kernel-sizes", type=int, nargs="+", default=[17])
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "speed.csv")
    args = p.parse_args()

    import torch

    machine = f"{platform.machine()} {os.cpu_count()} cores, torch {torch.__version__}"
    device = str(resolve_device(args.device))
    if device.startswith("cuda"):
        machine += f", {torch.cuda.get_device_name(0)}"
    rows = []
    first: dict[tuple[int, int], float] = {}
    mem = "peak GPU MiB" if device.startswith("cuda") else "peak RSS MiB"
    print(
        f"{'configuration':<38} {'size':>6} {'kernel':>6} {'s/iter':>8} {'ratio':>6} {mem:>13}"
        f"  ({machine}, {torch.get_num_threads()} threads)"
    )
    for size in args.sizes:
        source = test_image(size)[1]
        for ks in args.kernel_sizes:
            for preset in args.preset:
                try:
                    per_it, peak = run_isolated(
                        size, ks, preset, args.iterations, args.warmup, args.device
                    )
                except Exception as exc:  # e.g. out of memory: record it and go on
                    print(f"{preset:<38} {size:>6} {ks:>6} failed: {exc}", flush=True)
                    continue
                ratio = per_it / first.setdefault((size, ks), per_it)
                print(
                    f"{preset:<38} {size:>6} {ks:>6} {per_it:8.3f} {ratio:6.3f} {peak:13.0f}",
                    flush=True,
                )
                rows.append(
                    dict(
                        date=dt.date.today().isoformat(),
                        version=__version__,
                        preset=preset,
                        size=size,
                        kernel_size=ks,
                        seconds_per_iteration=round(per_it, 4),
                        ratio_to_first=round(ratio, 4),
                        peak_mib=round(peak, 1),
                        memory=mem,
                        device=device,
                        machine=machine,
                        threads=torch.get_num_threads(),
                        iterations=args.iterations,
                        image=source,
                    )
                )
    if not rows:
        return
    append_rows(args.out, rows)
    print(f"appended {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
