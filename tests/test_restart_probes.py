"""benchmarks/restart_probes.py: the probes' pick is compared with the finished runs fairly."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "benchmarks"))
import restart_probes


def test_compare_picks_the_lowest_probe_loss_and_ignores_unfinished_seeds():
    probes = [
        dict(name="im1", seed="0", probe_loss="0.30"),
        dict(name="im1", seed="1", probe_loss="0.10"),  # probes pick seed 1
        dict(name="im1", seed="2", probe_loss="0.20"),
        dict(name="im1", seed="3", probe_loss="0.01"),
    ]  # no finished run: not counted
    study = [
        dict(name="im1", seed="0", psnr="30.0", final_loss="0.010"),
        dict(name="im1", seed="1", psnr="22.0", final_loss="0.012"),
        dict(name="im1", seed="2", psnr="31.0", final_loss="0.011"),
        dict(name="im2", seed="0", psnr="25.0", final_loss="0.02"),
    ]  # no probe: not counted
    (row,) = restart_probes.compare(probes, study)
    assert row["name"] == "im1" and row["seeds"] == 3
    assert (row["probe_pick"], row["psnr_probe_pick"]) == (1, 22.0)
    assert (row["final_pick"], row["psnr_final_pick"]) == (0, 30.0)
    assert row["psnr_mean"] == pytest.approx(83.0 / 3)
    assert (row["psnr_worst"], row["psnr_best"]) == (22.0, 31.0)


@pytest.mark.slow
@pytest.mark.parametrize("coarse_levels", [0, 1])
def test_probe_loss_is_what_restarts_measure(scene, tiny_config, coarse_levels):
    from napari_selfdeblur import deblur

    cfg = tiny_config.replace(coarse_levels=coarse_levels, coarse_iterations=6)
    r = deblur(scene, 5, preset=cfg, seed=4, device="cpu", restarts=2, restart_iterations=5)
    expected = r.metadata()["restarts"]["probe_losses"]
    got = [restart_probes.probe_loss(scene, 5, cfg, s, 5, "cpu") for s in (4, 5)]
    assert [it for it, _ in got] == [5, 5]
    assert [round(loss, 6) for _, loss in got] == expected


def test_unknown_image_names_are_refused_before_any_work(monkeypatch, tmp_path):
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "restart_probes.py",
            "--images",
            "im4_kernel7",
            "im9_kernel1",
            "--study",
            str(tmp_path / "s.csv"),
            "--out",
            str(tmp_path / "p.csv"),
        ],
    )
    with pytest.raises(SystemExit, match="not Levin images: im9_kernel1"):
        restart_probes.main()
    assert not (tmp_path / "p.csv").exists()
