"""`effray report`: runs side by side from their summary.json files."""

from __future__ import annotations

import pandas as pd

from raypkg.tracking.run import read_summary


def report_table(run_dirs) -> pd.DataFrame:
    """One row per run: method, dataset, model, test_acc, wall_s, one column per phase,
    and speedup = wall_s of the first run / wall_s of this run."""
    rows = []
    for run_dir in run_dirs:
        s = read_summary(run_dir)
        row = {"run": s.get("run_dir", str(run_dir)).rstrip("/").split("/")[-1], "method": s["method"],
               "dataset": s["dataset"], "model": s["model"], "test_acc": s.get("test_acc"),
               "wall_s": s["wall_s"]}
        row.update({f"{k}_s": v for k, v in s.get("phases", {}).items()})
        rows.append(row)
    table = pd.DataFrame(rows)
    table["speedup"] = table["wall_s"].iloc[0] / table["wall_s"]
    return table
