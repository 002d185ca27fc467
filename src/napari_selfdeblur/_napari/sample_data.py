"""Sample data for napari: the built-in blurred scene, its sharp truth and its kernel."""

from __future__ import annotations

from typing import Any


def blurred_sample_layers() -> list[tuple[Any, dict[str, Any], str]]:
    """Layer tuples: blurry image, sharp ground truth (hidden) and the true PSF."""
    from ..evaluation.sample import blurred_sample

    s = blurred_sample((192, 192))
    return [
        (
            s.sharp.astype("float32"),
            {"name": "sample sharp (truth)", "visible": False, "contrast_limits": (0, 1)},
            "image",
        ),
        (
            s.kernel.astype("float32"),
            {"name": "sample kernel (truth)", "visible": False, "colormap": "magma"},
            "image",
        ),
        (
            s.blurry.astype("float32"),
            {
                "name": "sample blurry",
                "contrast_limits": (0, 1),
                "metadata": {"noise_sigma": s.noise_sigma},
            },
            "image",
        ),
    ]
