"""The budget curve and the verdicts against it: the math of ``effray bench frontier``, no
runs. The curve is full-data training with its schedule compressed to each budget B and
fully decayed (Budgeted Training, Li et al., ICLR 2020); a point is judged by the seconds
the curve needs to reach its accuracy over its own seconds, over its seeds (docs/results.md,
"Against the budget curve")."""

from __future__ import annotations

import math
import statistics
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


def verdict(ratios: Sequence[float], bounds: Sequence[float]) -> str:
    """A point against the budget curve from its seeds' x_vs_curve (``ratios``) and their
    ``bounds`` (x_vs_curve_bound: a seed above the whole curve, ratio inf, at its lower
    bound). ``faster`` when the mean of the logs of the bounded ratios is above 0 by more than
    2 standard errors: a lower bound can only understate a seed, so this never overclaims.
    ``slower`` when it is below 0 by as much and no seed is above the curve (such a seed is
    not slower than it); ``beyond curve`` when every seed is above the curve and the bounds
    do not say faster; else ``tie``; ``1 seed`` cannot tell; ``-``: no seed."""
    seeds = [(r, b) for r, b in zip(ratios, bounds) if not math.isnan(r)]
    if not seeds:
        return "-"
    beyond = [math.isinf(r) for r, _ in seeds]
    if len(seeds) < 2:
        return "beyond curve" if beyond[0] else "1 seed"
    # max(.., 1e-9): a seed at chance accuracy, which the curve has at 0 s
    logs = [math.log(max(b if math.isinf(r) else r, 1e-9)) for r, b in seeds]
    mean, se = statistics.mean(logs), statistics.stdev(logs) / math.sqrt(len(logs))
    if mean > 2 * se:
        return "faster"
    if all(beyond):
        return "beyond curve"
    return "slower" if mean < -2 * se and not any(beyond) else "tie"


def olympic_mean(values) -> float:
    """MLPerf's olympic mean: the mean without the fastest and the slowest (of 3 or more
    values; NaNs, runs that never reached a target, left out)."""
    kept = sorted(v for v in values if not math.isnan(v))
    if len(kept) >= 3:
        kept = kept[1:-1]
    return statistics.mean(kept) if kept else math.nan
