"""What a preset change costs in seconds: configurations timed side by side in one process.

A full ``levin.py`` run times every image once, and on this 2-core machine one image took 5.1 s
in one run and 13.8 s in the next, with only a one-second round added, so two runs cannot show
a one-second difference. Here
every configuration (``--preset``, fields may be changed: ``quick:polish_rounds=3``) runs on the
same Levin images in turn, after one untimed warm-up run, ``--repeats`` times, interleaved so that
a slow spell of the machine hits all of them alike. Prints the median seconds of each
configuration on each image and their mean over the images; no quality is measured.

    OMP_NUM_THREADS=2 python benchmarks/preset_seconds.py --preset quick:polish_rounds=3 quick \
        --images im1_kernel1 im2_kernel4 im3_kernel5 im4_kernel8 --repeats 3
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    from napari_selfdeblur import deblur
    from napari_selfdeblur.config import config_from_spec
    from napari_selfdeblur.evaluation.datasets import SUBSETS, default_levin_root, levin_cases

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", nargs="+", required=True)
    p.add_argument("--images", nargs="+", default=["im1_kernel1"])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    unknown = sorted(set(args.images) - {f"im{i}_kernel{k}" for i, k in SUBSETS["all"]})
    if unknown:
        p.error(f"not Levin images: {', '.join(unknown)} (names like im1_kernel1)")
    cases = [c for c in levin_cases(default_levin_root(), "all") if c.name in args.images]
    configs = {spec: config_from_spec(spec) for spec in args.preset}
    first = cases[0]
    warm = configs[args.preset[0]]
    deblur(first.blurry, first.reference_kernel_size, preset=warm, device=args.device)
    seconds = {(spec, c.name): [] for spec in configs for c in cases}
    for _ in range(args.repeats):
        for case in cases:
            for spec, cfg in configs.items():
                start = time.perf_counter()
                deblur(case.blurry, case.reference_kernel_size, preset=cfg, device=args.device)
                seconds[spec, case.name].append(time.perf_counter() - start)
    for spec in configs:
        medians = [float(np.median(seconds[spec, c.name])) for c in cases]
        per_image = ", ".join(f"{c.name} {m:.1f}" for c, m in zip(cases, medians, strict=True))
        print(f"{spec}: mean of medians {np.mean(medians):.2f} s ({per_image})")


if __name__ == "__main__":
    main()
