"""Design data for a last-pass strength that follows the estimated kernel's reliability.

Runs ``quick`` through ``deblur`` (what a user gets) on the design problems of ``map_design.py``
(scikit-image crops, ``shake_psf`` kernels, white noise; never the benchmark), then repeats only
its last non-blind pass with the returned kernel at each ``--factors`` multiple of the
noise-derived strength (the pass does not depend on anything else, so the row at the preset's
own factor equals ``quick``'s result). One CSV row per problem and factor: Levin-protocol PSNR,
the kernel's similarity to the truth, and the ground-truth-free measures a rule could use: the
MAP candidates' agreement, how far the polish moved the kernel, the data residual.

    OMP_NUM_THREADS=2 python benchmarks/reliability_design.py --sizes 15 25 --noise 0.002 0.005 \
        --margins 0 2 --out benchmarks/results/reliability_design.csv

With ``--levin RULE`` it only measures one rule chosen on the design rows, on the Levin set at
the reference kernel sizes (no sweep there): ``RULE`` = ``T:LO:HI`` uses LO times the
noise-derived strength where the candidates' agreement is at least T and HI below it.

    OMP_NUM_THREADS=2 python benchmarks/reliability_design.py --levin 0.9:2:13 \
        --out benchmarks/results/levin_quick_rule.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _rows import append_rows, read_rows
from map_design import IMAGES, problem


def _quick(y, size):
    """(quick's result, the kept MAP candidate's agreement, seconds) for one image."""
    from napari_selfdeblur import deblur

    start = time.perf_counter()
    r = deblur(y, size, preset="quick")
    seconds = time.perf_counter() - start
    agreement = r.metadata().get("map_candidates", {}).get("agreement") or [float("nan")]
    return r, max(agreement), seconds


def _last_pass(y, kernel, factor):
    """quick's last non-blind pass with ``kernel`` at ``factor`` x the noise-derived strength,
    on ``y`` mapped to [0, 1] as ``deblur`` maps it, returned in ``y``'s range.
    """
    from napari_selfdeblur import refine
    from napari_selfdeblur.api import POLISH_FINAL_PASS
    from napari_selfdeblur.imaging.image import Intensity

    intensity = Intensity.of(y)
    out = refine(
        intensity.to_unit(y),
        kernel,
        "sparse",
        kernel_estimated=True,
        strength_factor=factor,
        **POLISH_FINAL_PASS["sparse"],
    ).image
    return intensity.from_unit(np.clip(out, 0, 1))


def _rows_for(name, ks, sigma, margin, factors):
    """One row per factor for one design problem (none when the photograph is too small)."""
    from napari_selfdeblur.evaluation.metrics import kernel_similarity, levin_score

    try:
        y, k, sharp = problem(name, ks, ks, sigma)
    except ValueError as exc:
        print(f"skipped: {exc}", flush=True)
        return []
    y = y.astype(np.float32)
    r, agreement, seconds = _quick(y, k.shape[0] + margin)
    meta = r.metadata()
    common = {
        "image": name,
        "kernel": ks,
        "noise": sigma,
        "margin": margin,
        "similarity": round(kernel_similarity(r.kernel, k), 4),
        "agreement": round(agreement, 4),
        "polish_change": meta.get("polish", {}).get("kernel_change_l1", float("nan")),
        "noise_est": round(r.noise_sigma, 5),
        "psnr_blurry": round(levin_score(y, sharp).psnr, 3),
        "psnr_quick": round(levin_score(r.latent, sharp).psnr, 3),
        "seconds": round(seconds, 2),
    }
    rows = []
    for f in factors:
        latent = _last_pass(y, r.kernel, f)
        rows.append({**common, "factor": f, "psnr": round(levin_score(latent, sharp).psnr, 3)})
    best = max(rows, key=lambda row: row["psnr"])
    print(
        f"{name:18s} k{ks:2d} n{sigma:g} m{margin} sim {common['similarity']:.3f} "
        f"agr {common['agreement']:.3f} quick {common['psnr_quick']:.2f} best x{best['factor']:g} "
        f"{best['psnr']:.2f} " + " ".join(f"{row['psnr']:.2f}" for row in rows),
        flush=True,
    )
    return rows


def _levin(rule: str, out: Path) -> None:
    """Measure one agreement rule (``T:LO:HI``) against quick on all 32 Levin images."""
    from napari_selfdeblur.evaluation.datasets import default_levin_root, levin_cases
    from napari_selfdeblur.evaluation.metrics import levin_score

    threshold, low, high = (float(v) for v in rule.split(":"))
    done = {r["name"] for r in read_rows(out)}
    for case in levin_cases(default_levin_root(), "all"):
        if case.name in done:
            continue
        y = case.blurry.astype(np.float32)
        r, agreement, seconds = _quick(y, case.reference_kernel_size)
        factor = low if agreement >= threshold else high
        ruled = levin_score(_last_pass(y, r.kernel, factor), case.sharp).psnr
        row = {
            "name": case.name,
            "rule": rule,
            "agreement": round(agreement, 4),
            "factor": factor,
            "psnr_quick": round(levin_score(r.latent, case.sharp).psnr, 3),
            "psnr_rule": round(ruled, 3),
            "seconds": round(seconds, 2),
        }
        print(row, flush=True)
        append_rows(out, [row])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", default=list(IMAGES))
    p.add_argument("--sizes", type=int, nargs="+", default=[15, 25])
    p.add_argument("--noise", type=float, nargs="+", default=[0.002, 0.005])
    p.add_argument("--margins", type=int, nargs="+", default=[0, 2])
    p.add_argument("--factors", type=float, nargs="+", default=[1, 2, 3, 5, 8, 13])
    p.add_argument("--levin", metavar="RULE", help="measure one rule T:LO:HI on Levin")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if args.levin:
        _levin(args.levin, args.out)
        return
    done = {(r["image"], r["kernel"], r["noise"], r["margin"]) for r in read_rows(args.out)}
    for sigma in args.noise:
        for margin in args.margins:
            for name in args.images:
                for ks in args.sizes:
                    if (name, str(ks), str(sigma), str(margin)) in done:
                        continue
                    append_rows(args.out, _rows_for(name, ks, sigma, margin, args.factors))


if __name__ == "__main__":
    main()
