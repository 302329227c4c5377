"""The forest plot of `effray bench verdicts` says what its table says, cell for cell (issue 82,
part 4): each cell's mark, position, hollowness (``?``), note (n, partial, †) and colour
against the table's text, each panel's level against the levels its cells print, and, for
one setup or twenty, the legend and every label inside the figure."""

from __future__ import annotations

import math
import re

import pandas as pd
import pytest
from matplotlib.colors import to_rgba

from raypkg.bench.verdicts import COLOURS, HOLLOW, bound, plot_forest, point_label, times, verdict_table
from raypkg.plots import figure, save_png

nan = math.nan
NUMBER = r"[0-9.e+-]+"
PART = re.compile(rf"^(?:(?P<setting>[a-z]+=\S+) )?(?P<word>faster|slower|equivalent|inconclusive|below curve)"
                  rf"(?P<close>\?)?(?: (?P<ratio>{NUMBER})x(?: \[(?P<low>{NUMBER}), (?P<high>{NUMBER})\]"
                  rf"(?: at (?P<level>[0-9.]+)%)?)?| >=(?P<at_least>{NUMBER})x| <=(?P<at_most>{NUMBER})x)?"
                  rf" (?P<tail>n=\d+(?: partial: \d+ missing)?(?: †)?)$")


def summaries() -> dict:
    """Two setups with every kind of cell: an interval, an interval not kept by Holm and timed
    packed, one seed, below curve, slower and faster over 10x wide (bounds, the faster one
    not kept by Holm), inconclusive and below curve over 10x wide (withheld), a partial one, and no seeds; the
    second at 98.8% (seeds until decided) and without some of the first's points."""
    a = pd.DataFrame([
        ("full", "b=1", "equivalent", 3, 0.95, 0.9, 1.01, "", "alone", 0),
        ("rs2", "f=0.1", "slower", 3, 0.5, 0.4, 0.62, "close", "packed", 0),
        ("rs2", "f=0.3", "inconclusive", 1, 0.987, nan, nan, "", "alone", 0),
        ("crest", "f=0.3", "below curve", 5, 0.8, 0.011, 1.58, "", "packed", 0),
        ("crest", "f=0.1", "below curve", 2, 0.056, 1e-4, 1e23, "", "alone", 0),
        ("grand", "f=0.1", "slower", 2, 0.031, 0.0021, 0.3, "survives", "alone", 0),
        ("infobatch", "-", "faster", 2, 6.0, 1.1, 40.0, "close", "alone", 0),
        ("lipt", "f=0.1", "inconclusive", 2, 1.0, 0.09, 5.0, "", "alone", 0),
        ("forget", "f=0.3", "faster", 3, 1.234, 1.1, 1.4, "survives", "alone", 2),
        ("full-fp32", "b=1", "-", 0, nan, nan, nan, "", nan, 0),
    ], columns=["method", "setting", "verdict", "n", "x_vs_curve", "x_low", "x_high", "holm", "timed", "missing"])
    a["level"] = 0.95
    b = a.iloc[[0, 1, 3, 8]].assign(level=1 - 0.05 / 4, timed="alone", missing=0,
                                    verdict=["equivalent", "slower", "below curve", "faster"],
                                    holm=["", "survives", "", "close"])
    return {"x:mlp": a, "y:lenet5": b}


def table_parts(table) -> dict:
    """{(setup, method, setting): the cell's part for that point} of a verdicts table."""
    parts = {}
    for row in table.to_dict("records"):
        for setup, text in row.items():
            if setup == "method" or text == "-":
                continue
            for part in text.split("; "):
                match = PART.match(part)
                assert match, part
                parts[setup, row["method"], match["setting"] or "-"] = match
    return parts


def face(artist) -> tuple:
    return to_rgba(artist.get_markerfacecolor())


