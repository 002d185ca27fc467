"""Non-blind deconvolution of the Levin set with the ground-truth kernels, scored by the protocol.

Every blurry image is deconvolved with its true kernel (normalised to unit sum, orientation checked
by re-blurring the sharp image: ``napari_selfdeblur.evaluation.datasets``) by each method of
``napari_selfdeblur.nonblind`` through the public ``refine()`` call, and scored with the Levin
protocol (``metrics.levin_score``). Rows are written to a CSV as they are computed; a summary table
(mean PSNR / SSIM, mean and slowest runtime per image) is printed at the end.

    python benchmarks/nonblind.py                                   # 4 fast methods, 32 images
    python benchmarks/nonblind.py --methods sparse --strength 0.001 # one fixed strength
    python benchmarks/nonblind.py --methods deep-prior --subset levin-8

``--strength`` overrides the noise-derived default with one value for every image.
Runtime is the wall time of the ``refine()`` call (one 255x255 image, CPU unless ``--device``).
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import platform
import time
from pathlib import Path

import numpy as np

from napari_selfdeblur import __version__
from napari_selfdeblur.evaluation.datasets import SUBSETS, default_levin_root, levin_cases
from napari_selfdeblur.evaluation.metrics import levin_score
from napari_selfdeblur.nonblind import METHODS
from napari_selfdeblur.nonblind.api import refine

FIELDS = [
    "name",
    "method",
    "strength",
    "psnr",
    "ssim",
    "psnr_blurry",
    "runtime_s",
    "device",
    "threads",
    "machine",
    "version",
    "date",
]


def main() -> None:
    import torch

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--methods",
        nargs="+",
        default=["hyper-laplacian", "sparse", "wiener", "richardson-lucy"],
        choices=list(METHODS),
    )
    p.add_argument("--subset", default="all", choices=sorted(SUBSETS))
    p.add_argument("--strength", type=float, default=None)
    p.add_argument("--device", default="cpu")
    p.add_argument("--data", type=Path, default=default_levin_root())
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "nonblind.csv")
    args = p.parse_args()

    cases = list(levin_cases(args.data, args.subset))
    blurry_scores = {c.name: levin_score(c.blurry, c.sharp).psnr for c in cases}
    machine = f"{platform.machine()}, torch {torch.__version__}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    new = not args.out.exists() or args.out.stat().st_size == 0
    rows = []
    with args.out.open("a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        if new:
            writer.writeheader()
        for method in args.methods:
            params = {} if args.strength is None else {"strength": args.strength}
            refine(cases[0].blurry, cases[0].psf, method, device=args.device, **params)  # warm-up
            for case in cases:
                start = time.perf_counter()
                out = refine(case.blurry, case.psf, method, device=args.device, **params)
                runtime = time.perf_counter() - start
                score = levin_score(out.image, case.sharp)
                row = dict(
                    name=case.name,
                    method=method,
                    strength=f"{out.strengths[0] or 0:.3g}",
                    psnr=round(score.psnr, 3),
                    ssim=round(score.ssim, 4),
                    psnr_blurry=round(blurry_scores[case.name], 3),
                    runtime_s=round(runtime, 3),
                    device=out.device,
                    threads=torch.get_num_threads(),
                    machine=machine,
                    version=__version__,
                    date=dt.date.today().isoformat(),
                )
                writer.writerow(row)
                f.flush()
                rows.append(row)
                print(
                    f"{method:>16} {case.name:>12}: {row['psnr']:6.2f} dB "
                    f"(blurry {row['psnr_blurry']:.2f}), {runtime:.2f} s",
                    flush=True,
                )
    print(f"\n{'method':>16} {'images':>6} {'PSNR':>7} {'SSIM':>7} {'mean s':>7} {'max s':>7}")
    for method in args.methods:
        sel = [r for r in rows if r["method"] == method]
        print(
            f"{method:>16} {len(sel):>6} {np.mean([r['psnr'] for r in sel]):7.2f} "
            f"{np.mean([r['ssim'] for r in sel]):7.4f} "
            f"{np.mean([r['runtime_s'] for r in sel]):7.2f} "
            f"{np.max([r['runtime_s'] for r in sel]):7.2f}"
        )
    print(f"blurry input: {np.mean(list(blurry_scores.values())):.2f} dB; rows in {args.out}")


if __name__ == "__main__":
    main()
