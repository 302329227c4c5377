"""Headless matplotlib (Agg) figures saved as PNG: the report's and the benchmarks' plots."""

from __future__ import annotations

from pathlib import Path

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
