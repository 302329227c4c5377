"""What a frontier shows: its tables printed and saved with their plots (accuracy against
seconds and against FLOPs, time-to-accuracy) and logged to W&B."""

from __future__ import annotations

import math

import click
import pandas as pd

from raypkg.bench.curve import TARGET_BELOW, pareto_front
from raypkg.bench.deltagrad_panel import DELTAGRAD_COLUMNS, plot_deltagrad
from raypkg.bench.frontier.judge import TABLE_COLUMNS, clock_of
from raypkg.bench.frontier.points import METHODS, REFERENCE
from raypkg.bench.harness import BenchRunner
from raypkg.plots import figure, place_labels, save_png
from raypkg.tracking.provenance import machine

BAND_QUANTILE = 0.25  # the band where the methods live: from this quantile of their accuracies up


def plot_frontier(table, axes, cost: str, xlabel: str, title: str = "") -> None:
    """Test accuracy against ``cost`` on two panels side by side (the figure sized for them):
    every point, and the band where the methods live drawn large (from the ``BAND_QUANTILE``
    of their accuracies to the best, the curve's points beside them), each point labelled on
    the panel where it stands out, the labels placed so that none overlap
    (``raypkg.plots.place_labels``)."""
    methods = table[table.get("budget", pd.Series(math.nan, index=table.index)).isna()]
    accuracy = 100 * table["test_acc"]
    # no method with a run (every one failed: a row of n 0): the band is every point's
    low = 100 * methods["test_acc"].quantile(BAND_QUANTILE) if methods["test_acc"].notna().any() else accuracy.min()
    margin = 0.05 * max(accuracy.max() - low, 0.1)
    band = (low - margin, accuracy.max() + margin)
    whole, large = axes
    whole.figure.set_size_inches(13.0, 6.0)
    whole.figure.suptitle(title, fontsize=9)
    draw_frontier(table, whole, cost, xlabel)
    draw_frontier(table, large, cost, xlabel)
    large.set_ylim(*band)
    whole.axhspan(*band, color="tab:blue", alpha=0.06, linewidth=0)
    whole.set_title("every point (the shaded band drawn large beside)", fontsize=8)
    large.set_title(f"the band where the methods live: {band[0]:.1f}-{band[1]:.1f}%", fontsize=8)
    handles, labels = whole.get_legend_handles_labels()
    for ax in axes:
        ax.get_legend().remove()
    fig = whole.figure
    fig.legend(handles, labels, fontsize=7, loc="lower center", ncol=min(len(labels), 9), frameon=False)
    fig.tight_layout(rect=(0, 0.1, 1, 0.97))  # room for the legend below, the title above
    inside = accuracy.between(*band) & table["test_acc"].notna() & table[cost].notna()
    for ax, shown in ((whole, ~inside & table["test_acc"].notna() & table[cost].notna()), (large, inside)):
        rows = table[shown & table.index.isin(methods.index)]
        place_labels(ax, list(zip(rows[cost], 100 * rows["test_acc"])),
                     [point_label(row) for row in rows.to_dict("records")])


def point_label(row: dict) -> str:
    """A point's name in a plot: its method and, but ``-``, its setting."""
    return row["method"] + ("" if row["setting"] == "-" else f" {row['setting']}")


def draw_frontier(table, ax, cost: str, xlabel: str) -> None:
    """Test accuracy against ``cost``: a marker per family, error bars over seeds (accuracy:
    one standard deviation; cost: its range), the Pareto front and the budget curves."""
    from matplotlib.ticker import FuncFormatter

    markers = {case.family: case.marker for case in METHODS.values()}
    for family, group in table.groupby("family", sort=False):
        # the mean of equal values can round 1 ulp outside their range: no negative bar
        spread = [(group[cost] - group[f"{cost}_min"]).astype(float).clip(lower=0),
                  (group[f"{cost}_max"] - group[cost]).astype(float).clip(lower=0)]
        ax.errorbar(group[cost], 100 * group["test_acc"], xerr=spread, yerr=100 * group["test_acc_std"],
                    fmt=markers.get(family, "o"), markersize=5, capsize=2, linewidth=0.8, label=family)
    front = pareto_front(table[cost].tolist(), table["test_acc"].tolist())
    ax.plot(table[cost].iloc[front], 100 * table["test_acc"].iloc[front], linestyle="--", color="grey",
            linewidth=1, label="Pareto front", zorder=0)
    for method, style in ((m, s) for m, s in (("full", "-"), (REFERENCE, ":")) if "budget" in table):
        curve = table[(table["method"] == method) & table["budget"].notna()].sort_values(cost)
        if len(curve) > 1:  # the baseline line: the monotone budget curve (means over seeds)
            ax.plot(curve[cost], 100 * curve["test_acc"].cummax(), linestyle=style, color="black", linewidth=1.2,
                    label=f"budget curve ({method})", zorder=0)
    if (table[cost].dropna() > 0).all():
        ax.set_xscale("log")  # ticks as plain numbers: 1, 2, 5, 10, ... (or 1e+10, 2e+10, ...)
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(FuncFormatter(
            lambda v, _: f"{v:g}" if v > 0 and round(v / 10 ** math.floor(math.log10(v))) in (2, 5) else ""))
    ax.set(xlabel=xlabel, ylabel="test accuracy (%)")
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=6, loc="lower right")


