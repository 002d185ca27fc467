"""Design data for ``kernel_size="auto"``: would running ``quick`` at a few window sizes around the
probe's choice, and keeping the sharpest result or the medoid kernel, beat the single chosen size?

For each design problem (photographs that are not the benchmark, shake kernels, white noise;
``map_design.problem``), the probe chooses a size n as ``kernel_size="auto"`` does; ``quick`` then
runs at n + each ``--extra`` (pixels, capped at the probe's size) and at the true size. Each
row gives every size's PSNR and the normalised sparsity of its latent (lower is sharper), so the
choice "sharpest of these sizes" can be scored against "n alone"; "medoid" keeps the size whose
kernel agrees best with the others' (summed shift-invariant similarity), which outvotes one
estimate that fell into another solution. The Levin set is never used.

    python benchmarks/auto_sizes_design.py --sizes 11 15 19 25 --extra 0 4 8
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    import torch

    from map_design import problem
    from napari_selfdeblur import deblur
    from napari_selfdeblur.api import normalised_sparsity
    from napari_selfdeblur.config import MapConfig
    from napari_selfdeblur.engine.map_kernel import auto_kernel_size
    from napari_selfdeblur.evaluation.metrics import levin_score
    from napari_selfdeblur.imaging.psf import kernel_similarity

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", default=["camera", "astronaut", "coffee", "text"])
    p.add_argument("--sizes", type=int, nargs="+", default=[15, 25])
    p.add_argument("--noise", type=float, default=0.002)
    p.add_argument("--extra", type=int, nargs="+", default=[0, 4, 8])
    args = p.parse_args()
    rows = []
    for name in args.images:
        for ks in args.sizes:
            y, k, sharp = problem(name, ks, ks, args.noise)
            auto = auto_kernel_size(y, MapConfig(), device=torch.device("cpu"))
            sizes = [min(auto["probe"], auto["chosen"] + e) for e in args.extra]
            tried = list(dict.fromkeys(sizes))
            runs = {}
            for s in dict.fromkeys([*tried, k.shape[0]]):
                res = deblur(y, s, preset="quick", device="cpu")
                psnr = levin_score(res.latent, sharp).psnr
                runs[s] = (psnr, normalised_sparsity(res.latent), res.kernel)
            sharpest = min(tried, key=lambda s: runs[s][1])
            medoid = max(
                tried, key=lambda s: sum(kernel_similarity(runs[s][2], runs[t][2]) for t in tried)
            )
            rows.append(
                [runs[k.shape[0]][0], runs[sizes[0]][0], runs[sharpest][0], runs[medoid][0]]
            )
            print(
                f"{name:10s} k{ks:2d} true {k.shape[0]}: {runs[k.shape[0]][0]:.2f} | "
                + " ".join(f"{s}: {runs[s][0]:.2f} ({runs[s][1]:.3f})" for s in sizes)
                + f" | sharpest {sharpest}, medoid {medoid}",
                flush=True,
            )
    a = np.array(rows)
    print(
        f"{len(rows)} problems: true size {a[:, 0].mean():.2f} dB, chosen size "
        f"{a[:, 1].mean():.2f} dB, sharpest of {args.extra} {a[:, 2].mean():.2f} dB, medoid "
        f"{a[:, 3].mean():.2f} dB"
    )


if __name__ == "__main__":
    main()
