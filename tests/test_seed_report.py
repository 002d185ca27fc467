"""benchmarks/seed_report.py: the seed-study summary compares like with like."""

from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import seed_report

FIELDS = [
    "name",
    "preset",
    "seed",
    "psnr",
    "psnr_blurry",
    "psnr_refined",
    "kernel_similarity",
    "final_loss",
    "runtime_s",
    "flags",
]


def _write(path: Path, preset: str, rows: list[tuple]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for name, seed, psnr, loss, flags in rows:
            w.writerow(
                dict(
                    name=name,
                    preset=preset,
                    seed=seed,
                    psnr=psnr,
                    psnr_blurry=24.0,
                    psnr_refined="",
                    kernel_similarity=0.5,
                    final_loss=loss,
                    runtime_s=1.0,
                    flags=flags,
                )
            )
    return path


def test_summary_pairs_runs_and_counts_no_blur_endings(tmp_path):
    a = _write(
        tmp_path / "a.csv",
        "fast:init=random",
        [
            ("im1", 0, 30.0, 0.2, ""),
            ("im1", 1, 24.1, 0.1, "delta_kernel"),
            ("im1", 2, 31.0, 0.3, ""),
        ],
    )
    b = _write(
        tmp_path / "b.csv",
        "fast:init=noblur",
        [("im1", 0, 29.0, 0.2, ""), ("im1", 1, 28.0, 0.1, "stalled")],
    )
    rows = seed_report.paired(seed_report.load([a, b]))
    assert sorted((r["init"], r["seed"]) for r in rows) == [
        ("noblur", 0),
        ("noblur", 1),
        ("random", 0),
        ("random", 1),
    ]  # seed 2 has no partner
    s = {x["init"]: x for x in seed_report.summary(rows)}
    assert s["random"]["no_blur"] == 1 and s["noblur"]["no_blur"] == 0
    assert s["random"]["near_input"] == 1 and s["noblur"]["near_input"] == 0  # 24.1 vs 24.0
    assert s["noblur"]["flagged"] == 1  # stalled is flagged but is not the no-blur ending
    assert s["random"]["worst"] == pytest.approx(24.1)
    assert s["random"]["mean"] == pytest.approx(27.05)
    # keeping the lowest final loss picks seed 1 for both, whatever its PSNR
    assert s["random"]["lowest_loss"] == pytest.approx(24.1)
    assert s["noblur"]["lowest_loss"] == pytest.approx(28.0)
    assert s["random"]["best"] == pytest.approx(30.0)


def test_runs_are_compared_with_a_reference_on_the_same_image(tmp_path):
    a = _write(
        tmp_path / "a.csv",
        "standard",
        [("im1", 0, 30.0, 0.1, ""), ("im1", 1, 29.4, 0.1, ""), ("im2", 0, 25.0, 0.1, "")],
    )
    rows = seed_report.load([a])
    below, worst_std = seed_report.against_reference(rows, {"im1": 30.0, "im3": 40.0})
    assert [(r["name"], r["seed"]) for r in below] == [("im1", 1)]  # 0.6 dB below; im2 unknown
    assert worst_std == pytest.approx(0.6 / 2**0.5)  # im1's two seeds; im2 has one
