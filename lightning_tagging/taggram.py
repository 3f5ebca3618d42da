"""Drawing a taggram: tag probabilities over time, one row per tag (as musicnn's notebooks show them)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def save_taggram(taggram: np.ndarray, tags: list[str], patch_seconds: float, path: Path, title: str = "") -> Path:
    """Write a PNG of ``taggram`` ``[n_patches, n_tags]`` (probabilities in [0, 1]).

    Rows are tags in vocabulary order, columns are patches laid out on a time axis in seconds
    (each patch spans ``patch_seconds``). Uses matplotlib's Agg canvas directly, so it needs no
    display and leaves pyplot's global state alone.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    n_patches, n_tags = taggram.shape
    figure = Figure(figsize=(max(6.0, 0.5 * n_patches + 3.0), 0.18 * n_tags + 1.5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(
        taggram.T,
        aspect="auto",
        interpolation="nearest",
        cmap="Blues",
        vmin=0.0,
        vmax=1.0,
        extent=(0.0, n_patches * patch_seconds, n_tags - 0.5, -0.5),
    )
    axes.set_yticks(np.arange(n_tags), labels=tags, fontsize=7)
    axes.set_xlabel("time (s)")
    axes.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axes, fraction=0.03, pad=0.02, label="probability")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    return path
