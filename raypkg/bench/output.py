"""What every benchmark writes: its table as Parquet and a PNG plot of it beside it.

    save_bench(frame, "runs/bench/deltagrad-20250101-120000", plot=speedup_bars)
    -> runs/bench/deltagrad-....parquet, runs/bench/deltagrad-....png

``plot(frame, ax)`` draws the headline comparison on one matplotlib Axes.
"""

from __future__ import annotations

import math
from datetime import datetime
from pathlib import Path
from typing import Callable

import click

from raypkg.errors import UsageError
from raypkg.paths import check_writable_dir

SAVE_HELP = "Write the table as STEM.parquet and its plot as STEM.png. Default: runs/bench/NAME-TIME."


def check_bench_numbers(**values) -> None:
    """Sizes and counts must be positive (None: not given); fraction in (0, 1]."""
    for name, value in values.items():
        if value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if name == "fraction":
            if not 0 < value <= 1:
                raise UsageError(f"{flag} must be in (0, 1], got {value:g}")
        elif name == "pretrain_epochs" and value < 0 or name != "pretrain_epochs" and value < 1:
            raise UsageError(f"{flag} must be {'>= 0' if name == 'pretrain_epochs' else '>= 1'}, got {value}")


def check_overhead_flags(epochs: int, batch_size: int, train_size: int | None, worker_counts: str,
                         threads: int | None) -> list[int]:
    """`bench overhead`'s flags, before any data or Ray: returns the worker counts."""
    if epochs < 2:
        raise UsageError(f"--epochs must be >= 2 (the first epoch is excluded from the steady state), got {epochs}")
    check_bench_numbers(batch_size=batch_size, train_size=train_size, threads=threads)
    return int_list(worker_counts, "--workers", 1, "worker counts")


def int_list(text: str, flag: str, minimum: int, what: str) -> list[int]:
    """Comma-separated integers >= ``minimum`` (``--workers 1,2``), else a one-line UsageError."""
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or min(values) < minimum:
        raise UsageError(f"{flag} takes comma-separated {what} >= {minimum}, e.g. {minimum},{2 * minimum}; "
                         f"got {text!r}")
    return values


def float_list(text: str, flag: str, what: str) -> list[float]:
    """Comma-separated numbers (``--density 0.05,0.01``), else a one-line UsageError."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) for v in values):
        raise UsageError(f"{flag} takes comma-separated {what}, e.g. 0.05,0.01; got {text!r}")
    return values


def bench_settings(pairs: tuple[str, ...], allowed: set[str], what: str, own_flags: set[str] = frozenset()) -> dict:
    """``--set KEY=VALUE`` pairs (values read as YAML) as config fields of ``allowed``; other
    keys, and those the bench sets from its own flags or per row, are refused in one line."""
    from raypkg.selection.commands import parse_options

    extra = parse_options(pairs, "--set") or {}
    unknown = sorted(set(extra) - allowed)
    if unknown:
        raise UsageError(f"--set: {', '.join(unknown)} is not a {what} setting (underscores for dashes)")
    taken = sorted(set(extra) & own_flags)
    if taken:
        raise UsageError(f"--set {', '.join(taken)}: the bench sets it (use its own flag)")
    return extra


def bench_stem(save: str | None, name: str) -> Path:
    """The path stem for a benchmark's files (checked writable before the benchmark runs)."""
    stem = Path(save) if save else Path("runs") / "bench" / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    if stem.suffix in (".parquet", ".png"):
        stem = stem.with_suffix("")
    if stem.is_dir():
        stem = stem / f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    if save and not stem.parent.is_dir():
        raise UsageError(f"--save {save!r}: directory {str(stem.parent)!r} does not exist")
    check_writable_dir(stem.parent, "--save")
    return stem


def save_bench(frame, path_stem: str | Path, plot: Callable | None = None, title: str | None = None) -> list[Path]:
    """Write ``frame`` to ``<stem>.parquet`` and, with ``plot``, ``<stem>.png``; print where."""
    from raypkg.paths import atomic_write
    from raypkg.plots import figure, save_png
    from raypkg.tracking.run import write_parquet

    stem = Path(path_stem)
    written = [atomic_write(stem.with_name(stem.name + ".parquet"), lambda p: write_parquet(p, frame))]
    if plot is not None:
        fig, (ax,) = figure(width=7.0, height=4.2)
        plot(frame, ax)
        if title:
            ax.set_title(title)
        written.append(save_png(fig, stem.with_name(stem.name + ".png")))
    click.echo("saved: " + ", ".join(str(p) for p in written))
    return written


def hbar(frame, ax, label: str, columns: list[str], xlabel: str, log: bool = False) -> None:
    """Horizontal bars of ``columns`` per row (labelled by ``label``): a side-by-side comparison."""
    import numpy as np

    rows = np.arange(len(frame))
    height = 0.8 / max(len(columns), 1)
    for i, column in enumerate(columns):
        values = frame[column].astype(float).to_numpy()
        ax.barh(rows + i * height, values, height=height, label=column)
    ax.set_yticks(rows + height * (len(columns) - 1) / 2)
    ax.set_yticklabels([str(v)[:48] for v in frame[label]], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    if log:
        ax.set_xscale("log")
    if len(columns) > 1:
        ax.legend(fontsize=8)
