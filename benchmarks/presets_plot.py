"""PSNR against seconds per Levin image: this package's presets and published methods.

Points for the presets are read from the CSVs that ``levin.py`` wrote (mean PSNR and mean
seconds per image over the rows of each file); the published points are the SelfDeblur paper's
Table 3 (Levin set; kernel-estimation seconds on a 3.3 GHz Xeon CPU, SelfDeblur on a Titan V GPU).

    python benchmarks/presets_plot.py --out docs/images/presets_psnr_time.png
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"

#: (label, CSV, device, preset) of each measured point: the CSV's rows of that preset.
MEASURED = [
    ("quick (CPU)", "levin_quick_r18_warm12.csv", "cpu", "quick:polish_rounds=12"),
    ("quick, round 17: seven warm polish rounds (CPU)", "levin_quick_r17_taps.csv", "cpu", "quick"),
    (
        "quick, round 15: four fresh polish rounds (CPU)",
        "levin_quick_r15_rounds4.csv",
        "cpu",
        "quick",
    ),
    (
        "quick, round 14: three polish rounds (CPU)",
        "levin_quick_r14_rounds3.csv",
        "cpu",
        "quick:polish_rounds=3",
    ),
    ("quick, round 7: the medoid (CPU)", "levin_quick_v5.csv", "cpu", "quick"),
    ("quick, one MAP candidate (CPU)", "levin_quick_v4_one.csv", "cpu", "quick:map.candidates=1"),
    ("quick without polish (H100)", "levin_quick_gpu.csv", "gpu", "quick"),
    ("standard before round 5 (H100)", "levin_standard_gpu.csv", "gpu", "standard"),
    (
        "standard (CPU, all 32)",
        "levin_standard_r18_warm12.csv",
        "cpu",
        "standard:polish_rounds=12,polish_warm=true",
    ),
    (
        "standard (CPU, levin-8 x seeds 1-4)",
        "levin_standard_seeds_r18.csv",
        "cpu",
        "standard:polish_rounds=12,polish_warm=true",
    ),
    (
        "standard, round 15: four fresh polish rounds (CPU)",
        "levin_standard_r15.csv",
        "cpu",
        "standard",
    ),
    ("fast, retired (CPU, levin-8)", "levin_fast.csv", "cpu", "fast"),
    ("paper (CPU, im1_kernel1)", "levin_paper.csv", "cpu", "paper"),
]

#: The SelfDeblur paper's Table 3: (method, PSNR, seconds).
PUBLISHED = [
    ("Krishnan 2011", 29.88, 8.9),
    ("Cho & Lee 2009", 30.57, 1.4),
    ("Levin 2011", 30.80, 78),
    ("Xu & Jia 2013", 31.67, 1.2),
    ("Sun 2013", 32.99, 191),
    ("Zuo 2016", 32.66, 11),
    ("Pan (dark channel)", 32.69, 295),
    ("SelfDeblur (Titan V)", 33.07, 224),
]


def mean_point(path: Path, preset: str):
    """(mean PSNR, mean seconds, rows) of ``preset``'s full-length rows in a levin.py CSV."""
    rows = [
        r
        for r in csv.DictReader(path.open())
        if r["preset"] == preset and r["iterations"] == "preset"
    ]
    if not rows:
        return None
    return (
        float(np.mean([float(r["psnr"]) for r in rows])),
        float(np.mean([float(r["runtime_s"]) for r in rows])),
        len(rows),
    )


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("docs/images/presets_psnr_time.png"))
    args = p.parse_args()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, psnr, secs in PUBLISHED:
        ax.scatter(secs, psnr, marker="s", color="grey")
        ax.annotate(label, (secs, psnr), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for label, name, device, preset in MEASURED:
        path = RESULTS / name
        point = mean_point(path, preset) if path.exists() else None
        if point is None:
            continue
        psnr, secs, n = point
        ax.scatter(secs, psnr, color="tab:red" if device == "cpu" else "tab:blue")
        ax.annotate(
            f"{label}, n={n}",
            (secs, psnr),
            fontsize=7,
            xytext=(5, 0),
            textcoords="offset points",
            va="center",
        )
        print(f"{label}: {psnr:.2f} dB, {secs:.1f} s per image, {n} rows")
    ax.set_xscale("log")
    ax.set_xlabel("seconds per 255x255 Levin image (log)")
    ax.set_ylabel("mean PSNR (dB, Levin protocol)")
    ax.set_title("Presets (red: 2-core CPU, blue: H100) and published methods (grey)")
    ax.grid(True, alpha=0.3)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120, bbox_inches="tight")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
