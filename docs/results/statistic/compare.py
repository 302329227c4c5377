"""Which statistic a verdict rests on (issue 77, item 2): three candidates computed from the
same stored rows, each judged by its own 95% t-interval over a point's seeds.

    python docs/results/statistic/compare.py OUT_STEM SETUP=ROWS.parquet ...

- ``ratio``: the seconds the budget curve needs to reach the point's accuracy over its own
  (before issue 77): inf for a seed above the whole curve, counted at its lower bound;
- ``capped``: the same, the accuracy capped at the curve's best less half a point (effray's);
- ``acc``: the point's accuracy less the curve's at the point's own seconds, in points (No
  Train No Gain's equal budget): off its domain past the curve's last budget, where the curve
  is held at its best.

Per setup and statistic: ``cells`` (points judged on 2 or more seeds), ``off_domain`` (cells
with a seed where the statistic is not a measurement: above the whole curve for ``ratio``,
past its last budget for ``acc``), ``decided`` (faster, slower or equivalent: a ratio within
1.25x, an accuracy within half a point), ``contradicted`` (a word its own interval denies, the
old ``ratio`` rule's ties beside intervals that exclude 1) and the median interval width
(``high / low`` for the ratios, ``high - low`` points for ``acc``). Nothing is trained.
"""

from __future__ import annotations

import math
import shlex
import sys

import numpy as np
import pandas as pd
from scipy import stats

from raypkg.bench.curve import EQUIVALENCE, TARGET_BELOW, curve_seconds
from raypkg.tracking.provenance import provenance
from raypkg.tracking.run import write_parquet

ACC_MARGIN = 0.5  # points: acc's equivalence margin


def per_seed(rows: pd.DataFrame, chance: float) -> pd.DataFrame:
    """A row per sound point and seed with the three statistics and whether each is off its domain."""
    out = []
    for seed, seed_rows in rows.groupby("seed"):
        curve = seed_rows[(seed_rows["method"] == "full") & seed_rows["budget"].notna()]
        points = sorted(zip(curve["e2e_s"], curve["test_acc"]))
        best, last = curve["test_acc"].max(), max(s for s, _ in points)
        monotone = [(0.0, chance)] + [(s, max(a for _, a in points[:i + 1])) for i, (s, _) in enumerate(points)]
        judged = seed_rows[seed_rows["budget"].isna()]
        for row in judged.to_dict("records"):
            acc, seconds = row["test_acc"], row["e2e_s"]
            ratio = curve_seconds(points, acc, chance) / seconds
            at = np.interp(seconds, [s for s, _ in monotone], [a for _, a in monotone])  # flat past the last
            out.append({"method": row["method"], "setting": row["setting"], "seed": seed,
                        "ratio": ratio if math.isfinite(ratio) else curve_seconds(points, best, chance) / seconds,
                        "ratio_off": not math.isfinite(ratio),
                        "capped": curve_seconds(points, min(acc, best - TARGET_BELOW), chance) / seconds,
                        "acc": 100 * (acc - at), "acc_off": seconds > last})
    return pd.DataFrame(out)


def interval(values: np.ndarray) -> tuple[float, float, float]:
    n = len(values)
    mean, se = values.mean(), values.std(ddof=1) / math.sqrt(n)
    half = stats.t.ppf(0.975, n - 1) * se
    return mean, mean - half, mean + half


def summarise(setup: str, seeds: pd.DataFrame) -> list[dict]:
    rows = []
    for name in ("ratio", "capped", "acc"):
        cells = off = decided = contradicted = 0
        widths = []
        for _, point in seeds.groupby(["method", "setting"]):
            if len(point) < 2:
                continue
            cells += 1
            log = name != "acc"
            values = np.log(np.maximum(point[name].to_numpy(float), 1e-9)) if log else point[name].to_numpy(float)
            _, low, high = interval(values)
            off += bool(point.get(f"{name}_off", pd.Series(False)).any())
            margin = math.log(EQUIVALENCE) if log else ACC_MARGIN
            decided += bool(low > 0 or high < 0 or (-margin <= low and high <= margin))
            if name == "ratio":  # the old rule: slower never with a seed above the curve, so a tie
                contradicted += bool(high < 0 and point["ratio_off"].any())
            widths.append(math.exp(high - low) if log else high - low)
        rows.append({"setup": setup, "statistic": name, "cells": cells, "off_domain": off, "decided": decided,
                     "contradicted": contradicted, "median_width": float(np.median(widths)) if widths else math.nan,
                     "width_unit": "x (high / low)" if name != "acc" else "points (high - low)"})
    return rows


if __name__ == "__main__":
    out, pairs = sys.argv[1], sys.argv[2:]
    table = []
    for pair in pairs:
        setup, path = pair.split("=", 1)
        rows = pd.read_parquet(path)
        rows = rows[rows["unsound"].eq("")] if "unsound" in rows else rows
        chance = rows["chance"].iloc[0] if "chance" in rows else 0.1
        table += summarise(setup, per_seed(rows, chance))
    table = pd.DataFrame(table)
    source = {**provenance(threads=1), "command": shlex.join(["python", *sys.argv])}  # a script, not `effray`
    write_parquet(f"{out}.parquet", table, source)
    print(table.to_string(index=False))
