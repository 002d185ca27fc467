"""Configuration dataclasses and named presets for the SelfDeblur engine.

Everything that changes the result lives here, so a :class:`DeblurConfig` (plus the seed and the
device) fully describes a run. ``get_preset("paper")`` reproduces the reference "Levin" settings.
This module imports neither torch nor napari.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import InvalidInputError

#: Adam learning rate of the kernel generator while it is fitted to the no-blur kernel.
INIT_KERNEL_LR = 1e-3

#: What ``device=`` accepts besides ``cuda:N`` (see ``device.resolve_device``).
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _number_kind(annotation: str) -> str | None:
    """The kind of number a field annotated ``annotation`` holds: "int", "float" or "bool" for
    that type (or that type | None), "ints" for ``tuple[int, ...]``, None for any other
    annotation (Literals, nested configs).
    """
    bare = annotation.removesuffix(" | None")
    if bare == "tuple[int, ...]":
        return "ints"
    return bare if bare in ("int", "float", "bool") else None


def is_whole_number(value: Any) -> bool:
    """True for Python and numpy integers, False for anything else (bools and 2.0 included)."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _fits(kind: str, value: Any) -> bool:
    if kind == "int":
        return is_whole_number(value)
    if kind == "float":
        return isinstance(value, numbers.Real) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    return isinstance(value, tuple) and all(is_whole_number(v) for v in value)


_KIND_WORDS = {
    "int": "a whole number",
    "float": "a number",
    "bool": "true or false",
    "ints": "a tuple of whole numbers",
}


def _plain_numbers(cfg: Any) -> None:
    """Turn numpy scalars in ``cfg``'s int and float fields into Python numbers, and lists of
    whole numbers into tuples (in place, on a frozen dataclass being built), so that
    configurations stay hashable and JSON-ready.
    """
    for f in dataclasses.fields(cfg):
        kind, value = _number_kind(f.type), getattr(cfg, f.name)
        if kind == "int" and is_whole_number(value) and type(value) is not int:
            object.__setattr__(cfg, f.name, int(value))
        elif kind == "float" and _fits("float", value) and type(value) not in (int, float):
            object.__setattr__(cfg, f.name, float(value))
        elif kind == "ints" and isinstance(value, list | tuple) and _fits("ints", tuple(value)):
            object.__setattr__(cfg, f.name, tuple(int(v) for v in value))


def check_types(cfg: Any, where: str = "") -> None:
    """Raise :class:`InvalidInputError` naming the first simple field of the configuration
    dataclass ``cfg`` whose value has the wrong type: a fraction for a whole number (2.5
    iterations), a string for a number, anything but True/False for a switch. Whole numbers may
    be numpy integers; ``None`` is accepted where the field allows it.
    """
    for f in dataclasses.fields(cfg):
        kind, value = _number_kind(f.type), getattr(cfg, f.name)
        if kind is None or (value is None and f.type.endswith("| None")) or _fits(kind, value):
            continue
        raise InvalidInputError(f"{where}{f.name} must be {_KIND_WORDS[kind]}, got {value!r}")


