"""Instruments for studying SelfDeblur: spectra over iterations, loss landscapes, seed studies.

- :func:`radial_power_spectrum` and :func:`band_errors` compare images by frequency (the U-Net's
  spectral bias: low frequencies are fitted first).
- :func:`spectral_study` records the latent at chosen iterations of a run and measures its
  spectrum and, with a ground truth, its error per frequency band.
- :func:`loss_landscape` evaluates the loss along the straight line and along a fitted quadratic
  Bezier curve phi(t) = (1-t)^2 w1 + 2t(1-t) theta + t^2 w2 between two parameter sets of the
  same seed (e.g. the no-blur start and a converged run).
- :func:`seed_study` runs several seeds per initialisation and scores them against a truth.

``write_*`` functions save a CSV and a PNG plot (matplotlib, the ``analysis`` extra) and return
the paths. Frequencies are in cycles per pixel (0 to 0.5).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

# -- spectra -------------------------------------------------------------------------------------


def _spectrum(image: np.ndarray) -> np.ndarray:
    """|FFT|^2 of a mean-removed, Hann-windowed image (the window limits border leakage)."""
    x = np.asarray(image, dtype=np.float64)
    x = x - x.mean()
    win = np.outer(np.hanning(x.shape[0]), np.hanning(x.shape[1]))
    return np.abs(np.fft.fft2(x * win)) ** 2


def _radius(shape: tuple[int, int]) -> np.ndarray:
    fy = np.fft.fftfreq(shape[0])[:, None]
    fx = np.fft.fftfreq(shape[1])[None, :]
    return np.sqrt(fy**2 + fx**2)


def radial_power_spectrum(image: np.ndarray, n_bins: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Radially averaged power spectrum: (bin centres in cycles/pixel, mean power per bin)."""
    power = _spectrum(image)
    r = _radius(power.shape)
    edges = np.linspace(0, 0.5, n_bins + 1)
    idx = np.clip(np.digitize(r.ravel(), edges) - 1, 0, n_bins - 1)
    keep = r.ravel() <= 0.5
    sums = np.bincount(idx[keep], weights=power.ravel()[keep], minlength=n_bins)
    counts = np.bincount(idx[keep], minlength=n_bins)
    return 0.5 * (edges[1:] + edges[:-1]), sums / np.maximum(counts, 1)


def band_errors(estimate: np.ndarray, truth: np.ndarray, n_bands: int = 4) -> np.ndarray:
    """Relative error of the spectral magnitude in ``n_bands`` equal radial bands (0 to 0.5).

    Band b: sum over its frequencies of (|F est| - |F truth|)^2 / sum of |F truth|^2. Magnitudes
    only, so a shift of the estimate (the blind translation ambiguity) does not count as error.
    """
    a, b = np.sqrt(_spectrum(estimate)), np.sqrt(_spectrum(truth))
    r = _radius(a.shape)
    edges = np.linspace(0, 0.5, n_bands + 1)
    out = np.empty(n_bands)
    for i in range(n_bands):
        m = (r >= edges[i]) & (r < edges[i + 1] if i < n_bands - 1 else r <= 0.5)
        out[i] = ((a[m] - b[m]) ** 2).sum() / max((b[m] ** 2).sum(), 1e-30)
    return out


@dataclass
class SpectralStudy:
    """Spectra of the input, the truth (if given) and the latent at each recorded iteration."""

    freq: np.ndarray
    spectra: dict[str, np.ndarray]
    iterations: list[int]
    band_edges: np.ndarray
    band_errors: np.ndarray | None = None  # (len(iterations) + 1, n_bands); row 0: the input


def spectral_study(
    image: np.ndarray,
    kernel_size,
    *,
    snapshots: Sequence[int],
    truth: np.ndarray | None = None,
    n_bands: int = 4,
    n_bins: int = 32,
    **deblur_kwargs: Any,
) -> SpectralStudy:
    """Run :func:`napari_selfdeblur.deblur` and analyse the latent at iterations ``snapshots``.

    ``image`` and ``truth`` are 2-D; other keyword arguments go to ``deblur`` (preset,
    iterations, seed, device).
    """
    from ..api import deblur
    from ..imaging.image import Intensity

    snaps = sorted({int(s) for s in snapshots if int(s) > 0})
    if not snaps:
        raise ValueError("give at least one positive snapshot iteration")
    every = math.gcd(*snaps)
    latents: dict[int, np.ndarray] = {}
    unit = Intensity.of(np.asarray(image))

    def grab(p):
        if p.latent is not None and p.iteration in snaps:
            latents[p.iteration] = p.latent.copy()

    deblur(
        image,
        kernel_size,
        callback=grab,
        callback_every=every,
        preview_every=every,
        **deblur_kwargs,
    )
    its = [i for i in snaps if i in latents]
    freq, p_in = radial_power_spectrum(unit.to_unit(image), n_bins)
    spectra = {"input": p_in}
    if truth is not None:
        spectra["truth"] = radial_power_spectrum(unit.to_unit(truth), n_bins)[1]
    for i in its:
        spectra[f"latent@{i}"] = radial_power_spectrum(latents[i], n_bins)[1]
    errors = None
    if truth is not None:
        t = unit.to_unit(truth)
        rows = [band_errors(unit.to_unit(image), t, n_bands)]
        rows += [band_errors(latents[i], t, n_bands) for i in its]
        errors = np.array(rows)
    return SpectralStudy(freq, spectra, its, np.linspace(0, 0.5, n_bands + 1), errors)


