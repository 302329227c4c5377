"""Words that hold wherever the curve is unmeasured (issue 82, part 1): each seed's ratio has
the bracket its curve's measured budgets allow, a word is read only where it holds at both
ends, and the default curve is dense where the targets land."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import pytest

from raypkg.bench.curve import add_curves, curve_bracket, curve_seconds, dense_epochs, judge
from raypkg.bench.frontier import aggregate

# (seconds, accuracy) of a curve at budgets 0.1, 0.3, 0.5, 0.7 and 1: its best 0.90, its target 0.895
CURVE = [(1.0, 0.70), (3.0, 0.80), (5.0, 0.85), (7.0, 0.88), (10.0, 0.90)]


def test_the_bracket_runs_from_the_last_measured_point_below_to_the_first_at_or_above():
    assert curve_bracket(CURVE, 0.89, chance=0.1) == (7.0, 10.0)
    assert curve_seconds(CURVE, 0.89, chance=0.1) == 8.5  # the interpolation, halfway between
    assert curve_bracket(CURVE, 0.85, chance=0.1) == (5.0, 5.0)  # on a measured budget: lo == hi
    assert curve_seconds(CURVE, 0.85, chance=0.1) == 5.0
    assert curve_bracket(CURVE, 0.5, chance=0.1) == (0.0, 1.0)  # below the first budget: from 0 s
    assert curve_bracket(CURVE, 0.1, chance=0.1) == (0.0, 0.0) and curve_bracket(CURVE, 0.95, 0.1) == (math.inf,
                                                                                                       math.inf)
    # the curve is monotone: a budget less accurate than one before it is raised to it
    assert curve_bracket([(1.0, 0.7), (2.0, 0.8), (3.0, 0.75), (4.0, 0.85)], 0.8, chance=0.1) == (2.0, 2.0)
    assert curve_bracket([(1.0, 0.7), (2.0, 0.8), (3.0, 0.75), (4.0, 0.85)], 0.82, chance=0.1) == (3.0, 4.0)
    with pytest.raises(ValueError, match="NaN"):
        curve_bracket(CURVE, math.nan, chance=0.1)


def every_corner(lows: list[float], highs: list[float]) -> tuple[float, float]:
    """The lowest low and highest high of the t-intervals of every corner of the brackets, one
    judge each: what the widened interval must equal."""
    said = [judge(list(corner)) for corner in itertools.product(*zip(lows, highs))]
    return min(j.low for j in said), max(j.high for j in said)


def rows(points: list[tuple[float, float]]) -> pd.DataFrame:
    """Every seed on CURVE, a point ``m`` at (seconds, accuracy) ``points``, one a seed."""
    curve = [{"family": "full", "method": "full", "setting": f"b={b:g}", "budget": b, "seed": seed, "e2e_s": s,
              "test_acc": a, "flops": 1.0} for seed in range(len(points))
             for b, (s, a) in zip((0.1, 0.3, 0.5, 0.7, 1.0), CURVE)]
    return pd.DataFrame(curve + [{"family": "f", "method": "m", "setting": "-", "budget": math.nan, "seed": seed,
                                  "e2e_s": s, "test_acc": a, "flops": 1.0} for seed, (s, a) in enumerate(points)])


def test_each_seeds_row_stores_its_ratio_and_its_bracket():
    frame = add_curves(rows([(2.0, 0.86), (5.0, 0.85), (4.0, 0.95)]), chance=0.1)
    m = frame[frame["method"] == "m"].set_index("seed")
    # 0.86 lands between 5 s and 7 s; 0.85 on the 5 s budget; 0.95 is capped at the target 0.895 (7 s to 10 s)
    assert m["x_vs_curve_lo"].tolist() == [5.0 / 2.0, 5.0 / 5.0, 7.0 / 4.0]
    assert m["x_vs_curve_hi"].tolist() == [7.0 / 2.0, 5.0 / 5.0, 10.0 / 4.0]
    assert m.loc[1, "x_vs_curve_lo"] == m.loc[1, "x_vs_curve"] == m.loc[1, "x_vs_curve_hi"] == 1.0
    assert m["x_vs_curve"].tolist() == pytest.approx([(5 + 2 / 3) / 2, 1.0, 9.25 / 4])
    full = frame[(frame["method"] == "full") & (frame["setting"] == "b=0.5")]
    assert full["x_vs_curve_lo"].isna().all()  # the curve's own points are not judged


def test_a_point_on_a_measured_budget_keeps_its_word_and_interval():
    ratios = [1.02, 0.98, 1.0, 1.01, 0.99]
    plain, bracketed = judge(ratios), judge(ratios, bracket=(ratios, ratios))
    assert bracketed == plain and plain.verdict == "equivalent"


def test_a_word_that_flips_between_the_ends_becomes_inconclusive():
    """The curve reaches its target 0.895 at 9.25 s interpolated, between 7 and 10 s measured:
    a point that reaches it in about 9.25 s is 1.00x interpolated, equivalent; bracketed, its low
    end is slower and outside the margin (7 / 9.25 = 0.76x), its high end faster (1.08x)."""
    seconds = [9.15, 9.25, 9.35, 9.2, 9.3]
    table = aggregate(add_curves(rows([(s, 0.90) for s in seconds]), chance=0.1)).set_index("method")
    m = table.loc["m"]
    assert judge([9.25 / s for s in seconds]).verdict == "equivalent"  # what interpolation alone says
    lows, highs = [7.0 / s for s in seconds], [10.0 / s for s in seconds]
    assert (judge(lows).verdict, judge(highs).verdict) == ("slower", "faster")
    assert m["verdict"] == "inconclusive"
    assert (m["x_low"], m["x_high"]) == pytest.approx(every_corner(lows, highs))
    assert m["x_vs_curve_lo"] == pytest.approx(math.exp(sum(math.log(r) for r in lows) / 5))
    assert m["x_vs_curve_hi"] == pytest.approx(math.exp(sum(math.log(r) for r in highs) / 5))
    assert m["x_low"] < m["x_vs_curve_lo"] <= m["x_vs_curve"] <= m["x_vs_curve_hi"] < m["x_high"]


def test_equivalent_holds_where_every_corner_lies_inside_the_margin_though_each_end_says_more():
    """Brackets 0.93x to 1.07x of each ratio: the low ends alone say slower, the high ends
    faster, and every reading between lies inside the margin: equivalent holds wherever the
    curve is; requiring the two ends' own words to agree would say inconclusive beside an
    interval inside [0.8, 1.25], which contradicts it. With the 7 s to 10 s bracket of a point
    at about 8.5 s (0.82x to 1.18x a seed), the corners spread past the margin: inconclusive."""
    ratios = [0.99, 1.0, 1.01, 1.0, 1.0]
    lows, highs = [r * 0.93 for r in ratios], [r * 1.07 for r in ratios]
    assert (judge(lows).verdict, judge(highs).verdict) == ("slower", "faster")
    said = judge(ratios, bracket=(lows, highs))
    assert said.verdict == "equivalent" and 0.8 <= said.low < 1 < said.high <= 1.25
    assert (said.low, said.high) == pytest.approx(every_corner(lows, highs))
    seconds = [8.4, 8.5, 8.6, 8.45, 8.55]
    m = aggregate(add_curves(rows([(s, 0.90) for s in seconds]), chance=0.1)).set_index("method").loc["m"]
    assert judge([9.25 / s for s in seconds]).verdict == "faster" and m["verdict"] == "inconclusive"


def test_a_word_that_holds_at_every_corner_stands_and_the_interval_is_widened_over_them():
    ratios, lows, highs = [0.5, 0.55, 0.6], [0.45, 0.5, 0.55], [0.55, 0.6, 0.65]
    said = judge(ratios, bracket=(lows, highs))
    assert said.verdict == "slower" and said.ratio == pytest.approx(judge(ratios).ratio)
    assert (said.low, said.high) == pytest.approx(every_corner(lows, highs))
    assert said.low < judge(lows).low and said.high > judge(highs).high  # a mixed corner is more spread
    corners = [judge(list(c)).p for c in itertools.product(*zip(lows, highs))]
    assert said.p == pytest.approx(max(corners + [judge(ratios).p]))
    # a seed below the curve's smallest budget: its low end is 0 s, its word the high end's bound
    below = judge([0.5, 2.0, 1.5], [True, False, False], bracket=([0.0, 1.8, 1.4], [0.9, 2.2, 1.6]))
    assert below.verdict == "below curve"
    # above, the first seed's low end is its interpolated ratio (its 0 s would give 2e10), below it is 0 s
    assert below.high == pytest.approx(every_corner([0.5, 1.8, 1.4], [0.9, 2.2, 1.6])[1])
    assert below.low == pytest.approx(every_corner([0.0, 1.8, 1.4], [0.9, 2.2, 1.6])[0]) and below.low < 1e-6
    slower = judge([0.05, 0.2, 0.15], [True, False, False], bracket=([0.0, 0.18, 0.14], [0.09, 0.22, 0.16]))
    assert slower.verdict == "slower" and slower.high == pytest.approx(every_corner([0.05, 0.18, 0.14],
                                                                                    [0.09, 0.22, 0.16])[1])


def test_p_is_the_bracketed_intervals_own_below_1_minus_level_exactly_where_it_says_slower_or_faster():
    """Holm reads ``p``: it must say what the interval says. A seed below the curve's smallest
    budget has a low end of 0 s, which the high end does not read; its p must not either (the
    frontier's GraNd at 0.03x [1e-12, 0.08] had p = 0.15, and Holm marked ``?`` a cell whose
    interval lies far below 1)."""
    from raypkg.bench.curve import CONFIDENCE

    slower = judge([0.02, 0.04, 0.03], [True, False, False], bracket=([0.0, 0.035, 0.025], [0.05, 0.045, 0.04]))
    assert slower.verdict == "slower" and slower.p < 1 - CONFIDENCE
    rng = np.random.default_rng(0)
    words = set()
    for _ in range(400):
        n = int(rng.integers(2, 6))
        ratios = np.exp(rng.normal(rng.normal(0, 1), rng.uniform(0.05, 1), n))
        below = rng.random(n) < 0.2
        lows = np.where(below, 0.0, ratios * rng.uniform(0.7, 1, n))
        said = judge(list(ratios), list(below), looks=int(rng.integers(1, 4)),
                     bracket=(list(lows), list(ratios * rng.uniform(1, 1.4, n))))
        words.add(said.verdict)
        assert (said.p < 1 - CONFIDENCE) == (said.verdict in ("slower", "faster")), said
    assert {"slower", "faster", "below curve", "inconclusive"} <= words


@pytest.mark.parametrize("bracket, refused", [
    (([1.0, 1.0], [1.0]), "one each a seed"),
    (([1.1, 0.9, 0.9], [1.2, 1.1, 1.1]), "must hold its ratio"),  # a low end above the ratio
    (([0.9, 0.9, 0.9], [0.95, 1.1, 1.1]), "must hold its ratio"),  # a high end below it
    (([-0.1, 0.9, 0.9], [1.1, 1.1, 1.1]), "must hold its ratio"),
    (([math.nan, 0.9, 0.9], [1.1, 1.1, 1.1]), "must hold its ratio"),
])
def test_a_bracket_that_does_not_hold_its_ratios_is_refused(bracket, refused):
    with pytest.raises(ValueError, match=refused):
        judge([1.0, 1.0, 1.0], bracket=bracket)


def test_the_default_curve_is_dense_from_half_the_budget_as_whole_epochs_allow():
    from raypkg.bench.curve import EQUIVALENCE, budget_epochs
    from raypkg.bench.frontier.points import BUDGETS

    assert dense_epochs(10, [1, 2, 3, 5, 7]) == [1, 2, 3, 5, 6, 7, 8]  # the margin from 5 epochs up
    assert dense_epochs(10, [1, 2, 3, 5, 6, 7, 8]) == [1, 2, 3, 5, 6, 7, 8]  # the default: nothing to add
    assert [round(b * 10) for b in BUDGETS] == [1, 2, 3, 5, 6, 7, 8, 10]
    assert dense_epochs(10, []) == [5, 6, 7, 8] and dense_epochs(10, [1, 2, 3, 5, 7], start=0.3) == [1, 2, 3, 4, 5,
                                                                                                    6, 7, 8]
    assert dense_epochs(3, [1]) == [1, 2]  # 2 to 3 epochs: 1.5x, nothing whole between
    assert dense_epochs(2, [1]) == [1]
    for epochs in range(5, 41):  # every step from half the epochs up within the margin
        counts = dense_epochs(epochs, budget_epochs(epochs, BUDGETS)) + [epochs]
        steps = [(a, b) for a, b in zip(counts, counts[1:]) if b > epochs / 2]
        assert all(b <= a * EQUIVALENCE or b == a + 1 for a, b in steps), (epochs, counts)


@pytest.mark.parametrize("args", [(0, []), (2.5, []), (10, [10]), (10, [0]), (10, [], 0.0), (10, [], 0.5, 1.0)])
def test_dense_epochs_refuses_what_is_not_a_curve(args):
    with pytest.raises(ValueError, match="dense_epochs"):
        dense_epochs(*args)


def test_a_bracketed_word_is_never_stronger_than_the_interpolated_one():
    """Both ends faster, their seeds less spread than the interpolated ratios, which are not: a
    t-interval is no monotone function of its seeds, so the interpolation's interval is widened
    in too, and the cell stays inconclusive."""
    ratios, lows, highs = [1.5, 1.02, 1.8, 1.05, 1.6], [1.3, 1.02, 1.3, 1.05, 1.3], [1.6, 1.5, 1.8, 1.5, 1.7]
    assert (judge(lows).verdict, judge(ratios).verdict, judge(highs).verdict) == ("faster", "inconclusive", "faster")
    said = judge(ratios, bracket=(lows, highs))
    assert said.verdict == "inconclusive" and said.low <= judge(ratios).low and said.high >= judge(ratios).high


def test_a_narrower_bracket_never_widens_the_interval_and_many_seeds_read_three_readings():
    ratios, lows, highs = [0.6, 0.9, 0.7], [0.5, 0.8, 0.6], [0.8, 1.0, 0.9]
    wide, narrow = judge(ratios, bracket=(lows, highs)), judge(ratios, bracket=([0.55, 0.8, 0.6], [0.8, 0.95, 0.9]))
    assert wide.low <= narrow.low and narrow.high <= wide.high
    from raypkg.bench.curve import CORNERS

    n = CORNERS + 1  # past CORNERS open brackets: all low, all high and the interpolation
    ratios = [1.0 + 0.01 * i for i in range(n)]
    said = judge(ratios, bracket=([r - 0.05 for r in ratios], [r + 0.05 for r in ratios]))
    assert said.low == pytest.approx(judge([r - 0.05 for r in ratios]).low)
    assert said.high == pytest.approx(judge([r + 0.05 for r in ratios]).high)
