"""The selfdeblur command: round trip, stacks, skip-existing, overwrite, errors, demo."""

import json

import numpy as np
import pytest
import tifffile
from PIL import Image

from napari_selfdeblur.cli import main

FAST = ["--preset", "demo", "--iterations", "4", "--device", "cpu", "--quiet"]


@pytest.fixture
def png(tmp_path, scene):
    path = tmp_path / "in" / "photo.png"
    path.parent.mkdir()
    Image.fromarray((scene * 255).astype(np.uint8)).save(path)
    return path


def test_round_trip_skip_and_overwrite(png, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["deblur", str(png), "-k", "5x3", "--out", str(out), *FAST]) == 0
    latent = tifffile.imread(out / "photo_latent.tif")
    kernel = tifffile.imread(out / "photo_kernel.tif")
    meta = json.loads((out / "photo.json").read_text())
    assert latent.shape == (40, 40) and latent.dtype == np.uint8
    assert kernel.shape == (5, 3) and abs(kernel.sum() - 1) < 1e-5
    for key in ("version", "seed", "noise_sigma", "final_loss", "runtime_s", "config"):
        assert key in meta
    assert meta["config"]["iterations"] == 4
    assert not list(out.glob("*.part"))  # no temporary files left

    before = (out / "photo_latent.tif").stat().st_mtime_ns
    assert main(["deblur", str(png), "-k", "5x3", "--out", str(out), *FAST]) == 0
    assert "skipped" in capsys.readouterr().out
    assert (out / "photo_latent.tif").stat().st_mtime_ns == before

    assert main(["deblur", str(png), "-k", "5x3", "--out", str(out), "--overwrite", *FAST]) == 0
    assert (out / "photo_latent.tif").stat().st_mtime_ns != before


def test_tiff_stack_is_processed_plane_by_plane(tmp_path, scene):
    stack = np.stack([scene, scene.T, scene[::-1]]).astype(np.float32)
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, stack, photometric="minisblack")
    assert main(["deblur", str(path), "-k", "5", "--out", str(tmp_path), *FAST]) == 0
    assert tifffile.imread(tmp_path / "stack_latent.tif").shape == stack.shape
    assert tifffile.imread(tmp_path / "stack_kernel.tif").shape == (3, 5, 5)
    meta = json.loads((tmp_path / "stack.json").read_text())
    assert meta["planes"] == 3 and len(meta["final_loss"]) == 3
    assert "batched_planes" not in meta  # one after another on the CPU by default
    batched = tmp_path / "batched"
    assert main(["deblur", str(path), "-k", "5", "--out", str(batched), "--batch", "2", *FAST]) == 0
    meta = json.loads((batched / "stack.json").read_text())
    assert meta["batched_planes"] == 2 and len(meta["final_loss"]) == 3
    assert tifffile.imread(batched / "stack_latent.tif").shape == stack.shape


