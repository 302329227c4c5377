"""`effray bench verdicts`: which method, for which setup, in one table read from stored
frontier summaries (``effray bench frontier --save STEM`` writes STEM-summary.parquet).

A row per method, a column per setup, and in each cell each point's verdict
against the budget curve at its own execution, with ``x_vs_curve``: how many times faster
than the curve it reached its accuracy, capped at a target below the curve's plateau (the
geometric mean over its ``n`` seeds), and its 95% interval, from which the word is read
(``raypkg.bench.curve.judge``); beside it, a forest plot of the same numbers. Nothing is
trained.
"""

from __future__ import annotations

import math
from pathlib import Path

import click

from raypkg.bench.curve import CONFIDENCE, EQUIVALENCE, WIDEST
from raypkg.bench.harness import SAVE_HELP, BenchRunner
from raypkg.cli_options import wandb_option
from raypkg.errors import UsageError

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
        missing = {"method", "setting", "verdict", "x_vs_curve", "n"} - set(frame.columns)
        if missing and "x_vs_curve_bound" in frame:
            raise UsageError(f"{path} was judged on the statistics before 2026-11-28 (no n): judge it again, "
                             "`effray bench frontier --merge STEM.parquet --save STEM` (docs/results/judge-again.sh)")
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
    appearance) and a column per setup: each setting of the method that setup ran as
    ``cell`` writes it, ``f=0.1 slower 0.21x [0.18, 0.25] n=5; f=0.3 equivalent ...``, or
    ``-``."""
    import pandas as pd

    cells: dict[str, dict[str, list[str]]] = {}
    for setup, frame in summaries.items():
        for row in frame[frame["n"] > 0].to_dict("records"):
            text = cell(row)
            text = text if row["setting"] == "-" else f"{row['setting']} {text}"
            cells.setdefault(row["method"], {}).setdefault(setup, []).append(text)
    return pd.DataFrame([{"method": method, **{s: "; ".join(by.get(s, ["-"])) for s in summaries}}
                         for method, by in cells.items()])


def cell(row: dict) -> str:
    """A point's verdict as a cell shows it, every number from its one interval: ``VERDICT Rx
    [L, H] n=N`` (R the geometric mean x_vs_curve, [L, H] its 95% interval, or ``at`` its
    level where seeds were added until decided); ``VERDICT?``
    where a faster or slower cell does not survive Holm's correction over the cells its
    frontier tested; for ``below curve``, where R is an upper bound, only ``<=H``; an interval
    over ``WIDEST`` wide only by the bound its word rests on (``faster >=L``, ``slower <=H``),
    or not at all; ``partial: K missing`` where K of the seeds the frontier planned have no
    stored run (a ``--render`` mid-run, a failed point); a trailing ``PACKED`` where a seed's
    seconds were measured beside other points."""
    word, n = row["verdict"], row["n"]
    ratio, low, high = (row.get(k, math.nan) for k in ("x_vs_curve", "x_low", "x_high"))
    text = f"{word}{'?' if row.get('holm') == 'close' else ''}"
    if not math.isnan(low) and high / low > WIDEST or word == "below curve":
        text += {"faster": f" >={bound(low)}x", "slower": f" <={bound(high)}x",
                 "below curve": f" <={bound(high)}x"}.get(word, "")
    elif not math.isnan(low):
        level = row.get("level", CONFIDENCE)
        text += f" {times(ratio)}x [{bound(low)}, {bound(high)}]" + ("" if math.isclose(level, CONFIDENCE)
                                                                     else f" at {100 * level:.3g}%")
    elif not math.isnan(ratio):
        text += f" {times(ratio)}x"
    missing = row.get("missing", 0)
    partial = f" partial: {missing:.0f} missing" if missing == missing and missing > 0 else ""
    return f"{text} n={n}{partial}{PACKED if row.get('timed') == 'packed' else ''}"


def times(ratio: float) -> str:
    """A ratio as a cell shows it: two decimals, or two significant digits outside [0.01, 100)."""
    return f"{ratio:.2f}" if 0.01 <= ratio < 100 else f"{ratio:.2g}"


def bound(end: float) -> str:
    """An interval's end as a cell shows it: as ``times``, with a third decimal where two would
    round it to 1.00, so that a faster or slower cell's bound never seems to touch 1."""
    return f"{end:.3f}" if times(end) == "1.00" and end != 1 else times(end)