@dataclass(frozen=True)
class ImageNetConfig:
    """The image generator Gx: a DIP-style skip U-Net.

    ``channels_down``, ``channels_up`` and ``channels_skip`` give one entry per level (finest
    first);
    their common length is the depth. ``nonlocal_levels`` lists the 0-based levels whose deep
    branch carries a dot-product non-local block.
    """

    input_channels: int = 8
    input_scale: float = 0.1  # input noise ~ U[0, input_scale)
    channels_down: tuple[int, ...] = (128, 128, 128, 128, 128)
    channels_up: tuple[int, ...] = (128, 128, 128, 128, 128)
    channels_skip: tuple[int, ...] = (16, 16, 16, 16, 16)
    # 0-based; (2, 3, 4) gives the reference's 2.37 M parameters (levels 1..4 would give 2.40 M).
    nonlocal_levels: tuple[int, ...] = (2, 3, 4)
    nonlocal_inter_channels: int = 64
    negative_slope: float = 0.2

    def __post_init__(self) -> None:
        """Numpy scalars become Python numbers (:func:`_plain_numbers`)."""
        _plain_numbers(self)

    @property
    def depth(self) -> int:
        """Number of U-Net levels."""
        return len(self.channels_down)

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` if a setting has the wrong type or the channel lists
        do not describe a U-Net.
        """
        check_types(self, "image_net.")
        n = self.depth
        if n < 1 or len(self.channels_up) != n or len(self.channels_skip) != n:
            raise InvalidInputError(
                "image-net channel lists must be non-empty and of equal length, got "
                f"down={self.channels_down}, up={self.channels_up}, skip={self.channels_skip}"
            )
        if any(level < 0 or level >= n for level in self.nonlocal_levels):
            raise InvalidInputError(f"nonlocal_levels {self.nonlocal_levels} outside 0..{n - 1}")


@dataclass(frozen=True)
class KernelNetConfig:
    """The kernel generator Gk: fixed noise -> hidden (ReLU6) -> kh*kw -> SoftMax."""

    input_size: int = 200
    hidden_size: int = 1000
    input_scale: float = 0.1  # input noise ~ U[0, input_scale), drawn once and never perturbed

    def __post_init__(self) -> None:
        """Numpy scalars become Python numbers (:func:`_plain_numbers`)."""
        _plain_numbers(self)

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` naming the first invalid setting."""
        check_types(self, "kernel_net.")
        if self.input_size < 1 or self.hidden_size < 1:
            raise InvalidInputError(
                f"kernel_net sizes must be >= 1, got {self.input_size} and {self.hidden_size}"
            )


@dataclass(frozen=True)
class MapConfig:
    """The MAP kernel estimator (:mod:`napari_selfdeblur.engine.map_kernel`).

    Coarse to fine, the kernel's extent shrinking by ``ratio`` per level; ``rounds`` alternations
    of an L0-gradient latent step and a kernel step per level. The L0 weight starts at
    ``lambda_start`` on the coarsest level and is multiplied by ``lambda_decay`` after every
    round, across levels, down to ``lambda_min`` (intensities in [0, 1]). The kernel step uses
    the salient edges only: in each of 4 orientations at least ``salient`` x (kernel side)
    pixels, a threshold divided by ``threshold_decay`` every round. ``gamma`` weighs |k|^2 in the
    kernel step; ``prune`` zeroes kernel values below that fraction of the peak; ``kappa`` is the
    growth of the splitting penalty. ``margin`` pixels are added on every side of the kernel
    while estimating, and the result is cut back to the size asked for around its centre of mass,
    so a kernel whose size is its exact support is not truncated while it is found. With
    ``kernel_p`` < 2 the kernel step's |k|^2 becomes a reweighted |k|^p (p in (0, 2]): weights
    from the previous kernel, 1 at its peak and larger where it is small, thinning the kernel.
    ``refit_salient`` is the fraction of a sharp latent's gradients (largest first) that the
    final full-resolution kernel refit uses (``DeblurConfig.polish``). With ``candidates`` 3
    (or 4) the estimate is repeated on the image flipped up-down and left-right (and rotated by
    180 degrees), and the kernel that agrees best with the others is kept: the same problem up
    to discretisation details, to which one MAP estimate can be very sensitive. With ``dark`` > 0
    the latent step also penalises the L0 norm of the dark channel (minima over ``dark_patch``
    square windows; Pan et al. 2016), weighted ``dark`` times the gradient term; a patch of 1
    penalises every intensity (Pan et al. 2014, for text). With ``usefulness`` > 0 the kernel
    step also drops edges that are not useful (Xu & Jia 2010): where the blurry image's
    gradients summed over an odd ``usefulness_window`` square window have a magnitude below
    ``usefulness`` times their summed magnitudes (fine texture and thin structures, whose blurred
    gradients cancel), the latent's gradients are not used.
    The defaults
    were chosen on blurred photographs that are not the benchmark (``benchmarks/map_design.py``).
    """

    ratio: float = 2**0.5
    rounds: int = 10
    lambda_start: float = 4e-3
    lambda_decay: float = 1 / 1.1
    lambda_min: float = 1e-4
    gamma: float = 20.0
    kappa: float = 2.0
    prune: float = 0.05
    threshold_decay: float = 1.1
    salient: float = 5.0
    margin: int = 0
    kernel_p: float = 2.0
    refit_salient: float = 0.1
    candidates: int = 1
    dark: float = 0.0
    dark_patch: int = 35
    usefulness: float = 0.0
    usefulness_window: int = 5

    def __post_init__(self) -> None:
        """Numpy scalars become Python numbers (:func:`_plain_numbers`)."""
        _plain_numbers(self)

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` naming the first invalid setting."""
        check_types(self, "MAP ")
        if self.candidates not in (1, 3, 4):
            raise InvalidInputError(
                f"MAP candidates must be 1, 3 or 4 (a best-agreeing one is chosen), "
                f"got {self.candidates!r}"
            )
        if not 0 < self.kernel_p <= 2:
            raise InvalidInputError(f"MAP kernel_p must be in (0, 2], got {self.kernel_p}")
        if not 0 < self.refit_salient <= 1:
            raise InvalidInputError(
                f"MAP refit_salient must be in (0, 1], got {self.refit_salient}"
            )
        if (
            not 0 <= self.usefulness < 1
            or self.usefulness_window < 1
            or self.usefulness_window % 2 == 0
        ):
            raise InvalidInputError(
                f"MAP usefulness must be in [0, 1) and usefulness_window odd and >= 1, got "
                f"{self.usefulness} and {self.usefulness_window}"
            )
        if self.dark < 0 or self.dark_patch < 1 or self.dark_patch % 2 == 0:
            raise InvalidInputError(
                f"MAP dark must be >= 0 and dark_patch odd and >= 1, got {self.dark} and "
                f"{self.dark_patch}"
            )
        if self.margin < 0:
            raise InvalidInputError(f"MAP margin must be >= 0, got {self.margin}")
        if self.ratio <= 1 or self.rounds < 1 or self.kappa <= 1:
            raise InvalidInputError("MAP ratio and kappa must be > 1 and rounds >= 1")
        if min(self.lambda_start, self.lambda_min, self.gamma, self.salient) <= 0:
            raise InvalidInputError("MAP lambda, gamma and salient must be > 0")
        if not 0 <= self.prune < 1 or not 0 < self.lambda_decay <= 1:
            raise InvalidInputError("MAP prune must be in [0, 1) and lambda_decay in (0, 1]")