def write_spectral(study: SpectralStudy, out_dir: str | Path) -> list[Path]:
    """``spectra.csv``, ``spectra.png`` and, with a truth, ``band_errors.csv`` / ``.png``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(study.spectra)
    paths = [out / "spectra.csv", out / "spectra.png"]
    _write_csv(
        paths[0],
        ["frequency", *names],
        [[f, *(study.spectra[n][i] for n in names)] for i, f in enumerate(study.freq)],
    )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for n in names:
        ax.semilogy(study.freq, study.spectra[n], label=n, lw=2 if n in ("input", "truth") else 1)
    ax.set_xlabel("frequency (cycles / pixel)")
    ax.set_ylabel("radially averaged power")
    ax.legend(fontsize=7)
    _save(fig, paths[1])
    if study.band_errors is not None:
        edges = study.band_edges
        bands = [f"{edges[i]:.3f}-{edges[i + 1]:.3f}" for i in range(len(edges) - 1)]
        rows = [["input", *study.band_errors[0]]]
        rows += [[i, *e] for i, e in zip(study.iterations, study.band_errors[1:], strict=True)]
        paths += [out / "band_errors.csv", out / "band_errors.png"]
        _write_csv(paths[2], ["iteration", *bands], rows)
        fig, ax = plt.subplots(figsize=(6, 4))
        for b, name in enumerate(bands):
            ax.plot(study.iterations, study.band_errors[1:, b], marker="o", label=name)
            ax.axhline(study.band_errors[0, b], ls=":", color=ax.lines[-1].get_color())
        ax.set_xlabel("iteration")
        ax.set_ylabel("relative spectral error (dotted: input)")
        ax.set_yscale("log")
        ax.legend(title="band (cycles/px)", fontsize=7)
        _save(fig, paths[3])
    return paths


# -- loss landscape ------------------------------------------------------------------------------


@dataclass
class Landscape:
    """Loss along the straight line and the fitted Bezier curve between two parameter sets."""

    t: np.ndarray
    line: np.ndarray
    curve: np.ndarray
    fit_history: list[float] = field(default_factory=list)

    @property
    def line_mean(self) -> float:
        """Mean loss along the straight line."""
        return float(self.line.mean())

    @property
    def curve_mean(self) -> float:
        """Mean loss along the fitted Bezier curve."""
        return float(self.curve.mean())


def loss_landscape(
    image: np.ndarray,
    kernel_shape: tuple[int, int],
    config,
    state_a: dict,
    state_b: dict,
    *,
    seed: int = 0,
    device: str = "cpu",
    n_points: int = 21,
    fit_steps: int = 200,
    samples_per_step: int = 4,
    lr: float = 1e-3,
) -> Landscape:
    """Data loss along phi(t) between the parameters ``state_a`` (t=0) and ``state_b`` (t=1).

    ``state_*`` are ``FitResult.state`` dicts (``fit(..., keep_state=True)``) of runs with the
    same ``seed``, so both were fitted with the same network inputs. The loss is the run's final
    data term (1 - SSIM, or MSE if the config never switches) of blur(Gx, Gk) against ``image``
    (2-D, values in [0, 1]). The control point theta starts at the midpoint and is fitted by Adam
    to lower the mean loss over random t (``fit_steps`` steps, ``samples_per_step`` t each).
    """
    import torch
    from torch.func import functional_call

    from ..engine.device import resolve_device
    from ..engine.objective import final_data_loss
    from ..engine.physics import select_blur
    from ..engine.solver import build_generators

    dev = resolve_device(device)
    y = np.asarray(image, dtype=np.float32)
    gx, gk, zx, zk = build_generators(config, kernel_shape, y.shape, seed, dev)
    gx.train()
    gk.train()
    target = torch.from_numpy(y)[None, None].to(dev)
    names_x = [n for n, _ in gx.named_parameters()]
    names_k = [n for n, _ in gk.named_parameters()]

    def flat(state):
        return {
            **{f"x.{n}": state["gx"][n].to(dev) for n in names_x},
            **{f"k.{n}": state["gk"][n].to(dev) for n in names_k},
        }

    w1, w2 = flat(state_a), flat(state_b)

    def loss_at(params):
        x = functional_call(gx, {n: params[f"x.{n}"] for n in names_x}, (zx,))
        k = functional_call(gk, {n: params[f"k.{n}"] for n in names_k}, (zk,))
        return final_data_loss(config, select_blur(config.blur)(x, k), target)

    def line(t):
        return {n: (1 - t) * w1[n] + t * w2[n] for n in w1}

    theta = {n: (0.5 * (w1[n] + w2[n])).clone().requires_grad_(True) for n in w1}

    def curve(t):
        return {n: (1 - t) ** 2 * w1[n] + 2 * t * (1 - t) * theta[n] + t**2 * w2[n] for n in w1}

    opt = torch.optim.Adam(list(theta.values()), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(fit_steps):
        ts = torch.rand(samples_per_step, generator=gen).tolist()
        loss = sum(loss_at(curve(t)) for t in ts) / samples_per_step
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        history.append(float(loss.detach()))
    grid = np.linspace(0, 1, n_points)
    with torch.no_grad():
        line_loss = np.array([float(loss_at(line(float(t)))) for t in grid])
        curve_loss = np.array([float(loss_at(curve(float(t)))) for t in grid])
    return Landscape(grid, line_loss, curve_loss, history)


def write_landscape(land: Landscape, out_dir: str | Path, labels=("start", "end")) -> list[Path]:
    """``landscape.csv`` and ``landscape.png`` (loss against t for the line and the curve)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "landscape.csv", out / "landscape.png"]
    _write_csv(
        paths[0],
        ["t", "line_loss", "bezier_loss"],
        [[t, a, b] for t, a, b in zip(land.t, land.line, land.curve, strict=True)],
    )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(land.t, land.line, marker=".", label=f"straight line (mean {land.line_mean:.4g})")
    ax.plot(land.t, land.curve, marker=".", label=f"Bezier curve (mean {land.curve_mean:.4g})")
    ax.set_xlabel(f"t  (0: {labels[0]}, 1: {labels[1]})")
    ax.set_ylabel("data loss")
    ax.legend()
    _save(fig, paths[1])
    return paths


