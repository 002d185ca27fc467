"""Throughput of stacks: planes fitted one after another versus batched (``deblur_stack``).

Times ``--iterations`` iterations (after ``--warmup`` untimed ones in the same process, so
kernels are compiled and caches warm) of P planes of S x S, with the batch sizes given, and
prints planes x iterations per second and the speed-up over batch size 1. On CUDA the peak
allocation is reported too. Appends rows to ``benchmarks/results/stack.csv``.

    python benchmarks/stack.py --preset paper --planes 8 --size 256 --batch 1 8 --device cuda
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import numpy as np

from _rows import append_rows


def main() -> None:
    import torch

    from napari_selfdeblur import deblur_stack
    from napari_selfdeblur.config import config_from_spec
    from napari_selfdeblur.engine.device import resolve_device
    from napari_selfdeblur.evaluation.sample import blurred_sample

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="demo")
    p.add_argument("--planes", type=int, default=8)
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--kernel-size", type=int, default=17)
    p.add_argument("--batch", type=int, nargs="+", default=[1, 8])
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "stack.csv")
    args = p.parse_args()

    dev = resolve_device(args.device)
    base = blurred_sample((args.size, args.size)).blurry.astype(np.float32)
    stack = np.stack([np.roll(base, 7 * i, axis=1) for i in range(args.planes)])
    cfg = config_from_spec(args.preset)
    rows = []
    for batch in args.batch:
        deblur_stack(
            stack[: min(batch, args.planes)],
            args.kernel_size,
            preset=cfg,
            iterations=args.warmup,
            device=args.device,
            batch_size=batch,
        )
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        start = time.perf_counter()
        deblur_stack(
            stack,
            args.kernel_size,
            preset=cfg,
            iterations=args.iterations,
            device=args.device,
            batch_size=batch,
        )
        if dev.type == "cuda":
            torch.cuda.synchronize(dev)
        seconds = time.perf_counter() - start
        peak = torch.cuda.max_memory_allocated(dev) / 2**20 if dev.type == "cuda" else float("nan")
        rows.append(
            dict(
                date=dt.date.today().isoformat(),
                device=str(dev),
                preset=args.preset,
                planes=args.planes,
                size=args.size,
                kernel_size=args.kernel_size,
                batch=batch,
                iterations=args.iterations,
                seconds=round(seconds, 2),
                plane_its_per_s=round(args.planes * args.iterations / seconds, 3),
                peak_mib=round(peak, 1),
                threads=torch.get_num_threads(),
            )
        )
    ref = rows[0]["plane_its_per_s"]
    print(f"{'batch':>5} {'seconds':>8} {'plane-it/s':>10} {'speed-up':>8} {'peak MiB':>9}")
    for r in rows:
        r["speedup"] = round(r["plane_its_per_s"] / ref, 2)
        print(
            f"{r['batch']:5d} {r['seconds']:8.2f} {r['plane_its_per_s']:10.3f} "
            f"{r['speedup']:8.2f} {r['peak_mib']:9.1f}"
        )
    append_rows(args.out, rows)


if __name__ == "__main__":
    main()
