"""The budget curve and the verdicts against it: the math of ``effray bench frontier``, no
runs. The curve is full-data training with its schedule compressed to each budget B and
fully decayed (Budgeted Training, Li et al., ICLR 2020); a point is judged by the seconds
the curve needs to reach its accuracy, capped at a target below the curve's plateau, over its
own seconds, over its seeds (docs/benchmarks.md, "One statistic per cell")."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

# budget curve (its rows' method) -> the columns a point gets against it: x, time-to-accuracy
CURVES = {"full": ("x_vs_curve", "tta_vs_curve"), "full-fp32": ("x_vs_fp32_curve", None)}


def pareto_front(cost: Sequence[float], value: Sequence[float]) -> list[int]:
    """Indices of the points no other point dominates, in order of cost. Point j dominates
    i when cost_j <= cost_i and value_j >= value_i, one of them strictly (lower cost and
    higher value are better). Points with a NaN are neither on the front nor dominate."""
    ok = [i for i in range(len(cost)) if not (math.isnan(cost[i]) or math.isnan(value[i]))]

    def dominates(j: int, i: int) -> bool:
        return cost[j] <= cost[i] and value[j] >= value[i] and (cost[j] < cost[i] or value[j] > value[i])

    return sorted((i for i in ok if not any(dominates(j, i) for j in ok)), key=lambda i: (cost[i], value[i]))


def budget_epochs(epochs: int, budgets: Sequence[float]) -> list[int]:
    """The budget curve's epoch counts below the whole budget: round(B x epochs), at least
    1, each once (budgets that round alike are one point)."""
    return sorted({max(1, round(b * epochs)) for b in budgets} - {epochs})


DENSE_FROM = 0.5  # from this budget to the whole one, where the targets land, the default curve is dense


def dense_epochs(epochs: int, counts: Sequence[int], start: float = DENSE_FROM,
                 margin: float | None = None) -> list[int]:
    """``counts`` (the curve's epoch counts below the whole run, ``budget_epochs``) with the
    fewest counts added so that, from ``start`` x ``epochs`` up to ``epochs``, each measured
    count is within ``margin`` (default ``EQUIVALENCE``) of the next: there a seed's bracket
    (``curve_bracket``) is at most the margin wide, short of whole epochs (2 to 3 epochs are
    1.5x, and nothing lies between). Walks down from the whole run, adding the smallest count
    that keeps the step within the margin wherever the next count below is further."""
    margin = EQUIVALENCE if margin is None else margin
    if not (isinstance(epochs, int) and epochs >= 1 and 0 < start <= 1 and margin > 1):
        raise ValueError(f"dense_epochs: epochs {epochs!r} (a whole number, at least 1), start {start!r} (in (0, 1]), "
                         f"margin {margin!r} (over 1)")
    if any(not 1 <= c < epochs for c in counts):
        raise ValueError(f"dense_epochs: counts {list(counts)} must lie in [1, {epochs})")
    kept, x = set(counts), epochs
    while x > start * epochs and x > 1:
        below = max((c for c in kept if c < x), default=0)
        step = min(math.ceil(x / margin - 1e-9), x - 1)  # the fewest epochs within the margin of x
        if x <= below * margin or step <= below:
            x = below  # within the margin already, or no whole count between
        else:
            kept.add(step)
            x = step
    return sorted(kept)


def monotone_curve(curve: Sequence[tuple[float, float]], chance: float) -> list[tuple[float, float]]:
    """The budget curve as ``curve_seconds`` and ``curve_bracket`` read it: (0 s, ``chance``),
    then its (seconds, accuracy) points in order of seconds, each accuracy raised to the best
    before it (the curve is monotone)."""
    points = [(0.0, chance)]
    for seconds, reached in sorted(curve):
        points.append((seconds, max(reached, points[-1][1])))
    return points


def curve_seconds(curve: Sequence[tuple[float, float]], acc: float, chance: float) -> float:
    """Seconds the budget curve needs to reach accuracy ``acc``: straight lines between its
    measured points (``monotone_curve``, from 0 s at chance); inf when none reaches it. The
    lines are an interpolation: ``curve_bracket`` gives what the measured points alone allow."""
    if acc <= chance:
        return 0.0
    points = monotone_curve(curve, chance)
    for (s0, a0), (s1, a1) in zip(points, points[1:]):
        if a1 >= acc:  # a0 < acc here: the earlier segments stayed below it
            return s0 + (s1 - s0) * (acc - a0) / (a1 - a0)
    return math.inf


def curve_bracket(curve: Sequence[tuple[float, float]], acc: float, chance: float) -> tuple[float, float]:
    """The seconds the budget curve needs to reach ``acc`` as its measured points bound them,
    (low, high): no fewer than the last point below ``acc`` (0 s, at chance, below the first
    budget) and no more than the first at or above it (``monotone_curve``); both that point's
    seconds where it reaches ``acc`` exactly; (inf, inf) where none reaches it, (0, 0) at
    chance or below. ``curve_seconds`` lies between them."""
    if math.isnan(acc):
        raise ValueError("curve_bracket: the accuracy is NaN")
    if acc <= chance:
        return 0.0, 0.0
    points = monotone_curve(curve, chance)
    for (s0, _), (s1, a1) in zip(points, points[1:]):
        if a1 >= acc:
            return (s1 if a1 == acc else s0), s1
    return math.inf, math.inf


TARGET_BELOW = 0.005  # a seed's target: its curve's best accuracy less half a point (below the plateau)


def is_judged(frame) -> pd.Series:
    """The rows judged against the budget curve: every point off the curves, and full training
    at the whole budget (``b=1``), the reference judged as they are; never the curves' own
    points (a row with a ``budget`` but that one)."""
    on_curve = frame["budget"].notna() if "budget" in frame else pd.Series(False, index=frame.index)
    setting = frame["setting"] if "setting" in frame else pd.Series("", index=frame.index)
    return ~on_curve | (frame["method"].eq("full") & setting.eq("b=1"))


def add_curves(frame, chance: float):
    """``frame`` with each row against its seed's budget curves (``CURVES``): x_vs_curve and
    x_vs_fp32_curve, the seconds the curve needs to reach the row's accuracy, capped at the
    seed's target (``curve_target``: the curve's best accuracy less ``TARGET_BELOW``), over
    the row's own seconds; tta_vs_curve; ``below_curve``: the row is less accurate than every
    budget point of its own execution, and that curve has its smallest budget (the smallest of
    any seed's): a seed whose curve has not yet run its lower budgets says nothing below them,
    and its rows there are only bracketed, from 0 s. The ratios are NaN without a curve and for
    the curves' own points, but full training at the whole budget (``b=1``), which is judged
    like a point.

    The curve's seconds between its measured budgets are interpolated; ``x_vs_curve_lo`` and
    ``x_vs_curve_hi`` are the ratio's bracket, what the measured budgets alone allow
    (``curve_bracket``): x_vs_curve_lo <= x_vs_curve <= x_vs_curve_hi, equal where the capped
    accuracy lands on a measured budget. ``judge`` reads a word only where it holds at both ends.

    The cap is what keeps the ratio a measurement wherever a point lands: on the curve's
    plateau a tenth of a point moves the seconds it needs severalfold, and past its best point
    it needs seconds nobody measured; every point at the target or above is judged by its
    seconds to a target the curve does reach (AlgoPerf's time to a target below the reference's
    final quality), so x_vs_curve is finite and never inf."""
    frame = frame.reset_index(drop=True)
    frame["below_curve"] = False
    frame["curve_target"] = math.nan
    on_curve = frame["budget"].notna() if "budget" in frame else pd.Series(False, index=frame.index)
    judged_rows = is_judged(frame)
    smallest = frame.loc[frame["method"].eq("full") & on_curve, "budget"].min() if "budget" in frame else math.nan
    for method, (x_column, tta_column) in CURVES.items():
        frame[x_column] = math.nan
        if method == "full":
            frame[f"{x_column}_lo"] = frame[f"{x_column}_hi"] = math.nan
        if tta_column:
            frame[tta_column] = math.nan
        for seed, rows in frame.groupby("seed"):
            curve = rows[(rows["method"] == method) & on_curve[rows.index]]
            if curve.empty:
                continue
            points = list(zip(curve["e2e_s"], curve["test_acc"]))
            target = curve["test_acc"].max() - TARGET_BELOW
            judged = rows.index[judged_rows[rows.index]]
            capped = [(min(acc, target), seconds) for acc, seconds in zip(frame.loc[judged, "test_acc"],
                                                                          frame.loc[judged, "e2e_s"])]
            frame.loc[judged, x_column] = [curve_seconds(points, acc, chance) / seconds for acc, seconds in capped]
            if method == "full":  # below the lowest budget point the curve is a straight line from chance
                whole = curve["budget"].min() <= smallest  # run down to the smallest budget any seed's has
                frame.loc[judged, "below_curve"] = whole & (frame.loc[judged, "test_acc"] < curve["test_acc"].min())
                frame.loc[judged, "curve_target"] = target
                ends = np.array([curve_bracket(points, acc, chance) for acc, _ in capped]).reshape(-1, 2)
                seconds = np.array([s for _, s in capped])
                frame.loc[judged, f"{x_column}_lo"] = ends[:, 0] / seconds
                frame.loc[judged, f"{x_column}_hi"] = ends[:, 1] / seconds
            if tta_column and "tta_s" in frame:
                frame.loc[judged, tta_column] = curve["tta_s"].min() / frame.loc[judged, "tta_s"]
    return frame


CONFIDENCE = 0.95
EQUIVALENCE = 1.25  # the margin: within 1.25x either way of the curve's speed is practically the curve's
WIDEST = 10.0  # an interval wider than this (high / low) says nothing: it is not printed
DECIDED = ("faster", "slower", "equivalent", "below curve")  # below curve: a seed's accuracy, not its spread


@dataclass(frozen=True)
class Judgement:
    """A point against the budget curve over its seeds (``judge``): the ``verdict``, ``n``
    seeds, the geometric mean ``ratio`` of their x_vs_curve, its two-sided t-interval at
    ``level`` (``low``, ``high``; n - 1 degrees of freedom) and the two-sided ``p`` of "the
    mean log ratio is 0"."""

    verdict: str
    n: int = 0
    ratio: float = math.nan
    low: float = math.nan
    high: float = math.nan
    p: float = math.nan
    level: float = CONFIDENCE


def judge(ratios: Sequence[float], below: Sequence[bool] = (), looks: int = 1,
          bracket: tuple[Sequence[float], Sequence[float]] | None = None) -> Judgement:
    """A point against the budget curve from its seeds' x_vs_curve (``ratios``; ``below``:
    whether each seed is below the curve's smallest budget point), every word read off one
    interval, the two-sided t-interval of the mean log ratio at ``CONFIDENCE``, or, for a
    frontier that adds seeds until its cells are decided and may look at a cell ``looks``
    times, at 1 - (1 - CONFIDENCE) / looks (Bonferroni's spending of the 5% over the looks, so
    that stopping at any look keeps it; ``p`` likewise times ``looks``).

    ``bracket``: each seed's (low, high) ends, x_vs_curve_lo and x_vs_curve_hi (``add_curves``:
    what the curve's measured budgets allow, low <= ratio <= high). The interval is then the
    t-interval widened over every reading of the seeds within their brackets (``low``: the
    lowest low, ``high``: the highest high, ``p``: the interval's own; ``bracketed_interval``), and
    the word is read off it, so that what it says (below 1, above 1, inside the margin) holds
    wherever the curve lies between its measured budgets. Without a bracket every end is the
    ratio, and the interval the ratios' own:

    - ``slower``: the interval lies below 1; ``faster``: above it, with no seed below the curve;
    - ``equivalent``: else, the interval lies inside [1 / EQUIVALENCE, EQUIVALENCE] (two one-sided
      tests, each at (1 - level) / 2: TOST at 5% or less);
    - ``below curve``: a seed below the smallest budget point and the interval not below 1 (on
      one seed, no interval: that seed below it): the curve there is unmeasured (its bracket runs
      from 0 s to the smallest budget), so the ratio is an upper bound and only ``slower`` can
      stand;
    - ``inconclusive``: none of these, or one seed not below the curve; ``-``: no seed.

    ``DECIDED``: the words more seeds would not change but by chance."""
    level = 1 - (1 - CONFIDENCE) / looks
    below = list(below) or [False] * len(ratios)
    lows, highs = bracket if bracket is not None else (ratios, ratios)
    if not len(ratios) == len(below) == len(lows) == len(highs):
        raise ValueError(f"judge: {len(ratios)} ratios, {len(below)} below flags and a bracket of {len(lows)} and "
                         f"{len(highs)} ends: one each a seed")
    seeds = [(r, b, lo, hi) for r, b, lo, hi in zip(ratios, below, lows, highs) if not math.isnan(r)]
    if any(math.isnan(lo) or math.isnan(hi) or lo < 0 or not lo <= r * (1 + 1e-9) or not r <= hi * (1 + 1e-9)
           for r, _, lo, hi in seeds):
        raise ValueError("judge: a seed's bracket must hold its ratio, 0 <= low <= ratio <= high, got "
                         + ", ".join(f"[{lo:g}, {hi:g}] for {r:g}" for r, _, lo, hi in seeds))
    if not seeds:
        return Judgement("-", level=level)
    # max(.., 1e-9): a seed at chance accuracy, which the curve has at 0 s
    ratio, n = math.exp(np.mean([math.log(max(r, 1e-9)) for r, *_ in seeds])), len(seeds)
    if n < 2:  # no interval: one seed's ratio, an upper bound where it is below the curve
        return Judgement("below curve" if seeds[0][1] else "inconclusive", n, ratio, level=level)
    low, high, p = bracketed_interval(np.array([[r, lo, hi] for r, _, lo, hi in seeds]), level, looks)
    if high < 1:
        said = "slower"
    elif any(b for _, b, *_ in seeds):
        said = "below curve"
    elif low > 1:
        said = "faster"
    elif 1 / EQUIVALENCE <= low and high <= EQUIVALENCE:
        said = "equivalent"
    else:
        said = "inconclusive"
    return Judgement(said, n, ratio, low, high, p, level)


CORNERS = 14  # seeds with an open bracket up to which every corner of it is read (2**14 intervals)


def bracketed_interval(seeds: np.ndarray, level: float, looks: int = 1) -> tuple[float, float, float]:
    """(low, high, p) over ``seeds`` (a row each: ratio, low end, high end) as ``judge`` reads
    them: the t-interval at ``level`` of the mean log ratio wherever each seed's ratio lies in
    its bracket. Its high end, mean + t x se, is convex in the seeds' logs and its low end
    concave, so their extremes over the brackets lie at corners: every corner is read (each
    seed at its low or its high end), and the interpolated ratios besides; past ``CORNERS``
    open brackets, the all-low, all-high and interpolated readings only. A seed whose low end
    is 0 s (below the curve's first measured point, unmeasured from chance) takes its
    interpolated ratio in the high end's place: its low end bounds nothing above.

    ``p``: the interval's own, the smallest 1 - level at which it would leave out 1, times
    ``looks``, so that ``p`` < 1 - ``CONFIDENCE`` exactly where the word is ``slower`` or ``faster``:
    below 1, the largest p of the readings its high end is taken over, each of them below 1
    (else 1); above 1, likewise of its low end's readings; the smaller of the two."""
    logs = np.log(np.maximum(seeds, 1e-9))  # a seed at chance accuracy, which the curve has at 0 s
    ratio, lo, hi = logs.T
    above_lo = np.where((seeds[:, 1] == 0) & (seeds[:, 2] > 0), ratio, lo)
    low_readings, high_readings = corners(ratio, lo, hi), corners(ratio, above_lo, hi)
    lows, p_lows = t_intervals(low_readings, level, looks)
    highs, p_highs = t_intervals(high_readings, level, looks)
    p_below = p_highs.max() if (high_readings.mean(axis=1) < 0).all() else 1.0
    p_above = p_lows.max() if (low_readings.mean(axis=1) > 0).all() else 1.0
    return float(np.exp(lows[:, 0].min())), float(np.exp(highs[:, 1].max())), float(min(p_below, p_above))


def corners(ratio: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A row per reading of the seeds' logs (``bracketed_interval``): ``ratio``, and each corner
    of the brackets [``lo``, ``hi``] (or, past ``CORNERS`` open ones, ``lo`` and ``hi``)."""
    free = np.flatnonzero(lo < hi)
    if len(free) > CORNERS:
        return np.stack([ratio, lo, hi])
    pick = (np.arange(2 ** len(free))[:, None] >> np.arange(len(free))) & 1  # a row per corner
    readings = np.tile(lo, (len(pick), 1))
    readings[:, free] = np.where(pick == 1, hi[free], lo[free])
    return np.vstack([ratio, readings])


def t_intervals(logs: np.ndarray, level: float, looks: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Per row of ``logs`` (a reading of n seeds), the two-sided t-interval at ``level`` of its
    mean (n - 1 degrees of freedom), (low, high) on the log scale, and the two-sided p of "the
    mean is 0" times ``looks`` (at most 1)."""
    from scipy import stats

    n = logs.shape[1]
    mean, se = logs.mean(axis=1), logs.std(axis=1, ddof=1) / math.sqrt(n)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * se
    with np.errstate(divide="ignore", invalid="ignore"):
        p = np.where(se > 0, np.minimum(1.0, looks * 2 * stats.t.sf(np.abs(mean) / se, n - 1)),
                     (mean == 0).astype(float))
    return np.stack([mean - half, mean + half], axis=1), p


def holm(pvalues: Sequence[float], alpha: float = 1 - CONFIDENCE) -> list[bool]:
    """Holm's step-down correction over all ``pvalues`` (the cells tested): whether each
    test still rejects at family-wise level ``alpha``. Sorted ascending, p_(k) rejects while
    p_(k) <= alpha / (m - k + 1) for it and every smaller one."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    survives = [False] * len(pvalues)
    for rank, i in enumerate(order):
        if pvalues[i] > alpha / (len(pvalues) - rank):
            break
        survives[i] = True
    return survives


def olympic_mean(values) -> float:
    """MLPerf's olympic mean: the mean without the fastest and the slowest (of 3 or more
    values; NaNs, runs that never reached a target, left out)."""
    kept = sorted(v for v in values if not math.isnan(v))
    if len(kept) >= 3:
        kept = kept[1:-1]
    return statistics.mean(kept) if kept else math.nan
