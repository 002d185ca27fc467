"""Run SelfDeblur over the Levin set and score it with the Levin protocol.

Writes one CSV row per (image, seed) as soon as it is done, skips rows already in the CSV (so an
interrupted run resumes), prints a summary table and saves a montage of latents and kernels.

    python benchmarks/levin.py --preset paper --subset levin-8 --seeds 0
    python benchmarks/levin.py --preset demo --subset levin-8 --kernel-size 31 --seeds 0 1 2

Kernel sizes: ``reference`` (default) uses the sizes the reference implementation passes
(17, 15, 13, 27, 11, 19, 21, 21 for kernels 1..8); an integer uses that size for every image,
which is how users run it (over-estimated).

Error ratio: ||x - x_gt|| / ||x_known - x_gt|| at each one's best shift, where x_known is the
sparse-prior (Levin et al.) deconvolution with the true kernel at its default strength.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import platform
import re
import time
from pathlib import Path

import numpy as np

from napari_selfdeblur import __version__, deblur
from napari_selfdeblur.config import config_from_spec
from napari_selfdeblur.evaluation.datasets import SUBSETS, default_levin_root, levin_cases
from napari_selfdeblur.evaluation.metrics import error_ratio, kernel_similarity, levin_score

FIELDS = [
    "name",
    "preset",
    "iterations",
    "seed",
    "kernel_size",
    "psnr",
    "ssim",
    "error_ratio",
    "kernel_similarity",
    "psnr_blurry",
    "runtime_s",
    "device",
    "machine",
    "version",
    "date",
    "refine_method",
    "psnr_refined",
    "ssim_refined",
    "final_loss",
    "kernel_support_px",
    "latent_change",
    "flags",
    "kernel_agreement",
]
# Files written before the later columns existed are appended to with their own header.
OLD_HEADERS = (FIELDS[:-5], FIELDS[:-1])


def known_kernel_baseline(case) -> np.ndarray:
    """The true kernel deconvolved by the sparse-prior method (as the paper's known-kernel row)."""
    from napari_selfdeblur.nonblind.api import refine

    return refine(case.blurry, case.psf, "sparse").image


def save_montage(rows: list[tuple[str, np.ndarray, np.ndarray]], path: Path) -> None:
    from PIL import Image

    tiles = []
    for _, latent, kernel in rows:
        h = latent.shape[0]
        k = kernel / kernel.max()
        k = np.kron(k, np.ones((3, 3)))[:h, :h]
        kpad = np.zeros((h, k.shape[1]))
        kpad[: k.shape[0]] = k
        tiles.append(np.hstack([np.clip(latent, 0, 1), kpad]))
    width = max(t.shape[1] for t in tiles)
    tiles = [np.pad(t, ((0, 4), (0, width - t.shape[1]))) for t in tiles]
    Image.fromarray((np.vstack(tiles) * 255).astype(np.uint8)).save(path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--preset",
        default="paper",
        help="a preset, optionally with fields changed: demo:init=noblur",
    )
    p.add_argument("--subset", default="levin-8", choices=sorted(SUBSETS))
    p.add_argument(
        "--kernel-size", default="reference", help="'reference', 'auto' or an odd integer"
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--limit", type=int, default=None, help="only the first N images")
    p.add_argument("--data", type=Path, default=default_levin_root())
    p.add_argument(
        "--refine",
        default=None,
        help="also deconvolve the blurry image with the estimated kernel by this "
        "non-blind method (e.g. sparse) and score it",
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=100,
        help="save the optimiser state every N iterations (0: never) so that an "
        "interrupted image resumes where it stopped",
    )
    p.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "levin.csv")
    args = p.parse_args()

    import torch

    machine = f"{platform.machine()}, torch {torch.__version__}"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    new_file = not args.out.exists() or args.out.stat().st_size == 0
    if not new_file:
        with args.out.open() as f:
            header = next(csv.reader(f), [])
        if header != FIELDS and header not in OLD_HEADERS:
            raise SystemExit(
                f"{args.out} has other columns than this script writes; give another --out"
            )
        with args.out.open() as f:
            for row in csv.DictReader(f):
                done.add(
                    (
                        row["name"],
                        row["preset"],
                        row["iterations"],
                        row["seed"],
                        row["kernel_size"].split(":")[0],
                    )
                )
    else:
        header = FIELDS
    montage, summary = [], []
    cases = list(levin_cases(args.data, args.subset))[: args.limit]
    with args.out.open("w" if new_file else "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header, extrasaction="ignore")
        if new_file:
            writer.writeheader()
        for case in cases:
            ks = (
                case.reference_kernel_size
                if args.kernel_size == "reference"
                else args.kernel_size
                if args.kernel_size == "auto"
                else int(args.kernel_size)
            )
            known = levin_score(known_kernel_baseline(case), case.sharp)
            psnr_blurry = round(levin_score(case.blurry, case.sharp).psnr, 3)
            for seed in args.seeds:
                result_iters = args.iterations if args.iterations else "preset"
                key = (case.name, args.preset, str(result_iters), str(seed), str(ks))
                if key in done:
                    print(f"{case.name} seed {seed}: already in {args.out}, skipped")
                    continue
                ckpt = None
                if args.checkpoint_every > 0:
                    ckpt = args.out.parent / "checkpoints" / ("_".join(key) + ".pt")
                    if ckpt.exists():
                        print(f"{case.name} seed {seed}: resuming from {ckpt}")
                start = time.perf_counter()
                r = deblur(
                    case.blurry.astype(np.float32),
                    ks,
                    preset=config_from_spec(args.preset),
                    iterations=args.iterations,
                    seed=seed,
                    device=args.device,
                    checkpoint=ckpt,
                    checkpoint_every=args.checkpoint_every,
                )
                # Runtime of this process only; a resumed run adds the earlier sessions' time.
                runtime = time.perf_counter() - start + r.extra.get("resumed_runtime_s", 0.0)
                score = levin_score(r.latent, case.sharp)
                row = dict(
                    name=case.name,
                    preset=args.preset,
                    iterations=result_iters,
                    seed=seed,
                    # "auto": the size chosen, after the reference size it replaces
                    kernel_size=ks
                    if ks != "auto"
                    else f"auto:{r.kernel.shape[0]}/{case.reference_kernel_size}",
                    psnr=round(score.psnr, 3),
                    ssim=round(score.ssim, 4),
                    error_ratio=round(error_ratio(score, known), 3),
                    kernel_similarity=round(kernel_similarity(r.kernel, case.psf), 3),
                    psnr_blurry=psnr_blurry,
                    runtime_s=round(runtime, 1),
                    device=r.device,
                    machine=machine,
                    version=__version__,
                    date=dt.date.today().isoformat(),
                    final_loss=f"{r.final_loss:.6g}",
                )
                if r.diagnosis is not None:
                    row.update(
                        kernel_support_px=round(r.diagnosis.kernel_support_px, 2),
                        latent_change=round(r.diagnosis.latent_change, 4),
                        flags="+".join(r.diagnosis.flags),
                        kernel_agreement=r.diagnosis.kernel_agreement,
                    )
                if args.refine:
                    from napari_selfdeblur.nonblind.api import refine

                    refined = refine(case.blurry, r.kernel, args.refine).image
                    rscore = levin_score(refined, case.sharp)
                    row.update(
                        refine_method=args.refine,
                        psnr_refined=round(rscore.psnr, 3),
                        ssim_refined=round(rscore.ssim, 4),
                    )
                writer.writerow(row)
                f.flush()
                summary.append(row)
                montage.append((f"{case.name} s{seed}", r.latent, r.kernel))
                extra = (
                    f", refined by {args.refine} {row['psnr_refined']:.2f} dB"
                    if args.refine
                    else ""
                )
                print(
                    f"{case.name} seed {seed}: PSNR {row['psnr']:.2f} dB (blurry "
                    f"{row['psnr_blurry']:.2f}), SSIM {row['ssim']:.4f}, kernel sim "
                    f"{row['kernel_similarity']:.3f}, {runtime:.0f} s{extra}",
                    flush=True,
                )
    if summary:
        keys = ["psnr", "ssim", "error_ratio", "kernel_similarity", "psnr_blurry", "runtime_s"]
        if args.refine:
            keys += ["psnr_refined", "ssim_refined"]
        print("\n" + " ".join(f"{k:>17}" for k in ["mean of " + str(len(summary)), *keys]))
        means = [np.mean([float(r[k]) for r in summary]) for k in keys]
        print(" ".join(f"{v:>17}" for v in ["", *[f"{m:.3f}" for m in means]]))
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", args.preset.replace("=", "-"))
        fig = args.out.with_suffix(f".{safe}.png")
        save_montage(montage, fig)
        print(f"rows in {args.out}; montage in {fig}")


if __name__ == "__main__":
    main()
