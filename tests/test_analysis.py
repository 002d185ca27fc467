"""Analysis instruments: spectra, band errors, the Bezier landscape, the analyze command."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_selfdeblur.cli import main
from napari_selfdeblur.engine.physics import convolve_same
from napari_selfdeblur.engine.solver import fit
from napari_selfdeblur.evaluation.analysis import (
    band_errors,
    loss_landscape,
    radial_power_spectrum,
    summarise_seeds,
    write_landscape,
)
from napari_selfdeblur.evaluation.sample import sharp_scene
from napari_selfdeblur.imaging.psf import gaussian_psf, motion_psf

pytest.importorskip("matplotlib")


def test_blur_removes_high_frequencies_and_band_errors_see_it():
    sharp = sharp_scene((64, 64), seed=1, fine_detail=True)
    blurry = convolve_same(sharp, gaussian_psf(1.5))
    f, p_sharp = radial_power_spectrum(sharp)
    _, p_blurry = radial_power_spectrum(blurry)
    assert f[0] > 0 and f[-1] < 0.5 and len(f) == 32
    high = f > 0.25
    assert p_blurry[high].mean() < 0.1 * p_sharp[high].mean()  # blur kills high frequencies
    assert p_blurry[1] == pytest.approx(p_sharp[1], rel=0.2)  # and keeps the lowest
    errs = band_errors(blurry, sharp, n_bands=4)
    assert errs[-1] > errs[0] and errs[-1] > 0.5
    # The spectral magnitude ignores a shift, the blind translation ambiguity.
    assert band_errors(np.roll(sharp, 3, axis=1), sharp).max() < 0.05


@pytest.mark.slow
def test_bezier_curve_lowers_the_mean_loss_below_the_straight_line(tiny_config):
    sharp = sharp_scene((40, 40), seed=3)
    k = motion_psf(5, 0)
    y = convolve_same(sharp, k).astype(np.float32)
    cfg = tiny_config.replace(iterations=60, lr_milestones=(40, 50), ssim_start=30)
    cpu = torch.device("cpu")
    start = fit(
        y,
        k.shape,
        cfg.replace(init="noblur", init_iterations=100),
        device=cpu,
        stop_at=0,
        keep_state=True,
    )
    end = fit(y, k.shape, cfg, device=cpu, keep_state=True)
    land = loss_landscape(y, k.shape, cfg, start.state, end.state, n_points=11, fit_steps=60)
    print(f"mean loss: line {land.line_mean:.4f}, Bezier {land.curve_mean:.4f}")
    assert land.curve_mean < land.line_mean
    # Both paths join the same end points.
    assert land.curve[0] == pytest.approx(land.line[0], rel=1e-5)
    assert land.curve[-1] == pytest.approx(land.line[-1], rel=1e-5)


def test_write_landscape_and_seed_summary(tmp_path):
    from napari_selfdeblur.evaluation.analysis import Landscape

    land = Landscape(np.linspace(0, 1, 3), np.array([0.1, 0.3, 0.1]), np.array([0.1, 0.15, 0.1]))
    paths = write_landscape(land, tmp_path)
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    rows = [
        {"init": "random", "psnr": 20.0, "flags": "delta_kernel"},
        {"init": "random", "psnr": 30.0, "flags": ""},
        {"init": "noblur", "psnr": 28.0, "flags": ""},
    ]
    s = summarise_seeds(rows)
    assert s["random"]["worst"] == 20.0 and s["random"]["flagged"] == 1
    assert s["noblur"]["mean"] == 28.0


def test_analyze_command_spectral_and_seeds(tmp_path, capsys):
    import tifffile

    sharp = sharp_scene((64, 64), seed=2)
    blurry = convolve_same(sharp, motion_psf(5, 30)).astype(np.float32)
    tifffile.imwrite(tmp_path / "b.tif", blurry)
    tifffile.imwrite(tmp_path / "s.tif", sharp.astype(np.float32))
    run = ["-k", "7", "--iterations", "6", "--device", "cpu", "--quiet"]
    out = tmp_path / "spec"
    assert (
        main(
            [
                "analyze",
                "spectral",
                str(tmp_path / "b.tif"),
                "--truth",
                str(tmp_path / "s.tif"),
                "--snapshots",
                "2",
                "4",
                "6",
                "--out",
                str(out),
                *run,
            ]
        )
        == 0
    )
    assert (out / "spectra.png").exists() and (out / "band_errors.png").exists()
    header = (out / "band_errors.csv").read_text().splitlines()
    assert header[0].startswith("iteration") and len(header) == 5  # input + 3 snapshots
    out = tmp_path / "seeds"
    assert (
        main(
            [
                "analyze",
                "seeds",
                str(tmp_path / "b.tif"),
                "--truth",
                str(tmp_path / "s.tif"),
                "--seeds",
                "0",
                "1",
                "--out",
                str(out),
                *run,
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "random: mean" in text and "noblur: mean" in text
    assert len((out / "seeds.csv").read_text().splitlines()) == 5
    assert main(["analyze", "seeds", str(tmp_path / "b.tif"), "--out", str(out), *run]) == 2


def test_analyze_command_landscape(tmp_path, capsys):
    import tifffile

    blurry = convolve_same(sharp_scene((48, 48), seed=4), motion_psf(5, 0)).astype(np.float32)
    tifffile.imwrite(tmp_path / "b.tif", blurry)
    out = tmp_path / "land"
    args = [
        "analyze",
        "landscape",
        str(tmp_path / "b.tif"),
        "-k",
        "5",
        "--iterations",
        "4",
        "--fit-steps",
        "3",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(args) == 0
    assert "Bezier curve" in capsys.readouterr().out
    rows = (out / "landscape.csv").read_text().splitlines()
    assert rows[0] == "t,line_loss,bezier_loss" and len(rows) == 22
    assert (out / "landscape.png").stat().st_size > 0
