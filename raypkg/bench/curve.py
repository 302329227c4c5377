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


def curve_seconds(curve: Sequence[tuple[float, float]], acc: float, chance: float) -> float:
    """Seconds the budget curve needs to reach accuracy ``acc``: straight lines from
    (0 s, ``chance``) through its (seconds, accuracy) points in order of seconds, each
    accuracy raised to the best before it (the curve is monotone); inf when none reaches it."""
    if acc <= chance:
        return 0.0
    points = [(0.0, chance)]
    for seconds, reached in sorted(curve):
        points.append((seconds, max(reached, points[-1][1])))
    for (s0, a0), (s1, a1) in zip(points, points[1:]):
        if a1 >= acc:  # a0 < acc here: the earlier segments stayed below it
            return s0 + (s1 - s0) * (acc - a0) / (a1 - a0)
    return math.inf


TARGET_BELOW = 0.005  # a seed's target: its curve's best accuracy less half a point (below the plateau)


def add_curves(frame, chance: float):
    """``frame`` with each row against its seed's budget curves (``CURVES``): x_vs_curve and
    x_vs_fp32_curve, the seconds the curve needs to reach the row's accuracy, capped at the
    seed's target (``curve_target``: the curve's best accuracy less ``TARGET_BELOW``), over
    the row's own seconds; tta_vs_curve; ``below_curve``: the row is less accurate than every
    budget point of its own execution. The ratios are NaN without a curve and for the curves'
    own points, but full training at the whole budget (``b=1``), which is judged like a point.

    The cap is what keeps the ratio a measurement wherever a point lands: on the curve's
    plateau a tenth of a point moves the seconds it needs severalfold, and past its best point
    it needs seconds nobody measured; every point at the target or above is judged by its
    seconds to a target the curve does reach (AlgoPerf's time to a target below the reference's
    final quality), so x_vs_curve is finite and never inf."""
    frame = frame.reset_index(drop=True)
    frame["below_curve"] = False
    frame["curve_target"] = math.nan
    on_curve = frame["budget"].notna() if "budget" in frame else pd.Series(False, index=frame.index)
    for method, (x_column, tta_column) in CURVES.items():
        frame[x_column] = math.nan
        if tta_column:
            frame[tta_column] = math.nan
        for seed, rows in frame.groupby("seed"):
            curve = rows[(rows["method"] == method) & on_curve[rows.index]]
            if curve.empty:
                continue
            points = list(zip(curve["e2e_s"], curve["test_acc"]))
            target = curve["test_acc"].max() - TARGET_BELOW
            # every point, and full training at the whole budget: the reference judged as they are
            reference = (rows["method"] == "full") & rows.get("setting", pd.Series("", index=rows.index)).eq("b=1")
            judged = rows.index[~on_curve[rows.index] | reference]
            frame.loc[judged, x_column] = [curve_seconds(points, min(acc, target), chance) / seconds for acc, seconds
                                           in zip(frame.loc[judged, "test_acc"], frame.loc[judged, "e2e_s"])]
            if method == "full":  # below the lowest budget point the curve is a straight line from chance
                frame.loc[judged, "below_curve"] = frame.loc[judged, "test_acc"] < curve["test_acc"].min()
                frame.loc[judged, "curve_target"] = target
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


def judge(ratios: Sequence[float], below: Sequence[bool] = (), looks: int = 1) -> Judgement:
    """A point against the budget curve from its seeds' x_vs_curve (``ratios``; ``below``:
    whether each seed is below the curve's smallest budget point), every word read off one
    interval, the two-sided t-interval of the mean log ratio at ``CONFIDENCE``, or, for a
    frontier that adds seeds until its cells are decided and may look at a cell ``looks``
    times, at 1 - (1 - CONFIDENCE) / looks (Bonferroni's spending of the 5% over the looks, so
    that stopping at any look keeps it; ``p`` likewise times ``looks``):

    - ``slower``: the interval lies below 1; ``faster``: above it, with no seed below the curve;
    - ``equivalent``: else, the interval lies inside [1 / EQUIVALENCE, EQUIVALENCE] (two one-sided
      tests, each at (1 - level) / 2: TOST at 5% or less);
    - ``below curve``: a seed below the smallest budget point and the interval not below 1: the
      curve there is a line from chance, which understates its speed, so the ratio is an upper
      bound and only ``slower`` can stand;
    - ``inconclusive``: none of these, or under 2 seeds; ``-``: no seed.

    ``DECIDED``: the words more seeds would not change but by chance."""
    from scipy import stats

    level = 1 - (1 - CONFIDENCE) / looks
    below = list(below) or [False] * len(ratios)
    seeds = [(r, b) for r, b in zip(ratios, below) if not math.isnan(r)]
    if not seeds:
        return Judgement("-", level=level)
    # max(.., 1e-9): a seed at chance accuracy, which the curve has at 0 s
    logs = np.array([math.log(max(r, 1e-9)) for r, _ in seeds])
    ratio, n = math.exp(logs.mean()), len(logs)
    if n < 2:
        return Judgement("inconclusive", n, ratio, level=level)
    mean, se = logs.mean(), logs.std(ddof=1) / math.sqrt(n)
    half = stats.t.ppf(0.5 + level / 2, n - 1) * se
    p = min(1.0, looks * 2 * stats.t.sf(abs(mean) / se, n - 1)) if se > 0 else float(mean == 0)
    low, high = math.exp(mean - half), math.exp(mean + half)
    if high < 1:
        said = "slower"
    elif any(b for _, b in seeds):
        said = "below curve"
    elif low > 1:
        said = "faster"
    elif 1 / EQUIVALENCE <= low and high <= EQUIVALENCE:
        said = "equivalent"
    else:
        said = "inconclusive"
    return Judgement(said, n, ratio, low, high, p, level)


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
