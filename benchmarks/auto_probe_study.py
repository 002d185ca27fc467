"""Design data for ``kernel_size="auto"``: the probe's chosen window against the true kernel, for a
probe of one MAP estimate and for the medoid of three orientation candidates (as ``quick``
estimates its kernel). No deconvolution: only the windows the probes would choose.

Problems from ``map_design.problem`` (photographs that are not the benchmark, shake kernels of
size ks drawn with seed ks + offset, white noise 0.002). Per problem it prints the true kernel's
extent (nonzero and at 20 % of the peak), each candidate's support, and the windows chosen from
candidate 0 (the image as is: the one-estimate probe), from the largest candidate support and
from the medoid, with the probe's seconds. The Levin set is never used.

    python benchmarks/auto_probe_study.py --sizes 11 15 19 25 --offsets 0 100
"""

from __future__ import annotations

import argparse
import time

import numpy as np


def main() -> None:
    import torch

    from map_design import add_tail_argument, problem
    from napari_selfdeblur.config import MapConfig
    from napari_selfdeblur.engine.map_kernel import estimate_map, probe_size, size_from_probe

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", nargs="+", default=["camera", "astronaut", "coffee", "text"])
    p.add_argument("--sizes", type=int, nargs="+", default=[11, 15, 19, 25])
    p.add_argument("--offsets", type=int, nargs="+", default=[0, 100])
    add_tail_argument(p)
    args = p.parse_args()
    cfg = MapConfig(candidates=3)
    print("image ks seed true_nz true_02 | supports | one union medoid | kept agreement secs")
    rows = []
    for name in args.images:
        for ks in args.sizes:
            for off in args.offsets:
                y, k, _ = problem(name, ks, ks + off, 0.002, tail=args.tail)
                side = probe_size(y.shape)
                t = time.perf_counter()
                res = estimate_map(y[None], (side, side), cfg, device=torch.device("cpu"))
                secs = time.perf_counter() - t
                probes = [size_from_probe(a) for a in res.alternatives[0]]
                chosen = [probes[0]["chosen"], max(q["chosen"] for q in probes)]
                chosen.append(size_from_probe(res.kernels[0])["chosen"])
                true_nz, true_02 = (
                    max(size_from_probe(k, threshold=f)["support"]) for f in (1e-9, 0.2)
                )
                rows.append([ks, true_nz, *chosen])
                note = res.candidates[0]
                print(
                    name, ks, ks + off, true_nz, true_02, "|",
                    *[max(q["support"]) for q in probes], "|", *chosen, "|",
                    note["kept"], note["agreement"], f"{secs:.1f}", flush=True,
                )  # fmt: skip
    a = np.array(rows)
    for j, label in enumerate(["one estimate", "largest of three", "medoid of three"]):
        over = a[:, 2 + j] - a[:, 0]
        print(
            f"{label}: below the true support {int((a[:, 2 + j] < a[:, 1]).sum())}, window - "
            f"true window {over.mean():+.2f} px on average, {over.max():+d} at most, more than "
            f"8 px larger {int((over > 8).sum())} of {len(a)}"
        )


if __name__ == "__main__":
    main()
