"""`effray bench verdicts`: which method, for which setup, in one table read from stored
frontier summaries (``effray bench frontier --save STEM`` writes STEM-summary.parquet).

A row per method, a column per setup, and in each cell each point's verdict
against the budget curve at its own execution, with ``x_vs_curve_bound``: how many times
faster than the curve it reached its accuracy (the geometric mean over its seeds, a seed
above the whole curve counted at its lower bound), and its 95% interval
(``raypkg.bench.frontier.judge``). Nothing is trained.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from raypkg.bench.harness import SAVE_HELP, BenchRunner
from raypkg.cli_options import wandb_option
from raypkg.errors import UsageError

CURVE_ROWS = ("full", "full-fp32")  # the curve's own points: no verdict
PACKED = " †"  # a cell whose seconds were measured beside other points (the frontier's ``timed``)


def read_setups(pairs: tuple[str, ...]) -> dict:
    """``SETUP=PATH`` arguments -> {setup: its summary frame}, each setup once (none named
    ``method``, the table's own first column) and each file a stored frontier summary (a
    verdict column, and a name in every row's method and setting), read before anything is
    written."""
    from raypkg.tracking.markdown import read_table

    if not pairs:
        raise UsageError("give at least one SETUP=SUMMARY.parquet (a frontier's STEM-summary.parquet)")
    setups: dict[str, Path] = {}
    for pair in pairs:
        setup, sep, path = pair.partition("=")
        if not sep or not setup or not path:
            raise UsageError(f"setups take SETUP=SUMMARY.parquet (e.g. fashion-mnist:mlp=STEM-summary.parquet), "
                             f"got {pair!r}")
        if setup in setups:
            raise UsageError(f"setup {setup!r} is given twice")
        if setup == "method":
            raise UsageError("setup 'method' names the table's own column of methods: name the setup otherwise "
                             "(e.g. DATASET:MODEL)")
        setups[setup] = Path(path)
    summaries = {}
    for setup, path in setups.items():
        frame = read_table(path, "bench verdicts")
        missing = {"method", "setting", "verdict", "x_vs_curve_bound"} - set(frame.columns)
        if missing:
            raise UsageError(f"{path} is not a frontier summary: no column {', '.join(sorted(missing))}")
        for column in ("method", "setting"):
            unnamed = [(i, name) for i, name in enumerate(frame[column]) if not isinstance(name, str) or not name]
            if unnamed:
                row, name = unnamed[0]
                shown = "null" if name is None or name != name else repr(name)  # None, or NaN as pandas reads it
                raise UsageError(f"{path} is not a frontier summary as `effray bench frontier --save` writes it: "
                                 f"its {column} is {shown} in row {row}, not a name")
        summaries[setup] = frame
    return summaries


def verdict_table(summaries: dict):
    """{setup: a frontier summary frame} -> a frame with a row per method (in order of first
    appearance) and a column per setup: ``VERDICT Rx [L, H]`` (R the geometric mean
    x_vs_curve_bound, [L, H] its 95% interval; ``VERDICT?`` where a faster or slower cell does
    not survive Holm's correction over the cells its frontier tested; a trailing ``PACKED``
    where a seed's seconds were measured beside other points) for each setting of the
    method that setup ran, ``f=0.1 slower 0.21x [0.18, 0.25]; f=0.3 tie 0.95x [0.8, 1.1]``, or
    ``-``. Summaries stored before the intervals (2026-11-28) give ``VERDICT Rx``."""
    import pandas as pd

    cells: dict[str, dict[str, list[str]]] = {}
    for setup, frame in summaries.items():
        for row in frame[~frame["method"].isin(CURVE_ROWS)].to_dict("records"):
            text = f"{row['verdict']}{'?' if row.get('holm') == 'close' else ''}"
            ratio, low, high = row["x_vs_curve_bound"], row.get("x_low", math.nan), row.get("x_high", math.nan)
            if not (ratio is None or math.isnan(ratio)):
                text += f" {times(ratio)}x" + ("" if low is None or math.isnan(low) else f" [{times(low)}, {times(high)}]")
            text += PACKED if row.get("timed") == "packed" else ""
            text = text if row["setting"] == "-" else f"{row['setting']} {text}"
            cells.setdefault(row["method"], {}).setdefault(setup, []).append(text)
    return pd.DataFrame([{"method": method, **{s: "; ".join(by.get(s, ["-"])) for s in summaries}}
                         for method, by in cells.items()])


def times(ratio: float) -> str:
    """A ratio as a cell shows it: two decimals, or two significant digits outside [0.01, 100)
    (a seed at chance accuracy, which the curve reaches at 0 s, makes an interval huge)."""
    return f"{ratio:.2f}" if 0.01 <= ratio < 100 else f"{ratio:.2g}"


LABEL_INCHES = 0.14  # the height of a row of the plot's 6-point labels


def plot_ratios(summaries: dict, ax) -> None:
    """Each point's x_vs_curve_bound per setup (log scale), the curve's speed at 1; the figure
    grows with the points' labels (LABEL_INCHES a row), so they never overlap."""
    labels = set()
    for setup, frame in summaries.items():
        rows = frame[~frame["method"].isin(CURVE_ROWS)]
        named = rows["method"] + rows["setting"].map(lambda s: "" if s == "-" else f" {s}")
        labels.update(named)
        ax.scatter(rows["x_vs_curve_bound"].clip(lower=1e-3), named, label=setup, s=18)
    width, height = ax.figure.get_size_inches()
    ax.figure.set_size_inches(max(width, 7.5), max(height, LABEL_INCHES * len(labels) + 1.5))
    ax.set_ylim(-1, len(labels))
    ax.axvline(1.0, color="black", linewidth=1, label="the budget curve")
    ax.set_xscale("log")
    ax.set_xlabel("x_vs_curve_bound (times the curve's speed to the same accuracy)")
    ax.tick_params(axis="y", labelsize=6)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)


@click.command("verdicts")
@click.argument("setups", nargs=-1)
@click.option("--save", help=SAVE_HELP)
@wandb_option("W&B mode of the table's run, under the --save directory's wandb/.")
def verdicts_bench(setups, save, wandb):
    """Which method, for which setup: one table of stored frontier verdicts.

    SETUPS are SETUP=SUMMARY.parquet pairs, a column each in the order given. Each cell
    is the verdict against the budget curve at the point's own execution, and how many
    times faster than that curve the point reached its accuracy. Nothing is trained.

    \b
    Example:
      effray bench verdicts fashion-mnist:mlp=docs/results/frontier-fashion-mnist-mlp-summary.parquet \\
        digits-aug:resnet20=docs/results/frontier-resnet20-linear-summary.parquet
    """
    summaries = read_setups(setups)
    runner = BenchRunner("verdicts", save, wandb=wandb)
    table = verdict_table(summaries)
    if table.drop(columns="method").apply(lambda cells: cells.str.contains(PACKED.strip())).any().any():
        click.echo(f"{PACKED.strip()}: timed beside other points, not alone (`bench frontier --time-alone`)")
    runner.finish(table, list(table.columns), plot=lambda _, ax: plot_ratios(summaries, ax),
                  title="against the budget curve, per setup")
