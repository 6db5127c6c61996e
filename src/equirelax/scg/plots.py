"""Figures of the modular autoencoder, written to files (matplotlib, Agg backend).

Kernel mosaics with one module per row (paper Fig. 3), per-module reconstructions of held-out
images (Fig. 3d), and orientation / spatial-frequency tuning curves (Fig. S4).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib
import matplotlib.figure
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from equirelax.scg.autoencoder import ModularAutoencoder
from equirelax.scg.probes import (
    DEFAULT_FREQUENCIES,
    DEFAULT_ORIENTATIONS,
    ProbeReport,
)


def save_figure(fig: matplotlib.figure.Figure, path: Path, dpi: int = 55) -> Path:
    """Write ``fig`` as a PNG with an adaptive 256-colour palette (several times smaller than
    true colour for these mosaics, so results stay small enough to commit), then close it."""
    import io

    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, dpi=dpi, format="png")
    plt.close(fig)
    buf.seek(0)
    Image.open(buf).convert("RGB").quantize(256).save(path, optimize=True)
    return path


def _kernel_rgb(w: np.ndarray) -> np.ndarray:
    """Map one raw kernel ``(3, k, k)`` to an RGB image around grey (0.5), per-kernel scaled."""
    m = np.abs(w).max()
    return np.clip(0.5 + 0.5 * w / max(m, 1e-12), 0, 1).transpose(1, 2, 0)


@torch.no_grad()
def plot_kernel_mosaic(model: ModularAutoencoder, path: Path, title: str = "",
                       labels: list[str] | None = None, group_size: int | None = None) -> Path:
    """Kernel mosaic: one module per row, its units along the row (raw-RGB kernels).

    ``group_size`` channels per row (default ``model.units``; 8 shows the hypercolumns of a
    ``rot_num = 8`` model)."""
    w = (model.weight() / model.std.view(1, 3, 1, 1)).numpy()
    L = model.units if group_size is None else group_size
    if L < 1 or model.channels % L:
        raise ValueError(f"group_size {L} must divide the {model.channels} channels")
    K = model.channels // L
    fig, axes = plt.subplots(K, L, figsize=(L * 0.9 + 1.2, K * 0.9 + 0.4), squeeze=False)
    for i in range(K):
        for j in range(L):
            ax = axes[i, j]
            ax.imshow(_kernel_rgb(w[i * L + j]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        name = f"{i}" + (f" {labels[i]}" if labels else "")
        axes[i, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


@torch.no_grad()
def plot_module_reconstructions(model: ModularAutoencoder, images: torch.Tensor, path: Path,
                                labels: list[str] | None = None, title: str = "") -> Path:
    """For each image (rows): the original, the full reconstruction, then each module alone.

    A module's panel shows its own contribution ``D(E(I) * mask_i)`` in raw RGB units around
    grey (no mean image added), scaled per panel to its largest magnitude: single modules carry
    little energy, and the colour of a panel is the colour the module adds or removes.
    """
    K = model.n_modules
    n = images.shape[0]
    fig, axes = plt.subplots(n, K + 2, figsize=((K + 2) * 0.8, n * 0.85 + 0.5), squeeze=False)
    full = model(images).clamp(0, 1)
    f = model.encode(images)
    size = tuple(images.shape[-2:])
    for r in range(n):
        panels = [images[r], full[r]]
        names = ["input", "all"]
        for i in range(K):
            part = model.decode_normalised(f[r : r + 1] * model.module_mask([i]), size)
            part = (part * model.std)[0]
            rec = 0.5 + 0.5 * part / part.abs().max().clamp_min(1e-12)
            panels.append(rec)
            names.append(f"{i}" + (f"\n{labels[i][:4]}" if labels else ""))
        for c, (p, nm) in enumerate(zip(panels, names, strict=True)):
            ax = axes[r, c]
            ax.imshow(p.permute(1, 2, 0).numpy(), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(nm, fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_tuning_curves(report: ProbeReport, units: int, path: Path, title: str = "",
                       orientations: np.ndarray = DEFAULT_ORIENTATIONS,
                       frequencies: np.ndarray = DEFAULT_FREQUENCIES) -> Path:
    """Per module: orientation tuning (at each unit's preferred frequency) and frequency tuning
    (best orientation) of its units, normalised to the unit's peak."""
    amp = np.sqrt(np.maximum(report.grating_energy, 0))
    K = amp.shape[0] // units
    cols = 4
    rows = -(-K // cols)
    fig, axes = plt.subplots(rows, 2 * cols, figsize=(2 * cols * 1.6, rows * 1.3), squeeze=False)
    deg = np.degrees(orientations)
    for i in range(K):
        ax_o = axes[i // cols, 2 * (i % cols)]
        ax_f = axes[i // cols, 2 * (i % cols) + 1]
        for u in range(units):
            a = amp[i * units + u]
            peak = max(a.max(), 1e-12)
            bf = a.max(0).argmax()
            ax_o.plot(deg, a[:, bf] / peak, lw=0.8)
            ax_f.semilogx(frequencies, a.max(0) / peak, lw=0.8)
        ax_o.set_title(f"m{i} {report.module_types[i]} ori", fontsize=6)
        ax_f.set_title(f"m{i} freq", fontsize=6)
        ax_f.set_xticks([0.05, 0.1, 0.2, 0.4], ["0.05", "0.1", "0.2", "0.4"])
        ax_f.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax_o.set_xticks([0, 90, 180])
        for ax in (ax_o, ax_f):
            ax.tick_params(labelsize=5)
            ax.set_ylim(0, 1.05)
    for j in range(K, rows * cols):
        axes[j // cols, 2 * (j % cols)].axis("off")
        axes[j // cols, 2 * (j % cols) + 1].axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)


def plot_loss_history(history: list[dict[str, float]], path: Path, title: str = "") -> Path:
    """Loss terms against step (log scale)."""
    keys = [k for k in history[0] if k not in ("step", "seconds")]
    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3))
    for k in keys:
        vals = [max(h[k], 1e-8) for h in history]
        if max(vals) > 1e-8:
            ax.semilogy(steps, vals, label=k, lw=1)
    ax.set_xlabel("step")
    ax.legend(fontsize=6)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path)
