"""``ablation.png``: the grid of mean Recall@1 as an annotated heat map (``figures`` extra)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from sampling_matters._optional import require
from sampling_matters.data.cache import write_atomic

__all__ = ["plot_grid"]


def plot_grid(
    grid: list[list[float]], losses: Sequence[str], samplings: Sequence[str], path: Path
) -> None:
    """Draw the mean Recall@1 grid as an annotated heat map (PNG, written atomically)."""
    matplotlib = require("matplotlib")  # missing: an ImportError naming the figures extra
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    values = np.ma.masked_invalid(100 * np.array(grid, dtype=float))  # (L, S)
    figure = Figure(figsize=(1.6 + 1.5 * len(samplings), 1.2 + 0.6 * len(losses)))
    FigureCanvasAgg(figure)
    axes = figure.subplots()
    colours = matplotlib.colormaps["viridis"].with_extremes(bad="0.85")  # no run: grey
    image = axes.imshow(values, cmap=colours, aspect="auto")
    axes.set_xticks(range(len(samplings)), samplings, rotation=20, ha="right")
    axes.set_yticks(range(len(losses)), losses)
    middle = (float(values.min()) + float(values.max())) / 2 if values.count() else 0.0
    for (i, j), value in np.ndenumerate(values.filled(np.nan)):
        dark = not np.isnan(value) and value < middle  # white text on the dark half
        text = "—" if np.isnan(value) else f"{value:.1f}"
        axes.text(j, i, text, ha="center", va="center", color="white" if dark else "black")
    axes.set_title("mean Recall@1 (%) over seeds")
    figure.colorbar(image, ax=axes)
    figure.tight_layout()
    write_atomic(path, lambda name: figure.savefig(name, format="png", dpi=120))
