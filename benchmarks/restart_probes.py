"""Do restart probes pick good seeds? Probe losses on Levin images, joined with a seed study.

``deblur(..., restarts=K)`` runs each seed for ``restart_iterations`` full-size iterations (after
the coarse levels of a coarse-to-fine preset), keeps the seed with the lowest loss and continues it.
This script runs only the probes, one row per (image, seed), and compares the seed each image's
probes would pick with the finished runs of a seed study (``benchmarks/levin.py`` rows with the
same preset and seeds, run with the same number of threads):

    OMP_NUM_THREADS=1 python benchmarks/restart_probes.py --preset fast:init=random \\
        --images im4_kernel7 im4_kernel8 im2_kernel4 --seeds 0 1 2 3 4 \\
        --study benchmarks/results/levin_seeds_random.csv \\
        --out benchmarks/results/stability/restart_probes.csv

Rows are appended as they finish and rows already in ``--out`` are skipped, so it resumes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

import numpy as np

from _rows import append_rows, read_rows
from napari_selfdeblur import deblur
from napari_selfdeblur.config import DeblurConfig, config_from_spec
from napari_selfdeblur.engine.restarts import restart_probe_length
from napari_selfdeblur.evaluation.datasets import SUBSETS, default_levin_root, levin_cases


def probe_loss(
    blurry: np.ndarray,
    kernel_size: int,
    preset: str | DeblurConfig,
    seed: int,
    probe: int | None,
    device: str = "auto",
) -> tuple[int, float]:
    """(probe iterations, loss after them) for one seed, as ``restarts`` measures it."""
    cfg = config_from_spec(preset) if isinstance(preset, str) else preset
    probe = restart_probe_length(cfg, probe)
    done = {"it": 0}

    def track(p) -> None:
        if not p.stage:
            done["it"] = p.iteration - (p.total - cfg.iterations)

    r = deblur(
        blurry,
        kernel_size,
        preset=cfg,
        seed=seed,
        device=device,
        callback=track,
        callback_every=1,
        should_stop=lambda: done["it"] >= probe,
    )
    if done["it"] != probe or not r.history:
        raise RuntimeError(f"the probe stopped after {done['it']} of {probe} iterations")
    return probe, float(r.history[-1][1])


def compare(probes: list[dict], study: list[dict]) -> list[dict]:
    """Per image: PSNR of the seed the probes pick, of the lowest final loss, mean and best.

    ``probes`` rows have name, seed, probe_loss; ``study`` rows (levin.py) have name, seed, psnr,
    final_loss. Only seeds present in both count.
    """
    finished = {(r["name"], int(r["seed"])): r for r in study}
    by_image: dict[str, list[tuple[float, float, float, int]]] = {}
    for p in probes:
        s = finished.get((p["name"], int(p["seed"])))
        if s is not None:
            by_image.setdefault(p["name"], []).append(
                (float(p["probe_loss"]), float(s["final_loss"]), float(s["psnr"]), int(p["seed"]))
            )
    out = []
    for name, runs in sorted(by_image.items()):
        pick = min(runs, key=lambda x: x[0])
        by_final = min(runs, key=lambda x: x[1])
        out.append(
            dict(
                name=name,
                seeds=len(runs),
                probe_pick=pick[3],
                psnr_probe_pick=pick[2],
                final_pick=by_final[3],
                psnr_final_pick=by_final[2],
                psnr_mean=float(np.mean([x[2] for x in runs])),
                psnr_worst=min(x[2] for x in runs),
                psnr_best=max(x[2] for x in runs),
            )
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="fast:init=random")
    p.add_argument("--images", nargs="+", required=True, help="Levin names, e.g. im4_kernel7")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument(
        "--probe",
        type=int,
        default=None,
        help="probe length in full-size iterations (default: a tenth, as restarts)",
    )
    p.add_argument("--study", type=Path, required=True, help="levin.py rows of the finished runs")
    p.add_argument("--data", type=Path, default=default_levin_root())
    p.add_argument("--device", default="auto")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    unknown = sorted(set(args.images) - {f"im{i}_kernel{k}" for i, k in SUBSETS["all"]})
    if unknown:
        raise SystemExit(f"not Levin images: {', '.join(unknown)} (names like im4_kernel7)")
    cases = [c for c in levin_cases(args.data, "all") if c.name in args.images]
    done = {(r["name"], r["preset"], r["seed"]) for r in read_rows(args.out)}
    for case in cases:
        for seed in args.seeds:
            if (case.name, args.preset, str(seed)) in done:
                continue
            start = time.perf_counter()
            probe, loss = probe_loss(
                case.blurry.astype(np.float32),
                case.reference_kernel_size,
                args.preset,
                seed,
                args.probe,
                args.device,
            )
            append_rows(
                args.out,
                [
                    dict(
                        name=case.name,
                        preset=args.preset,
                        seed=seed,
                        probe_iterations=probe,
                        probe_loss=round(loss, 6),
                        runtime_s=round(time.perf_counter() - start, 1),
                        date=dt.date.today().isoformat(),
                    )
                ],
            )
            print(f"{case.name} seed {seed}: probe loss {loss:.6f} after {probe} iterations")

    study = [r for r in read_rows(args.study) if r["preset"] == args.preset]
    rows = compare([r for r in read_rows(args.out) if r["preset"] == args.preset], study)
    print("| image | seeds | probe pick (PSNR) | lowest final loss (PSNR) | mean | worst | best |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['name']} | {r['seeds']} | {r['probe_pick']} ({r['psnr_probe_pick']:.2f}) | "
            f"{r['final_pick']} ({r['psnr_final_pick']:.2f}) | {r['psnr_mean']:.2f} | "
            f"{r['psnr_worst']:.2f} | {r['psnr_best']:.2f} |"
        )
    if rows:
        mean = {
            k: np.mean([r[k] for r in rows])
            for k in ("psnr_probe_pick", "psnr_final_pick", "psnr_mean", "psnr_best")
        }
        print(
            f"mean over {len(rows)} images: probe pick {mean['psnr_probe_pick']:.2f}, "
            f"lowest final loss {mean['psnr_final_pick']:.2f}, one seed {mean['psnr_mean']:.2f}, "
            f"best {mean['psnr_best']:.2f} dB"
        )


if __name__ == "__main__":
    main()
