"""Choose the noise-to-strength rule of each non-blind method on data that is not the benchmark.

Natural photographs from scikit-image (``camera``, ``astronaut``, ``coffee``, grey, 192x192 crops)
are blurred with random camera-shake kernels ('valid' convolution, so the borders are realistic)
and given white Gaussian noise of several levels (sigma below is the level estimated from the
blurry image, as at run time). Strength means what it means in ``refine``: the prior's weight,
larger is smoother. The kernel is known and aligned, so there is no shift search; PSNR excludes a
15-px border. For each method and noise level the best strength on a log grid is found, and a
power law ``strength = a * sigma**p`` fitted through them (least squares in log-log) becomes the
method's default rule in ``napari_selfdeblur.nonblind``. The Levin set is never used here;
benchmarks/nonblind.py measures the chosen defaults on it.

    python benchmarks/calibrate_nonblind.py            # needs scikit-image
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np


def problems(noise_levels, seeds=(0, 1)):
    import torch
    from skimage import data
    from skimage.color import rgb2gray

    from napari_selfdeblur.engine.physics import blur_valid
    from napari_selfdeblur.imaging.psf import shake_psf

    images = []
    for name in ("camera", "astronaut", "coffee"):
        im = getattr(data, name)()
        im = rgb2gray(im) if im.ndim == 3 else im / 255.0
        h, w = im.shape
        images.append((name, im[h // 2 - 120 : h // 2 + 120, w // 2 - 120 : w // 2 + 120]))
    for name, big in images:
        for seed in seeds:
            k = shake_psf(19 if seed == 0 else 25, seed)
            kh = k.shape[0]
            sharp_big = big[: 192 + kh - 1, : 192 + kh - 1]
            y = blur_valid(torch.from_numpy(sharp_big)[None, None], torch.from_numpy(k))[0, 0]
            sharp = sharp_big[kh // 2 : kh // 2 + 192, kh // 2 : kh // 2 + 192]
            for sigma in noise_levels:
                rng = np.random.default_rng(100 + seed)
                noisy = y.numpy() + rng.normal(0, sigma, y.shape)
                yield f"{name}/k{seed}/s{sigma}", sigma, noisy, k, sharp


def main() -> None:
    import torch

    from napari_selfdeblur.evaluation.metrics import psnr
    from napari_selfdeblur.imaging.noise import estimate_noise_sigma
    from napari_selfdeblur.nonblind import METHODS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--noise", type=float, nargs="+", default=[0.001, 0.003, 0.01, 0.03])
    p.add_argument("--methods", nargs="+", default=["hyper-laplacian", "sparse", "wiener"])
    default_out = Path(__file__).parent / "results" / "calibrate_nonblind.csv"
    p.add_argument("--out", type=Path, default=default_out)
    args = p.parse_args()
    grid = [float(v) for v in np.logspace(-5, -1, 9)]  # 1e-5 .. 1e-1, half-decade steps
    grids = {"hyper-laplacian": grid[:-1], "sparse": grid[2:], "wiener": grid[2:]}
    rows = []
    for name, sigma, y, k, sharp in problems(args.noise, seeds=(0,)):
        est = estimate_noise_sigma(y)
        yt, kt = torch.from_numpy(y)[None], torch.from_numpy(k)
        for method in args.methods:
            spec = METHODS[method]
            for s in grids[method]:
                params = spec.resolve({})
                out = spec.run(yt, kt, [s], params, lambda d, t: False, torch.device("cpu"))
                score = psnr(out[0].numpy()[15:-15, 15:-15], sharp[15:-15, 15:-15])
                rows.append(
                    dict(
                        problem=name,
                        sigma=sigma,
                        sigma_est=round(est, 5),
                        method=method,
                        strength=s,
                        psnr=round(score, 3),
                    )
                )
        print(name, f"sigma est {est:.4f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"\n{'method':>16} {'sigma':>8} {'best strength':>14} {'PSNR':>7}")
    for method in args.methods:
        xs, ys = [], []
        for sigma in args.noise:
            sel = [r for r in rows if r["method"] == method and r["sigma"] == sigma]
            sig_est = float(np.mean([r["sigma_est"] for r in sel]))
            means = {
                s: np.mean([r["psnr"] for r in sel if r["strength"] == s]) for s in grids[method]
            }
            best = max(means, key=means.get)
            print(f"{method:>16} {sig_est:8.4f} {best:14.2e} {means[best]:7.2f}")
            xs.append(np.log(sig_est))
            ys.append(np.log(best))
        slope, intercept = np.polyfit(xs, ys, 1)
        print(f"{method:>16} rule: strength = {np.exp(intercept):.3g} * sigma^{slope:.2f}")


if __name__ == "__main__":
    main()
