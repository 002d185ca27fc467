"""Seeded runs of every preset give bit-identical outputs to values recorded earlier.

The first reference file was written by this module (``python tests/test_reference_outputs.py``)
before the package was split into subpackages, so a refactoring that changes any number fails
here. The runs use one CPU thread: results depend on the thread count.

They also depend on the processor. The networks' float32 arithmetic (oneDNN and MKL kernels
chosen per processor) rounds differently on, for example, an AMD EPYC and the machine that
recorded the first file, and a few iterations turn that into visible differences. The FFT-based
non-blind methods give the same bits everywhere. So:

- the non-network outputs must equal the first reference on every machine;
- the network outputs must equal the reference recorded for this processor
  (``reference_outputs_<fingerprint>.npz``: vendor, torch's CPU capability, torch version);
  where none was recorded they must equal one of the recorded references, and when they equal
  none the test is skipped with the fingerprint to record (``python
  tests/test_reference_outputs.py`` writes the file for the machine it runs on).

Regenerate the files only for a change that is meant to alter results, and say so in the commit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

DATA = Path(__file__).parent / "data"
#: The first reference, recorded before fingerprints were (on the machine of the earlier rounds).
REFERENCE = DATA / "reference_outputs.npz"
#: Outputs that involve no network: the same bits on every processor seen so far.
PORTABLE = ("refine_hyper-laplacian", "refine_sparse", "refine_wiener", "refine_richardson-lucy")


def fingerprint() -> str:
    """What the networks' rounding depends on: CPU vendor, torch's CPU capability, torch version."""
    import platform

    import torch

    vendor = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("vendor_id"):
                vendor = line.split(":", 1)[1].strip()
                break
    else:
        vendor = platform.processor() or vendor
    capability = torch.backends.cpu.get_cpu_capability()
    version = torch.__version__.split("+")[0]
    name = f"{vendor}-{capability}-{version}"
    return "".join(c if c.isalnum() or c in "-." else "-" for c in name)


def machine_reference() -> Path:
    return DATA / f"reference_outputs_{fingerprint()}.npz"


def _scene(shape=(48, 48), seed=3):
    from napari_selfdeblur import deblur  # noqa: F401  (the package must import)
    from napari_selfdeblur.evaluation.sample import sharp_scene

    return sharp_scene(shape, seed=seed, fine_detail=True)


def _runs() -> dict[str, np.ndarray]:
    import torch

    from napari_selfdeblur import deblur, deblur_stack, get_preset, refine
    from napari_selfdeblur.engine.physics import convolve_same

    k = np.zeros((5, 5))
    k[2, 1:4] = 1
    k[1, 3] = 1
    k /= k.sum()
    blurry = np.clip(convolve_same(_scene(), k), 0, 1).astype(np.float32)
    big = np.clip(convolve_same(_scene((64, 64), 5), k), 0, 1).astype(np.float32)
    noblur = get_preset("demo").replace(init="noblur", init_iterations=3)
    out: dict[str, np.ndarray] = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        runs = {
            "paper": dict(image=blurry, preset="paper", iterations=3),
            "demo": dict(image=blurry, preset="demo", iterations=8),
            "fast": dict(image=big, preset="fast", iterations=6),
            "demo_restarts": dict(image=blurry, preset="demo", iterations=6, restarts=2),
            "demo_noblur": dict(image=blurry, preset=noblur, iterations=5),
        }
        for name, kw in runs.items():
            image = kw.pop("image")
            r = deblur(image, 5, seed=1, device="cpu", **kw)
            out[f"{name}_latent"], out[f"{name}_kernel"] = r.latent, r.kernel
            out[f"{name}_loss"] = np.array([v for _, v in r.history])
        stack = deblur_stack(
            np.stack([blurry, blurry[::-1]]),
            5,
            preset="demo",
            iterations=4,
            seed=2,
            device="cpu",
            batch_size=2,
        )
        out["stack_latent"] = np.stack([r.latent for r in stack])
        out["stack_kernel"] = np.stack([r.kernel for r in stack])
        for method in ("hyper-laplacian", "sparse", "wiener", "richardson-lucy"):
            out[f"refine_{method}"] = refine(blurry, k, method).image
        out["refine_deep-prior"] = refine(blurry, k, "deep-prior", iterations=3).image
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.mark.slow
def test_outputs_match_recorded_reference():
    first = np.load(REFERENCE)
    now = _runs()
    assert sorted(first.files) == sorted(now)
    for key in PORTABLE:
        np.testing.assert_array_equal(now[key], first[key], err_msg=key)
    mine = machine_reference()
    if mine.exists():
        ref = np.load(mine)
        assert sorted(ref.files) == sorted(now)
        for key in ref.files:
            np.testing.assert_array_equal(now[key], ref[key], err_msg=f"{key} ({mine.name})")
        return
    recorded = [np.load(p) for p in sorted(DATA.glob("reference_outputs*.npz"))]
    if not any(all(np.array_equal(now[k], r[k]) for k in r.files) for r in recorded):
        pytest.skip(f"no reference recorded for this processor ({fingerprint()})")


if __name__ == "__main__":
    out = machine_reference()
    np.savez_compressed(out, **_runs())
    print(f"wrote {out}", file=sys.stderr)
