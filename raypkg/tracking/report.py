"""`effray report`: runs side by side from their summary.json and metrics.parquet files.

Unfinished runs (no summary.json yet, e.g. interrupted) are skipped with a warning, and
so is a comparison across datasets or models flagged.

The table puts beside each run's wall time the seconds of its epochs (``epochs_s``, the
sum of ``epoch_s``) and the rest (``overhead_s``: loading the data, starting Ray and Ray
Train's workers, pre-training and selection, evaluation). A two-worker Ray Train run on
digits takes ~25 s of which 0.1 s are epochs: the epochs alone would hide its cost.

The plot (PNG) shows test accuracy vs epoch and vs seconds since the run started (epoch
k at the run's start-up plus the first k ``epoch_s``, ``seconds_axis``), one line per
run, and each run's phase seconds as stacked bars.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from raypkg.errors import UsageError
from raypkg.storage import basename, download, is_uri


def load_runs(run_dirs, downloads: Path | None = None) -> tuple[list[tuple[Path, dict]], list[str]]:
    """The finished runs among ``run_dirs`` as (path, summary), and one warning line per
    run skipped or difference found. A run given as a URI (``s3://bucket/runs/r``, a run
    copied to ``--storage``) is read from a copy of its summary.json and metrics.parquet
    made in ``downloads`` (a temporary directory of the caller)."""
    runs, warnings = [], []
    for i, run_dir in enumerate(run_dirs):
        path = download_run(run_dir, downloads / str(i)) if is_uri(run_dir) else Path(run_dir)
        if path is not None and path.is_file():
            stored = f" (a stored table: effray report --markdown {run_dir})" if str(run_dir).endswith(".parquet") else ""
            raise UsageError(f"{str(run_dir)!r} is a file, not a run directory{stored}")
        if path is None or not path.is_dir():
            raise UsageError(f"{str(run_dir)!r} is not a run directory (no such directory)")
        summary_file = path / "summary.json"
        if not summary_file.is_file():
            warnings.append(f"skipping {str(run_dir)!r}: unfinished run (no summary.json)")
            continue
        try:
            summary = json.loads(summary_file.read_text())
            damage = summary_damage(summary)
            if damage:
                raise ValueError(damage)
        except OSError as e:
            warnings.append(f"skipping {str(run_dir)!r}: cannot read its summary.json ({e.strerror or e})")
            continue
        except (ValueError, UnicodeDecodeError) as e:
            warnings.append(f"skipping {str(run_dir)!r}: unreadable summary.json ({str(e).splitlines()[0][:80]})")
            continue
        if (path / "metrics.parquet").is_file() and read_metrics(path) is None:
            warnings.append(f"{str(run_dir)!r}: unreadable metrics.parquet, no curves for this run")
        runs.append((path, summary))
    if not runs:
        more = f" (and {len(warnings) - 1} more)" if len(warnings) > 1 else ""
        raise UsageError(f"none of the {len(list(run_dirs))} run(s) given can be reported; {warnings[0]}{more}")
    for key in ("dataset", "model"):
        values = sorted({str(s.get(key)) for _, s in runs})
        if len(values) > 1:
            warnings.append(f"the runs differ in {key} ({', '.join(values)}): accuracies and times "
                            "are not directly comparable")
    return runs, warnings


def summary_damage(summary) -> str | None:
    """What makes a summary.json unusable for the table (a hand-edited or damaged one),
    else None: ``method`` a string, ``wall_s`` a number > 0, ``test_acc`` a number or null,
    ``phases`` a mapping of numbers."""
    def number(value) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    def shown(key: str) -> str:
        return json.dumps(summary.get(key))[:40]

    if not isinstance(summary, dict):
        return "not a JSON object"
    if not isinstance(summary.get("method"), str):
        return f"method is {shown('method')}, not a name"
    if not number(summary.get("wall_s")) or summary["wall_s"] <= 0:
        return f"wall_s is {shown('wall_s')}, not a number of seconds"
    if summary.get("test_acc") is not None and not number(summary["test_acc"]):
        return f"test_acc is {shown('test_acc')}, not a number"
    phases = summary.get("phases", {})
    if not isinstance(phases, dict) or not all(number(v) for v in phases.values()):
        return f"phases is {shown('phases')}, not seconds by phase"
    return None


def download_run(uri: str, into: Path) -> Path | None:
    """``into/<run name>`` holding the summary.json and metrics.parquet of the run directory
    at ``uri`` (those of them it has); None when ``uri`` is not a directory."""
    local = into / basename(uri)
    return local if download(uri, ["summary.json", "metrics.parquet"], local, "run") else None


def read_metrics(run_dir: Path):
    """The run's metrics.parquet as a DataFrame, or None when absent or unreadable (a
    truncated or damaged file, or one whose epoch, epoch_s or test_acc are not numbers)."""
    import pandas as pd

    try:
        metrics = pd.read_parquet(run_dir / "metrics.parquet")
    except Exception:  # pyarrow raises ArrowInvalid, OSError, ... for a damaged file
        return None
    numeric = all(pd.api.types.is_numeric_dtype(metrics[c]) for c in ("epoch", "epoch_s", "test_acc") if c in metrics)
    return metrics if numeric else None


def run_labels(runs: list[tuple[Path, dict]], width: int = 24) -> list[str]:
    """Short, unique labels: names longer than ``width`` keep their start and their end
    (where the time stamp is); full names if shortening would make two the same."""
    names = [p.resolve().name for p, _ in runs]
    half = (width - 1) // 2
    short = [n if len(n) <= width else f"{n[:half]}~{n[-(width - 1 - half):]}" for n in names]
    return short if len(set(short)) == len(set(names)) else names


def epochs_seconds(metrics) -> float | None:
    """The run's epoch seconds (``epoch_s`` summed); None without them."""
    if metrics is None or "epoch_s" not in metrics:
        return None
    return float(metrics["epoch_s"].sum())


