"""Words that hold wherever the curve is unmeasured (issue 82, part 1): the README's cells judged
from their stored rows with the curve interpolated between its measured budgets (before issue
82) and bracketed by them (each seed's ratio between the last measured budget below its capped
accuracy and the first at or above it; a word only where it holds at both ends), and the same
with denser curves, each candidate rule for the budgets. Nothing is trained.

    python docs/results/statistic/bracket.py OUT_STEM SETUP=ROWS.parquet ...

A denser curve cannot be measured from stored rows: its added budgets are put on the curve as
interpolated (their seconds interpolated in budget between the measured budgets beside them,
their accuracy the interpolated curve's at those seconds), so every seed's interpolated ratio
stays as it is and only its bracket narrows. That is what the denser curve would say if the
interpolation were right; a real curve may bend between its points either way.

Writes OUT_STEM.parquet (a row per setup and rule: ``words``, the cells with a seed; ``cells``,
those with 2 or more; ``decided`` interpolated and bracketed; ``changed``, the words that
differ; ``same_word``, cells where requiring both ends' own words to be equal would say
otherwise than reading the word off the widened interval; ``added_s``, the seconds the added
budgets cost a seed, sum(B) x full training's seconds at fp32 and at auto, both curves; and
``added_share`` of a seed's seconds over the whole frontier) and OUT_STEM-changes.parquet
(each word that changes, under each rule, with the budgets its seeds' accuracies land between);
docs/results/curve-bracket.md shows both.
"""

from __future__ import annotations

import math
import shlex
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from raypkg.bench.curve import DECIDED, DENSE_FROM, add_curves, dense_epochs, judge, monotone_curve
from raypkg.bench.frontier.judge import JUDGED, aggregate
from raypkg.bench.verdicts import cell
from raypkg.tracking.provenance import provenance
from raypkg.tracking.run import write_parquet

BRACKET = ["x_vs_curve_lo", "x_vs_curve_hi"]
CURVE_METHODS = ("full", "full-fp32")  # both curves run at every budget


def rules(epochs: int, counts: list[int]) -> dict[str, list[int]]:
    """Candidate curves: the measured budgets' epoch counts, and each rule's (counts below the
    whole run)."""
    return {"measured": counts,
            "+0.8": sorted(set(counts) | {round(0.8 * epochs)}),
            "margin from 0.5": dense_epochs(epochs, counts, start=DENSE_FROM),
            "margin from 0.3": dense_epochs(epochs, counts, start=0.3)}


def with_budgets(rows: pd.DataFrame, epochs: int, counts: list[int], chance: float) -> pd.DataFrame:
    """``rows`` with a curve point of each curve method and seed at every count not measured,
    on the interpolated curve (see the module's docstring)."""
    added = []
    for (seed, method), curve in rows[rows["budget"].notna()].groupby(["seed", "method"]):
        if method not in CURVE_METHODS:
            continue
        curve = curve.sort_values("budget")
        measured = {round(b * epochs) for b in curve["budget"]}
        line = monotone_curve(list(zip(curve["e2e_s"], curve["test_acc"])), chance)
        for count in sorted(set(counts) - measured):
            budget = count / epochs
            if not curve["budget"].min() < budget < 1:
                continue  # below the first budget the curve is a line from chance: nothing to interpolate
            seconds = float(np.interp(budget, curve["budget"], curve["e2e_s"]))
            acc = float(np.interp(seconds, [s for s, _ in line], [a for _, a in line]))
            template = curve.iloc[0].to_dict()
            added.append({**template, "budget": budget, "setting": f"b={budget:g}", "e2e_s": seconds, "test_acc": acc})
    return pd.concat([rows, pd.DataFrame(added)], ignore_index=True) if added else rows


def landing(judged: pd.DataFrame, rows: pd.Series) -> str:
    """The budgets a cell's seeds' capped accuracies land between (``b0-b1``, ``at b`` on one), most
    seeds' first."""
    gaps = Counter()
    for row in rows.to_dict("records"):
        curve = judged[(judged["seed"] == row["seed"]) & (judged["method"] == "full") & judged["budget"].notna()]
        ends = [row[c] * row["e2e_s"] for c in BRACKET]
        at = [curve.loc[np.isclose(curve["e2e_s"], s, rtol=1e-9, atol=1e-12), "budget"] for s in ends]
        b0, b1 = (f"{a.iloc[0]:g}" if len(a) else "0" for a in at)
        gaps[f"at {b1}" if b0 == b1 else f"{b0}-{b1}"] += 1
    return ", ".join(f"{gap} ({k})" for gap, k in gaps.most_common())


