"""Seeds until decided, simulated (issue 82, part 3): the family-wise error of the whole rule
(looks at 1 - 5% / looks, Holm over the table, a cell stopped when settled or futile:
``raypkg.bench.frontier.until_decided``) and its marks against fixed seeds. Nothing is trained.

    python docs/results/seeds-until-decided/simulate.py OUT.parquet [ROWS.parquet]

Null: frontiers of 33 (and 3) cells whose seeds' log ratios are drawn from N(0, 0.3), 3 to 7
seeds (the preset's), by the rule (``table``), without futility (``settled``) and the rule before
(``word``): how many frontiers print a false faster or slower without ``?`` (``fwer``), and the
most any cell says a false word, ``?`` or not (``cell_word``). Same cells: each of the 33
cells of the stored 5-seed fashion-mnist:mlp frontier (ROWS, default its rows timed alone)
drawn at its own mean and spread, per frontier the cells ``shown`` (faster or slower, kept),
``doubted`` (with ``?``), ``equivalent``, ``inconclusive``, the point runs of the cells
(``points``), the seeds run and ``est_s``: those runs priced at each cell's mean wall seconds
in ROWS and the curve's seconds a seed (``priced``: an estimate at one clock, not a
measurement); ``est_e2e_s`` priced at e2e_s + epoch_eval_s instead. Checked on other data: the
judged cells of the stored LeNet-5 and ResNet-20 (2k) frontiers (3 seeds each, packed: priced at
e2e_s + epoch_eval_s only).
"""

from __future__ import annotations

import shlex
import sys

import numpy as np
import pandas as pd

from raypkg.bench.frontier.until_decided import marks, priced, simulate
from raypkg.tracking.provenance import provenance
from raypkg.tracking.run import write_parquet

ROWS = "docs/results/frontier-fashion-mnist-mlp-alone.parquet"
# the other stored Fashion-MNIST frontiers (3 seeds, packed: their cells priced at e2e_s + epoch_eval_s only)
OTHERS = {"fashion-mnist:lenet5": "docs/results/frontier-fashion-mnist-lenet5.parquet",
          "fashion-mnist:resnet20 2k": "docs/results/frontier-fashion-mnist-resnet20-2k.parquet"}
MLP_RUNS = {"5 fixed": (5, 5, "fixed"), "3 fixed": (3, 3, "fixed"), "3 to 8, word": (3, 8, "word"),
            **{f"3 to {k}, {rule}": (3, k, rule) for rule in ("settled", "table") for k in (5, 6, 7, 8)}}
OTHER_RUNS = {"5 fixed": (5, 5, "fixed"), "3 to 5, table": (3, 5, "table"), "3 to 7, settled": (3, 7, "settled"),
              "3 to 7, table": (3, 7, "table"), "3 to 8, table": (3, 8, "table")}


def stored_cells(path: str):
    """A stored frontier's judged cells (those with 2 seeds or more): each cell's mean and
    spread of log x_vs_curve, and (cells' seconds a seed, the curve's) at the point runs' wall
    seconds (started to ended; None where the rows lack them) and at their e2e_s +
    epoch_eval_s (what a run costs with its per-epoch evaluation)."""
    rows = pd.read_parquet(path)
    cells = rows[rows["x_vs_curve"].notna()]
    by_cell = [cells["method"], cells["setting"]]
    logs = np.log(cells["x_vs_curve"]).groupby(by_cell, sort=False)
    mu, sd = logs.mean().to_numpy(), logs.std().to_numpy()
    judged = np.isfinite(sd)

    def seconds(column):
        return (column[cells.index].groupby(by_cell, sort=False).mean().to_numpy()[judged],
                column[rows["x_vs_curve"].isna()].groupby(rows["seed"]).sum().mean())

    wall = seconds(rows["ended_at"] - rows["started_at"]) if "ended_at" in rows else None
    return mu[judged], sd[judged], wall, seconds(rows["e2e_s"] + rows["epoch_eval_s"])


def main(out: str, path: str = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    lines = []
    for cells, frontiers in ((33, 4000), (3, 20000)):
        for rule in ("table", "settled", "word"):
            run = simulate(0.3 * rng.standard_normal((frontiers, cells, 7)), 3, 7, rule)
            directed = (run["word"] == 1) | (run["word"] == 2)
            lines.append({"cells": f"null x {cells}", "run": f"3 to 7, {rule}", "frontiers": frontiers,
                          "fwer": (directed & run["kept"]).any(axis=1).mean(), "cell_word": directed.mean(axis=0).max()})
    for name, stored, cells_runs in (("fashion-mnist:mlp", path, MLP_RUNS),
                                     *((name, other, OTHER_RUNS) for name, other in OTHERS.items())):
        mu, sd, wall, e2e = stored_cells(stored)
        draws = mu[None, :, None] + sd[None, :, None] * rng.standard_normal((4000, len(mu), 8))
        for run, args in cells_runs.items():
            result = simulate(draws, *args)
            lines.append({"cells": f"{name} x {len(mu)}", "run": run, "frontiers": len(draws),
                          **{k: v.mean() for k, v in marks(result).items()},
                          "est_s": priced(result, *wall).mean() if wall else np.nan,
                          "est_e2e_s": priced(result, *e2e).mean()})
    table = pd.DataFrame(lines)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    write_parquet(out, table, {**provenance(threads=1), "command": shlex.join(["python", *sys.argv])})  # a script
    return table


if __name__ == "__main__":
    main(*sys.argv[1:])
