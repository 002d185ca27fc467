"""The README's Python examples run as written, and its public names are the functions."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


@pytest.mark.slow
def test_readme_python_blocks_run():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert len(blocks) >= 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)
    result, out = namespace["result"], namespace["out"]
    assert result.metadata()["preset"] == "quick"
    assert out.image.shape == namespace["stack"].shape
    assert np.isfinite(out.image).all()


def test_public_names_are_the_functions():
    import napari_selfdeblur
    from napari_selfdeblur import deblur, refine

    assert callable(refine) and callable(deblur)
    assert napari_selfdeblur.refine is refine  # not the submodule after an import
