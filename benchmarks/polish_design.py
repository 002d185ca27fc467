"""Design data for the kernel polish of ``quick``: photographs that are not the benchmark.

The problems of ``map_design.py`` (scikit-image crops, ``shake_psf`` kernels, white noise), at the
exact kernel size. For each, the MAP kernel is estimated once; then the sparse non-blind step at
``5x`` the noise-derived strength (the first pass, full or cheap), the kernel refit against that
result with each ``--salient`` fraction (``MapConfig.refit_salient``), and the sparse step again
at each ``--strength-factor``. Prints PSNR (Levin protocol) without and with the polish. The
Levin set is never used here.

    python benchmarks/polish_design.py --noise 0.005 --salient 0.05 0.1 0.2 --strength-factor 2 5
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

CHEAP = {"reweightings": 1, "cg_iterations": 50}


def main() -> None:
    import torch

    from map_design import problem
    from napari_selfdeblur import refine
    from napari_selfdeblur.config import MapConfig
    from napari_selfdeblur.engine.map_kernel import estimate_map, refit_kernel
    from napari_selfdeblur.evaluation.metrics import kernel_similarity, levin_score

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--images", nargs="+", default=["camera", "astronaut", "coffee", "chelsea", "brick", "text"]
    )
    p.add_argument("--sizes", type=int, nargs="+", default=[15, 25])
    p.add_argument("--noise", type=float, default=0.005)
    p.add_argument("--salient", type=float, nargs="+", default=[0.1])
    p.add_argument("--strength-factor", type=float, nargs="+", default=[5.0])
    p.add_argument("--first-pass", choices=["full", "cheap"], default="cheap")
    args = p.parse_args()
    cpu, cfg = torch.device("cpu"), MapConfig()
    first = CHEAP if args.first_pass == "cheap" else {}
    rows = []
    for name in args.images:
        for ks in args.sizes:
            y, k, sharp = problem(name, ks, ks, args.noise)
            kmap = estimate_map(y[None], k.shape, cfg, device=cpu).kernels[0]
            base = levin_score(refine(y, kmap, "sparse", kernel_estimated=True).image, sharp).psnr
            start = time.perf_counter()
            x0 = refine(y, kmap, "sparse", kernel_estimated=True, **first).image
            seconds = time.perf_counter() - start
            row, text = [base], []
            for frac in args.salient:
                polish_cfg = dataclasses.replace(cfg, refit_salient=frac)
                kk = refit_kernel(y, x0, k.shape, polish_cfg, device=cpu)
                for f in args.strength_factor:
                    sigma_strength = refine(y, kk, "sparse").strengths[0]  # noise-derived
                    out = refine(y, kk, "sparse", strength=sigma_strength * f).image
                    row.append(levin_score(out, sharp).psnr)
                    text.append(
                        f"s{frac:g}/x{f:g} {row[-1]:.2f} (sim {kernel_similarity(kk, k):.3f})"
                    )
            rows.append(row)
            print(
                f"{name:10s} k{ks:2d} MAP {base:.2f} | "
                + " | ".join(text)
                + f" | first pass {seconds:.1f} s",
                flush=True,
            )
    a = np.array(rows).mean(0)
    labels = [f"s{s:g}/x{f:g}" for s in args.salient for f in args.strength_factor]
    print(
        f"mean: MAP only {a[0]:.2f} dB; polished "
        + ", ".join(f"{lab} {v:.2f}" for lab, v in zip(labels, a[1:], strict=True))
        + " dB"
    )


if __name__ == "__main__":
    main()
