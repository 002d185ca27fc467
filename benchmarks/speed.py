"""Seconds per SelfDeblur iteration for presets, image sizes and kernel sizes on one device.

Each row times ``--iterations`` iterations after ``--warmup`` untimed ones, on a Levin image
(cropped or tiled to the size asked for) or on the built-in sample without the Levin data.
Prints a table and appends the rows to a CSV (default ``benchmarks/results/speed.csv``).

    python benchmarks/speed.py --preset paper --sizes 255 --kernel-sizes 17 --iterations 20
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import time
from pathlib import Path

import numpy as np

from napari_selfdeblur import __version__, deblur
from napari_selfdeblur.device import resolve_device

LEVIN = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "levin"


def test_image(size: int) -> tuple[np.ndarray, str]:
    path = LEVIN / "im1_kernel1_img.png"
    if path.exists():
        from napari_selfdeblur.fileio import read_image

        img = read_image(path).astype(np.float32) / 255
        source = path.name
    else:
        from napari_selfdeblur.sample import blurred_sample

        img, source = blurred_sample((255, 255)).blurry.astype(np.float32), "built-in sample"
    reps = -(-size // img.shape[0])
    return np.tile(img, (reps, reps))[:size, :size], source


def time_run(image, kernel_size, preset, iterations, warmup, device) -> tuple[float, float]:
    import torch

    dev = resolve_device(device)
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    stamps: list[float] = []

    def tick(progress) -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        stamps.append(time.perf_counter())

    deblur(image, kernel_size, preset=preset, iterations=warmup + iterations, device=device,
           callback=tick, callback_every=1)  # fmt: skip
    per_it = (stamps[-1] - stamps[warmup - 1]) / iterations
    peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else float("nan")
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
    print(f"{'preset':>8} {'size':>6} {'kernel':>6} {'s/iter':>8} {'peak MiB':>9}  ({machine})")
    for preset in args.preset:
        for size in args.sizes:
            image, source = test_image(size)
            for ks in args.kernel_sizes:
                per_it, peak = time_run(
                    image, ks, preset, args.iterations, args.warmup, args.device
                )
                print(f"{preset:>8} {size:>6} {ks:>6} {per_it:8.3f} {peak:9.0f}", flush=True)
                rows.append(dict(
                    date=dt.date.today().isoformat(), version=__version__, preset=preset,
                    size=size, kernel_size=ks, seconds_per_iteration=round(per_it, 4),
                    peak_gpu_mib=round(peak, 1), device=device, machine=machine,
                    iterations=args.iterations, image=source,
                ))  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not args.out.exists()
    with args.out.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        if new:
            writer.writeheader()
        writer.writerows(rows)
    print(f"appended {len(rows)} rows to {args.out}")


if __name__ == "__main__":
    main()
