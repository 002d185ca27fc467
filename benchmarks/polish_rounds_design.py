"""Design data for repeating the kernel polish: photographs that are not the benchmark.

The polish (``DeblurConfig.polish``) refits the kernel once at full resolution against a cheap
sparse pass, then runs the last sparse pass. SelfDeblur's kernels come out thicker than the MAP
candidates' (the hollows of a shake kernel filled in), and one refit moves them only part of the
way. This script asks whether more rounds (refit against the previous round's result, then the
last pass again) help.

For each problem of ``map_design.py`` (scikit-image crops, ``shake_psf`` kernels, white noise;
window 2 px larger than the blur) the four kernels of ``standard`` are computed once (SelfDeblur
started from the MAP medoid, and the three MAP candidates) and cached in ``--cache``; then each
kernel is polished for ``--rounds`` rounds, and the PSNR (Levin protocol) and normalised sparsity
after every round are written, one CSV row per problem. The Levin set is never used here.

    python benchmarks/polish_rounds_design.py --rounds 3 --out results/polish_rounds.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from _rows import as_numbers, read_rows
from choice_design import NAMES, resid
from map_design import add_grid_arguments, write_design_rows


def kernels_of(y, kshape, cfg, seed, cache: Path, key: str) -> list[np.ndarray]:
    """SelfDeblur's kernel and the three MAP candidates for ``y``, from ``cache`` when there."""
    import torch

    from napari_selfdeblur.engine.map_kernel import fit_map
    from napari_selfdeblur.engine.solver import fit
    from napari_selfdeblur.imaging.noise import estimate_noise_sigma

    path = cache / f"{key}.npz"
    if path.exists():
        with np.load(path) as f:
            return [f[n] for n in f.files]
    dev = torch.device("cpu")
    start = fit_map(y, kshape, cfg.map, device=dev)
    raw = fit(
        y, kshape, cfg, device=dev, seed=seed, noise_sigma=estimate_noise_sigma(y), start=start
    )
    kernels = [raw.kernel, *start.alternatives]
    np.savez(path, *kernels)
    return kernels


def rounds_of(y, kernel, cfg, rounds: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(kernel, last pass) after each of ``rounds`` polish rounds of ``kernel``."""
    import torch

    from napari_selfdeblur import refine
    from napari_selfdeblur.api import POLISH_FINAL_PASS, polish_first_pass
    from napari_selfdeblur.engine.map_kernel import refit_kernel

    dev = torch.device("cpu")
    params = polish_first_pass("sparse")
    latent = np.clip(refine(y, kernel, "sparse", kernel_estimated=True, **params).image, 0, 1)
    out = []
    for _ in range(rounds):
        new = refit_kernel(y, latent, kernel.shape, cfg.map, device=dev)
        kernel = kernel if new is None else new
        final = refine(y, kernel, "sparse", kernel_estimated=True, **POLISH_FINAL_PASS["sparse"])
        latent = np.clip(final.image, 0, 1)
        out.append((kernel, latent))
    return out


def one_problem(y, k, sharp, cfg, args, key) -> dict:
    from napari_selfdeblur.api import normalised_sparsity
    from napari_selfdeblur.evaluation.metrics import kernel_similarity, levin_score

    kshape = (k.shape[0] + 2, k.shape[1] + 2)
    kernels = kernels_of(y.astype(np.float32), kshape, cfg, args.seed, args.cache, key)
    row = {}
    for name, kernel in zip(NAMES, kernels, strict=True):
        for r, (kr, latent) in enumerate(rounds_of(y, kernel, cfg, args.rounds), start=1):
            row[f"psnr {name} {r}"] = round(levin_score(latent, sharp).psnr, 3)
            row[f"sparsity {name} {r}"] = round(normalised_sparsity(latent), 3)
            row[f"similarity {name} {r}"] = round(kernel_similarity(kr, k), 3)
            row[f"residual {name} {r}"] = float(f"{resid(y, latent, kr):.6g}")
    return row


def stop_round(row, name: str, rounds: int, score: str = "sparsity") -> int:
    """The round a ground-truth-free rule stops at: the last before ``score`` of the result
    rises (``sparsity``: the result gets less sharp; ``residual``: it fits the input worse).
    """
    r = 1
    while r < rounds and row[f"{score} {name} {r + 1}"] <= row[f"{score} {name} {r}"]:
        r += 1
    return r


def report(rows, rounds: int) -> None:
    """Mean PSNR per round of SelfDeblur's kernel and of the sharpest MAP candidate, and with
    the rounds stopped by :func:`stop_round`.
    """
    picks = [min(NAMES[1:], key=lambda n, row=row: row[f"sparsity {n} 1"]) for row in rows]
    for r in range(1, rounds + 1):
        sd = np.mean([row[f"psnr selfdeblur {r}"] for row in rows])
        mp = np.mean([row[f"psnr {p} {r}"] for row, p in zip(rows, picks, strict=True)])
        print(f"round {r}: SelfDeblur's kernel {sd:.3f} dB, the sharpest MAP candidate {mp:.3f} dB")
    scores = [s for s in ("sparsity", "residual") if f"{s} selfdeblur 1" in rows[0]]
    for score in scores:
        for label, names in (("SelfDeblur's kernel", ["selfdeblur"] * len(rows)), ("MAP", picks)):
            stops = [stop_round(row, n, rounds, score) for row, n in zip(rows, names, strict=True)]
            got = [row[f"psnr {n} {s}"] for row, n, s in zip(rows, names, stops, strict=True)]
            mean = np.mean(got)
            print(f"stopped when the {score} rises, {label}: {mean:.3f} dB (rounds {stops})")


def _key(args, name: str, ks: int, sigma: float) -> str:
    """The cache file's stem for one problem."""
    return f"{args.preset}_{name}_{ks}_{sigma}_{args.seed}".replace(":", "_")


def main() -> None:
    from napari_selfdeblur.config import config_from_spec

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_grid_arguments(p, preset="standard", sizes=(15, 25), noise=(0.002,))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--cache", type=Path, default=Path("results/polish_rounds_cache"))
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--report-only", action="store_true", help="read --out and report")
    args = p.parse_args()
    if args.report_only:
        report(as_numbers(read_rows(args.out)), args.rounds)
        return
    args.cache.mkdir(parents=True, exist_ok=True)
    cfg = config_from_spec(args.preset)
    rows = write_design_rows(
        args,
        lambda name, ks, sigma, y, k, sharp: one_problem(
            y, k, sharp, cfg, args, _key(args, name, ks, sigma)
        ),
    )
    if rows:
        report(rows, args.rounds)


if __name__ == "__main__":
    main()
