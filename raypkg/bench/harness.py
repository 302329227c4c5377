"""What every benchmark shares: its --threads and --save flags, list flags, the untimed
warm-up before anything is timed, the printed table, and what it writes (its table as
Parquet and a PNG plot of it beside it):

    save_bench(frame, "runs/bench/deltagrad-20250101-120000", plot=speedup_bars)
    -> runs/bench/deltagrad-....parquet, runs/bench/deltagrad-....png

``plot(frame, ax)`` draws the headline comparison on one matplotlib Axes.
"""

from __future__ import annotations

import itertools
import math
from datetime import datetime
from pathlib import Path
from typing import Callable

import click

from raypkg.errors import UsageError
from raypkg.paths import check_writable_dir

SAVE_HELP = "Write the table as STEM.parquet and its plot as STEM.png. Default: runs/bench/NAME-TIME."
THREADS_HELP = "torch threads of this process (0: torch's default; on 2-vCPU VMs 2 can be far slower)."


def bench_options(threads: int | None = 1, save_help: str = SAVE_HELP):
    """A bench command's ``--threads`` (default ``threads``) and ``--save`` flags."""
    def add(func):
        func = click.option("--save", help=save_help)(func)
        return click.option("--threads", type=int, default=threads, show_default=threads is not None,
                            help=THREADS_HELP)(func)
    return add


def use_threads(threads: int | None) -> int:
    """Set torch's intra-op threads (0 or None: leave torch's default); the count in use."""
    import torch

    if threads:
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def warm_up(recipe, cfg, data, **shared) -> None:
    """One untimed short run of ``recipe`` (one epoch, one epoch of warm-up or shard
    pre-training, no cache) before anything is timed: the process's one-time costs (imports,
    the allocator, the first call of each code path) are charged to no row, the baseline's
    included."""
    import dataclasses

    from raypkg.recipe import MemorySink

    fields = {f.name for f in dataclasses.fields(cfg)}
    short = {k: 1 for k in ("epochs", "pretrain_epochs", "pre_epochs", "repeats") if k in fields and getattr(cfg, k)}
    short.update({k: v for k, v in (("cache", False), ("lr_warmup_epochs", 0)) if k in fields})
    recipe.run(dataclasses.replace(cfg, **short), MemorySink, data=data, **shared)


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


def number_list(text: str, flag: str, what: str, kind: type = float, minimum: float | None = None,
                example: str = "0.05,0.01") -> list:
    """Comma-separated numbers of ``kind`` (``--density 0.05,0.01``, ``--workers 1,2``), finite and
    at least ``minimum`` when given, else a one-line UsageError."""
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and (minimum is None or v >= minimum) for v in values):
        bound = "" if minimum is None else f" >= {minimum}"
        raise UsageError(f"{flag} takes comma-separated {what}{bound}, e.g. {example}; got {text!r}")
    return values


def name_list(text: str, flag: str, allowed=None, what: str = "name") -> list[str]:
    """Comma-separated names, each once, in order (each one of ``allowed`` when given),
    else a one-line UsageError."""
    from raypkg.errors import choose

    names = list(dict.fromkeys(n.strip() for n in text.split(",") if n.strip()))
    if not names:
        raise UsageError(f"{flag} takes comma-separated names, got {text!r}")
    return [choose(what, n, allowed) for n in names] if allowed is not None else names


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


def save_bench(frame, path_stem: str | Path, plot: Callable | None = None, title: str | None = None,
               panels: int | None = None, extra: dict | None = None) -> list[Path]:
    """Write ``frame`` to ``<stem>.parquet``, with ``plot`` its PNG ``<stem>.png`` (``plot(frame,
    ax)``, or ``plot(frame, axes)`` given a number of ``panels`` side by side), and each of ``extra``
    (suffix -> a further table) to ``<stem><suffix>.parquet``; print where."""
    from raypkg.paths import atomic_write
    from raypkg.plots import figure, save_png
    from raypkg.tracking.run import write_parquet

    stem = Path(path_stem)
    written = [atomic_write(stem.with_name(stem.name + ".parquet"), lambda p: write_parquet(p, frame))]
    if plot is not None:
        fig, axes = figure(ncols=panels or 1, width=7.0 if panels is None else 6.0, height=4.2)
        plot(frame, axes[0] if panels is None else axes)
        if title:
            axes[0].set_title(title)
        written.append(save_png(fig, stem.with_name(stem.name + ".png")))
    for suffix, table in (extra or {}).items():
        written.append(atomic_write(stem.with_name(stem.name + suffix + ".parquet"),
                                    lambda p, table=table: write_parquet(p, table)))
    click.echo("saved: " + ", ".join(str(p) for p in written))
    return written


def print_table(rows: list[dict], columns: list[str], formats: dict[str, str] | None = None) -> None:
    """Aligned columns; floats as 4 significant digits unless ``formats`` names a format."""
    formats = formats or {}

    def fmt(c, v):
        if v is None:
            return "-"
        if isinstance(v, float):
            return format(v, formats.get(c, ".4g"))
        return str(v)

    widths = {c: max(len(c), *(len(fmt(c, r.get(c, ""))) for r in rows)) for c in columns}
    click.echo("  ".join(c.ljust(widths[c]) for c in columns))
    for r in rows:
        click.echo("  ".join(fmt(c, r.get(c, "")).ljust(widths[c]) for c in columns))


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
    ax.set_xscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7)


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
