"""The budget curve and the verdicts against it: the math of ``effray bench frontier``, no
runs. The curve is full-data training with its schedule compressed to each budget B and
fully decayed (Budgeted Training, Li et al., ICLR 2020); a point is judged by the seconds
the curve needs to reach its accuracy over its own seconds, over its seeds (docs/results.md,
"Against the budget curve")."""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd

# budget curve (its rows' method) -> the columns a point gets against it: x, x's lower bound, time-to-accuracy
CURVES = {"full": ("x_vs_curve", "x_vs_curve_bound", "tta_vs_curve"),
          "full-fp32": ("x_vs_fp32_curve", "x_vs_fp32_curve_bound", None)}


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


def add_curves(frame, chance: float):
    """``frame`` with each row against its seed's budget curves (``CURVES``): x_vs_curve,
    x_vs_fp32_curve and tta_vs_curve (NaN for the curves' own points and without a curve),
    ``below_curve``: its accuracy is below every budget point's of its own execution, and
    ``x_vs_curve_bound`` (``x_vs_fp32_curve_bound``): x_vs_curve (x_vs_fp32_curve), or where
    that is inf (more accurate than the whole curve) its lower bound, the seconds the curve
    needs for its own best accuracy over the row's (the curve would need at least those to
    go further)."""
    frame = frame.reset_index(drop=True)
    frame["below_curve"] = False
    on_curve = frame["budget"].notna() if "budget" in frame else pd.Series(False, index=frame.index)
    for method, (x_column, bound_column, tta_column) in CURVES.items():
        frame[x_column] = frame[bound_column] = math.nan
        if tta_column:
            frame[tta_column] = math.nan
        for seed, rows in frame.groupby("seed"):
            curve = rows[(rows["method"] == method) & on_curve[rows.index]]
            if curve.empty:
                continue
            points = list(zip(curve["e2e_s"], curve["test_acc"]))
            judged = rows.index[~on_curve[rows.index]]
            frame.loc[judged, x_column] = [curve_seconds(points, acc, chance) / seconds for acc, seconds
                                           in zip(frame.loc[judged, "test_acc"], frame.loc[judged, "e2e_s"])]
            if method == "full":  # below the lowest budget point the curve is a straight line from chance
                frame.loc[judged, "below_curve"] = frame.loc[judged, "test_acc"] < curve["test_acc"].min()
            best_s = curve_seconds(points, curve["test_acc"].max(), chance)
            ratios = frame.loc[judged, x_column]
            frame.loc[judged, bound_column] = ratios.where(~np.isinf(ratios), best_s / frame.loc[judged, "e2e_s"])
            if tta_column and "tta_s" in frame:
                frame.loc[judged, tta_column] = curve["tta_s"].min() / frame.loc[judged, "tta_s"]
    return frame


@dataclass(frozen=True)
class Judgement:
    """A point against the budget curve over its seeds (``judge``): the ``verdict``, the
    geometric mean ``ratio`` of the seeds' bounded x_vs_curve, its 95% t-interval (``low``,
    ``high``; n - 1 degrees of freedom) and the two-sided ``p`` of "the mean log ratio is 0"."""

    verdict: str
    ratio: float = math.nan
    low: float = math.nan
    high: float = math.nan
    p: float = math.nan


CONFIDENCE = 0.95


def judge(ratios: Sequence[float], bounds: Sequence[float], same_cost: bool = False) -> Judgement:
    """A point against the budget curve from its seeds' x_vs_curve (``ratios``) and their
    ``bounds`` (x_vs_curve_bound: a seed above the whole curve, ratio inf, at its lower
    bound, which can only understate it, so nothing here overclaims).

    ``faster`` (``slower``) when the 95% t-interval of the geometric mean excludes 1 above
    (below); ``slower`` never with a seed above the curve (that seed is not slower than it).
    ``beyond curve`` when every seed is above the curve and the interval does not say faster,
    and always when the point trains the same examples at the same FLOPs as the whole budget
    (``same_cost``): more accurate at equal cost, its seconds differ from the curve's by the
    clock alone, which is no verdict. Else ``tie``; ``1 seed`` cannot tell; ``-``: no seed."""
    from scipy import stats

    seeds = [(r, b) for r, b in zip(ratios, bounds) if not math.isnan(r)]
    if not seeds:
        return Judgement("-")
    beyond = [math.isinf(r) for r, _ in seeds]
    # max(.., 1e-9): a seed at chance accuracy, which the curve has at 0 s
    logs = np.array([math.log(max(b if math.isinf(r) else r, 1e-9)) for r, b in seeds])
    ratio = math.exp(logs.mean())
    if len(logs) < 2:
        return Judgement("beyond curve" if beyond[0] else "1 seed", ratio)
    mean, se = logs.mean(), logs.std(ddof=1) / math.sqrt(len(logs))
    half = stats.t.ppf(0.5 + CONFIDENCE / 2, len(logs) - 1) * se
    p = 2 * stats.t.sf(abs(mean) / se, len(logs) - 1) if se > 0 else float(mean == 0)
    low, high = math.exp(mean - half), math.exp(mean + half)
    if all(beyond) and (same_cost or low <= 1):
        said = "beyond curve"
    elif low > 1:
        said = "faster"
    elif high < 1 and not any(beyond):
        said = "slower"
    else:
        said = "tie"
    return Judgement(said, ratio, low, high, p)


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
