"""`effray report` shows where a run's wall time went: its epochs and everything else
(start-up, pre-training, evaluation), in the table and on the plot's seconds axis."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from helpers import assert_png

from raypkg.tracking.report import plot_report, report_figure, report_table, seconds_axis


def write_run(path, wall_s, epoch_s, phases):
    """A finished run directory as RunDir leaves it (summary.json, metrics.parquet)."""
    path.mkdir(parents=True)
    summary = {"method": "train", "dataset": "digits", "model": "mlp", "test_acc": 0.9, "wall_s": wall_s,
               "phases": phases}
    (path / "summary.json").write_text(json.dumps(summary))
    pd.DataFrame({"epoch": range(1, len(epoch_s) + 1), "epoch_s": epoch_s,
                  "test_acc": [0.5 + 0.1 * i for i in range(len(epoch_s))]}).to_parquet(path / "metrics.parquet")
    return path, summary


def test_a_ray_train_run_shows_its_start_up_beside_its_epoch_seconds(tmp_path):
    # `effray train --workers 2 --epochs 3` on digits: 27.7 s wall, 0.1 s of epochs
    ray_run = write_run(tmp_path / "ray", 27.7, [0.04, 0.03, 0.03], {"train": 27.5, "eval": 0.1})
    local = write_run(tmp_path / "local", 2.0, [0.5, 0.5, 0.5], {"train": 1.9, "eval": 0.1})
    table = report_table([ray_run, local]).set_index("run")
    assert list(table.columns[:8]) == ["method", "dataset", "model", "execution", "test_acc", "wall_s", "epochs_s", "overhead_s"]
    assert table.loc["ray", "epochs_s"] == pytest.approx(0.1)
    assert table.loc["ray", "overhead_s"] == pytest.approx(27.6)
    assert table.loc["local", "overhead_s"] == pytest.approx(0.5)
    assert table.loc["local", "speedup"] == pytest.approx(27.7 / 2.0)


def test_the_seconds_axis_starts_after_the_start_up_and_ends_near_the_wall_time(tmp_path):
    path, summary = write_run(tmp_path / "ray", 27.7, [0.04, 0.03, 0.03], {"train": 27.5, "eval": 0.1})
    seconds = list(seconds_axis(summary, pd.read_parquet(path / "metrics.parquet")))
    # start-up = 27.7 wall - 0.1 epochs - 0.1 eval = 27.5 s, then the epochs one after another
    assert seconds == pytest.approx([27.54, 27.57, 27.6])
    assert seconds[-1] == pytest.approx(summary["wall_s"] - summary["phases"]["eval"])


def test_the_plot_draws_the_curves_on_the_seconds_axis(tmp_path):
    runs = [write_run(tmp_path / "ray", 27.7, [0.04, 0.03, 0.03], {"train": 27.5, "eval": 0.1}),
            write_run(tmp_path / "local", 2.0, [0.5, 0.5, 0.5], {"train": 1.9, "eval": 0.1})]
    by_time = report_figure(runs).axes[1]
    assert [list(line.get_xdata()) for line in by_time.get_lines()] == [pytest.approx([27.54, 27.57, 27.6]),
                                                                       pytest.approx([0.9, 1.4, 1.9])]
    assert by_time.get_xlabel() == "seconds since the run started (start-up, then epochs)"
    assert_png(plot_report(runs, tmp_path / "report.png"))
