"""The SCG study's figures beyond the library's (:mod:`equirelax.scg.plots`): the loss of a
control branch beside the frozen base model, the robustness curve, the grids of generations on
clean and on corrupted or zero-shot inputs, and the source | condition | generation panel of
``generate``. Matplotlib is imported when a figure is drawn."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from equirelax.experiments.scg.tables import GREY, NONE


def display(hint: torch.Tensor) -> torch.Tensor:
    """A condition scaled to [0, 1] for display."""
    return (hint - hint.min()) / (hint.max() - hint.min()).clamp_min(1e-12)


def plot_control_loss(history: list[dict[str, float]], path: Path, title: str) -> Path:
    """Smoothed loss of a control branch and of the frozen base model on the same batches."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from equirelax.scg.plots import save_figure

    steps = [h["step"] for h in history]
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(steps, [h["smoothed"] for h in history], label="control branch")
    ax.plot(steps, [h["smoothed_base_loss"] for h in history], "k--",
            label="frozen base, no condition")
    ax.set_xlabel("step", fontsize=10)
    ax.set_ylabel("loss (smoothed)", fontsize=10)
    ax.set_title(title, fontsize=11)
    ax.legend(fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def plot_robustness(levels: list[float], names: list[str],
                    all_scores: dict[str, dict[str, dict[str, np.ndarray]]],
                    grey_scores: dict[str, np.ndarray], none_scores: dict[str, np.ndarray],
                    path: Path) -> Path:
    """Grey PSNR and SSIM of every branch against the input noise, beside the two baselines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from equirelax.scg.plots import save_figure

    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for name in names:
        for ax, m in zip(axes, ("psnr_grey", "ssim_grey"), strict=True):
            ax.plot(levels, [float(np.mean(all_scores[f"noise_{s:g}"][name][m]))
                             for s in levels], "k--" if name == "canny" else "-", marker="o",
                    label=name)
    for ax, m in zip(axes, ("psnr_grey", "ssim_grey"), strict=True):
        ax.axhline(float(np.mean(grey_scores[m])), color="tab:grey", ls="-.", label=GREY)
        ax.axhline(float(np.mean(none_scores[m])), color="tab:grey", ls=":", label=NONE)
        ax.set_xlabel("input noise std", fontsize=10)
        ax.set_ylabel(m.replace("_", " "), fontsize=10)
    axes[1].legend(fontsize=8, loc="best")
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def plot_generation_grid(source: torch.Tensor, samples: dict, names: list[str],
                         none_img: torch.Tensor, path: Path, n_img: int = 3,
                         output_label: str = "generation") -> Path:
    """Clean inputs: one row per condition (plus the source and the unconditional base),
    for each of ``n_img`` images its condition and its output (``output_label``: a
    generation, or the posterior mean of several) side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from equirelax.scg.plots import save_figure

    rows = ["source", NONE, *names]
    fig, axes = plt.subplots(len(rows), 2 * n_img, squeeze=False,
                             figsize=(2 * n_img * 1.35 + 0.9, len(rows) * 1.35 + 0.5))
    for r, row in enumerate(rows):
        for i in range(n_img):
            if row == "source":
                panels = [None, source[i]]
            elif row == NONE:
                panels = [None, none_img[i]]
            else:
                hint, img = samples[("noise_0", row)]
                panels = [display(hint[i]), img[i]]
            for j, p in enumerate(panels):
                ax = axes[r, 2 * i + j]
                ax.set_xticks([])
                ax.set_yticks([])
                if p is None:  # keep the axes (for the row label), hide the frame
                    for spine in ax.spines.values():
                        spine.set_visible(False)
                else:
                    ax.imshow(p.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
                if r == 0:
                    ax.set_title(f"image {i + 1}: " + ("condition" if j == 0 else "source"),
                                 fontsize=9)
                elif r == 1 and j == 1:
                    ax.set_title(output_label, fontsize=9)
                if i == 0 and j == 0:
                    ax.set_ylabel(row if len(row) <= 12 else row.split(" ")[0], fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def plot_zero_shot_grid(source: torch.Tensor, settings: dict[str, torch.Tensor], samples: dict,
                        names: list[str], show: list[str], path: Path, n_img: int = 2) -> Path:
    """Corrupted and zero-shot inputs: per setting and image, the source, the input given to
    the condition extractors, and each branch's generation."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from equirelax.scg.plots import save_figure

    cols = ["source", "input", *names]
    n_rows = len(show) * n_img
    fig, axes = plt.subplots(n_rows, len(cols), squeeze=False,
                             figsize=(len(cols) * 1.35 + 0.9, n_rows * 1.35 + 0.5))
    for si, setting in enumerate(show):
        for i in range(n_img):
            r = si * n_img + i
            panels = [source[i], settings[setting][i]] + [samples[(setting, n)][1][i]
                                                          for n in names]
            for c, p in enumerate(panels):
                ax = axes[r, c]
                ax.imshow(p.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if r == 0:
                    ax.set_title(cols[c], fontsize=9)
                if c == 0:
                    ax.set_ylabel(setting, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, path, dpi=80)


def plot_completion(image: torch.Tensor, hint: torch.Tensor, gen: torch.Tensor, condition: str,
                    path: Path, mean: torch.Tensor | None = None) -> Path:
    """``generate``'s figure: the source, its condition and the generation side by side, and
    ``mean`` (the mean of several generations) after them when given."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from equirelax.scg.plots import save_figure

    titles = ["source (32x32)", f"condition: {condition}", "generation"]
    panels = [image[0], display(hint[0]), gen[0]]
    if mean is not None:
        titles.append("mean of generations")
        panels.append(mean[0])
    fig, axes = plt.subplots(1, len(panels), figsize=(2.5 * len(panels), 2.9))
    for ax, title, p in zip(axes, titles, panels, strict=True):
        ax.imshow(p.clamp(0, 1).permute(1, 2, 0).numpy(), interpolation="nearest")
        ax.set_title(title, fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return save_figure(fig, path, dpi=100)
