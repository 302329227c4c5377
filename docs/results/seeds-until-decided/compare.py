"""Seeds until decided against fixed seeds (issue 77, item 4): two stored runs of one frontier,
a row each and a row per cell whose word differs.

    python docs/results/seeds-until-decided/compare.py FIXED_STEM WALL_FIXED SEQUENTIAL_STEM WALL_SEQUENTIAL OUT_STEM

Per run: ``wall_s`` (its log's wall time, given), ``points`` (point runs stored), ``seeds``
(the most any cell had), ``level`` (its intervals' confidence), ``cells`` (points judged), and
how many read each word; ``decided``: faster, slower, equivalent or below curve; ``doubted``: the
faster or slower ones Holm's correction marks ``?``. Then a row per
cell whose word differs between the runs, with both. Nothing is trained.
"""

from __future__ import annotations

import shlex
import sys

import pandas as pd

from raypkg.bench.curve import DECIDED
from raypkg.bench.frontier.until_decided import doubted
from raypkg.tracking.provenance import provenance
from raypkg.tracking.run import write_parquet

WORDS = ("faster", "slower", "equivalent", "below curve", "inconclusive")


def describe(name: str, stem: str, wall: float) -> tuple[dict, pd.DataFrame]:
    rows, summary = pd.read_parquet(f"{stem}.parquet"), pd.read_parquet(f"{stem}-summary.parquet")
    judged = summary[summary["n"] > 0]
    run = {"run": name, "wall_s": wall, "points": len(rows), "seeds": int(judged["n"].max()),
           "level": float(judged["level"].min()) if "level" in judged else 0.95, "cells": len(judged),
           "decided": int(judged["verdict"].isin(DECIDED).sum()),
           "doubted": int(doubted(judged).sum()),
           **{word: int(judged["verdict"].eq(word).sum()) for word in WORDS}}
    return run, judged.assign(verdict=judged["verdict"].where(~judged["holm"].eq("close"), judged["verdict"] + "?")
                         ).set_index(["method", "setting"])[["verdict", "n"]]


if __name__ == "__main__":
    fixed, wall_fixed, sequential, wall_sequential, out = sys.argv[1:6]
    (a, cells_a), (b, cells_b) = describe("fixed", fixed, float(wall_fixed)), \
        describe("until decided", sequential, float(wall_sequential))
    both = cells_a.merge(cells_b, left_index=True, right_index=True, how="outer", suffixes=("_fixed", "_until_decided"))
    differ = both[both["verdict_fixed"] != both["verdict_until_decided"]].reset_index()
    table = pd.concat([pd.DataFrame([a, b]), differ.assign(run="cell")], ignore_index=True)
    source = {**provenance(threads=1), "command": shlex.join(["python", *sys.argv])}  # a script, not `effray`
    write_parquet(f"{out}.parquet", table, source)
    print(table.to_string(index=False))
