"""`effray bench verdicts`: which method, for which setup, in one table read from stored
frontier summaries (``effray bench frontier --save STEM`` writes STEM-summary.parquet).

A row per method, a column per setup, and in each cell each point's verdict
against the budget curve at its own execution, with ``x_vs_curve``: how many times faster
than the curve it reached its accuracy, capped at a target below the curve's plateau (the
geometric mean over its ``n`` seeds), and its 95% interval, from which the word is read
(``raypkg.bench.curve.judge``); beside it, a forest plot that draws each cell as the table
shows it (``shown``, ``plot_forest``). Nothing is trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import click

from raypkg.bench.curve import CONFIDENCE, EQUIVALENCE, WIDEST, is_judged
from raypkg.bench.harness import SAVE_HELP, BenchRunner
from raypkg.cli_options import wandb_option
from raypkg.errors import UsageError

PACKED = " †"  # a cell whose seconds were measured beside other points (the frontier's ``timed``)


def read_setups(pairs: tuple[str, ...]) -> dict:
    """``SETUP=PATH`` arguments -> {setup: its summary frame}, each setup once (none named
    ``method``, the table's own first column) and each file a stored frontier summary (a
    verdict column, a name in every row's method and setting, and a point with a seed), read
    before anything is written; each frame's provenance in its ``attrs["source"]``. A setup
    name may hold ``=`` (``split_setup``)."""
    from raypkg.tracking.markdown import read_table
    from raypkg.tracking.provenance import read_provenance

    if not pairs:
        raise UsageError("give at least one SETUP=SUMMARY.parquet (a frontier's STEM-summary.parquet)")
    setups: dict[str, Path] = {}
    for pair in pairs:
        setup, sep, path = split_setup(pair)
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
        if not frame["n"].gt(0).any():
            raise UsageError(f"{path} holds no judged point ({len(frame)} rows, none with a seed): nothing to show for "
                             f"{setup}; render its frontier once points are stored (`effray bench frontier ... "
                             "--render`), or leave it out")
        frame.attrs["source"] = read_provenance(path)
        summaries[setup] = frame
    return summaries


def split_setup(pair: str) -> tuple[str, str, str]:
    """``SETUP=PATH`` split as ``str.partition`` does, at the ``=`` after which an existing
    file is named (a setup name may hold ``=``, as may a path): the first such; none existing,
    at the first (the path read then says it is missing)."""
    cuts = [i for i, c in enumerate(pair) if c == "="]
    found = [i for i in cuts if Path(pair[i + 1:]).is_file()]
    if not found:
        return pair.partition("=")
    return pair[:found[0]], "=", pair[found[0] + 1:]


def verdict_table(summaries: dict):
    """{setup: a frontier summary frame} -> a frame with a row per method (in order of first
    appearance) and a column per setup: each setting of the method that setup ran as
    ``cell`` writes it, ``f=0.1 slower 0.21x [0.18, 0.25] n=5; f=0.3 equivalent ...``, or
    ``-``."""
    import pandas as pd

    cells: dict[str, dict[str, list[str]]] = {}
    for setup, frame in summaries.items():
        missing = frame["missing"].fillna(0) if "missing" in frame else 0
        unrun = (missing > 0) & is_judged(frame)  # a point of no seed yet, partial; never the curve's own points
        for row in frame[frame["n"].gt(0) | unrun].to_dict("records"):
            text = cell(row)
            text = text if row["setting"] == "-" else f"{row['setting']} {text}"
            cells.setdefault(row["method"], {}).setdefault(setup, []).append(text)
    return pd.DataFrame([{"method": method, **{s: "; ".join(by.get(s, ["-"])) for s in summaries}}
                         for method, by in cells.items()])


@dataclass(frozen=True)
class Shown:
    """What a point's cell shows (``shown``), which ``cell`` writes and ``plot_forest`` draws:
    its ``word``, ``close`` (``?``: a faster or slower cell Holm's correction does not keep),
    ``kind``, the numbers that kind shows (NaN where it shows none) and the cell's ``tail``
    (``n=N``, ``partial: K missing``, ``PACKED``).

    ``kind``: ``interval`` (``ratio`` [``low``, ``high``] at ``level``); ``at least``
    (``>=low``: a faster cell whose interval is over ``WIDEST`` wide); ``at most`` (``<=high``:
    below curve, where the ratio is an upper bound, or a slower cell whose interval is over
    ``WIDEST`` wide); ``ratio`` (one seed: no interval); ``wide`` (an interval over ``WIDEST``
    wide that no bound of its word rests on: inconclusive, or below curve, whose interval runs from
    0 and counts as wide where ``(high / ratio) ** 2`` is over ``WIDEST``: no number); ``word``
    (no number known)."""

    word: str
    close: bool
    kind: str
    ratio: float = math.nan
    low: float = math.nan
    high: float = math.nan
    level: float = CONFIDENCE
    tail: str = ""


def shown(row: dict) -> Shown:
    """What the cell of a frontier summary's ``row`` shows (``Shown``)."""
    word, n = row["verdict"], row["n"]
    ratio, low, high = (float(row.get(k, math.nan)) for k in ("x_vs_curve", "x_low", "x_high"))
    level = float(row.get("level", CONFIDENCE))
    level = CONFIDENCE if math.isnan(level) else level
    missing = row.get("missing", 0)
    partial = f" partial: {missing:.0f} missing" if missing == missing and missing > 0 else ""
    said = {"word": word, "close": row.get("holm") == "close", "level": level,
            "tail": f"n={n}{partial}{PACKED if row.get('timed') == 'packed' else ''}"}
    if word == "below curve":  # its interval runs from 0 (the curve is unmeasured below its smallest
        # budget): its width that of the t-interval its upper half belongs to, (high / ratio) squared
        wide = not math.isnan(high) and not (high / ratio) ** 2 <= WIDEST
    else:
        wide = not math.isnan(low) and not high <= WIDEST * low
    if wide and word == "faster":
        return Shown(kind="at least", low=low, **said)
    if wide and word == "slower":
        return Shown(kind="at most", high=high, **said)
    if wide:
        return Shown(kind="wide", **said)
    if word == "below curve":  # one seed: no interval, its ratio the bound
        return Shown(kind="at most", high=ratio if math.isnan(high) else high, **said)
    if not math.isnan(low):
        return Shown(kind="interval", ratio=ratio, low=low, high=high, **said)
    if not math.isnan(ratio):
        return Shown(kind="ratio", ratio=ratio, **said)
    return Shown(kind="word", **said)


def cell(row: dict) -> str:
    """A point's verdict as a cell shows it (``shown``), every number from its one interval:
    ``VERDICT Rx [L, H] n=N`` (R the geometric mean x_vs_curve, [L, H] its 95% interval, or
    ``at`` its level where seeds were added until decided); ``VERDICT?`` where a faster or
    slower cell does not survive Holm's correction over the cells its frontier tested; for
    ``below curve``, where R is an upper bound, only ``<=H`` (one seed: ``<=R``); an interval
    over ``WIDEST`` wide only by the bound its word rests on (``faster >=L``, ``slower <=H``),
    or not at all (inconclusive; below curve, where H / R squared is over ``WIDEST``);
    ``partial: K missing`` where K of the seeds the frontier planned have no stored run (a
    ``--render`` mid-run, a failed point); a trailing ``PACKED`` where a seed's seconds were
    measured beside other points."""
    s = shown(row)
    level = "" if math.isclose(s.level, CONFIDENCE) else f" at {100 * s.level:.3g}%"
    numbers = {"interval": f" {times(s.ratio)}x [{bound(s.low)}, {bound(s.high)}]{level}",
               "at least": f" >={bound(s.low)}x", "at most": f" <={bound(s.high)}x",
               "ratio": f" {times(s.ratio)}x"}.get(s.kind, "")
    return f"{s.word}{'?' if s.close else ''}{numbers} {s.tail}"


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
PANEL_INCHES = 2.6  # the width of a panel
ARROW = 3.0  # a bound's arrow runs this factor from it (half a decade)
HOLLOW = "white"  # the face of a mark whose word Holm's correction does not keep (``?``)


@dataclass
class Drawn:
    """What ``plot_forest`` drew for a point's cell: its ``setup`` (panel), ``method`` and
    ``setting``, its row ``y``, the ``mark`` (``Shown.kind``: ``interval``, a dot at the ratio
    on a line from low to high; ``at least`` / ``at most``, an arrow from the bound up / down;
    ``ratio``, a dot; ``wide``, the text "wide"; ``word``, nothing), ``x`` the numbers it stands
    for (interval: ratio, low, high; at least: low; at most: high; ratio: ratio), ``hollow``
    (``?``), its ``colour`` (its word's), the ``note`` beside it (the cell's tail: n, partial,
    †) and the matplotlib ``artists`` that draw it (the mark's first)."""

    setup: str
    method: str
    setting: str
    y: int
    mark: str
    x: tuple
    hollow: bool
    colour: str
    note: str
    artists: list = field(default_factory=list)


def plot_forest(summaries: dict, axes) -> list[Drawn]:
    """The verdicts as a forest plot, each cell as its table cell shows it (``shown``): a panel
    per setup, a row per method and setting (the same rows in every panel), log scale,
    coloured by the verdict. A printed interval: its geometric mean x_vs_curve as a dot on the
    interval's line; a bound (``<=H``, ``>=L``): an arrow from the bound down or up; one seed: a
    dot; withheld numbers (an interval over ``WIDEST`` wide): the word "wide", no point; ``?``:
    the mark hollow; beside each, the cell's ``n=N`` with its partial and † marks. Each panel
    names the level of its intervals; the curve's speed at 1 and the equivalence margin are
    shaded; the legend lies below the panels, the figure sized by their number. What was
    drawn, a ``Drawn`` per cell."""
    import textwrap

    rows = {setup: [(row, shown(row)) for row in frame[frame["n"] > 0].to_dict("records")]
            for setup, frame in summaries.items()}
    y = {label: i for i, label in enumerate(dict.fromkeys(point_label(row) for cells in rows.values()
                                                          for row, _ in cells))}
    numbers = [v for cells in rows.values() for _, s in cells for v in (s.ratio, s.low, s.high) if v == v and v > 0]
    lo = max(1e-4, min([1e-2, *(10 ** math.floor(math.log10(v / ARROW)) for v in numbers)]))
    hi = min(1e4, max([1e2, *(10 ** math.ceil(math.log10(v * ARROW)) for v in numbers)]))

    def clip(value: float) -> float:
        return min(max(value, lo), hi)

    drawn = []
    for ax, (setup, cells) in zip(axes, rows.items()):
        ax.axvspan(1 / EQUIVALENCE, EQUIVALENCE, color="tab:blue", alpha=0.12, linewidth=0)
        ax.axvline(1.0, color="black", linewidth=0.8)
        for row, s in cells:
            at, colour = y[point_label(row)], COLOURS.get(s.word, "black")
            face = HOLLOW if s.close else colour
            artists = []
            if s.kind == "interval":
                artists += ax.plot([s.ratio], [at], marker="o", markersize=4, color=colour, markerfacecolor=face,
                                   linestyle="none", zorder=3)
                artists += ax.plot([clip(s.low), clip(s.high)], [at, at], color=colour, linewidth=1.2)
                for end, mark in ((s.low, "<"), (s.high, ">")):
                    if not lo <= end <= hi:  # past the panel: an arrow at its edge
                        artists += ax.plot([clip(end)], [at], marker=mark, color=colour, markersize=4)
                x = (s.ratio, s.low, s.high)
            elif s.kind in ("at least", "at most"):
                end = s.low if s.kind == "at least" else s.high
                tip = end * ARROW if s.kind == "at least" else end / ARROW
                artists += ax.plot([clip(end), clip(tip)], [at, at], color=colour, linewidth=1.2, marker="|",
                                   markevery=[0], markersize=6)
                artists += ax.plot([clip(tip)], [at], marker=">" if s.kind == "at least" else "<", markersize=5,
                                   color=colour, markerfacecolor=face, linestyle="none", zorder=3)
                x = (end,)
            elif s.kind == "ratio":
                artists += ax.plot([s.ratio], [at], marker="o", markersize=4, color=colour, markerfacecolor=face,
                                   linestyle="none", zorder=3)
                x = (s.ratio,)
            elif s.kind == "wide":
                artists.append(ax.text(1.0, at, f"wide{'?' if s.close else ''}", fontsize=5, style="italic",
                                       color=colour, ha="center", va="center", zorder=3,
                                       bbox={"boxstyle": "square,pad=0.05", "facecolor": "white",
                                             "edgecolor": "none"}))
                x = ()
            else:
                x = ()
            artists.append(ax.annotate(s.tail, (1, at), xycoords=("axes fraction", "data"), xytext=(-2, 0),
                                       textcoords="offset points", fontsize=5, ha="right", va="center",
                                       color="dimgrey"))
            drawn.append(Drawn(setup, row["method"], row["setting"], at, s.kind, x, s.close, colour, s.tail,
                               artists))
        levels = sorted({s.level for _, s in cells if s.kind != "word"} or {CONFIDENCE})
        ax.set_xlabel(f"x_vs_curve, {' / '.join(f'{100 * level:.3g}%' for level in levels)} interval", fontsize=6)
        ax.set_xscale("log")
        ax.set_xlim(lo, hi)
        ax.set_ylim(len(y) - 0.5, -0.5)
        ax.set_yticks(range(len(y)))
        ax.set_yticklabels(list(y) if ax is axes[0] else [], fontsize=6)
        ax.tick_params(axis="x", labelsize=6)
        ax.set_title(setup, fontsize=8)
        ax.grid(axis="x", alpha=0.3)

    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles = [Line2D([], [], marker="o", markersize=4, color=c, label=w) for w, c in COLOURS.items()]
    handles += [Line2D([], [], marker="o", markersize=4, color="black", markerfacecolor=HOLLOW, linestyle="none",
                       label="hollow (?): not kept by Holm's correction"),
                Line2D([], [], marker="<", markersize=5, color="black", label="arrow from a bound: <=H to less, >=L to more"),
                Line2D([], [], linestyle="none", label=f"wide: interval over {WIDEST:g}x wide, withheld"),
                Line2D([], [], linestyle="none", label="n: seeds; †: timed beside other points"),
                Patch(color="tab:blue", alpha=0.12, label=f"equivalent margin [{1 / EQUIVALENCE:.2f}, "
                                                          f"{EQUIVALENCE:.2f}]")]
    width = PANEL_INCHES * len(axes) + 1.8
    ncol = max(1, min(len(handles), int(width / 2.2)))
    title = ("x_vs_curve: times the budget curve's speed to the same accuracy, capped at its target (geometric "
             "mean, with its interval at each panel's level)")
    title = "\n".join(textwrap.wrap(title, max(40, int(width * 15))))
    fig = axes[0].figure
    fig.set_layout_engine("constrained")
    fig.set_size_inches(width, ROW_INCHES * len(y) + 1.4 + 0.15 * (title.count("\n") + 1)
                        + 0.16 * math.ceil(len(handles) / ncol))
    fig.suptitle(title, fontsize=7)
    fig.legend(handles=handles, fontsize=6, loc="outside lower center", ncol=ncol, frameon=False)
    return drawn


def point_label(row: dict) -> str:
    """A point's name in a plot: its method and, but ``-``, its setting."""
    return f"{row['method']} {'' if row['setting'] == '-' else row['setting']}".strip()


LEGEND = (f"faster / slower: the 95% interval above / below 1; equivalent: inside [{1 / EQUIVALENCE:.2f}, "
          f"{EQUIVALENCE:.2f}]; below curve: below its smallest budget, the ratio an upper bound; inconclusive: "
          f"none of these; ?: not after Holm's correction; n: seeds; intervals over {WIDEST:g}x wide not printed")


def keep_marks(runner: BenchRunner, summaries: dict) -> list[str]:
    """Every mark of the summaries read, kept in the table's provenance: each setup's own
    (``setups``: its file's provenance, the levels its cells were judged at, the point runs
    it misses and its plug-in methods' sources, ``plugins``), a draft's (``draft``, which the
    rendered table says) and the code that ran the points (``point_commits``, each setup's);
    the lines that say the draft, the commits and the plug-ins."""
    marks, drafts, commits, said, columns = {}, [], [], [], []
    for setup, frame in summaries.items():
        source = dict(frame.attrs.get("source") or {})
        levels = sorted({float(v) for v in frame.loc[frame["n"].gt(0), "level"].dropna()}) if "level" in frame else []
        missing = int(frame["missing"].fillna(0).sum()) if "missing" in frame else 0
        marks[setup] = {**source, "levels": levels, "missing": missing}
        if source.get("draft"):
            drafts.append(f"{setup} ({source['draft']})")
        ran = source.get("point_commits") or source.get("commit")
        if ran:
            commits.append(f"{setup}: {ran}")
        if source.get("point_commits"):
            said.append(f"# {setup}: its points were run by {source['point_commits']}")
        columns.append(f"{setup}: {column_conditions(frame, source)}")
        if plugins_of(frame):
            marks[setup]["plugins"] = plugins_of(frame)
            said.append(f"# {setup}: {said_plugins(plugins_of(frame))}")
    runner.source["setups"] = marks
    runner.source["columns"] = "; ".join(columns)
    if commits:
        runner.source["point_commits"] = "; ".join(commits)
    if drafts:
        runner.source["draft"] = "; ".join(filter(None, [runner.source.get("draft"), "summaries of a draft: "
                                                         + ", ".join(drafts)]))
        said.append(f"draft: {', '.join(drafts)} written by a draft (EFFRAY_DRAFT=1); so is this table")
    return said


def column_conditions(summary, source: dict) -> str:
    """How a column was measured, for the table's provenance (``columns``): the code that ran
    its points, the machines that timed them where they recorded it (``point_machines``), else
    the CPU and its flags of the run that judged them, the torch threads a point had, how it was timed, and
    the plug-in methods among its points with the digest of each one's source
    (``plugins_of``). A point planned but not run yet has no clock: it is counted apart."""
    timed = summary["timed"].dropna() if "timed" in summary else None
    how = ("timing not recorded" if timed is None else "every point timed alone" if timed.eq("alone").all()
           else f"{int(timed.ne('alone').sum())} of {len(timed)} points timed packed (†)")
    if timed is not None and len(timed) < len(summary):
        how += f", {len(summary) - len(timed)} planned not run yet"
    ran = source.get("point_commits") or f"commit {source.get('commit', 'unknown')}"
    timed_on = source.get("point_machines") or (f"{source.get('cpu', 'an unrecorded CPU')} "
                                                f"({source.get('cpu_flags', 'flags not recorded')})")
    plugins = plugins_of(summary)
    return (f"run at {ran} on {timed_on},"
            f" {source.get('threads', '?')} torch thread(s) a point, {how}"
            + (f", {said_plugins(plugins)}" if plugins else ""))


def said_plugins(plugins: list[str]) -> str:
    """``plug-in methods NAME@DIGEST ... (name@source digest)``."""
    return f"plug-in method{'s' if len(plugins) > 1 else ''} {' '.join(plugins)} (name@source digest)"


def plugins_of(summary) -> list[str]:
    """The plug-in methods a frontier summary's points ran, ``NAME@DIGEST`` each once (its
    ``plugin`` column: a stack's joined by ``+``, a point's seeds by ``,``); none for a
    summary of effray's own methods, or one stored before the column."""
    values = summary["plugin"].dropna() if "plugin" in summary else []
    return list(dict.fromkeys(p for v in values if isinstance(v, str) for p in v.replace(",", "+").split("+") if p))


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
    for line in keep_marks(runner, summaries):
        click.echo(line)
    if table.drop(columns="method").apply(lambda cells: cells.str.contains(PACKED.strip())).any().any():
        click.echo(f"{PACKED.strip()}: timed beside other points, not alone (`bench frontier --time-alone`)")
    runner.finish(table, list(table.columns), plot=lambda _, axes: plot_forest(summaries, axes),
                  panels=len(summaries))