def same_word(rows: pd.DataFrame) -> str:
    """The stricter reading: the word each end says on its own where the two agree, else inconclusive."""
    below = list(rows["below_curve"].eq(True))
    words = {judge(list(rows[c]), below).verdict for c in BRACKET}
    return words.pop() if len(words) == 1 else "inconclusive"


def compare(setup: str, rows: pd.DataFrame) -> tuple[list[dict], list[dict]]:
    rows = rows[rows["unsound"].eq("")] if "unsound" in rows else rows
    rows = rows.drop(columns=[c for c in JUDGED if c in rows])
    chance = rows["chance"].iloc[0] if "chance" in rows else 0.1  # rows stored before it: 10 classes
    epochs = int(rows["epochs"].iloc[0]) if "epochs" in rows else 10  # every stored preset: 10
    budgets = sorted(rows["budget"].dropna().unique())
    assert all(abs(b * epochs - round(b * epochs)) < 1e-9 for b in budgets), (setup, budgets)
    counts = [round(b * epochs) for b in budgets if b < 1]
    seeds = rows["seed"].nunique()
    full_s = rows.loc[rows["method"].isin(CURVE_METHODS) & rows["budget"].eq(1.0)].groupby("method")["e2e_s"].mean()
    per_seed_s = rows["e2e_s"].sum() / seeds
    summary, changes = [], []
    for name, candidate in rules(epochs, counts).items():
        judged = add_curves(with_budgets(rows, epochs, candidate, chance), chance=chance)
        bracketed = aggregate(judged)
        interpolated = aggregate(judged.drop(columns=BRACKET))
        keys = ["method", "setting"]
        both = bracketed.merge(interpolated, on=keys, suffixes=("", "_interpolated"))
        both = both[both["n"] > 0]
        groups = dict(iter(judged[judged["x_vs_curve"].notna()].groupby(keys)))
        strict = [same_word(groups[key]) if n >= 2 else verdict for key, n, verdict
                  in zip(zip(both["method"], both["setting"]), both["n"], both["verdict"])]
        added = sorted(set(candidate) - set(counts))
        summary.append({"setup": setup, "rule": name,
                        "budgets": ",".join(f"{c / epochs:g}" for c in [*candidate, epochs]),
                        "words": len(both), "cells": int((both["n"] >= 2).sum()),
                        "decided_interpolated": int(both["verdict_interpolated"].isin(DECIDED).sum()),
                        "decided_bracketed": int(both["verdict"].isin(DECIDED).sum()),
                        "changed": int((both["verdict"] != both["verdict_interpolated"]).sum()),
                        "same_word": int(sum(s != v for s, v in zip(strict, both["verdict"]))),
                        "added_s": sum(c / epochs for c in added) * float(full_s.sum()),
                        "added_share": sum(c / epochs for c in added) * float(full_s.sum()) / per_seed_s})
        for row in both[both["verdict"] != both["verdict_interpolated"]].to_dict("records"):
            shown = {**row, **{c: row[f"{c}_interpolated"] for c in ("verdict", "x_vs_curve", "x_low", "x_high",
                                                                      "holm", "level", "n")}}
            changes.append({"setup": setup, "rule": name, "method": row["method"], "setting": row["setting"],
                            "n": row["n"], "lands": landing(judged, groups[row["method"], row["setting"]]),
                            "interpolated": cell(shown), "bracketed": cell(row)})
    return summary, changes


if __name__ == "__main__":
    out, pairs = sys.argv[1], sys.argv[2:]
    source = {**provenance(threads=1), "command": shlex.join(["python", *sys.argv])}  # a script, not `effray`
    summary, changes = [], []
    for pair in pairs:
        setup, path = pair.split("=", 1)
        found = compare(setup, pd.read_parquet(path))
        summary += found[0]
        changes += found[1]
    summary, changes = pd.DataFrame(summary), pd.DataFrame(changes)
    write_parquet(Path(f"{out}.parquet"), summary, source)
    write_parquet(Path(f"{out}-changes.parquet"), changes, source)
    with pd.option_context("display.width", 250, "display.max_colwidth", 60):
        print(summary.to_string(index=False))
        print(changes.to_string(index=False))
    assert not math.isnan(summary["added_s"].sum())
