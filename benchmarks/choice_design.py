"""Design data for how ``standard`` picks its result: photographs that are not the benchmark.

For each problem of ``map_design.py`` (scikit-image crops, ``shake_psf`` kernels, white noise;
kernel window 2 px larger than the blur, as ``design_flags.py`` uses), ``standard`` is run in
pieces: the MAP estimate with its three candidates, SelfDeblur started from the medoid, then each
of the four kernels (SelfDeblur's and the three MAP candidates) through the polish (the cheap
sparse pass, the full-resolution refit, the last sparse pass). One CSV row per problem gives the
PSNR (Levin protocol) of every polished result, the normalised sparsity of every cheap first pass
and of every final result, and the data residuals. Rules are compared at the end:

- ``safeguard``: what ``standard`` does (SelfDeblur's result unless it fits the input more than
  10 % worse and is not sharper than the MAP medoid's last pass; a kept MAP start returns the
  candidate with the sharpest first pass); the uncertain-kernel boost is left out here;
- ``sharpest first``: of the four kernels, the one whose cheap first pass is sharpest;
- ``sharpest final``: the same rule on the polished results;
- ``oracle``: the best of the four by the truth.

The Levin set is never used here.

    python benchmarks/choice_design.py --sizes 15 25 --noise 0.002 --out results/choice.csv
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from _rows import as_numbers, read_rows
from map_design import add_grid_arguments, write_design_rows

NAMES = ("selfdeblur", "as is", "up-down", "left-right")


def passes(y, kernel, cfg, device):
    """(cheap first pass, refitted kernel, final pass) of ``standard``'s polish of ``kernel``."""
    from napari_selfdeblur import refine
    from napari_selfdeblur.api import POLISH_FINAL_PASS, polish_first_pass
    from napari_selfdeblur.engine.map_kernel import refit_kernel

    first = np.clip(
        refine(y, kernel, "sparse", kernel_estimated=True, **polish_first_pass("sparse")).image,
        0,
        1,
    )
    new = refit_kernel(y, first, kernel.shape, cfg.map, device=device)
    new = kernel if new is None else new
    final = refine(y, new, "sparse", kernel_estimated=True, **POLISH_FINAL_PASS["sparse"])
    return first, new, np.clip(final.image, 0, 1)


def resid(y, latent, kernel) -> float:
    import torch

    from napari_selfdeblur.engine.map_kernel import residual

    return residual(torch.from_numpy(latent.astype(np.float64)), kernel, torch.from_numpy(y))


def one_problem(y, k, sharp, cfg, seed, device) -> dict:
    """The row of one problem: every kernel's PSNR, sparsities and residual."""
    from napari_selfdeblur import refine
    from napari_selfdeblur.api import normalised_sparsity as sparsity
    from napari_selfdeblur.engine.map_kernel import fit_map
    from napari_selfdeblur.engine.solver import fit
    from napari_selfdeblur.evaluation.metrics import levin_score
    from napari_selfdeblur.imaging.noise import estimate_noise_sigma

    grey = y.astype(np.float32)
    kshape = (k.shape[0] + 2, k.shape[1] + 2)
    t0 = time.perf_counter()
    start = fit_map(grey, kshape, cfg.map, device=device)
    raw = fit(
        grey,
        kshape,
        cfg,
        device=device,
        seed=seed,
        noise_sigma=estimate_noise_sigma(grey),
        start=start,
    )
    row = {"seconds_fit": round(time.perf_counter() - t0, 1)}
    for name, kernel in zip(NAMES, [raw.kernel, *start.alternatives], strict=True):
        first, new, final = passes(y, kernel, cfg, device)
        row[f"psnr {name}"] = round(levin_score(final, sharp).psnr, 3)
        row[f"first {name}"] = round(sparsity(first), 4)
        row[f"final {name}"] = round(sparsity(final), 4)
        row[f"resid {name}"] = float(f"{resid(y, final, new):.6g}")
    medoid_last = np.clip(refine(y, start.kernel, "sparse", kernel_estimated=True).image, 0, 1)
    row["map sparsity"] = round(sparsity(medoid_last), 4)
    row["map resid"] = float(f"{resid(y, medoid_last, start.kernel):.6g}")
    row["psnr blurry"] = round(levin_score(y, sharp).psnr, 3)
    return row


def choices(row) -> dict[str, str]:
    """The kernel each rule picks for one row."""
    maps = NAMES[1:]
    quick = min(maps, key=lambda n: row[f"first {n}"])
    keep_map = row["resid selfdeblur"] > 1.1 * row["map resid"] and (
        row["final selfdeblur"] >= row["map sparsity"]
    )
    return {
        "safeguard": quick if keep_map else "selfdeblur",
        "quick": quick,
        "selfdeblur": "selfdeblur",
        "sharpest first": min(NAMES, key=lambda n: row[f"first {n}"]),
        "sharpest final": min(NAMES, key=lambda n: row[f"final {n}"]),
        "oracle": max(NAMES, key=lambda n: row[f"psnr {n}"]),
    }


def report(rows) -> None:
    picks = [choices(r) for r in rows]
    for rule in picks[0]:
        got = np.array([r[f"psnr {p[rule]}"] for r, p in zip(rows, picks, strict=True)])
        base = np.array([r[f"psnr {p['safeguard']}"] for r, p in zip(rows, picks, strict=True)])
        d = got - base
        print(
            f"{rule:15s} {got.mean():.3f} dB over {len(rows)} problems; against the safeguard: "
            f"{(d > 0.05).sum()} better, {(d < -0.05).sum()} worse, worst {d.min():+.2f}"
        )


def main() -> None:
    import torch

    from napari_selfdeblur.config import config_from_spec

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_grid_arguments(p, preset="standard", sizes=(15, 25), noise=(0.002,))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--iterations", type=int, help="SelfDeblur's length, schedule scaled")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--report-only", action="store_true", help="read --out and compare the rules")
    args = p.parse_args()
    if args.report_only:
        report(as_numbers(read_rows(args.out)))
        return
    cfg = config_from_spec(args.preset)
    if args.iterations:
        cfg = cfg.with_iterations(args.iterations)
    device = torch.device("cpu")
    rows = write_design_rows(
        args, lambda name, ks, sigma, y, k, sharp: one_problem(y, k, sharp, cfg, args.seed, device)
    )
    if rows:
        report(rows)


if __name__ == "__main__":
    main()
