"""Headless matplotlib (Agg) figures saved as PNG: the report's and the benchmarks' plots."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable

from raypkg.paths import atomic_write


def figure(ncols: int = 1, width: float = 5.0, height: float = 3.8):
    """A figure with ``ncols`` axes side by side, on the Agg backend (no display needed)."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False)
    return fig, list(axes[0])


def save_png(fig, path: str | Path) -> Path:
    """Write ``fig`` as a PNG (atomically) and close it, laid out tightly unless it has a
    layout engine of its own, cropped to what it draws (``bbox_inches="tight"``: no legend or
    label cut off at its edge)."""
    import matplotlib.pyplot as plt

    if fig.get_layout_engine() is None:
        fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight"))
    finally:
        plt.close(fig)


def accuracy_vs_seconds(frame, ax, *, seconds: str, by: list[str], label: Callable, xlabel: str) -> None:
    """Test accuracy (%) against ``seconds`` (log axis): one marker and legend entry per group of
    the columns ``by``, each point annotated with ``label(row)`` (an empty label: none)."""
    for marker, (key, group) in zip(itertools.cycle("os^D*vP<>"), frame.groupby(by, sort=False)):
        ax.scatter(group[seconds], 100 * group["test_acc"], marker=marker, s=40,
                   label=" ".join(map(str, key if isinstance(key, tuple) else (key,))))
        for _, row in group.iterrows():
            if label(row):
                ax.annotate(label(row), (row[seconds], 100 * row["test_acc"]), fontsize=7, xytext=(3, 3),
                            textcoords="offset points")
    ax.set(xscale="log", xlabel=xlabel, ylabel="test accuracy (%)")
    ax.legend(fontsize=7)


def hbar(frame, ax, label: str, columns: list[str], xlabel: str, log: bool = False) -> None:
    """Horizontal bars of ``columns`` per row (labelled by ``label``): a side-by-side comparison."""
    import numpy as np

    rows = np.arange(len(frame))
    height = 0.8 / max(len(columns), 1)
    for i, column in enumerate(columns):
        ax.barh(rows + i * height, frame[column].astype(float).to_numpy(), height=height, label=column)
    ax.set_yticks(rows + height * (len(columns) - 1) / 2)
    ax.set_yticklabels([str(v)[:48] for v in frame[label]], fontsize=8)
    ax.invert_yaxis()
    ax.set(xlabel=xlabel, xscale="log" if log else "linear")
    if len(columns) > 1:
        ax.legend(fontsize=8)


def place_labels(ax, points, texts, fontsize: float = 6) -> list:
    """Each of ``texts`` beside its point (data coordinates), no two labels' boxes overlapping
    and none over a point: candidate spots on rings around the point, nearest first, inside the
    axes; a thin grey line leads from a label set away from its point. Lays the figure out
    first (the spots are placed in pixels) and fixes that layout, so saving keeps it. The text
    artists, in the order of ``texts``."""
    import math

    from matplotlib.transforms import Bbox

    fig = ax.figure
    if fig.get_layout_engine() is None:
        fig.tight_layout()
    fig.set_layout_engine("none")  # save_png keeps this layout: the labels were placed in its pixels
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    pixels = [tuple(ax.transData.transform(p)) for p in points]
    taken = [Bbox.from_bounds(x - 5, y - 5, 10, 10) for x, y in pixels]  # the markers themselves
    placed = [None] * len(texts)
    for i in sorted(range(len(texts)), key=lambda i: -pixels[i][1]):  # from the top down
        x, y = pixels[i]
        artist = ax.text(0, 0, texts[i], fontsize=fontsize, ha="center", va="center", zorder=5,
                         bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 0.75})
        width, height = (artist.get_window_extent(renderer).size + 2)
        spot = next(((cx, cy) for radius in range(6, int(frame.width + frame.height), 6)
                     for step in range(max(8, radius // 3))
                     for cx, cy in [(x + (radius + width / 2) * math.cos(2 * math.pi * step / max(8, radius // 3)),
                                     y + (radius + height / 2) * math.sin(2 * math.pi * step / max(8, radius // 3)))]
                     if frame.x0 <= cx - width / 2 and cx + width / 2 <= frame.x1
                     and frame.y0 <= cy - height / 2 and cy + height / 2 <= frame.y1
                     and not any(box.overlaps(Bbox.from_bounds(cx - width / 2, cy - height / 2, width, height))
                                 for box in taken)), (x, y))
        taken.append(Bbox.from_bounds(spot[0] - width / 2, spot[1] - height / 2, width, height))
        artist.set_position(ax.transData.inverted().transform(spot))
        if math.dist(spot, (x, y)) > max(width, height) / 2 + 8:
            ax.plot(*zip(ax.transData.inverted().transform((x, y)), ax.transData.inverted().transform(spot)),
                    color="grey", linewidth=0.4, zorder=4)
        placed[i] = artist
    return placed
