"""Checks shared by every entry point: configurations, kernel sizes against images and networks."""

from __future__ import annotations

from ..config import DEFAULT_PRESET, DeblurConfig, get_preset, is_whole_number
from ..errors import InvalidInputError
from .physics import latent_shape, parse_kernel_size

#: Seeds are integers in [0, MAX_SEED] (what every random generator used here accepts).
MAX_SEED = 2**63 - 1


def check_seed(seed, restarts: int = 1) -> int:
    """``seed`` as an int after checking it (and ``seed + restarts - 1``) is a valid seed."""
    if not is_whole_number(seed):
        raise InvalidInputError(f"seed must be a whole number, got {seed!r}")
    seed = int(seed)
    if seed < 0 or seed + max(int(restarts), 1) - 1 > MAX_SEED:
        raise InvalidInputError(f"seed must be between 0 and {MAX_SEED}, got {seed}")
    return seed


def check_count(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int after checking it is a whole number >= ``minimum``; ``name`` is the
    setting's name in the error.
    """
    if not is_whole_number(value):
        raise InvalidInputError(f"{name} must be a whole number, got {value!r}")
    if value < minimum:
        raise InvalidInputError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def resolve_config(
    preset: str | DeblurConfig = DEFAULT_PRESET, iterations: int | None = None
) -> DeblurConfig:
    """A preset name or a config, optionally re-run for ``iterations`` (schedule scaled)."""
    cfg = get_preset(preset) if isinstance(preset, str) else preset
    if iterations is not None:
        cfg = cfg.with_iterations(check_count(iterations, "iterations"))
    cfg.validate()
    return cfg


def check_fits_network(
    image_shape: tuple[int, int], kernel_shape: tuple[int, int], cfg: DeblurConfig
) -> None:
    """Raise :class:`InvalidInputError` if the latent is too small for the U-Net's depth."""
    from .networks import min_image_size

    need = min_image_size(cfg.image_net)
    (h, w), (kh, kw) = image_shape, kernel_shape
    if min(latent_shape((h, w), (kh, kw))) < need:
        raise InvalidInputError(
            f"image {h}x{w} is too small for a {cfg.image_net.depth}-level U-Net with a "
            f"{kh}x{kw} kernel: image + kernel - 1 must be at least {need} pixels on each side"
        )


def check_kernel_size(
    image_shape: tuple[int, int], kernel_size: int | str | tuple[int, int], cfg: DeblurConfig
) -> tuple[int, int]:
    """Parse a kernel size and check it against the image and the network; (kh, kw)."""
    kshape = parse_kernel_size(kernel_size)
    h, w = image_shape
    if kshape[0] > h or kshape[1] > w:
        raise InvalidInputError(f"kernel {kshape[0]}x{kshape[1]} is larger than the image {h}x{w}")
    if cfg.engine == "selfdeblur":  # the MAP estimator has no network to fit
        check_fits_network((h, w), kshape, cfg)
    return kshape
