"""Batch throughput in this process versus a Dask ``LocalCluster`` (``deblur_many``).

Writes N blurred copies of the built-in sample (S x S, different seeds) as TIFFs, then deblurs
them with ``--preset`` three ways: in this process with 1 torch thread, in this process with all
cores' threads, and on ``local:W`` (W single-threaded worker processes). Prints images per
minute and the scheduler's overhead per task: the cluster's wall time minus the compute time
the sidecars record, divided by the number of tasks and multiplied by the number of workers.
The cluster's start-up is timed apart. Appends rows to ``benchmarks/results/cluster.csv``.

    python benchmarks/cluster.py --images 8 --size 128 --preset quick --workers 2
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from _rows import append_rows


def _write_inputs(folder: Path, count: int, size: int) -> list[Path]:
    from napari_selfdeblur.evaluation.sample import blurred_sample

    paths = []
    for i in range(count):
        paths.append(folder / f"img{i:03d}.tif")
        tifffile.imwrite(paths[-1], blurred_sample((size, size), seed=i).blurry.astype(np.float32))
    return paths


def _compute_s(folder: Path) -> float:
    return sum(json.loads(p.read_text())["runtime_s"] for p in folder.glob("*.json"))


def _timed(paths, out: Path, args, *, threads: int, client=None) -> dict:
    from napari_selfdeblur import deblur_many

    start = time.perf_counter()
    outcomes = deblur_many(
        paths, args.kernel_size, out=out, preset=args.preset, threads=threads, client=client
    )
    wall = time.perf_counter() - start
    assert all(o.status == "done" for o in outcomes), [o.message for o in outcomes]
    return {"wall_s": round(wall, 2), "compute_s": round(_compute_s(out), 2)}


def main() -> None:
    import torch
    from distributed import Client, LocalCluster

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=8)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--kernel-size", type=int, default=15)
    p.add_argument("--preset", default="quick")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cluster.csv")
    args = p.parse_args()
    cores = os.cpu_count() or 1
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        paths = _write_inputs(Path(tmp), args.images, args.size)
        for label, threads in (
            ("in-process, 1 thread", 1),
            (f"in-process, {cores} threads", cores),
        ):
            r = _timed(paths, Path(tmp) / f"out{threads}", args, threads=threads)
            rows.append({"mode": label, **r, "overhead_per_task_s": ""})
        torch.set_num_threads(cores)
        start = time.perf_counter()
        cluster = LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
        )
        with cluster, Client(cluster) as client:
            startup = time.perf_counter() - start
            r = _timed(paths, Path(tmp) / "cluster", args, threads=1, client=client)
        overhead = (r["wall_s"] * args.workers - r["compute_s"]) / args.images
        rows.append(
            {
                "mode": f"local:{args.workers}, 1 thread each (start-up {startup:.1f} s apart)",
                **r,
                "overhead_per_task_s": round(overhead, 3),
            }
        )
    stamp = {
        "date": dt.date.today().isoformat(),
        "machine": f"{platform.machine()} {cores} cores",
        "preset": args.preset,
        "images": args.images,
        "size": args.size,
    }
    for row in rows:
        row["images_per_min"] = round(60 * args.images / row["wall_s"], 1)
        print(
            f"{row['mode']:<55} {row['wall_s']:7.1f} s  {row['images_per_min']:6.1f} img/min"
            f"  overhead/task {row['overhead_per_task_s']}"
        )
    append_rows(args.out, [{**stamp, **row} for row in rows])


if __name__ == "__main__":
    main()
