"""Design data for the polish refit's pruning and kernel weight: photographs, not the benchmark.

The problems of ``map_design.py`` (scikit-image crops, ``shake_psf`` kernels whose seed is their
size, white noise) at the exact kernel size. For each, the MAP kernel is estimated as ``quick``
estimates it (the medoid of three candidates) and the cheap sparse pass is run once; then the
full-resolution refit (``map_kernel.refit_kernel``) is repeated with every ``--prune`` x
``--gamma`` pair (``MapConfig.prune`` and ``MapConfig.gamma``), each followed by ``quick``'s last
sparse pass. Prints the PSNR (Levin protocol) per problem and the mean per pair. The Levin set
is never used here.

    python benchmarks/refit_design.py --prune 0.05 0.1 0.2 --gamma 5 20 --noise 0.002
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools

import numpy as np

from candidates_design import IMAGES


def main() -> None:
    import torch

    from map_design import problem
    from napari_selfdeblur import refine
    from napari_selfdeblur.api import POLISH_FINAL_PASS, polish_first_pass
    from napari_selfdeblur.config import MapConfig
    from napari_selfdeblur.engine.map_kernel import estimate_map, refit_kernel
    from napari_selfdeblur.evaluation.metrics import levin_score

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", default=list(IMAGES))
    p.add_argument("--sizes", type=int, nargs="+", default=[13, 19, 25])
    p.add_argument("--noise", type=float, default=0.002)
    p.add_argument("--prune", type=float, nargs="+", default=[0.05, 0.1, 0.2])
    p.add_argument("--gamma", type=float, nargs="+", default=[5.0, 20.0])
    args = p.parse_args()
    cpu, cfg = torch.device("cpu"), MapConfig(candidates=3)
    pairs = list(itertools.product(args.prune, args.gamma))
    table = []
    for name in args.images:
        for ks in args.sizes:
            y, k, sharp = problem(name, ks, ks, args.noise)
            kmap = estimate_map(y[None], k.shape, cfg, device=cpu).kernels[0]
            first = refine(y, kmap, "sparse", kernel_estimated=True, **polish_first_pass("sparse"))
            row = []
            for prune, gamma in pairs:
                c = dataclasses.replace(cfg, prune=prune, gamma=gamma)
                kk = refit_kernel(y, first.image, k.shape, c, device=cpu)
                out = refine(y, kk, "sparse", kernel_estimated=True, **POLISH_FINAL_PASS["sparse"])
                row.append(levin_score(np.clip(out.image, 0, 1), sharp).psnr)
            table.append(row)
            print(f"{name:10s} k{ks:2d} " + " ".join(f"{v:6.2f}" for v in row), flush=True)
    means = np.mean(table, axis=0)
    print(
        f"mean over {len(table)} problems: "
        + ", ".join(f"prune {a} gamma {b}: {m:.3f}" for (a, b), m in zip(pairs, means, strict=True))
    )


if __name__ == "__main__":
    main()
