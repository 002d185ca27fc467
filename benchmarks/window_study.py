"""Design data: how ``quick``'s result moves with the kernel window it is given.

For each design problem of ``map_design.py`` (photographs that are not the benchmark, shake
kernels, white noise 0.002), ``quick`` runs at the true window and at every odd window up to
``--extra`` px larger; each row gives the PSNR of the latent and the estimated kernel's
similarity to the truth (shift-invariant), so that a swing in PSNR can be traced to the kernel
or to the non-blind step. The Levin set is never used.

    python benchmarks/window_study.py --images camera coffee chelsea --sizes 19 --extra 12
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from map_design import add_tail_argument, problem
    from napari_selfdeblur import deblur
    from napari_selfdeblur.evaluation.metrics import levin_score
    from napari_selfdeblur.imaging.psf import kernel_similarity

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", default=["camera", "coffee", "chelsea"])
    p.add_argument("--sizes", type=int, nargs="+", default=[19])
    p.add_argument("--extra", type=int, default=12, help="largest window minus the true one, px")
    add_tail_argument(p)
    args = p.parse_args()
    print("image ks window psnr similarity")
    spreads = []
    for name in args.images:
        for ks in args.sizes:
            y, k, sharp = problem(name, ks, ks, 0.002, tail=args.tail)
            psnrs = []
            for window in range(ks, ks + args.extra + 1, 2):
                res = deblur(y, window, preset="quick", device="cpu")
                psnrs.append(levin_score(res.latent, sharp).psnr)
                sim = kernel_similarity(res.kernel, k)
                print(name, ks, window, f"{psnrs[-1]:.2f}", f"{sim:.3f}", flush=True)
            spreads.append(max(psnrs) - min(psnrs))
    print(f"PSNR range over the windows: mean {np.mean(spreads):.2f} dB, max {max(spreads):.2f}")


if __name__ == "__main__":
    main()