def test_bad_inputs_fail_cleanly_and_write_nothing(tmp_path, png, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not a png")
    out = tmp_path / "out"
    code = main(
        ["deblur", str(broken), str(tmp_path / "missing.tif"), "-k", "5", "--out", str(out), *FAST]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "cannot read" in err and "broken.png" in err and "no such file" in err
    assert not out.exists() or not any(out.iterdir())
    assert main(["deblur", str(png), "-k", "4", "--out", str(out), *FAST]) == 2
    assert "odd" in capsys.readouterr().err


def test_demo_reports_psnr(tmp_path, capsys):
    out = tmp_path / "demo"
    assert (
        main(
            [
                "demo",
                "--out",
                str(out),
                "--size",
                "48",
                "--iterations",
                "3",
                "--quiet",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "PSNR blurry vs sharp" in text and "PSNR latent vs sharp" in text
    meta = json.loads((out / "demo.json").read_text())
    assert meta["psnr_blurry"] < 40 and "kernel_similarity" in meta
    assert (out / "demo_latent.tif").exists()


def test_refine_with_a_known_kernel_raises_psnr(tmp_path, capsys, asymmetric_kernel):
    from napari_selfdeblur.engine.physics import convolve_same
    from napari_selfdeblur.evaluation.metrics import psnr
    from napari_selfdeblur.evaluation.sample import sharp_scene

    sharp = sharp_scene((48, 48), seed=1)
    blurry = np.clip(convolve_same(sharp, asymmetric_kernel), 0, 1)
    stack = np.stack([blurry, blurry[::-1]]).astype(np.float32)
    tifffile.imwrite(tmp_path / "cells.tif", stack, photometric="minisblack")
    tifffile.imwrite(tmp_path / "k.tif", asymmetric_kernel.astype(np.float32))
    out = tmp_path / "out"
    args = [
        "refine",
        str(tmp_path / "cells.tif"),
        "--kernel",
        str(tmp_path / "k.tif"),
        "--out",
        str(out),
        "--quiet",
    ]
    assert main([*args, "--method", "sparse", "--reweightings", "1"]) == 0
    refined = tifffile.imread(out / "cells_refined.tif")
    assert refined.shape == stack.shape and refined.dtype == np.float32
    assert psnr(refined[0], sharp) > psnr(blurry, sharp) + 2
    meta = json.loads((out / "cells_refined.json").read_text())
    assert meta["method"] == "sparse" and meta["params"]["reweightings"] == 1
    assert meta["planes_done"] == 2 and len(meta["strengths"]) == 2
    # An option the method does not take, and a bad kernel file, fail with a message.
    assert main([*args, "--overwrite", "--method", "wiener", "--iterations", "5"]) == 2
    assert "has no parameter" in capsys.readouterr().err
    tifffile.imwrite(tmp_path / "bad.tif", np.zeros((3, 3), np.float32))
    bad = [
        "refine",
        str(tmp_path / "cells.tif"),
        "--kernel",
        str(tmp_path / "bad.tif"),
        "--out",
        str(tmp_path / "o2"),
        "--quiet",
    ]
    assert main(bad) == 1
    assert "positive sum" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists() or not any((tmp_path / "o2").iterdir())


def test_failure_warnings_are_printed(png, tmp_path, capsys, monkeypatch):
    import napari_selfdeblur.engine.diagnostics as diagnostics

    monkeypatch.setattr(diagnostics, "DELTA_SUPPORT_PX", 1e9)  # every kernel looks like a delta
    assert main(["deblur", str(png), "-k", "5", "--out", str(tmp_path / "o"), *FAST]) == 0
    err = capsys.readouterr().err
    assert "warning" in err and "no-blur solution" in err
    meta = json.loads((tmp_path / "o" / "photo.json").read_text())
    assert "delta_kernel" in meta["diagnosis"]["flags"]


def test_restarts_option(png, tmp_path):
    out = tmp_path / "r"
    assert (
        main(
            [
                "deblur",
                str(png),
                "-k",
                "5",
                "--out",
                str(out),
                "--restarts",
                "2",
                "--restart-iterations",
                "2",
                *FAST,
            ]
        )
        == 0
    )
    info = json.loads((out / "photo.json").read_text())["restarts"]
    assert info["seeds"] == [0, 1] and info["chosen_seed"] in (0, 1)


def test_init_option(png, tmp_path):
    out = tmp_path / "n"
    assert main(["deblur", str(png), "-k", "5", "--out", str(out), "--init", "noblur", *FAST]) == 0
    assert json.loads((out / "photo.json").read_text())["config"]["init"] == "noblur"


def test_quick_auto_records_the_preset_and_the_chosen_size(png, tmp_path):
    out = tmp_path / "out"
    assert (
        main(
            [
                "deblur",
                str(png),
                "-k",
                "auto",
                "--preset",
                "quick",
                "--out",
                str(out),
                "--device",
                "cpu",
                "--quiet",
            ]
        )
        == 0
    )
    meta = json.loads((out / "photo.json").read_text())
    assert meta["preset"] == "quick" and meta["config"]["engine"] == "map"
    chosen = meta["kernel_size_auto"]["chosen"]
    assert tifffile.imread(out / "photo_kernel.tif").shape == (chosen, chosen)
    assert {"torch", "threads", "version"} <= set(meta)


def test_refine_uses_the_estimated_kernel_strength_when_the_sidecar_says_so(png, tmp_path):
    out = tmp_path / "out"
    assert main(["deblur", str(png), "-k", "5", "--out", str(out), *FAST]) == 0
    kernel = out / "photo_kernel.tif"
    refined = tmp_path / "refined"
    args = ["refine", str(png), "--kernel", str(kernel), "--method", "wiener", "--quiet"]
    assert main([*args, "--out", str(refined)]) == 0
    blind = json.loads((refined / "photo_refined.json").read_text())
    plain = tmp_path / "plain_kernel.tif"  # the same kernel with no blind sidecar beside it
    plain.write_bytes(kernel.read_bytes())
    assert (
        main(
            [
                "refine",
                str(png),
                "--kernel",
                str(plain),
                "--method",
                "wiener",
                "--quiet",
                "--out",
                str(tmp_path / "plain"),
            ]
        )
        == 0
    )
    exact = json.loads((tmp_path / "plain" / "photo_refined.json").read_text())
    assert blind.get("kernel_estimated") is True and "kernel_estimated" not in exact
    assert blind["strengths"][0] > exact["strengths"][0]


def test_refine_is_stronger_on_the_planes_whose_blind_kernel_was_uncertain(
    tmp_path, asymmetric_kernel, monkeypatch
):
    from napari_selfdeblur import api
    from napari_selfdeblur.engine.physics import convolve_same
    from napari_selfdeblur.evaluation.sample import sharp_scene
    from napari_selfdeblur.nonblind.base import UNCERTAIN_KERNEL_BOOST

    planes = [convolve_same(sharp_scene((48, 48), seed=s), asymmetric_kernel) for s in (1, 2)]
    tifffile.imwrite(tmp_path / "cells.tif", np.stack(planes).astype(np.float32))
    monkeypatch.setattr(api, "UNCERTAIN_AGREEMENT", 1.01)  # every MAP kernel counts as uncertain
    args = ["-k", "9", "--preset", "quick", "--device", "cpu", "--quiet"]
    assert main(["deblur", str(tmp_path / "cells.tif"), *args, "--out", str(tmp_path / "b")]) == 0
    blind = json.loads((tmp_path / "b" / "cells.json").read_text())
    assert blind["uncertain_kernel_boost"] == [UNCERTAIN_KERNEL_BOOST] * 2  # one per plane
    kernel = tmp_path / "b" / "cells_kernel.tif"
    refine = ["refine", str(tmp_path / "cells.tif"), "--kernel", str(kernel), "--quiet"]
    assert main([*refine, "--out", str(tmp_path / "r")]) == 0
    uncertain = json.loads((tmp_path / "r" / "cells_refined.json").read_text())
    assert uncertain["kernel_uncertain"] == [True, True]
    blind["uncertain_kernel_boost"] = [1.0, UNCERTAIN_KERNEL_BOOST]  # as if plane 0 were certain
    (tmp_path / "b" / "cells.json").write_text(json.dumps(blind))
    assert main([*refine, "--out", str(tmp_path / "r2")]) == 0
    mixed = json.loads((tmp_path / "r2" / "cells_refined.json").read_text())
    assert mixed["kernel_uncertain"] == [False, True]
    ratio = np.divide(uncertain["strengths"], mixed["strengths"])
    np.testing.assert_allclose(ratio, [UNCERTAIN_KERNEL_BOOST, 1.0])
