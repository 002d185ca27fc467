"""Design data for the last pass's strength with an estimated kernel: photographs, not Levin.

Runs ``quick`` through ``deblur`` (what a user gets) on the design problems of ``map_design.py``
(scikit-image crops, ``shake_psf`` kernels, white noise) at the true kernel size + 2, once per
``--factors`` value of ``DeblurConfig.final_strength_factor`` (the multiplier of the
noise-derived strength in the last pass; ``quick``'s default is the estimated-kernel factor, 5 on
clean images and 2 from noise 0.005). Prints one line per problem: the blurry input's PSNR and
each factor's PSNR (Levin protocol) with its diagnosis flags. The Levin set is never used here.

    OMP_NUM_THREADS=1 python benchmarks/strength_design.py --noise 0.01 --sizes 9 25 --factors 5 2
"""

from __future__ import annotations

import argparse

import numpy as np

from map_design import IMAGES, problem


def main() -> None:
    from napari_selfdeblur import deblur
    from napari_selfdeblur.config import get_preset
    from napari_selfdeblur.evaluation.metrics import levin_score

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", default=list(IMAGES))
    p.add_argument("--sizes", type=int, nargs="+", default=[9, 25])
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--factors", type=float, nargs="+", default=[5.0, 2.0])
    args = p.parse_args()
    means = []
    for name in args.images:
        for ks in args.sizes:
            try:
                y, k, sharp = problem(name, ks, ks + 1, args.noise)
            except ValueError as exc:  # the photograph is too small for the kernel
                print(f"skipped: {exc}", flush=True)
                continue
            cells = []
            for f in args.factors:
                cfg = get_preset("quick").replace(final_strength_factor=f)
                r = deblur(y.astype(np.float32), k.shape[0] + 2, preset=cfg)
                cells.append((levin_score(r.latent, sharp).psnr, " ".join(r.diagnosis.flags)))
            means.append([c[0] for c in cells])
            blurry = levin_score(y, sharp).psnr
            pairs = zip(args.factors, cells, strict=True)
            text = " ".join(f"x{f:g} {v:6.2f} [{fl}]" for f, (v, fl) in pairs)
            print(f"{name:18s} {ks:3d} blurry {blurry:6.2f} {text}", flush=True)
    mean = np.mean(means, axis=0)
    cells = ", ".join(f"x{f:g} {m:.2f}" for f, m in zip(args.factors, mean, strict=True))
    print(f"mean over {len(means)} problems: {cells}")


if __name__ == "__main__":
    main()
