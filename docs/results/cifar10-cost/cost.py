"""What one seed of each paper's comparison, and of the whole frontier, costs on this machine
(issue 80): the stored point runs of a rendered ``cifar10:resnet20-cpu`` frontier, summed per
comparison. Nothing is trained.

    python docs/results/cifar10-cost/cost.py ROWS.parquet SUMMARY.parquet OUT.parquet [SEED]

ROWS and SUMMARY are the frontier's rows and summary (``effray bench frontier --setup
cifar10:resnet20-cpu --render ...``, every family, so that the summary plans every cell). Per
comparison of seed SEED (default 0): the points it needs (``planned``), those stored
(``stored``) and the seconds of those: ``e2e_s`` (the methods' own: selection, pre-training and
training), ``wall_s`` (each point run from start to end, its per-epoch test evaluation and
start-up included) and how they were timed (``timed``: ``packed`` beside other points, or
``alone``; ``beside``: how many other points ran beside each on average). A comparison whose
points are not all stored is a lower bound of its cost: ``complete`` (yes or no) says which.
"""

from __future__ import annotations

import shlex
import sys

import pandas as pd

from raypkg.tracking.provenance import provenance, read_provenance
from raypkg.tracking.run import write_parquet

SUBSETS = ("f=0.1", "f=0.3")
# each paper's comparison: method -> its settings (None: every setting the frontier has)
COMPARISONS = {
    "CREST against RS2 at the same steps, and full training": {"crest": SUBSETS, "rs2": SUBSETS, "full": ("b=1",)},
    "LiPT against GraNd's and Glister's warm-ups, and uniform": {
        method: SUBSETS for method in ("lipt-grand", "lipt-glister", "grand", "glister", "uniform")},
    "RigL-ITOP with and without AGC, and full training": {"rigl-itop": ("d=0.05",), "a-rigl-itop": ("d=0.05",),
                                                          "full": ("b=1",)},
    "the budget curve (full training at every budget, fp32 and auto)": {"full": None, "full-fp32": None},
    "the speed-up methods (label smoothing, EMA, selective backprop, layer freezing, progressive resizing, proxy "
    "selection)": {method: None for method in ("label-smoothing", "ema", "selective-backprop", "layer-freezing",
                                                "progressive-resizing", "proxy-selection")},
    "the whole frontier": None,
}


def picked(frame: pd.DataFrame, wanted: dict | None) -> pd.Series:
    """The rows of ``frame`` (method, setting) that a comparison takes."""
    if wanted is None:
        return pd.Series(True, index=frame.index)
    return pd.concat([frame["method"].eq(method) & (frame["setting"].isin(settings) if settings else True)
                      for method, settings in wanted.items()], axis=1).any(axis=1)


def main(rows_path: str, summary_path: str, out: str, seed: str = "0") -> pd.DataFrame:
    rows, summary = pd.read_parquet(rows_path), pd.read_parquet(summary_path)
    rows = rows[rows["seed"] == int(seed)]
    lines = []
    for name, wanted in COMPARISONS.items():
        planned, stored = summary[picked(summary, wanted)], rows[picked(rows, wanted)]
        lines.append({"comparison": name, "planned": len(planned), "stored": len(stored),
                      "complete": "yes" if len(stored) == len(planned) else "no", "e2e_s": stored["e2e_s"].sum(),
                      "wall_s": (stored["ended_at"] - stored["started_at"]).sum(),
                      "timed": ", ".join(sorted(set(stored["timed"]))) or "-", "beside": stored["beside"].mean()})
    table = pd.DataFrame(lines)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    source = read_provenance(rows_path)  # the rows' render, and (a stored store's) the code and hosts that ran its points
    ran = (f"; its points run at {source['point_commits']}" if source.get("point_commits") else "") + (
        f", timed on {source['point_machines']}" if source.get("point_machines") else "")
    write_parquet(out, table, {**provenance(threads=int(source.get("threads", 1))),
                               "command": shlex.join(["python", *sys.argv]) + f"; its rows: {source['command']} "
                               f"(at {source['commit']}, {source['cpu']}, CPU flags {source['cpu_flags']}{ran})"})
    return table


if __name__ == "__main__":
    main(*sys.argv[1:])
