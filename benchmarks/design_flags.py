"""Does a preset ever return something worse than its blurry input without a flag? (design data)

Runs a preset through ``deblur`` (what a user gets) on the design problems of
``map_design.py`` (scikit-image crops, ``shake_psf`` kernels, white noise; never the benchmark)
at the true kernel size + 2, and writes one CSV row per problem: Levin-protocol PSNR of the
result and of the blurry input, kernel similarity, the diagnosis flags and the runtime. Rows are
written as they finish; a photograph too small for the kernel (chelsea at 55 px) is skipped.

    python benchmarks/design_flags.py --preset quick --sizes 9 15 25 35 --noise 0.01 \
        --out benchmarks/results/design_quick_flags.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _rows import write_rows
from map_design import add_grid_arguments, design_problems


def main() -> None:
    from napari_selfdeblur.config import config_from_spec

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_grid_arguments(p, preset="quick", sizes=(9, 15, 25, 35), noise=(0.01,))
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="of the networks")
    p.add_argument(
        "--iterations",
        type=int,
        default=None,
        help="SelfDeblur iterations, the schedule scaled but not the warm start",
    )
    p.add_argument(
        "--first-pass-factor",
        type=float,
        default=None,
        help="strength factor of the sparse passes that feed the polish refit (default: the "
        "package's, 5)",
    )
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.first_pass_factor is not None:  # round 15's experiment: a package setting, changed
        from napari_selfdeblur import api

        api.POLISH_FIRST_PASS["sparse"] = {
            **api.POLISH_FIRST_PASS["sparse"],
            "strength_factor": args.first_pass_factor,
        }
    fields = [
        "image",
        "kernel",
        "noise",
        "seed",
        "psnr",
        "psnr_blurry",
        "similarity",
        "flags",
        "kept",
        "agreement",
        "noise_est",
        "residual_ratio",
        "seconds",
    ]
    preset = config_from_spec(args.preset)
    if args.iterations:
        preset = preset.with_iterations(args.iterations, warm_steps=False)
    rows = write_rows(
        (
            {"image": name, "kernel": ks, "noise": sigma, "seed": seed}
            | measure(y, k, sharp, preset, seed)
            for name, ks, sigma, y, k, sharp in design_problems(args.images, args.sizes, args.noise)
            for seed in args.seeds
        ),
        args.out,
        fields,
    )
    if not rows:
        return
    worse = [r for r in rows if r["psnr"] < r["psnr_blurry"]]
    unflagged = [r for r in worse if not r["flags"]]
    print(
        f"{len(rows)} problems: mean {np.mean([r['psnr'] for r in rows]):.2f} dB (blurry "
        f"{np.mean([r['psnr_blurry'] for r in rows]):.2f}); {len(worse)} worse than blurry, "
        f"{len(unflagged)} of them without a flag"
    )


def measure(y, k, sharp, preset, seed: int) -> dict:
    """One ``deblur`` of the problem (y, k, sharp) at the true kernel size + 2: the row's fields."""
    from napari_selfdeblur import deblur
    from napari_selfdeblur.evaluation.metrics import kernel_similarity, levin_score

    start = time.perf_counter()
    r = deblur(y.astype(np.float32), k.shape[0] + 2, preset=preset, seed=seed)
    seconds = time.perf_counter() - start
    meta = r.metadata()
    agreement = meta.get("map_candidates", {}).get("agreement") or [float("nan")]
    return dict(
        psnr=round(levin_score(r.latent, sharp).psnr, 2),
        psnr_blurry=round(levin_score(y, sharp).psnr, 2),
        similarity=round(kernel_similarity(r.kernel, k), 3),
        flags=" ".join(r.diagnosis.flags),
        kept=meta.get("safeguard", {}).get("kept", ""),  # standard only
        agreement=round(max(agreement), 3),  # the kept MAP candidate's
        noise_est=round(meta["noise_sigma"], 4),
        residual_ratio=meta["diagnosis"]["residual_noise_ratio"],
        seconds=round(seconds, 1),
    )


if __name__ == "__main__":
    main()