# -- seed study ----------------------------------------------------------------------------------


def seed_study(
    image: np.ndarray,
    truth: np.ndarray,
    kernel_size,
    *,
    seeds: Sequence[int],
    inits: Sequence[str] = ("random", "noblur"),
    preset="demo",
    iterations: int | None = None,
    device: str = "auto",
    true_kernel: np.ndarray | None = None,
) -> list[dict[str, Any]]:
    """One row per (init, seed): PSNR/SSIM against ``truth`` (Levin protocol), flags, runtime.

    Integer images are scaled by their dtype's maximum; float images must be in [0, 1].
    """
    from ..api import deblur
    from ..engine.checks import resolve_config
    from .metrics import kernel_similarity, levin_score

    rows = []
    base = resolve_config(preset, iterations)
    for init in inits:
        cfg = base.replace(init=init)
        for seed in seeds:
            r = deblur(image, kernel_size, preset=cfg, seed=seed, device=device)
            score = levin_score(_to_unit_range(r.latent), _to_unit_range(truth))
            row = {
                "init": init,
                "seed": seed,
                "psnr": round(score.psnr, 3),
                "ssim": round(score.ssim, 4),
                "flags": " ".join(r.diagnosis.flags),
                "runtime_s": round(r.runtime_s, 1),
            }
            if true_kernel is not None:
                row["kernel_similarity"] = round(kernel_similarity(r.kernel, true_kernel), 3)
            rows.append(row)
    return rows


def write_seed_study(rows: list[dict[str, Any]], out_dir: str | Path) -> list[Path]:
    """``seeds.csv`` and ``seeds.png`` (PSNR per seed, one column per initialisation)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / "seeds.csv", out / "seeds.png"]
    _write_csv(paths[0], list(rows[0]), [list(r.values()) for r in rows])
    plt = _pyplot()
    inits = list(dict.fromkeys(r["init"] for r in rows))
    fig, ax = plt.subplots(figsize=(5, 4))
    for i, init in enumerate(inits):
        vals = [r["psnr"] for r in rows if r["init"] == init]
        ax.scatter([i] * len(vals), vals, alpha=0.7)
        ax.hlines(np.mean(vals), i - 0.2, i + 0.2, color="k")
    ax.set_xticks(range(len(inits)), inits)
    ax.set_ylabel("PSNR (dB), bar = mean")
    _save(fig, paths[1])
    return paths


def summarise_seeds(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """Mean, standard deviation and worst PSNR, and flagged runs, per initialisation."""
    out = {}
    for init in dict.fromkeys(r["init"] for r in rows):
        vals = np.array([r["psnr"] for r in rows if r["init"] == init])
        flagged = sum(1 for r in rows if r["init"] == init and r["flags"])
        out[init] = {
            "runs": len(vals),
            "mean": float(vals.mean()),
            "std": float(vals.std()),
            "worst": float(vals.min()),
            "flagged": flagged,
        }
    return out


def _to_unit_range(a: np.ndarray) -> np.ndarray:
    """Integers scaled by their dtype's maximum (uint8 / 255); floats assumed in [0, 1]."""
    a = np.asarray(a)
    if np.issubdtype(a.dtype, np.integer):
        return a.astype(np.float64) / np.iinfo(a.dtype).max
    return a.astype(np.float64)


# -- output helpers ------------------------------------------------------------------------------


def _pyplot():
    try:
        import matplotlib
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            "plots need matplotlib: pip install 'napari-selfdeblur[analysis]'"
        ) from exc
    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    from ..fileio import atomic_path

    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    _pyplot().close(fig)


def _write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> None:
    from ..fileio import atomic_path

    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
