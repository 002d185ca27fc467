"""Design data for the MAP candidates of ``quick``: photographs that are not the benchmark.

The problems of ``map_design.py`` (scikit-image crops, ``shake_psf`` kernels whose seed is their
size, white noise) at the exact kernel size. For each, the MAP kernel is estimated in each of
the first three orientations of ``ORIENTATIONS`` (as is, flipped up-down, flipped left-right),
and each is polished as ``quick`` does: the cheap sparse pass, the refit, the final sparse pass
(``--final-cg`` CG steps per reweighting; several may be given). Printed per problem and as
means over the problems (PSNR, Levin protocol):

- each orientation alone (``as is`` is ``quick`` without candidates);
- ``medoid``: the kernel that agrees best with the other two, chosen by the estimator's own
  rule (``map_kernel.medoid``; the same choice as ``MapConfig(candidates=3)``, which runs the
  three orientations as one batch);
- ``sharpest first``: the orientation whose cheap first pass has the lowest normalised sparsity
  (``DeblurConfig(candidate_choice="sparsity")``, what ``quick`` does since round 12);
- ``sharpest final``: the same rule on the final results (every candidate polished);
- ``oracle``: the best orientation by the truth (what no rule can beat).

The Levin set is never used here.

    python benchmarks/candidates_design.py --noise 0.002 --final-cg 100 50
"""

from __future__ import annotations

import argparse

import numpy as np

IMAGES = ("camera", "astronaut", "coffee", "chelsea", "brick", "text", "grass", "gravel")


def polish(y, kernel, cfg, final_cg: list[int]) -> tuple[np.ndarray, list[np.ndarray]]:
    """``quick``'s passes after the MAP estimate: (the cheap first pass, one final result per
    final CG length).
    """
    import torch

    from napari_selfdeblur import refine
    from napari_selfdeblur.api import polish_first_pass
    from napari_selfdeblur.engine.map_kernel import refit_kernel

    first = refine(y, kernel, "sparse", kernel_estimated=True, **polish_first_pass("sparse"))
    refit = refit_kernel(y, first.image, kernel.shape, cfg, device=torch.device("cpu"))
    return np.clip(first.image, 0, 1), [
        np.clip(refine(y, refit, "sparse", kernel_estimated=True, cg_iterations=n).image, 0, 1)
        for n in final_cg
    ]


def main() -> None:
    import torch

    from map_design import problem
    from napari_selfdeblur.api import normalised_sparsity as sparsity
    from napari_selfdeblur.config import MapConfig
    from napari_selfdeblur.engine.map_kernel import (
        ORIENTATIONS,
        estimate_map,
        medoid,
        orient,
    )
    from napari_selfdeblur.evaluation.metrics import levin_score

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", default=list(IMAGES))
    p.add_argument("--sizes", type=int, nargs="+", default=[13, 19, 25])
    p.add_argument("--noise", type=float, default=0.002)
    p.add_argument("--final-cg", type=int, nargs="+", default=[100, 50])
    args = p.parse_args()
    cpu = torch.device("cpu")
    one = MapConfig()
    names = list(ORIENTATIONS)[:3]
    table = []  # per problem: (orientations x final CG) PSNRs, medoid, sharpest first, final
    for name in args.images:
        for ks in args.sizes:
            y, k, sharp = problem(name, ks, ks, args.noise)
            scores, kernels, s_first, s_final = [], [], [], []
            for o in names:
                turned = orient(y, ORIENTATIONS[o])[None]
                kmap = estimate_map(turned, k.shape, one, device=cpu).kernels[0]
                kernels.append(orient(kmap, ORIENTATIONS[o]))
                first, outs = polish(y, kernels[-1], one, args.final_cg)
                scores.append([levin_score(x, sharp).psnr for x in outs])
                s_first.append(sparsity(first))
                s_final.append(sparsity(outs[0]))
            best = medoid(kernels)[0]
            kept = names[best]
            table.append((np.array(scores), best, int(np.argmin(s_first)), int(np.argmin(s_final))))
            cells = (
                " | ".join(f"{o} {s[0]:.2f}" for o, s in zip(names, scores, strict=True))
                + f" | kept {kept}"
            )
            print(f"{name:10s} k{ks:2d} | {cells}", flush=True)
    for j, n in enumerate(args.final_cg):
        alone = np.array([t[0][:, j] for t in table])  # (problems, orientations)
        medoid = np.array([t[0][t[1], j] for t in table])
        first = np.array([t[0][t[2], j] for t in table])
        final = np.array([t[0][t[3], j] for t in table])
        worst = np.min(medoid - alone[:, 0])
        gain = first - medoid
        print(
            f"final pass {n} CG steps: "
            + ", ".join(f"{o} {v:.3f}" for o, v in zip(names, alone.mean(0), strict=True))
            + f", medoid {medoid.mean():.3f} (worst against 'as is' {worst:+.2f}),"
            f" sharpest first {first.mean():.3f} (against the medoid: {(gain > 0.05).sum()}"
            f" better, {(gain < -0.05).sum()} worse, worst {gain.min():+.2f}),"
            f" sharpest final {final.mean():.3f},"
            f" oracle {alone.max(1).mean():.3f} dB over {len(table)} problems"
        )


if __name__ == "__main__":
    main()