def tta_title(table) -> str:
    """The time-to-accuracy plot's title: the points that ran and never reached the target by
    name, and how many points have no run yet (a store's missing ones), wrapped to the plot."""
    import textwrap

    ran = table["test_acc"].notna()
    never = [point_label(row) for row in table[ran & table["tta_s"].isna()].to_dict("records")]
    title = ("time-to-accuracy" + (f"; never reached: {', '.join(never)}" if never else "")
             + (f"; {int((~ran).sum())} points not run yet" if (~ran).any() else ""))
    return textwrap.fill(title, 110)


def plot_tta(table, ax) -> None:
    """Time-to-accuracy per point (mean over the seeds that reached the target); the points
    that never did are named in the title (``tta_title``)."""
    from raypkg.plots import hbar

    points = table.assign(point=[point_label(row) for row in table.to_dict("records")])
    hbar(points[points["tta_s"].notna()], ax, "point", ["tta_s"], "seconds to the target accuracy (evaluation excluded)")
    ax.set_title(tta_title(table), fontsize=9)


def save_results(runner: BenchRunner, frame, table, settings: dict, panel, epochs=None) -> None:
    """The summary printed; STEM.parquet (rows), STEM.png (accuracy vs seconds),
    STEM-summary.parquet (means), STEM-flops.png (accuracy vs FLOPs), STEM-epochs.parquet
    (each point's test accuracy after every epoch: ``epoch_table``), with --add deltagrad
    STEM-deltagrad.parquet and .png; each table with its plots to W&B."""
    stem, title = runner.stem, f"{settings['dataset']}/{settings['model']}, label noise {settings['label_noise']:g}"
    shown = [c for c in TABLE_COLUMNS if c in table.columns
             and not (c in ("noisy_share", "plugin") and table[c].isna().all())]
    fig, axes = figure(ncols=2)
    plot_frontier(table, axes, "flops", "training FLOPs", f"{title}: accuracy vs training FLOPs")
    flops = save_png(fig, stem.with_name(stem.name + "-flops.png"))
    fig, (ax,) = figure(width=7.0, height=4.2)
    plot_tta(table, ax)
    tta = save_png(fig, stem.with_name(stem.name + "-tta.png"))
    for row in frame[frame["unsound"].fillna("").ne("")].to_dict("records") if "unsound" in frame else []:
        click.echo(f"not judged: {row['method']} {row['setting']} seed {row['seed']}: {row['unsound']}", err=True)
    tested = int(table["tested"].iloc[0]) if "tested" in table and len(table) else 0
    if tested:
        level = table["level"].min() if "level" in table else 0.95
        click.echo(f"verdicts: {100 * level:.3g}% t-intervals of the geometric mean over seeds (n), each point's "
                   "seconds to its "
                   f"accuracy capped at the curve's best less {TARGET_BELOW * 100:g} points; {tested} cells tested, "
                   "a faster or slower cell marked close where it would not survive Holm's correction over them")
    runner.finish(frame, shown, {"flops": ".3g", "test_acc": ".4f", "test_acc_std": ".4f", "x_low": ".3g",
                                 "x_high": ".3g", "p_value": ".2g"}, printed=table,
                  extra={"-summary": table, **({"-epochs": epochs} if epochs is not None else {})}, panels=2,
                  plot=lambda _, axes: plot_frontier(table, axes, "e2e_s", "end-to-end seconds",
                                                     f"{title}: accuracy vs end-to-end seconds"),
                  images={"accuracy_vs_flops": flops, "time_to_accuracy": tta})
    if panel is not None:
        click.echo("\n# DeltaGrad vs retraining from scratch after deleting a random fraction of the training set")
        runner.finish(panel, DELTAGRAD_COLUMNS, {"acc_baseline": ".4f", "acc_deltagrad": ".4f"}, suffix="-deltagrad",
                      plot=plot_deltagrad, title="DeltaGrad vs retraining after a deletion")


