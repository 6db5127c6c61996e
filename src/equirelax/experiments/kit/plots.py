"""Training curves of a comparison over seeds, one panel per curve, in one figure."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def plot_seed_curves(out_dir: str | Path, records: Sequence[dict], title: str,
                     panels: Sequence[tuple[str, str, str | None]],
                     name: str = "curves.png") -> Path:
    """Per arm (``record["variant"]``), the mean over seeds of each curve
    (``record["curves"][key]``: (epoch, value) pairs) with a min/max band, against the epochs
    every seed recorded; one panel per ``(key, y label, y scale or None)``, the first titled
    ``title``. Written to ``out_dir/name``; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 3.8), squeeze=False)
    axes = axes[0]
    for arm in dict.fromkeys(r["variant"] for r in records):
        runs = [r for r in records if r["variant"] == arm]
        for ax, (key, _, _) in zip(axes, panels):
            curves = [dict(r["curves"][key]) for r in runs]
            epochs = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
            if not epochs:
                continue
            values = np.array([[c[e] for e in epochs] for c in curves])
            x = np.asarray(epochs) + 1
            (line,) = ax.plot(x, values.mean(0), marker="o", label=arm)
            ax.fill_between(x, values.min(0), values.max(0), alpha=0.2, color=line.get_color())
    for i, (ax, (_, label, scale)) in enumerate(zip(axes, panels)):
        ax.set(xlabel="epoch", ylabel=label, **({"title": title} if i == 0 else {}),
               **({"yscale": scale} if scale else {}))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = Path(out_dir) / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


__all__ = ["plot_seed_curves"]
