"""Design data for a joint refinement after ``quick``'s polish: photographs, not the benchmark.

The problems of ``map_design.py`` (scikit-image crops, ``shake_psf`` kernels whose seed is their
size, white noise) at the exact kernel size. For each, ``quick``'s passes run as they did before
the joint refinement (the medoid of three MAP candidates, the cheap sparse pass, the refit, the
last pass). Then the image (extended beyond its border) and the kernel are refined jointly
(``engine.joint.joint_refine``: projected Adam on

    |valid(k * x) - y|^2 + w sum (|grad x|^2 + eps^2)^(alpha / 2),   k >= 0, sum k = 1,

with w = ``--weight-factor`` x the sparse method's noise-derived strength and the step sizes
varied), and the last sparse pass runs again with the refined kernel. Prints, per problem and
setting, the PSNR (Levin protocol), the kernel similarity and the data residual after the
refinement over the one before, and the mean PSNR per setting. The Levin set is never used here.

    cd benchmarks && python joint_design.py --iterations 600 --lr-kernel 5e-6 --weight-factor 3
"""

from __future__ import annotations

import argparse
import itertools
import time

import numpy as np

from candidates_design import IMAGES


def fit(image, kernel, y) -> float:
    """The data residual of a result (mean squared), as ``standard``'s safeguard measures it."""
    import torch

    from napari_selfdeblur.engine.map_kernel import residual

    as_tensor = torch.from_numpy
    return residual(as_tensor(np.clip(image, 0, 1).astype(np.float64)), kernel, as_tensor(y))


def main() -> None:
    import torch

    from map_design import problem
    from napari_selfdeblur import refine
    from napari_selfdeblur.api import POLISH_FINAL_PASS, polish_first_pass
    from napari_selfdeblur.config import MapConfig
    from napari_selfdeblur.engine.joint import joint_refine
    from napari_selfdeblur.engine.map_kernel import estimate_map, refit_kernel
    from napari_selfdeblur.evaluation.metrics import levin_score
    from napari_selfdeblur.imaging.noise import estimate_noise_sigma
    from napari_selfdeblur.imaging.psf import kernel_similarity
    from napari_selfdeblur.nonblind.sparse import METHOD

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", default=list(IMAGES))
    p.add_argument("--sizes", type=int, nargs="+", default=[13, 19, 25])
    p.add_argument("--noise", type=float, default=0.002)
    p.add_argument("--iterations", type=int, nargs="+", default=[100, 300])
    p.add_argument("--lr-image", type=float, nargs="+", default=[1e-3])
    p.add_argument("--lr-kernel", type=float, nargs="+", default=[1e-5, 3e-5])
    p.add_argument("--weight-factor", type=float, nargs="+", default=[1.0])
    args = p.parse_args()
    cpu, cfg = torch.device("cpu"), MapConfig(candidates=3)
    settings = list(
        itertools.product(args.iterations, args.lr_image, args.lr_kernel, args.weight_factor)
    )
    table = []
    print("settings:", settings, flush=True)
    for name in args.images:
        for ks in args.sizes:
            y, k, sharp = problem(name, ks, ks, args.noise)
            kmap = estimate_map(y[None], k.shape, cfg, device=cpu).kernels[0]
            first = refine(y, kmap, "sparse", kernel_estimated=True, **polish_first_pass("sparse"))
            kk = refit_kernel(y, first.image, k.shape, cfg, device=cpu)
            last = refine(y, kk, "sparse", kernel_estimated=True, **POLISH_FINAL_PASS["sparse"])
            row = [levin_score(np.clip(last.image, 0, 1), sharp).psnr]
            sims = [kernel_similarity(kk, k)]
            fits = [fit(last.image, kk, y)]
            strength = METHOD.strength_rule(estimate_noise_sigma(y))
            for iters, lr_x, lr_k, wf in settings:
                t0 = time.perf_counter()
                kj = joint_refine(
                    y,
                    last.image,
                    kk,
                    weight=wf * strength,
                    iterations=iters,
                    device=cpu,
                    lr_image=lr_x,
                    lr_kernel=lr_k,
                ).kernel
                out = refine(y, kj, "sparse", kernel_estimated=True, **POLISH_FINAL_PASS["sparse"])
                row.append(levin_score(np.clip(out.image, 0, 1), sharp).psnr)
                sims.append(kernel_similarity(kj, k))
                fits.append(fit(out.image, kj, y))
                dt = time.perf_counter() - t0
            table.append(row)
            print(
                f"{name:10s} k{ks:2d} "
                + " ".join(f"{v:6.2f}/{s:.3f}" for v, s in zip(row, sims, strict=True))
                + f"  ({dt:.1f} s last setting)"
                + "  residual after/before: "
                + " ".join(f"{f / fits[0]:.3f}" for f in fits[1:]),
                flush=True,
            )
    means = np.mean(table, axis=0)
    print(f"mean over {len(table)} problems: quick {means[0]:.3f}")
    for s, m in zip(settings, means[1:], strict=True):
        print(f"  iterations {s[0]} lr_x {s[1]} lr_k {s[2]} weight x{s[3]}: {m:.3f}")


if __name__ == "__main__":
    main()
