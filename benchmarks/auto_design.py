"""Design data for ``kernel_size="auto"``: which support rule picks sizes that score best.

On the design problems of ``map_design.py`` (photographs that are not the benchmark, shake
kernels, white noise), the probe kernel is estimated once per problem; every rule (support
threshold as a fraction of the peak, margin in pixels) then chooses a size, and the ``quick``
pipeline (MAP at that size, sparse step at 5x the noise-derived strength) is scored at each
distinct size, next to the true support's size. The Levin set is never used here.
``--pipeline preset`` scores each size with the ``quick`` preset as users run it (candidates,
polish) instead. ``--probe-candidates 1 3`` compares probes: one MAP estimate, or the medoid of
that many orientation candidates (as ``quick`` estimates its kernel). ``--tail 0.2`` draws
kernels that leave a faint tail (a fifth of their energy on the second half of the path).

    python benchmarks/auto_design.py --rules 0.05:4 0.1:2 0.1:4 0.2:2 --sizes 15 25
"""

from __future__ import annotations

import argparse
from dataclasses import replace

import numpy as np


def main() -> None:
    import torch

    from map_design import add_tail_argument, problem
    from napari_selfdeblur import deblur, refine
    from napari_selfdeblur.config import MapConfig
    from napari_selfdeblur.engine.map_kernel import estimate_map, probe_size, size_from_probe
    from napari_selfdeblur.evaluation.metrics import levin_score
    from napari_selfdeblur.imaging.noise import estimate_noise_sigma

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", default=["camera", "astronaut", "coffee", "text"])
    p.add_argument("--sizes", type=int, nargs="+", default=[15, 25])
    p.add_argument("--noise", type=float, default=0.005)
    p.add_argument("--rules", nargs="+", default=["0.05:4", "0.1:2", "0.1:4", "0.2:2"])
    p.add_argument("--pipeline", choices=["oneshot", "preset"], default="oneshot")
    p.add_argument("--probe-candidates", type=int, nargs="+", default=[1])
    add_tail_argument(p)
    args = p.parse_args()
    rules = [tuple(float(v) for v in r.split(":")) for r in args.rules]
    cfg, cpu = MapConfig(), torch.device("cpu")
    table = []
    for name in args.images:
        for ks in args.sizes:
            y, k, sharp = problem(name, ks, ks, args.noise, tail=args.tail)
            strength = 5 * 29.9 * max(estimate_noise_sigma(y), 1e-3) ** 1.98
            side = probe_size(y.shape)
            probes = [
                estimate_map(y[None], (side, side), replace(cfg, candidates=c), device=cpu)
                for c in args.probe_candidates
            ]
            scores: dict[int, float] = {}

            def score(size: int, y=y, sharp=sharp, strength=strength, scores=scores) -> float:
                if size in scores:
                    return scores[size]
                if args.pipeline == "preset":
                    out = deblur(y, size, preset="quick", device="cpu").latent
                else:
                    est = estimate_map(y[None], (size, size), cfg, device=cpu).kernels[0]
                    out = refine(y, est, "sparse", strength=strength).image
                scores[size] = levin_score(out, sharp).psnr
                return scores[size]

            true_size = k.shape[0]
            row = [true_size, score(true_size)]
            for probe in probes:
                for thr, margin in rules:
                    size = size_from_probe(probe.kernels[0], threshold=thr, margin=int(margin))[
                        "chosen"
                    ]
                    row += [size, score(size)]
            table.append(row)
            print(
                f"{name:10s} k{ks:2d} "
                + " ".join(f"{v:g}" if i % 2 == 0 else f"{v:.2f}" for i, v in enumerate(row)),
                flush=True,
            )
    a = np.array(table)
    print(f"true size: mean {a[:, 1].mean():.2f} dB")
    variants = [(c, thr, margin) for c in args.probe_candidates for thr, margin in rules]
    for j, (c, thr, margin) in enumerate(variants):
        sizes, psnrs = a[:, 2 + 2 * j], a[:, 3 + 2 * j]
        print(
            f"probe of {c}, rule {thr:g}:{margin:g}: mean {psnrs.mean():.2f} dB, size - true "
            f"{(sizes - a[:, 0]).mean():+.1f} px, smaller than true {int((sizes < a[:, 0]).sum())}"
        )


if __name__ == "__main__":
    main()
