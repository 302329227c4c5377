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
    """Write ``fig`` as a PNG (atomically) and close it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    try:
        return atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=110))
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
