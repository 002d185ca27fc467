"""Compare candidate fast configurations on blurred photographs that are not the benchmark.

The design data of the "fast" preset: scikit-image photographs (``camera``, ``astronaut``,
``coffee``; grey 192x192 crops, the same problems as ``calibrate_nonblind.py``) blurred with a
random 19x19 camera-shake kernel ('valid' convolution) plus white noise of sigma 0.01, about the
Levin set's level. Each candidate is a config spec (see ``config.config_from_spec``; with
``@N`` appended it runs N iterations, its schedule scaled) run with the true kernel size and
scored with the Levin protocol (15-px crop, sub-pixel shift search). Rows are appended to the
CSV as they finish, and a finished (problem, spec, seed) is skipped
on a rerun. The Levin set is not used here: ``levin.py`` measures the chosen preset on it.

    python benchmarks/fast_design.py --specs demo "demo:coarse_levels=1,init_iterations=200"
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

FIELDS = [
    "problem",
    "spec",
    "seed",
    "psnr",
    "ssim",
    "kernel_similarity",
    "psnr_blurry",
    "runtime_s",
    "threads",
    "date",
]


def main() -> None:
    import torch

    from calibrate_nonblind import problems
    from napari_selfdeblur import deblur
    from napari_selfdeblur.config import config_from_spec
    from napari_selfdeblur.evaluation.metrics import kernel_similarity, levin_score

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--specs", nargs="+", default=["demo"])
    p.add_argument("--problems", nargs="+", default=["camera", "astronaut", "coffee"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument(
        "--out", type=Path, default=Path(__file__).parent / "results" / "fast_design.csv"
    )
    args = p.parse_args()
    done = set()
    if args.out.exists() and args.out.stat().st_size:
        with args.out.open() as f:
            done = {(r["problem"], r["spec"], int(r["seed"])) for r in csv.DictReader(f)}
    else:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        with args.out.open("w", newline="") as f:
            csv.DictWriter(f, fieldnames=FIELDS).writeheader()
    cases = [c for c in problems([0.01], seeds=(0,)) if c[0].split("/")[0] in args.problems]
    for name, _, y, k, sharp in cases:
        problem = name.split("/")[0]
        base = levin_score(np.clip(y, 0, 1), sharp).psnr
        for spec in args.specs:
            for seed in args.seeds:
                if (problem, spec, seed) in done:
                    continue
                start = time.perf_counter()
                name, _, length = spec.partition("@")  # "demo@1500": 1500 it., schedule scaled
                r = deblur(
                    y.astype(np.float32),
                    k.shape,
                    preset=config_from_spec(name),
                    iterations=int(length) if length else None,
                    seed=seed,
                    device="cpu",
                )
                runtime = time.perf_counter() - start
                score = levin_score(r.latent, sharp)
                row = dict(
                    problem=problem,
                    spec=spec,
                    seed=seed,
                    psnr=round(score.psnr, 3),
                    ssim=round(score.ssim, 4),
                    kernel_similarity=round(kernel_similarity(r.kernel, k), 3),
                    psnr_blurry=round(base, 3),
                    runtime_s=round(runtime, 1),
                    threads=torch.get_num_threads(),
                    date=dt.date.today().isoformat(),
                )
                with args.out.open("a", newline="") as f:
                    csv.DictWriter(f, fieldnames=FIELDS).writerow(row)
                print(
                    f"{problem:>10} {spec:<50} seed {seed}: {row['psnr']:6.2f} dB "
                    f"(blurry {base:5.2f}), kernel {row['kernel_similarity']:.3f}, "
                    f"{runtime:6.1f} s",
                    flush=True,
                )
    with args.out.open() as f:
        rows = list(csv.DictReader(f))
    print(f"\n{'spec':<50} {'runs':>4} {'PSNR':>7} {'kernel':>7} {'s/run':>7}")
    for spec in dict.fromkeys(r["spec"] for r in rows):
        sel = [r for r in rows if r["spec"] == spec]
        print(
            f"{spec:<50} {len(sel):4d} {np.mean([float(r['psnr']) for r in sel]):7.2f} "
            f"{np.mean([float(r['kernel_similarity']) for r in sel]):7.3f} "
            f"{np.mean([float(r['runtime_s']) for r in sel]):7.1f}"
        )


if __name__ == "__main__":
    main()
