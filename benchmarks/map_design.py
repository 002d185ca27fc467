"""Design data for the MAP estimator and the quick preset: photographs that are not the benchmark.

scikit-image images (``camera``, ``astronaut``, ``coffee``, ``text`` tiled to size, ``brick``
for fine texture, ``chelsea`` for fur, ``cell`` for microscopy, ``hubble_deep_field`` for point
sources), grey 255x255 crops, blurred ('valid' convolution, realistic borders) by random
camera-shake kernels (``shake_psf``) of the given sizes plus white noise. Each MAP configuration
(``MapConfig`` fields as ``name=value``) is run with the true kernel size + 2, followed by the
sparse non-blind step at ``--strength-factor`` times the noise-derived strength (several factors
may be given; each is scored), and scored with
the Levin protocol against the truth, next to the same step with the true kernel. The Levin set
is never used here; ``levin.py --preset quick`` measures the chosen defaults on it.

    python benchmarks/map_design.py salient=5 gamma=20 --sizes 15 25 --strength-factor 5
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

IMAGES = ("camera", "astronaut", "coffee", "text", "brick", "chelsea", "cell", "hubble_deep_field")


def problem(name: str, ksize: int, seed: int, sigma: float, size: int = 255, tail: float = 0.5):
    """(blurry, true kernel, sharp) for one design image, kernel size and noise level; ``tail``
    is the kernel's energy in the second half of its path (``shake_psf``; < 0.5: a faint tail).

    Raises ValueError when the photograph is too small for the crop and the kernel.
    """
    import torch
    from skimage import data
    from skimage.color import rgb2gray

    from napari_selfdeblur.engine.physics import blur_valid
    from napari_selfdeblur.imaging.psf import shake_psf

    im = getattr(data, name)()
    im = rgb2gray(im) if im.ndim == 3 else im / 255.0
    if name == "text":  # 172 rows: tile it to the crop size
        im = np.tile(im, (3, 1))
    k = shake_psf(ksize, seed, tail=tail)
    kh = k.shape[0]
    h, w = im.shape
    y0, x0 = (h - size - kh) // 2, (w - size - kh) // 2
    if min(y0, x0) < 0:
        raise ValueError(f"{name} is {h}x{w} px, too small for a {size} px crop and {kh} px kernel")
    big = im[y0 : y0 + size + kh - 1, x0 : x0 + size + kh - 1].astype(np.float64)
    y = blur_valid(torch.from_numpy(big)[None, None], torch.from_numpy(k))[0, 0].numpy()
    sharp = big[kh // 2 : kh // 2 + size, kh // 2 : kh // 2 + size]
    rng = np.random.default_rng(seed)
    return np.clip(y + rng.normal(0, sigma, y.shape), 0, 1), k, sharp


def add_grid_arguments(p, *, preset: str, sizes, noise) -> None:
    """The design grid's command-line options (``--preset``, ``--images``, ``--sizes`` in px,
    ``--noise`` as the white noise's standard deviation) with these defaults.
    """
    p.add_argument(
        "--preset", default=preset, help="a preset, fields may be changed: quick:polish=false"
    )
    p.add_argument("--images", nargs="+", default=list(IMAGES))
    p.add_argument("--sizes", type=int, nargs="+", default=list(sizes))
    p.add_argument("--noise", type=float, nargs="+", default=list(noise))


def add_tail_argument(p) -> None:
    """The ``--tail`` option: the kernel's energy in the second half of its path (``problem``;
    0.5, the default, gives the kernels of every earlier round; less leaves a faint tail).
    """
    p.add_argument(
        "--tail", type=float, default=0.5, help="kernel energy in the second half of the path"
    )


def design_problems(images, sizes, noise):
    """Yield (name, kernel size, noise, blurry, true kernel, sharp) for every combination, the
    true kernel drawn with seed ``size + 1``; a photograph too small for the crop is reported
    and skipped.
    """
    for name in images:
        for ks in sizes:
            for sigma in noise:
                try:
                    y, k, sharp = problem(name, ks, ks + 1, sigma)
                except ValueError as exc:
                    print(f"skipped: {exc}", flush=True)
                    continue
                yield name, ks, sigma, y, k, sharp


def write_design_rows(args, measure) -> list[dict]:
    """``{"image", "kernel", "noise"} | measure(name, size, noise, y, k, sharp)`` for every
    problem of the grid options in ``args`` (:func:`add_grid_arguments`), written to
    ``args.out`` as each finishes (``_rows.write_rows``); returns the rows.
    """
    from _rows import write_rows

    problems = design_problems(args.images, args.sizes, args.noise)
    return write_rows(
        (
            {"image": name, "kernel": ks, "noise": sigma} | measure(name, ks, sigma, y, k, sharp)
            for name, ks, sigma, y, k, sharp in problems
        ),
        args.out,
    )


def main() -> None:
    import torch

    from napari_selfdeblur import refine
    from napari_selfdeblur.config import MapConfig
    from napari_selfdeblur.engine.map_kernel import estimate_map
    from napari_selfdeblur.evaluation.metrics import kernel_similarity, levin_score
    from napari_selfdeblur.imaging.noise import estimate_noise_sigma

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("settings", nargs="*", help="MapConfig fields, e.g. gamma=20")
    p.add_argument("--images", nargs="+", default=list(IMAGES))
    p.add_argument("--sizes", type=int, nargs="+", default=[15, 25])
    p.add_argument("--noise", type=float, default=0.01)
    p.add_argument("--strength-factor", type=float, nargs="+", default=[5.0])
    p.add_argument("--size-margin", type=int, default=2, help="kernel size = true size + this")
    args = p.parse_args()
    kinds = {f.name: f.type for f in dataclasses.fields(MapConfig)}
    changes = dict(s.split("=", 1) for s in args.settings)
    cfg = MapConfig(**{k: (int if kinds[k] == "int" else float)(v) for k, v in changes.items()})
    rows = []
    for name in args.images:
        for ks in args.sizes:
            y, k, sharp = problem(name, ks, ks, args.noise)
            start = time.perf_counter()
            est = estimate_map(
                y[None], (k.shape[0] + args.size_margin,) * 2, cfg, device=torch.device("cpu")
            )
            seconds = time.perf_counter() - start
            sigma = max(estimate_noise_sigma(y), 1e-3)
            base = 29.9 * sigma**1.98  # the sparse method's noise-derived strength
            ours = [
                levin_score(refine(y, est.kernels[0], "sparse", strength=base * f).image, sharp)
                for f in args.strength_factor
            ]
            known = levin_score(refine(y, k, "sparse").image, sharp)
            sim = kernel_similarity(est.kernels[0], k)
            rows.append((*(o.psnr for o in ours), known.psnr, sim, seconds))
            print(
                f"{name:18s} k{ks:2d} sim {sim:.3f} PSNR "
                + " / ".join(f"{o.psnr:.2f}" for o in ours)
                + f" (true kernel {known.psnr:.2f}) MAP {seconds:.1f} s",
                flush=True,
            )
    a = np.array(rows)
    factors = " / ".join(f"x{f:g}" for f in args.strength_factor)
    means = " / ".join(f"{m:.2f}" for m in a[:, :-3].mean(0))
    print(
        f"mean PSNR {factors}: {means} dB, true kernel {a[:, -3].mean():.2f} dB, "
        f"kernel similarity {a[:, -2].mean():.3f}, MAP {a[:, -1].mean():.1f} s"
    )


if __name__ == "__main__":
    main()