def test_the_forest_plot_draws_each_cell_as_its_table_shows_it():
    frames = summaries()
    table = verdict_table(frames)
    fig, axes = figure(ncols=len(frames))
    drawn = plot_forest(frames, axes)
    fig.canvas.draw()
    parts = table_parts(table)
    items = {(d.setup, d.method, d.setting): d for d in drawn}
    assert len(items) == len(drawn) and set(items) == set(parts)  # a mark per cell, none else
    rows = [label.get_text() for label in axes[0].get_yticklabels()]
    marks = {}
    for key, match in parts.items():
        d, (setup, method, setting) = items[key], key
        marks[key] = d.mark
        assert rows[d.y] == point_label({"method": method, "setting": setting})
        assert d.note == match["tail"] and d.artists[-1].get_text() == match["tail"]  # n, partial, †
        assert d.hollow == bool(match["close"])
        colour = to_rgba(COLOURS[match["word"]])
        shapes = [a for a in d.artists[:-1] if hasattr(a, "get_marker") and a.get_marker() in ("o", "<", ">")]
        assert all(to_rgba(a.get_color()) == colour for a in d.artists[:-1] if hasattr(a, "get_xdata"))
        assert all((face(a) == to_rgba(HOLLOW)) == bool(match["close"]) for a in shapes) and (shapes or not d.x)
        if match["low"]:  # a dot at the ratio on its interval's line
            assert d.mark == "interval"
            dot, line = d.artists[0], d.artists[1]
            assert list(dot.get_ydata()) == [d.y] and list(line.get_ydata()) == [d.y, d.y]
            assert times(dot.get_xdata()[0]) == match["ratio"]
            assert [bound(x) for x in line.get_xdata()] == [match["low"], match["high"]]
        elif match["at_least"] or match["at_most"]:  # an arrow from the bound, up or down
            line, head = d.artists[0], d.artists[1]
            start, tip = line.get_xdata()
            assert bound(start) == (match["at_least"] or match["at_most"]) and head.get_xdata()[0] == tip
            assert d.mark == ("at least" if match["at_least"] else "at most")
            assert (tip > start) == bool(match["at_least"]) and line.get_marker() == "|"
        elif match["ratio"]:  # one seed: a dot, no line
            assert d.mark == "ratio" and len(d.artists) == 2 and times(d.artists[0].get_xdata()[0]) == match["ratio"]
        else:  # numbers withheld: no point, the word "wide" where the interval is over 10x
            assert d.mark in ("wide", "word") and not d.x
            texts = [a.get_text() for a in d.artists[:-1]]
            assert texts == (["wide"] if d.mark == "wide" else [])
    assert {marks["x:mlp", "crest", "f=0.3"], marks["x:mlp", "grand", "f=0.1"]} == {"at most"}
    assert marks["x:mlp", "lipt", "f=0.1"] == marks["x:mlp", "crest", "f=0.1"] == "wide"
    assert marks["x:mlp", "infobatch", "-"] == "at least"
    for ax, setup in zip(axes, frames):  # nothing else drawn as a point or a line than the cells' marks
        listed = {id(a) for d in drawn if d.setup == setup for a in d.artists}
        others = [line for line in ax.lines if id(line) not in listed]
        assert [list(line.get_xdata()) for line in others] == [[1.0, 1.0]]  # the curve's own speed
    # each panel names the level its cells print
    levels = {setup: {m["level"] for (s, *_), m in parts.items() if s == setup and m["low"]} for setup in frames}
    assert levels == {"x:mlp": {None}, "y:lenet5": {"98.8"}}
    assert axes[0].get_xlabel() == "x_vs_curve, 95% interval" and axes[1].get_xlabel() == "x_vs_curve, 98.8% interval"


def inside(box, frame, slack: float = 1.0) -> bool:
    return (box.x0 >= frame.x0 - slack and box.y0 >= frame.y0 - slack and box.x1 <= frame.x1 + slack
            and box.y1 <= frame.y1 + slack)


@pytest.mark.parametrize("setups", [1, 20])
def test_the_legend_and_every_label_lie_inside_the_figure(setups, tmp_path):
    frame = summaries()["x:mlp"]
    frames = {f"setup-{i}:model": frame for i in range(setups)}
    fig, axes = figure(ncols=setups, width=6.0, height=4.2)  # as `bench verdicts` makes it
    plot_forest(frames, axes)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    legend, = fig.legends
    boxes = {"legend": legend, "title": fig._suptitle, **{f"panel {i}": ax for i, ax in enumerate(axes)}}
    # a panel's tight box: its title, level, ticks and labels as drawn, and its cells' notes
    outside = [name for name, artist in boxes.items() if not inside(artist.get_tightbbox(renderer), page)]
    assert not outside
    legend_box, label_box = legend.get_window_extent(renderer), fig._suptitle.get_window_extent(renderer)
    assert not legend_box.overlaps(label_box)
    assert all(not legend_box.overlaps(ax.get_window_extent(renderer)) for ax in axes)
    assert len(legend.get_texts()) == len(COLOURS) + 5
    if setups == 1:  # cropped to what it draws
        assert save_png(fig, tmp_path / "v.png").read_bytes()[:4] == b"\x89PNG"
