"""Wiener (Tikhonov) deconvolution: closed form in the Fourier domain, with a gradient penalty."""

from __future__ import annotations

from ..imaging.noise import wiener_strength
from .base import Method, per_plane, strength_param


def _run(planes, psf, strengths, params, step, device):
    from ..imaging.fourier import wiener_filter

    out = wiener_filter(planes, psf, per_plane(strengths, planes))
    step(1, 1)
    return out


METHOD = Method(
    name="wiener",
    label="Wiener / Tikhonov",
    help="Closed-form deconvolution with a gradient penalty; the fastest, some ringing.",
    params=(strength_param("gradient-penalty weight; larger is smoother (default: noise)"),),
    strength_rule=wiener_strength,
    run=_run,
)
