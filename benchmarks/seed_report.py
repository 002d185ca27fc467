"""Summarise a seed study on the Levin set: PSNR over seeds for each initialisation.

Reads CSVs written by ``benchmarks/levin.py`` (one per initialisation, e.g. ``--preset
fast:init=random`` and ``--preset fast:init=noblur``), prints Markdown tables and writes a plot.

    python benchmarks/seed_report.py benchmarks/results/levin_seeds_random.csv \\
        benchmarks/results/levin_seeds_noblur.csv --plot benchmarks/results/stability

Only (image, seed) pairs present for every initialisation are compared, so a study still running
gives a fair, if smaller, comparison. A run "ends at the no-blur solution" when the failure
detector flags a delta-like kernel or a latent that barely differs from the input. Measured with
the ground truth, a run is "near the input" when its PSNR is within 1 dB of the blurry image's.
"Lowest loss per image" is the mean PSNR a user gets by keeping, per image, the seed with the best
final data fit (what ``restarts`` does, without the truth); "best per image" knows the truth and is
only a bound.

The per-image table also gives each ground truth's high-frequency share: the fraction of its
radially averaged power (above 0.02 cycles/px) that lies above 0.25 cycles/px, to test whether
images rich in high frequencies gain less.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

from napari_selfdeblur.config import config_from_spec
from napari_selfdeblur.evaluation.analysis import radial_power_spectrum
from napari_selfdeblur.evaluation.datasets import default_levin_root, levin_cases

NO_BLUR_FLAGS = {"delta_kernel", "latent_is_input"}
NEAR_INPUT_DB = 1.0  # a run this close to the blurry input's PSNR deblurred next to nothing


def load(paths: list[Path]) -> list[dict]:
    rows = []
    for path in paths:
        with path.open() as f:
            for r in csv.DictReader(f):
                flags = set(filter(None, (r.get("flags") or "").split("+")))
                rows.append(
                    dict(
                        init=config_from_spec(r["preset"]).init,
                        name=r["name"],
                        seed=int(r["seed"]),
                        psnr=float(r["psnr"]),
                        psnr_blurry=float(r["psnr_blurry"]),
                        psnr_refined=float(r["psnr_refined"]) if r.get("psnr_refined") else np.nan,
                        kernel_similarity=float(r["kernel_similarity"]),
                        final_loss=float(r["final_loss"]) if r.get("final_loss") else np.nan,
                        runtime_s=float(r["runtime_s"]),
                        flags=" ".join(sorted(flags)),
                        no_blur=bool(flags & NO_BLUR_FLAGS),
                    )
                )
    return rows


def paired(rows: list[dict]) -> list[dict]:
    """The rows whose (image, seed) was run with every initialisation."""
    inits = {r["init"] for r in rows}
    have: dict[tuple, set] = {}
    for r in rows:
        have.setdefault((r["name"], r["seed"]), set()).add(r["init"])
    return [r for r in rows if have[(r["name"], r["seed"])] == inits]


def high_frequency_share(image: np.ndarray, cut: float = 0.25) -> float:
    """Fraction of the power above 0.02 cycles/px that lies above ``cut`` cycles/px."""
    f, power = radial_power_spectrum(np.asarray(image, float))
    return float(power[f > cut].sum() / power[f > 0.02].sum())


def _mean_finite(values: list[float]) -> float:
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def summary(rows: list[dict]) -> list[dict]:
    out = []
    for init in sorted({r["init"] for r in rows}):
        mine = [r for r in rows if r["init"] == init]
        psnr = np.array([r["psnr"] for r in mine])
        names = sorted({r["name"] for r in mine})
        per_image = [[r for r in mine if r["name"] == n] for n in names]
        chosen = [min(g, key=lambda r: r["final_loss"])["psnr"] for g in per_image]
        best = [max(r["psnr"] for r in g) for g in per_image]
        out.append(
            dict(
                init=init,
                runs=len(mine),
                seeds=len({r["seed"] for r in mine}),
                images=len(names),
                mean=psnr.mean(),
                std=psnr.std(ddof=1) if len(psnr) > 1 else np.nan,
                std_within=np.mean(
                    [np.std([r["psnr"] for r in g], ddof=1) for g in per_image if len(g) > 1]
                    or [np.nan]
                ),
                worst=psnr.min(),
                gain_worst=min(r["psnr"] - r["psnr_blurry"] for r in mine),
                no_blur=sum(r["no_blur"] for r in mine),
                flagged=sum(bool(r["flags"]) for r in mine),
                near_input=sum(r["psnr"] - r["psnr_blurry"] < NEAR_INPUT_DB for r in mine),
                lowest_loss=np.mean(chosen),
                best=np.mean(best),
                refined=_mean_finite([r["psnr_refined"] for r in mine]),
                seconds=np.mean([r["runtime_s"] for r in mine]),
            )
        )
    return out


def against_reference(rows: list[dict], reference: dict[str, float], margin: float = 0.5):
    """(runs more than ``margin`` dB below ``reference[name]`` (another method's PSNR on the
    same image), the largest per-image standard deviation over seeds); images missing from
    ``reference`` are not compared.
    """
    below = [
        r for r in rows if r["name"] in reference and r["psnr"] < reference[r["name"]] - margin
    ]
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["init"], r["name"]), []).append(r["psnr"])
    stds = [np.std(v, ddof=1) for v in groups.values() if len(v) > 1]
    return below, float(max(stds)) if stds else float("nan")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("csv", type=Path, nargs="+")
    p.add_argument("--all", action="store_true", help="also use rows without a partner")
    p.add_argument("--plot", type=Path, help="write seeds.png and seeds.csv into this folder")
    p.add_argument(
        "--reference",
        type=Path,
        help="a levin.py CSV of another method (e.g. quick): count the runs more than 0.5 dB "
        "below its PSNR on the same image",
    )
    p.add_argument(
        "--data",
        type=Path,
        default=default_levin_root(),
        help="the Levin folder, for the high-frequency share of each ground truth",
    )
    args = p.parse_args()
    rows = load(args.csv)
    if not args.all:
        rows = paired(rows)
    if not rows:
        raise SystemExit("no (image, seed) pair was run with every initialisation yet")
    print(
        "| init | runs (images, seeds) | mean PSNR | std | mean std per image | worst PSNR | "
        "worst gain over blurry | runs within 1 dB of blurry | flagged no-blur | flagged (any) | "
        "lowest loss per image | best per image | refined (sparse) | s / run |"
    )
    print("|---" * 14 + "|")
    for s in summary(rows):
        print(
            f"| {s['init']} | {s['runs']} ({s['images']}, {s['seeds']}) | {s['mean']:.2f} | "
            f"{s['std']:.2f} | {s['std_within']:.2f} | {s['worst']:.2f} | "
            f"{s['gain_worst']:+.2f} | {s['near_input']} | {s['no_blur']} | {s['flagged']} | "
            f"{s['lowest_loss']:.2f} | {s['best']:.2f} | {s['refined']:.2f} | "
            f"{s['seconds']:.0f} |"
        )
    if args.reference:
        with args.reference.open() as f:
            reference = {r["name"]: float(r["psnr"]) for r in csv.DictReader(f)}
        below, worst_std = against_reference(rows, reference)
        listed = ", ".join(f"{r['name']} seed {r['seed']}" for r in below) or "none"
        print(
            f"\nlargest per-image std: {worst_std:.2f} dB; runs more than 0.5 dB below "
            f"{args.reference.name}: {len(below)} of {len(rows)} ({listed})"
        )
    inits = sorted({r["init"] for r in rows})
    names = sorted({r["name"] for r in rows})
    truths = {c.name: c.sharp for c in levin_cases(args.data, "all") if c.name in names}
    print(
        "\n| image | high-frequency share | blurry | "
        + " | ".join(f"{i}: mean ± std (worst)" for i in inits)
        + " |"
    )
    print("|---" * (3 + len(inits)) + "|")
    for name in names:
        share = f"{high_frequency_share(truths[name]):.4f}" if name in truths else "-"
        cells = []
        for init in inits:
            v = np.array([r["psnr"] for r in rows if r["name"] == name and r["init"] == init])
            sd = f"{v.std(ddof=1):.2f}" if len(v) > 1 else "-"
            cells.append(f"{v.mean():.2f} ± {sd} ({v.min():.2f})")
        blurry = next(r["psnr_blurry"] for r in rows if r["name"] == name)
        print(f"| {name} | {share} | {blurry:.2f} | " + " | ".join(cells) + " |")
    if args.plot:
        from napari_selfdeblur.evaluation.analysis import write_seed_study

        keep = [
            "init",
            "name",
            "seed",
            "psnr",
            "psnr_blurry",
            "kernel_similarity",
            "final_loss",
            "flags",
        ]
        paths = write_seed_study([{k: r[k] for k in keep} for r in rows], args.plot)
        print("\nwrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
