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
(``points``), the seeds run and ``est_s``: those runs priced at each cell's mean seconds in
ROWS and the curve's seconds a seed (``priced``: an estimate at one clock, not a measurement).
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


def main(out: str, path: str = ROWS) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    lines = []
    for cells, frontiers in ((33, 4000), (3, 20000)):
        for rule in ("table", "settled", "word"):
            run = simulate(0.3 * rng.standard_normal((frontiers, cells, 7)), 3, 7, rule)
            directed = (run["word"] == 1) | (run["word"] == 2)
            lines.append({"cells": f"null x {cells}", "run": f"3 to 7, {rule}", "frontiers": frontiers,
                          "fwer": (directed & run["kept"]).any(axis=1).mean(), "cell_word": directed.mean(axis=0).max()})
    rows = pd.read_parquet(path)
    rows["wall_s"] = rows["ended_at"] - rows["started_at"]
    cells = rows[rows["x_vs_curve"].notna()]
    logs = np.log(cells["x_vs_curve"]).groupby([cells["method"], cells["setting"]], sort=False)
    mu, sd = logs.mean().to_numpy(), logs.std().to_numpy()
    seconds = cells.groupby(["method", "setting"], sort=False)["wall_s"].mean().to_numpy()
    curve = rows[rows["x_vs_curve"].isna()].groupby("seed")["wall_s"].sum().mean()
    draws = mu[None, :, None] + sd[None, :, None] * rng.standard_normal((4000, len(mu), 8))
    runs = {"5 fixed": (5, 5, "fixed"), "3 fixed": (3, 3, "fixed"), "3 to 8, word": (3, 8, "word")}
    runs.update({f"3 to {k}, {rule}": (3, k, rule) for rule in ("settled", "table") for k in (6, 7, 8)})
    for name, args in runs.items():
        result = simulate(draws, *args)
        lines.append({"cells": f"fashion-mnist:mlp x {len(mu)}", "run": name, "frontiers": len(draws),
                      **{k: v.mean() for k, v in marks(result).items()},
                      "est_s": priced(result, seconds, curve).mean()})
    table = pd.DataFrame(lines)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    write_parquet(out, table, {**provenance(threads=1), "command": shlex.join(["python", *sys.argv])})  # a script
    return table


if __name__ == "__main__":
    main(*sys.argv[1:])
