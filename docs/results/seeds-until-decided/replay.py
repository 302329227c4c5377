"""Seeds until decided replayed on measured rows (``until_decided.replay``: the looks the
frontier makes, on the rows a stored frontier of fixed seeds measured; nothing is trained).
Seeds are exchangeable, so each rule is replayed over every order of the stored seeds (or the
first ORDERS of them, shuffled from seed 0), the first order the stored one.

    python docs/results/seeds-until-decided/replay.py OUT_STEM ROWS.parquet ORDERS N:K [N:K ...]

A row per rule and order: its point runs, the seeds it ran, ``est_s`` (``seconds``: an estimate
of its wall time at the rows' own clocks, not a measurement), how many cells read each word,
``doubted`` (faster or slower with Holm's ``?``), ``settled`` (at the table's standard,
``until_decided.settled``) and ``missing`` (cells a look asked for of a seed the rows lack: then
the row is not that rule's replay). ``N:N`` is N fixed seeds. OUT_STEM-summary.parquet: per rule,
the mean, least and most of each over the orders, and its mean est_s over the first fixed rule's.
"""

from __future__ import annotations

import itertools
import random
import shlex
import sys

import pandas as pd

from raypkg.bench.curve import DECIDED
from raypkg.bench.frontier.until_decided import doubted, replay, settled
from raypkg.tracking.provenance import provenance
from raypkg.tracking.run import write_parquet

WORDS = ("faster", "slower", "equivalent", "below curve", "inconclusive")


def seconds(ran: pd.DataFrame, rows: pd.DataFrame) -> float:
    """What ``ran`` (some of ``rows``) would take at the rows' own clocks: each point run's wall
    time as measured (its end less its start: a training shared with another point, full and
    full-fp32 on one execution, took milliseconds), and a warm-up a point took from the store's
    cache paid again when the point that trained it is not in ``ran``."""
    spent = float((ran["ended_at"] - ran["started_at"]).sum())
    warmed = rows[rows["pretrain_s"] > 0].sort_values("started_at")
    for _, group in warmed.groupby(["seed", "pretrain_s", "merge_s"]):
        present = group.index.intersection(ran.index)
        if len(present) and group.index[0] not in present:
            spent += float(group["pretrain_s"].iloc[0] + group["merge_s"].iloc[0])
    return spent


def describe(rows: pd.DataFrame, ran: pd.DataFrame, table: pd.DataFrame, missing: int) -> dict:
    judged = table[table["n"] > 0]
    return {"points": len(ran), "seeds": int(ran["seed"].nunique()), "est_s": round(seconds(ran, rows), 1),
            "level": float(judged["level"].min()), "cells": len(judged),
            **{word: int(judged["verdict"].eq(word).sum()) for word in WORDS},
            "decided": int(judged["verdict"].isin(DECIDED).sum()),
            "doubted": int(doubted(judged).sum()),
            "settled": int(settled(judged).sum()), "missing": missing}


def orders(seeds: list[int], count: int) -> list[tuple[int, ...]]:
    """The stored order first, then up to ``count`` - 1 others of ``seeds``, shuffled from seed 0."""
    others = [order for order in itertools.permutations(seeds) if list(order) != seeds]
    random.Random(0).shuffle(others)
    return [tuple(seeds), *others[:count - 1]]


def main(out: str, path: str, count: str, *rules: str) -> pd.DataFrame:
    rows = pd.read_parquet(path)
    seeds = sorted(rows["seed"].unique().tolist())
    lines = []
    for order in orders(seeds, int(count)):
        ordered = rows.assign(seed=rows["seed"].map(dict(zip(order, seeds))))  # seed order[i] runs i-th
        for rule in rules:
            first, most = (int(x) for x in rule.split(":"))
            lines.append({"rule": f"{first} fixed" if first == most else f"{first} to {most}",
                          "order": " ".join(map(str, order)), **describe(ordered, *replay(ordered, first, most))})
    table = pd.DataFrame(lines)
    columns = ["points", "est_s", "doubted", "settled", "decided", "below curve", "inconclusive", "missing"]
    spread = table.groupby("rule", sort=False)[columns].agg(["mean", "min", "max"])
    spread.columns = [f"{column} {stat}" for column, stat in spread.columns]
    fixed = spread.index[spread.index.str.endswith("fixed")][0]  # the first fixed rule: the ratio's base
    spread.insert(0, "orders", table.groupby("rule", sort=False).size())
    spread.insert(1, f"est_s / {fixed}", spread["est_s mean"] / spread.loc[fixed, "est_s mean"])
    source = {**provenance(threads=1), "command": shlex.join(["python", *sys.argv])}  # a script, not `effray`
    write_parquet(f"{out}.parquet", table, source)
    write_parquet(f"{out}-summary.parquet", spread.reset_index(), source)
    print(spread.round(2).to_string())
    return table


if __name__ == "__main__":
    main(*sys.argv[1:])