def seconds_axis(summary: dict, metrics):
    """Seconds since the run started at the end of each epoch: its start-up, then the
    epochs' ``epoch_s`` one after another. Start-up is what the run spent outside its
    epochs (``wall_s`` minus the epochs and the final ``eval`` phase), all counted before
    the first epoch: loading, Ray and Ray Train start-up, pre-training, selection."""
    epochs = metrics["epoch_s"]
    startup = summary["wall_s"] - float(epochs.sum()) - summary.get("phases", {}).get("eval", 0.0)
    return max(startup, 0.0) + epochs.cumsum()


def report_table(runs: list[tuple[Path, dict]], target_acc: float | None = None):
    """One row per run: method, dataset, model, its precision and memory format, test_acc,
    wall_s, epochs_s (``epoch_s`` summed), overhead_s (wall_s - epochs_s), one column per
    phase, speedup = wall_s of the first run / wall_s of this run, and with a target
    (``target_acc``, else the run's own) ``tta_s``: its time-to-accuracy (NaN: not reached;
    ``raypkg.tracking.tta``)."""
    import pandas as pd

    from raypkg.tracking.tta import time_to_accuracy

    rows = []
    for path, s in runs:
        metrics = read_metrics(path)
        epochs = s.get("epochs_s", epochs_seconds(metrics))  # runs written before summaries held it: the rows
        execution = ("/".join(str(s[k]) for k in ("precision", "memory_format") if k in s)
                     + ("/compiled" if s.get("compile") == "on" else ""))
        row = {"run": path.resolve().name, "method": s["method"], "dataset": s.get("dataset"),
               "model": s.get("model"), "execution": execution or None, "test_acc": s.get("test_acc"),
               "wall_s": s["wall_s"], "epochs_s": epochs, "overhead_s": None if epochs is None else s["wall_s"] - epochs}
        target = target_acc or s.get("target_acc")
        if target is not None and metrics is not None and "started_at" in s and "epoch_end_time" in metrics:
            row["tta_s"] = time_to_accuracy(metrics.to_dict("records"), s["started_at"], target)["tta_s"]
        row.update({f"{k}_s": v for k, v in s.get("phases", {}).items()})
        rows.append(row)
    table = pd.DataFrame(rows)
    table["speedup"] = table["wall_s"].iloc[0] / table["wall_s"]
    for column in table.columns:  # a column of Nones only (no run reached its target): NaN, shown as -
        if table[column].isna().all():
            table[column] = table[column].astype(float)
    return table


def plot_report(runs: list[tuple[Path, dict]], path: str | Path) -> Path:
    """``report_figure`` as a PNG."""
    from raypkg.plots import save_png

    return save_png(report_figure(runs), path)


def report_figure(runs: list[tuple[Path, dict]]):
    """Three panels: test_acc vs epoch, test_acc vs seconds since the run started
    (``seconds_axis``), phase seconds (stacked bars)."""
    from raypkg.plots import figure

    fig, (by_epoch, by_time, phases) = figure(ncols=3, width=4.6, height=3.8)
    names = run_labels(runs)
    for (run_path, summary), label in zip(runs, names):
        m = read_metrics(run_path)
        if m is None or "test_acc" not in m or "epoch" not in m:
            continue
        by_epoch.plot(m["epoch"], m["test_acc"], marker=".", label=label)
        if "epoch_s" in m:
            by_time.plot(seconds_axis(summary, m), m["test_acc"], marker=".", label=label)
    from matplotlib.ticker import MaxNLocator

    by_epoch.xaxis.set_major_locator(MaxNLocator(integer=True))
    by_epoch.set(xlabel="epoch", ylabel="test accuracy", title="test accuracy vs epoch")
    by_time.set(xlabel="seconds since the run started (start-up, then epochs)", ylabel="test accuracy",
                title="test accuracy vs wall seconds")
    phase_names = list(dict.fromkeys(k for _, s in runs for k in s.get("phases", {})))
    bottom = [0.0] * len(runs)
    for phase in phase_names:
        values = [float(s.get("phases", {}).get(phase, 0.0)) for _, s in runs]
        phases.bar(names, values, bottom=bottom, label=phase)
        bottom = [b + v for b, v in zip(bottom, values)]
    phases.set(ylabel="seconds", title="time per phase")
    phases.tick_params(axis="x", labelrotation=30, labelsize=7)
    for ax in (by_epoch, by_time, phases):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    return fig
