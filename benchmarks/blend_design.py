"""Would `standard` gain by averaging its result with `quick`'s? (design data, round 15)

`standard` and `quick` share the MAP start but end with different kernels, and their errors
are partly independent, so the mean of the two latents might beat either. For each problem of
``map_design.py`` (scikit-image crops, ``shake_psf`` kernels, white noise, kernel window = true
size + 2) this runs `quick` and ``--preset`` (`standard`) through ``deblur`` and writes one CSV
row: the Levin-protocol PSNR of `quick`, of `standard`, of their plain mean and of the mean
after shifting `quick`'s latent onto `standard`'s (bilinear, the shift of least squared
difference, no ground truth), and the similarity of the two kernels (a truth-free gate:
average only where they agree). The Levin set is never used here.

    OMP_NUM_THREADS=1 python benchmarks/blend_design.py --sizes 15 25 --noise 0.002 \
        --out benchmarks/results/blend_design_r15.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from map_design import add_grid_arguments, write_design_rows


def aligned(a: np.ndarray, ref: np.ndarray, max_shift: float = 3.0, step: float = 0.25):
    """``a`` shifted (bilinear) by the shift in px that best matches ``ref`` away from the
    borders (12 px), and that shift.
    """
    from scipy import ndimage

    best, c = None, 12
    shifts = np.arange(-max_shift, max_shift + step / 2, step)
    for dy in shifts:
        for dx in shifts:
            moved = ndimage.shift(a, (dy, dx), order=1, mode="nearest")
            err = float(np.sum((moved[c:-c, c:-c] - ref[c:-c, c:-c]) ** 2))
            if best is None or err < best[0]:
                best = (err, moved, (float(dy), float(dx)))
    return best[1], best[2]


def one_problem(y, k, sharp, preset, seed: int) -> dict:
    from napari_selfdeblur import deblur
    from napari_selfdeblur.evaluation.metrics import kernel_similarity, levin_score

    y = y.astype(np.float32)
    q = deblur(y, k.shape[0] + 2, preset="quick", device="cpu")
    s = deblur(y, k.shape[0] + 2, preset=preset, device="cpu", seed=seed)
    ql, sl = q.latent.astype(np.float64), s.latent.astype(np.float64)
    moved, shift = aligned(ql, sl)
    return {
        "psnr_quick": round(levin_score(ql, sharp).psnr, 3),
        "psnr_standard": round(levin_score(sl, sharp).psnr, 3),
        "psnr_mean": round(levin_score((ql + sl) / 2, sharp).psnr, 3),
        "psnr_mean_aligned": round(levin_score((moved + sl) / 2, sharp).psnr, 3),
        "shift": f"{shift[0]} {shift[1]}",
        "kernel_agreement": round(kernel_similarity(q.kernel, s.kernel), 3),
        "kept": s.metadata().get("safeguard", {}).get("kept", ""),
    }


def report(rows, gate: float = 0.97) -> None:
    """Mean PSNR of each rule; the gated rule averages where the kernels agree >= ``gate``."""
    for key in ("psnr_quick", "psnr_standard", "psnr_mean", "psnr_mean_aligned"):
        print(f"{key}: {np.mean([r[key] for r in rows]):.3f} dB")
    gated = [r["psnr_mean"] if r["kernel_agreement"] >= gate else r["psnr_standard"] for r in rows]
    best = [max(r["psnr_quick"], r["psnr_standard"]) for r in rows]
    print(f"mean where the kernels agree >= {gate}: {np.mean(gated):.3f} dB")
    print(f"the better of the two per problem (needs the truth): {np.mean(best):.3f} dB")


def main() -> None:
    from napari_selfdeblur.config import config_from_spec

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_grid_arguments(p, preset="standard", sizes=(15, 25), noise=(0.002,))
    p.add_argument("--seed", type=int, default=0, help="of standard's networks")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    cfg = config_from_spec(args.preset)
    rows = write_design_rows(
        args, lambda name, ks, sigma, y, k, sharp: one_problem(y, k, sharp, cfg, args.seed)
    )
    if rows:
        report(rows)


if __name__ == "__main__":
    main()
