"""Packed throughput of K `effray train` processes on one GPU (packed.sh runs them).

    python packed.py collect RUNS CSV        # on the GPU machine: every run's epochs, one CSV
    python packed.py store STEM CSV... --commit C --device D --torch T --command CMD
                                             # here: STEM.parquet (with provenance) and STEM.png

Each CSV is one device call's (``-mps`` in its name: run under CUDA's Multi-Process Service). A
group is K processes started together (same compile setting). A process's steady epoch is
the median of its epochs after the first (the first holds compiling and cuDNN's warm-up). The
group's throughput is the sum over its processes of images per steady epoch second;
``x_vs_one`` divides it by the K=1 group's of the same call and compile setting, and
``x_vs_compiled_one`` by the call's compiled K=1 group's, the fastest single point. ``overlap`` is the
share of the group's steady span during which all K processes were in their steady epochs
(1: every steady epoch ran beside all the others, so the sum is a packed figure, not K
isolated ones). ``wall_images_per_s`` counts every epoch of the group over the wall time from
the first epoch's start to the last epoch's end (evaluations between epochs included).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd

COLUMNS = ["compile", "k", "process", "epoch", "epoch_s", "epoch_end_time", "eval_s", "test_acc"]


def collect(runs: Path, csv: Path) -> None:
    rows = []
    for run in sorted(p for p in runs.iterdir() if (p / "summary.json").exists()):
        compile_, k, process = run.name.split("-")  # cON-k4-p0
        summary = json.loads((run / "summary.json").read_text())
        metrics = pd.read_parquet(run / "metrics.parquet")
        for row in metrics.to_dict("records"):
            rows.append({"compile": summary["compile"], "k": int(k[1:]), "process": int(process[1:]),
                         "epoch": row["epoch"], "epoch_s": row["epoch_s"], "epoch_end_time": row["epoch_end_time"],
                         "eval_s": row["eval_s"], "test_acc": row["test_acc"]})
    pd.DataFrame(rows, columns=COLUMNS).to_csv(csv, index=False)
    print(f"collected {len(rows)} epochs of {len({(r['compile'], r['k'], r['process']) for r in rows})} runs -> {csv}")


def group_row(group: pd.DataFrame, images: int) -> dict:
    starts = group["epoch_end_time"] - group["epoch_s"]
    steady = group[group["epoch"] > 1]
    per_process = steady.groupby("process")["epoch_s"].median()
    steady_start = (steady["epoch_end_time"] - steady["epoch_s"]).groupby(steady["process"])
    first, last = steady_start.min(), steady.groupby("process")["epoch_end_time"].max()
    together = max(0.0, last.min() - first.max())
    final = group[group["epoch"] == group["epoch"].max()]
    return {"processes": len(per_process), "steady_epoch_s": per_process.median(),
            "steady_epoch_s_max": per_process.max(), "images_per_s": (images / per_process).sum(),
            "overlap": together / (last.max() - first.min()),
            "wall_images_per_s": images * len(group) / (group["epoch_end_time"].max() - starts.min()),
            "test_acc": final["test_acc"].mean(), "test_acc_min": final["test_acc"].min()}


def call_table(csv: Path, images: int) -> pd.DataFrame:
    """One device call's groups, their ratios against the call's own single processes."""
    epochs = pd.read_csv(csv)
    table = pd.DataFrame([{"mps": "-mps" in csv.name, "compile": c, "k": k, **group_row(g, images)}
                          for (c, k), g in epochs.groupby(["compile", "k"], sort=False)])
    one = table[table["k"] == 1].set_index("compile")["images_per_s"]
    table["x_vs_one"] = table["images_per_s"] / table["compile"].map(one)
    table["x_vs_compiled_one"] = table["images_per_s"] / one["on"]
    return table


def store(stem: Path, csvs: list[Path], commit: str, device: str, torch_version: str, command: str,
          images: int = 59904) -> pd.DataFrame:
    """The groups of every call's CSV as STEM.parquet, with the provenance of the device
    calls (``commit``: the clean commit each ran; ``torch_version``: the GPU machine's), and
    their throughput against one compiled process as STEM.png."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raypkg.plots import figure, save_png
    from raypkg.tracking.provenance import KEY

    table = pd.concat([call_table(csv, images) for csv in csvs], ignore_index=True)
    table = table.sort_values(["mps", "compile", "k"], ascending=[True, False, True], ignore_index=True)
    source = {"date": pd.Timestamp.now().date().isoformat(), "commit": commit, "command": command,
              "cpu": "the GPU machine's 16 cores", "cpu_flags": "-", "torch": torch_version, "threads": "1",
              "device": device}
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    pq.write_table(arrow.replace_schema_metadata({**(arrow.schema.metadata or {}), KEY: json.dumps(source)}),
                   stem.with_suffix(".parquet"))
    fig, (ax,) = figure(width=5.5, height=3.6)
    for (mps, compile_), rows in table.groupby(["mps", "compile"], sort=False):
        ax.plot(rows["k"], rows["x_vs_compiled_one"], marker="o",
                label=f"compile {compile_}" + (", MPS" if mps else ""))
    ax.set_xscale("log", base=2)
    ax.set_xlabel("processes on the GPU (K)")
    ax.set_ylabel("throughput vs one compiled process")
    ax.set_title(f"ResNet-20, batch 128, fp32: {device}", fontsize=9)
    ax.legend()
    save_png(fig, stem.with_suffix(".png"))
    print(table.to_string(index=False))
    return table


if __name__ == "__main__":
    verb, *args = sys.argv[1:]
    if verb == "collect":
        collect(Path(args[0]), Path(args[1]))
    else:
        csvs = [Path(a) for a in args[1:] if a.endswith(".csv")]
        options = dict(zip(args[1 + len(csvs)::2], args[2 + len(csvs)::2]))
        store(Path(args[0]), csvs, options["--commit"], options["--device"], options["--torch"], options["--command"])