POINT_CONFIG = ("family", "method", "setting", "seed", "fraction", "density", "budget", "schedule", "execution",
                "threads", "node", "timed")  # a point's W&B config: what it is and how it ran


EPOCH_KEY = ("method", "setting", "seed")  # a point run's name in the epochs table


def epoch_table(records: dict[str, dict]) -> pd.DataFrame:
    """Every stored point run's test accuracy after each of its epochs (``records``: by point
    id, the runs timed alone last, so that theirs count): a row per method, setting, seed and
    epoch. Its last epoch's is the row's ``test_acc``; epochs to a target read from it."""
    runs = {tuple(r["row"][k] for k in EPOCH_KEY): r["epochs"] for r in records.values()}
    return pd.DataFrame([(*key, e["epoch"], e["test_acc"]) for key, epochs in runs.items() for e in epochs],
                        columns=[*EPOCH_KEY, "epoch", "test_acc"])


def log_points(runner: BenchRunner, frame, epochs: pd.DataFrame) -> None:
    """Each row of ``frame`` (a point and seed) as its own W&B run in the frontier's group,
    beside the frontier's run: its labels and conditions as config, its test accuracy after
    each epoch (``epochs``: ``epoch_table``) as history, its row's numbers as summary."""
    if runner.wandb == "disabled":
        return
    from raypkg.tracking.wandb_logger import WandbLogger

    history = {key: run[["epoch", "test_acc"]].to_dict("records") for key, run in epochs.groupby(list(EPOCH_KEY))}
    for row in frame.to_dict("records"):
        key = tuple(row[k] for k in EPOCH_KEY)
        logger = WandbLogger(runner.stem.parent, name=f"{runner.stem.name} seed {row['seed']} {row['method']} "
                             f"{row['setting']}", group=runner.group, mode=runner.wandb,
                             config={k: row[k] for k in POINT_CONFIG if k in row})
        try:
            for epoch in history.get(key, []):
                logger.log(epoch)
            logger.summary({k: v.item() if hasattr(v, "item") else v for k, v in row.items()})
        finally:
            logger.finish()


def name_code(runner: BenchRunner, frame, code: dict) -> None:
    """Name the code that ran the judged points, with their counts, where it is not only this
    checkout's (a --render of points other code ran): printed and in the tables' provenance
    (``point_commits``); a draft's points keep the tables a draft."""
    commits = frame["commit"].fillna("unknown") if "commit" in frame else pd.Series("unknown", index=frame.index)
    counts = commits.value_counts()
    if list(counts.index) != [code["commit"]]:
        text = "; ".join(f"{commit} ({count} point runs)" for commit, count in counts.items())
        click.echo(f"# the points were run by more than this checkout's code ({code['commit']}): {text}", err=True)
        runner.source["point_commits"] = text
    if "draft" in frame and frame["draft"].fillna(False).astype(bool).any() and "draft" not in runner.source:
        runner.source["draft"] = "points run by a draft (EFFRAY_DRAFT=1)"


def name_machines(runner: BenchRunner, frame) -> None:
    """Name the clocks that timed the judged points, with their counts, where the points name
    them (``judge.clock_of``: the ``machine`` a point recorded, ``provenance.machine``, else the
    host it ran on): in the tables' provenance (``point_machines``, which the verdicts' columns
    name rather than the machine that judged them), and printed where one is not this machine
    (a --render elsewhere)."""
    clocks = pd.Series([clock_of(row) for row in frame.to_dict("records")], dtype=object)
    if clocks.isna().all():
        return
    counts = clocks.fillna("not recorded").value_counts()
    text = "; ".join(f"{timed_on} ({count} point runs)" for timed_on, count in counts.items())
    here = machine()
    if list(counts.index) != [here]:
        click.echo(f"# the points were timed on other machines than this one ({here}): {text}", err=True)
    runner.source["point_machines"] = text