@dataclass(frozen=True)
class DeblurConfig:
    """Optimisation settings of one SelfDeblur run.

    Learning rates are per Adam parameter group; both are multiplied by ``lr_gamma`` at each
    iteration in ``lr_milestones``. The data term is MSE before ``ssim_start`` and 1 - SSIM from
    then on (``ssim_start >= iterations`` means MSE throughout). An optional total-variation term
    on the latent has weight ``tv_factor * noise_sigma`` (sigma in [0, 1] intensity units).
    """

    iterations: int = 5000
    lr_image: float = 1e-2
    lr_kernel: float = 1e-4
    lr_milestones: tuple[int, ...] = (2000, 3000, 4000)
    lr_gamma: float = 0.5
    ssim_start: int = 1000
    ssim_window: int = 11
    ssim_sigma: float = 1.5
    tv_factor: float = 0.0
    input_noise_std: float = 1e-3  # perturbation of Gx's input, redrawn every iteration
    mode: Literal["joint", "alternating"] = "joint"
    # Initialisation. "random": the paper's (networks start from their random weights).
    # "noblur": first fit Gx to the blurry image (MSE on the aligned window, ``init_iterations``
    # Adam steps at ``lr_image``) and Gk to a centred Gaussian of ``init_kernel_sigma`` px
    # (KL divergence, the same number of steps at ``INIT_KERNEL_LR``), then optimise jointly.
    # "map": the same warm start, to the latent and kernel of the MAP estimator (``map``).
    init: Literal["random", "noblur", "map"] = "random"
    init_iterations: int = 500
    init_kernel_sigma: float = 1.0
    # Coarse-to-fine. With ``coarse_levels`` = L > 0 the problem is first solved at scales
    # 2^-L, ..., 1/2 (image resampled with antialiasing, kernel extent scaled, ``coarse_iterations``
    # each, the schedule's proportions kept); each finer level starts from the previous one's
    # result: Gk is fitted to the upsampled kernel and, with ``warm_image``, Gx to the upsampled
    # latent (``init_iterations`` steps, as for "noblur"). ``init`` applies to the coarsest level.
    coarse_levels: int = 0
    coarse_iterations: int = 1000
    warm_image: bool = True
    # Execution settings: they change results only at the level of float rounding.
    # blur: "fft" computes the 'valid' blur with FFTs (its cost hardly depends on the kernel
    # size), "direct" with a convolution (the reference's way). channels_last: Gx in NHWC layout.
    blur: Literal["fft", "direct"] = "fft"
    channels_last: bool = True
    # precision: "bfloat16" runs Gx's forward pass under autocast (mixed precision; the blur, the
    # loss and Gk stay in float32). Unlike the two settings above it changes results beyond
    # rounding, so it is part of a checkpoint's fingerprint; meant for GPUs with bfloat16 units.
    precision: Literal["float32", "bfloat16"] = "float32"
    image_net: ImageNetConfig = field(default_factory=ImageNetConfig)
    kernel_net: KernelNetConfig = field(default_factory=KernelNetConfig)
    # The blind engine: "selfdeblur" fits the two generators; "map" is the MAP kernel estimator
    # alone (no networks; the settings above other than ``map`` are unused).
    engine: Literal["selfdeblur", "map"] = "selfdeblur"
    map: MapConfig = field(default_factory=MapConfig)
    # A non-blind step on the whole image with the estimated kernel ("none" keeps the engine's
    # latent), its strength derived for estimated kernels (see napari_selfdeblur.nonblind).
    final: Literal["none", "sparse", "hyper-laplacian"] = "none"
    # With init="map": keep the MAP result when SelfDeblur's fits the input worse and is not
    # sharper (both are recorded in the metadata).
    safeguard: bool = False
    # What the safeguard weighs SelfDeblur's result against. "map": the MAP start after the last
    # non-blind pass alone, kept when SelfDeblur's residual is more than 10 % higher and its
    # latent not sharper. "quick": the MAP start finished as ``quick`` finishes it (the sharpest
    # candidate, POLISH_ROUNDS warm polish rounds; needs ``polish`` and a ``final`` step),
    # kept only when it both fits the input better and is sharper and its kernel does not reach
    # the edge of its window (rejected for standard in round 17; kept to rerun those rows).
    safeguard_against: Literal["map", "quick"] = "map"
    # With a ``final`` step: re-estimate the kernel once at full resolution against the non-blind
    # result (the MAP kernel step on its strongest gradients, ``map.refit_salient``), then run the
    # non-blind step again with that kernel. One more non-blind solve.
    polish: bool = False
    # With ``polish``: how many times the refit and the non-blind step run, each refit against
    # the previous round's result (the first against the cheap first pass). Each round costs one
    # refit and one non-blind solve; all but the last use the cheap first pass's settings.
    polish_rounds: int = 1
    # With ``polish`` and more than one round: the passes before the last continue from the
    # previous round's result (one reweighting from its weights, no quadratic pass) instead of
    # starting afresh from the blurry input; half the work of such a pass.
    polish_warm: bool = False
    # With ``polish``: after the polish's last pass, refine the image and the kernel jointly at
    # full resolution for this many steps (engine.joint: projected Adam under a hyper-Laplacian
    # prior, no networks), then run the last non-blind pass again with the refined kernel.
    # 0 (the default of every preset): off. Kept so that round 10's rows can be rerun
    # (docs/benchmarks.md): it helps when the window is the blur's exact support, and harms
    # when the window is larger.
    joint_iterations: int = 0
    # Multiplier of the noise-derived strength of the last non-blind pass; None: the factor for
    # estimated kernels (nonblind.base.estimated_kernel_factor: 5 on clean images, 2 on noisy
    # ones).
    final_strength_factor: float | None = None
    # Which MAP candidate a MAP result's final step uses (with map.candidates > 1): "medoid",
    # the one that agrees best with the others, as the estimator keeps it; or "sparsity", the
    # one whose first non-blind pass (the polish's cheap one, or with polish off the last one)
    # is sharpest (lowest normalised sparsity), which costs that pass for every candidate.
    # Without a final non-blind step the medoid is kept.
    candidate_choice: Literal["medoid", "sparsity"] = "medoid"

    def __post_init__(self) -> None:
        """Numpy scalars become Python numbers (:func:`_plain_numbers`)."""
        _plain_numbers(self)

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` naming the first invalid setting."""
        check_types(self)
        if self.iterations < 1:
            raise InvalidInputError(f"iterations must be >= 1, got {self.iterations}")
        if self.mode not in ("joint", "alternating"):
            raise InvalidInputError(f"mode must be 'joint' or 'alternating', got {self.mode!r}")
        if self.lr_image <= 0 or self.lr_kernel <= 0:
            raise InvalidInputError("learning rates must be positive")
        if self.blur not in ("fft", "direct"):
            raise InvalidInputError(f"blur must be 'fft' or 'direct', got {self.blur!r}")
        if self.precision not in ("float32", "bfloat16"):
            raise InvalidInputError(
                f"precision must be 'float32' or 'bfloat16', got {self.precision!r}"
            )
        if self.init not in ("random", "noblur", "map"):
            raise InvalidInputError(f"init must be 'random', 'noblur' or 'map', got {self.init!r}")
        if self.engine not in ("selfdeblur", "map"):
            raise InvalidInputError(f"engine must be 'selfdeblur' or 'map', got {self.engine!r}")
        if self.final not in ("none", "sparse", "hyper-laplacian"):
            raise InvalidInputError(
                f"final must be 'none', 'sparse' or 'hyper-laplacian', got {self.final!r}"
            )
        self.map.validate()
        factor = self.final_strength_factor
        if factor is not None and not (math.isfinite(factor) and factor > 0):
            raise InvalidInputError(f"final_strength_factor must be positive, got {factor}")
        if self.polish_rounds < 1:
            raise InvalidInputError(f"polish_rounds must be >= 1, got {self.polish_rounds}")
        if self.safeguard_against not in ("map", "quick"):
            raise InvalidInputError(
                f"safeguard_against must be 'map' or 'quick', got {self.safeguard_against!r}"
            )
        if self.safeguard_against == "quick" and not (self.polish and self.final != "none"):
            raise InvalidInputError(
                "safeguard_against='quick' needs polish=True and a final non-blind step"
            )
        if self.joint_iterations < 0:
            raise InvalidInputError(f"joint_iterations must be >= 0, got {self.joint_iterations}")
        if self.joint_iterations and not (self.polish and self.final != "none"):
            raise InvalidInputError(
                "joint_iterations needs polish=True and a final non-blind step: it runs after "
                "the polish"
            )
        if self.candidate_choice not in ("medoid", "sparsity"):
            raise InvalidInputError(
                f"candidate_choice must be 'medoid' or 'sparsity', got {self.candidate_choice!r}"
            )
        if self.init_iterations < 0 or self.init_kernel_sigma <= 0:
            raise InvalidInputError("init_iterations must be >= 0 and init_kernel_sigma > 0")
        if self.coarse_levels < 0 or self.coarse_iterations < 1:
            raise InvalidInputError("coarse_levels must be >= 0 and coarse_iterations >= 1")
        if self.ssim_window < 3 or self.ssim_window % 2 == 0:
            raise InvalidInputError(f"ssim_window must be odd and >= 3, got {self.ssim_window}")
        self.image_net.validate()
        self.kernel_net.validate()

    def replace(self, **changes: Any) -> DeblurConfig:
        """Return a copy with top-level fields changed."""
        return dataclasses.replace(self, **changes)

    def with_iterations(self, iterations: int, *, warm_steps: bool = True) -> DeblurConfig:
        """Return a copy run for ``iterations``, its whole schedule scaled to keep its
        proportions: learning-rate milestones, loss switch, coarse levels and, unless
        ``warm_steps`` is False, the warm-start steps (``init_iterations``).
        """
        if iterations == self.iterations:
            return self
        ratio = iterations / self.iterations
        init = self.init_iterations
        if warm_steps and init:
            init = max(1, round(init * ratio))
        return dataclasses.replace(
            self,
            iterations=iterations,
            lr_milestones=tuple(max(1, round(m * ratio)) for m in self.lr_milestones),
            ssim_start=round(self.ssim_start * ratio),
            coarse_iterations=max(1, round(self.coarse_iterations * ratio)),
            init_iterations=init,
        )

    def to_dict(self) -> dict[str, Any]:
        """All settings as plain JSON-ready values (nested configs as dicts)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DeblurConfig:
        """Rebuild a configuration from :meth:`to_dict`'s output (e.g. a sidecar's ``"config"``).

        Lists become tuples and nested dicts their dataclasses; fields missing from ``data`` keep
        their defaults. An unknown field or a value that fails :meth:`validate` raises
        :class:`InvalidInputError`.
        """
        cfg = _from_dict(cls, data, "config")
        try:
            cfg.validate()
        except TypeError as exc:  # a value of the wrong type, e.g. a string for a number
            raise InvalidInputError(f"config has a value of the wrong type: {exc}") from None
        return cfg

    def fingerprint_dict(self) -> dict[str, Any]:
        """:meth:`to_dict` without the fields that cannot affect this run beyond float rounding.

        The execution settings (``blur``, ``channels_last``) are left out, and the initialisation
        settings unless ``init="noblur"``, the coarse-to-fine ones unless ``coarse_levels`` > 0 and
        ``precision`` when it is float32, so checkpoints written before these fields existed stay
        valid and a run may resume under other execution settings.
        """
        d = self.to_dict()
        final_step = (
            "final",
            "safeguard",
            "polish",
            "polish_rounds",
            "polish_warm",
            "joint_iterations",
            "final_strength_factor",
            "candidate_choice",
        )
        for key in ("blur", "channels_last", "engine", *final_step):
            d.pop(key)  # checkpoints are of SelfDeblur runs, before any final step
        if d["init"] != "map":
            d.pop("map")
        if d["init"] == "random":
            d.pop("init")
            d.pop("init_kernel_sigma")
            if d["coarse_levels"] == 0:
                d.pop("init_iterations")
        if d["coarse_levels"] == 0:
            for key in ("coarse_levels", "coarse_iterations", "warm_image"):
                d.pop(key)
        if d["precision"] == "float32":
            d.pop("precision")
        return d


_NESTED = {"image_net": ImageNetConfig, "kernel_net": KernelNetConfig, "map": MapConfig}


def _from_dict(cls: type, data: Any, where: str) -> Any:
    """``cls(**data)`` with nested configurations and tuples restored; clear errors."""
    if not isinstance(data, dict):
        raise InvalidInputError(f"{where} must be a mapping, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise InvalidInputError(f"{where} has unknown settings: {', '.join(unknown)}")
    values = {}
    for key, value in data.items():
        if key in _NESTED and cls is DeblurConfig:
            value = _from_dict(_NESTED[key], value, f"{where}.{key}")
        elif isinstance(value, list):
            value = tuple(value)
        values[key] = value
    try:
        return cls(**values)
    except TypeError as exc:
        raise InvalidInputError(f"{where}: {exc}") from None


def _paper() -> DeblurConfig:
    # The reference settings for the Levin set (Ren et al. 2020; see docs/engine.md).
    return DeblurConfig()


def _demo() -> DeblurConfig:
    # A small configuration for the built-in demo and for quick looks: a 4-level, 32-channel U-Net
    # without non-local blocks and 600 iterations. Not a quality preset.
    return DeblurConfig(
        iterations=600,
        lr_milestones=(375, 490),
        ssim_start=300,
        image_net=ImageNetConfig(
            channels_down=(32, 32, 32, 32),
            channels_up=(32, 32, 32, 32),
            channels_skip=(8, 8, 8, 8),
            nonlocal_levels=(),
        ),
    )


#: Rounds of the kernel polish in ``quick`` and ``standard``, whose passes before the last
#: continue from the previous round (``polish_warm``), so that each costs half a fresh one. The
#: sharpest MAP candidate gained with every round up to eight (design photographs, fresh passes:
#: 30.45 dB after four, 30.60 after seven). For ``quick``, seven warm rounds gained 0.22 dB over
#: four fresh ones (round 16: 32 problems, 22 better, 6 worse); twelve gained 0.18 dB over seven
#: (round 18: 20 better, 2 worse) and sixteen 0.02 dB more for 1.4 s. For ``standard``, whose
#: SelfDeblur kernels gained nothing after two or three fresh rounds (round 16), twelve warm
#: rounds instead of four fresh ones gained 0.12 dB on 16 design problems and 0.06 dB on Levin,
#: and took 7 s less per Levin image (round 18; docs/benchmarks.md). Both presets use the same
#: rounds, so that a MAP start that ``standard``'s safeguard keeps returns ``quick``'s result.
POLISH_ROUNDS = 12


def _quick() -> DeblurConfig:
    # Seconds on a CPU: the MAP kernel estimate (three candidates: the image as is and flipped
    # up-down and left-right, the best-agreeing kernel kept), the sparse non-blind step with it,
    # the kernel refitted at full resolution against that result, and the sparse step again.
    # The candidates cost about 5.6 s per Levin image and gained 0.7 dB there (0.14 to 0.20 dB
    # on the design photographs, where single estimates collapse less often). The last pass
    # uses the estimated-kernel strength, whose factor falls from 5 to 2 with the noise level:
    # 2x the noise-derived strength won on the design photographs at noise >= 0.005 but tied at
    # 0.001-0.002 and lost 0.7 dB on Levin (noise about 0.002; docs/benchmarks.md). The joint
    # refinement (joint_iterations) is off: it gained on exact kernel windows but lost 0.7 to
    # 1.0 dB on windows 2 px larger than the blur (round 10). The polish starts from the
    # candidate whose cheap first pass is sharpest, not from the medoid (round 12: +0.11 dB on
    # 32 design problems, +0.73 dB on Levin, for about 1.6 s more per Levin image). The polish
    # runs in rounds, each refitting against the previous round's result (round 14, three
    # rounds: +0.58 dB on 32 design problems, +0.89 dB on Levin; round 15, a fourth: +0.10 dB on
    # the design problems; 0.8 to 1.2 s per extra round). Round 16: seven rounds whose cheap
    # passes continue from the previous round's result (polish_warm), for about the work of
    # four fresh ones: +0.22 dB on the 32 design problems. Round 18: twelve warm rounds, +0.18 dB
    # on the design problems, +0.36 dB on Levin, for about 2 s more per Levin image.
    return DeblurConfig(
        engine="map",
        final="sparse",
        polish=True,
        polish_rounds=POLISH_ROUNDS,
        polish_warm=True,
        map=MapConfig(candidates=3),
        candidate_choice="sparsity",
    )


def _standard() -> DeblurConfig:
    # SelfDeblur started from the MAP estimate (the medoid of three candidates, as in quick): the
    # demo's U-Net fitted to the MAP latent and Gk to the MAP kernel (60 steps), then 300 joint
    # iterations (1 - SSIM from 150), the kernel polished at full resolution with the sparse
    # non-blind step, and the safeguard against the MAP start after the sparse step alone (a
    # start it keeps is polished too). Sized to at most two minutes for 255x255 on a 2-core CPU
    # (55 s per Levin image in round 18).
    # The candidates and the polish gained 0.52 dB on the design photographs at noise 0.002
    # (8 problems: 7 better, one 0.01 dB worse; docs/benchmarks.md). A MAP start that the
    # safeguard keeps is polished from its sharpest candidate, as quick polishes it, so that it
    # returns quick's result; SelfDeblur itself still starts from the medoid. Polish rounds:
    # round 14, design photographs, three rounds: +0.15 dB for SelfDeblur's kernels; round 16: no
    # gain after the third; round 18: twelve warm rounds (POLISH_ROUNDS). Round 17:
    # safeguard_against="quick" gained 0.12 and 0.08 dB on two sets of 16 design problems but
    # lost 0.13 dB on Levin (4 of its 6 switches wrong), so the safeguard stays "map".
    return _demo().replace(
        iterations=300,
        lr_milestones=(190, 250),
        ssim_start=150,
        init="map",
        init_iterations=60,
        final="sparse",
        safeguard=True,
        polish=True,
        polish_rounds=POLISH_ROUNDS,
        polish_warm=True,
        map=MapConfig(candidates=3),
        candidate_choice="sparsity",
    )


def _fast() -> DeblurConfig:
    # Practical on a laptop CPU (a few minutes for 255x255), designed on photographs that are not
    # the benchmark (benchmarks/fast_design.py): the demo's U-Net solved coarse-to-fine, 1000
    # iterations at 1/4 and at 1/2 scale, both generators warm-started at each finer level
    # (200 steps), then the demo's 600 iterations at full size.
    return _demo().replace(coarse_levels=2, coarse_iterations=1000, init_iterations=200)


@dataclass(frozen=True)
class Preset:
    """A named configuration as users see it: the CLI's ``--preset``, the widget's dropdown and
    the docs' preset table are generated from :data:`PRESETS`.
    """

    name: str
    label: str  # short text for dropdowns
    help: str  # one sentence: what it is for and what it costs
    build: Callable[[], DeblurConfig]
    network: bool = True  # whether it fits the SelfDeblur generators (deep-prior can reuse them)
    # Why a preset is retired ("": it is not). A retired preset still runs, so that earlier
    # results can be reproduced, but it is no longer offered and naming it warns.
    retired: str = ""


#: Every preset, in the order users should consider them. Adding one means one line here.
PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "standard",
            "standard (about 1 min on a CPU)",
            "SelfDeblur started from the MAP estimate, then the sparse non-blind step; the "
            "default: about a minute for 255x255 on a laptop CPU",
            _standard,
        ),
        Preset(
            "quick",
            "quick (seconds, no networks)",
            "the MAP kernel estimate (L0 gradient prior, coarse to fine) and the sparse "
            "non-blind step: seconds for 255x255 on a laptop CPU",
            _quick,
            network=False,
        ),
        Preset(
            "fast",
            "fast (retired)",
            "a small U-Net solved coarse-to-fine: a few minutes for 255x255 on a laptop CPU",
            _fast,
            retired="'standard' is better on the design photographs and on the Levin set, in "
            "less than half the time (docs/benchmarks.md); 'fast' still runs, to reproduce "
            "earlier results",
        ),
        Preset(
            "paper",
            "paper (reference, hours on a CPU)",
            "the published settings: 5000 iterations of a 2.37 M-parameter U-Net; about 2 hours "
            "for 255x255 on a laptop CPU, minutes on a GPU",
            _paper,
        ),
        Preset(
            "demo",
            "demo (quickest look)",
            "600 iterations of a small U-Net at full size: a quick look, not a quality setting",
            _demo,
        ),
    )
}

#: The preset used when none is named (API, CLI and widget).
DEFAULT_PRESET = "standard"


def get_preset(name: str) -> DeblurConfig:
    """Return the configuration of a named preset (see :data:`PRESETS`); a retired one warns
    (``FutureWarning``) but still runs.
    """
    try:
        preset = PRESETS[name]
    except KeyError:
        raise InvalidInputError(
            f"unknown preset {name!r}; choose one of {', '.join(offered_presets())}"
        ) from None
    if preset.retired:
        warnings.warn(f"preset {name!r} is retired: {preset.retired}", FutureWarning, stacklevel=2)
    return preset.build()


def offered_presets() -> tuple[str, ...]:
    """Names of the presets offered to users (not retired), in :data:`PRESETS` order."""
    return tuple(name for name, p in PRESETS.items() if not p.retired)


def network_presets() -> tuple[str, ...]:
    """Names of the presets that fit the SelfDeblur generators."""
    return tuple(name for name, p in PRESETS.items() if p.network)


def config_from_spec(spec: str) -> DeblurConfig:
    """``"name[:field=value,...]"`` -> the preset with fields changed.

    Values are converted to the field's type (``true``/``false`` for booleans), e.g.
    ``"paper:blur=direct,channels_last=false"``, ``"demo:init=noblur,iterations=1200"``
    (``iterations`` here does not rescale the schedule) or, in a nested configuration,
    ``"quick:map.candidates=3"``. Used by the benchmarks.
    """
    name, _, changes = spec.partition(":")
    cfg = get_preset(name)
    if not changes:
        return cfg
    values: dict[str, Any] = {}
    nested: dict[str, dict[str, Any]] = {}
    for item in changes.split(","):
        key, _, raw = item.partition("=")
        outer, _, inner = key.strip().rpartition(".")
        if outer and outer not in _NESTED:
            raise InvalidInputError(f"{key.strip()!r} is not a setting that can be changed")
        target = getattr(cfg, outer) if outer else cfg
        (nested.setdefault(outer, {}) if outer else values)[inner] = _spec_value(target, inner, raw)
    for outer, changed in nested.items():
        values[outer] = dataclasses.replace(getattr(cfg, outer), **changed)
    cfg = cfg.replace(**values)
    cfg.validate()
    return cfg


def _spec_value(target: Any, key: str, raw: str) -> Any:
    """``raw`` converted to the type of the simple field ``key`` of the dataclass ``target``."""
    kinds = {f.name: type(getattr(target, f.name)) for f in dataclasses.fields(target)}
    if key not in kinds or kinds[key] not in (bool, int, float, str):
        raise InvalidInputError(f"{key!r} is not a setting that can be changed")
    kind = kinds[key]
    return raw.strip().lower() in ("1", "true", "yes") if kind is bool else kind(raw)
