"""One slot against two on the same frontier command (issue 71, item 5): the two runs' stored
rows and summaries side by side, a row per point.

    python docs/results/frontier-slots/compare.py ONE_SLOT_STEM TWO_SLOTS_STEM OUT_STEM WALL_1 WALL_2

``same_acc``: every seed's test accuracy equal, bit for bit; ``x_1``/``x_2``: the point's
geometric mean x_vs_curve in each run, ``in_2``/``in_1``: whether each lies inside the
other run's 95% interval; ``verdict_1``/``verdict_2`` and ``flip``: a cell that is faster in one
run and slower in the other. WALL_1 and WALL_2 (seconds) are the runs' wall times, from their
logs; the table's first line, ``all``, gives their ratio.
"""

from __future__ import annotations

import shlex
import sys

import pandas as pd

from raypkg.tracking.provenance import provenance
from raypkg.tracking.run import write_parquet

KEYS = ["method", "setting"]


def compare(one: str, two: str, wall_1: float, wall_2: float) -> pd.DataFrame:
    rows = [pd.read_parquet(f"{stem}.parquet").set_index(["seed", *KEYS])["test_acc"] for stem in (one, two)]
    same = (rows[0].sort_index() == rows[1].sort_index()).groupby(level=KEYS).all()
    a, b = (pd.read_parquet(f"{stem}-summary.parquet").set_index(KEYS) for stem in (one, two))
    judged = a["x_low"].notna() & b["x_low"].notna()
    table = pd.DataFrame({"same_acc": same.reindex(a.index), "x_1": a["x_vs_curve"], "x_2": b["x_vs_curve"],
                          "in_2": a["x_vs_curve"].between(b["x_low"], b["x_high"]),
                          "in_1": b["x_vs_curve"].between(a["x_low"], a["x_high"]),
                          "verdict_1": a["verdict"], "verdict_2": b["verdict"]})[judged].reset_index()
    table["flip"] = table["verdict_1"].str.rstrip("?").isin(["faster", "slower"]) & \
        table["verdict_2"].str.rstrip("?").isin(["faster", "slower"]) & (table["verdict_1"] != table["verdict_2"])
    head = pd.DataFrame([{"method": "all", "setting": f"wall {wall_1:.0f} s / {wall_2:.0f} s = {wall_1 / wall_2:.2f}x",
                          "same_acc": bool(same.all()), "in_2": bool(table["in_2"].all()),
                          "in_1": bool(table["in_1"].all()), "flip": bool(table["flip"].any())}])
    return pd.concat([head, table], ignore_index=True)


if __name__ == "__main__":
    one, two, out, wall_1, wall_2 = sys.argv[1:6]
    table = compare(one, two, float(wall_1), float(wall_2))
    source = {**provenance(threads=1), "command": shlex.join(["python", *sys.argv])}  # a script, not `effray`
    write_parquet(f"{out}.parquet", table, source)
    print(table.to_string(index=False))