COLOURS = {"faster": "tab:green", "slower": "tab:red", "equivalent": "tab:blue", "below curve": "tab:orange",
           "inconclusive": "tab:grey"}
ROW_INCHES = 0.16  # the height of a row of the forest plot


def plot_forest(summaries: dict, axes) -> None:
    """The verdicts as a forest plot: a panel per setup, a row per method and setting (the
    same rows in every panel), each point's geometric mean x_vs_curve with its 95% interval
    (log scale; an interval running off the panel ends in an arrow, one over ``WIDEST`` wide
    is left out as the table leaves it out, its point hollow), coloured by its verdict, with
    n; the curve's speed at 1 and the equivalence margin shaded."""
    labels = {}
    for frame in summaries.values():
        for row in frame[frame["n"] > 0].to_dict("records"):
            labels.setdefault(point_label(row), None)
    y = {label: i for i, label in enumerate(labels)}
    fig = axes[0].figure
    fig.set_layout_engine("constrained")
    fig.set_size_inches(2.6 * len(axes) + 1.8, ROW_INCHES * len(y) + 1.6)
    lo, hi = 1e-2, 1e2
    for ax, (setup, frame) in zip(axes, summaries.items()):
        ax.axvspan(1 / EQUIVALENCE, EQUIVALENCE, color="tab:blue", alpha=0.12, linewidth=0)
        ax.axvline(1.0, color="black", linewidth=0.8)
        for row in frame[frame["n"] > 0].to_dict("records"):
            at, colour = y[point_label(row)], COLOURS.get(row["verdict"], "black")
            ratio, low, high = (row.get(k, math.nan) for k in ("x_vs_curve", "x_low", "x_high"))
            drawn = not math.isnan(low) and high / low <= WIDEST
            if drawn:
                ax.plot([max(low, lo), min(high, hi)], [at, at], color=colour, linewidth=1.2)
                for end, mark in ((low, "<"), (high, ">")):
                    if not lo <= end <= hi:
                        ax.plot([lo if mark == "<" else hi], [at], marker=mark, color=colour, markersize=4)
            ax.plot([min(max(ratio, lo), hi)], [at], marker="o", markersize=4, color=colour,
                    markerfacecolor=colour if drawn else "white")
            ax.annotate(f"n={row['n']}", (1, at), xycoords=("axes fraction", "data"), xytext=(-2, 0),
                        textcoords="offset points", fontsize=5, ha="right", va="center", color="dimgrey")
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(len(y) - 0.5, -0.5)
        ax.set_yticks(range(len(y)))
        ax.set_yticklabels(list(y) if ax is axes[0] else [], fontsize=6)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_title(setup, fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.supxlabel("x_vs_curve: times the budget curve's speed to the same accuracy, capped at its target "
                  "(geometric mean, 95% interval)", fontsize=7)
    handles = [axes[0].plot([], [], marker="o", color=c, label=w)[0] for w, c in COLOURS.items()]
    handles.append(axes[0].fill_between([], [], color="tab:blue", alpha=0.12, label=f"equivalent margin "
                                        f"[{1 / EQUIVALENCE:.2f}, {EQUIVALENCE:.2f}]"))
    fig.legend(handles=handles, fontsize=6, loc="outside upper center", ncol=len(handles), frameon=False)


def point_label(row: dict) -> str:
    """A point's name in a plot: its method and, but ``-``, its setting."""
    return f"{row['method']} {'' if row['setting'] == '-' else row['setting']}".strip()


LEGEND = (f"faster / slower: the 95% interval above / below 1; equivalent: inside [{1 / EQUIVALENCE:.2f}, "
          f"{EQUIVALENCE:.2f}]; below curve: below its smallest budget, the ratio an upper bound; inconclusive: "
          f"none of these; ?: not after Holm's correction; n: seeds; intervals over {WIDEST:g}x wide not printed")


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
    click.echo(LEGEND)
    for setup, frame in summaries.items():
        if "missing" in frame and frame["missing"].fillna(0).gt(0).any():
            click.echo(f"partial: {setup} misses {int(frame['missing'].fillna(0).sum())} point runs (its cells say "
                       "which): a table of a frontier still running, or with failed points")
    if table.drop(columns="method").apply(lambda cells: cells.str.contains(PACKED.strip())).any().any():
        click.echo(f"{PACKED.strip()}: timed beside other points, not alone (`bench frontier --time-alone`)")
    runner.finish(table, list(table.columns), plot=lambda _, axes: plot_forest(summaries, axes),
                  panels=len(summaries))
