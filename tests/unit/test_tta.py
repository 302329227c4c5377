"""Time-to-accuracy (``raypkg.tracking.tta``): the first epoch at or above the target, timed
from the run's start with the evaluations before it taken out; in summary.json and in
`effray report`."""

from __future__ import annotations

import json

import pandas as pd
from click.testing import CliRunner

from raypkg.cli import main
from raypkg.tracking.tta import time_to_accuracy

ROWS = [{"epoch": 1, "test_acc": 0.50, "epoch_end_time": 105.0, "eval_s": 1.0},
        {"epoch": 2, "test_acc": 0.80, "epoch_end_time": 110.0, "eval_s": 2.0},
        {"epoch": 3, "test_acc": 0.90, "epoch_end_time": 116.0, "eval_s": 4.0}]


def test_the_first_epoch_at_the_target_counts_from_the_start_less_the_evaluations_before_it():
    assert time_to_accuracy(ROWS, 100.0, 0.8) == {"tta_s": 10.0 - 1.0, "tta_epoch": 2, "tta_eval_s": 1.0}
    assert time_to_accuracy(ROWS, 100.0, 0.5)["tta_s"] == 5.0  # reached at the first epoch: nothing taken out
    assert time_to_accuracy(ROWS, 100.0, 0.85) == {"tta_s": 16.0 - 3.0, "tta_epoch": 3, "tta_eval_s": 3.0}


def test_a_target_never_reached_says_so():
    assert time_to_accuracy(ROWS, 100.0, 0.95) == {"tta_s": None, "tta_epoch": None, "tta_eval_s": 7.0}


def test_a_run_with_a_target_writes_its_tta_and_report_computes_it_for_any_target(tmp_path):
    args = ["train", "--epochs", "3", "--out", str(tmp_path), "--wandb", "disabled", "--no-progress"]
    result = CliRunner().invoke(main, [*args, "--target-acc", "0.5", "--name", "a"])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    rows = pd.read_parquet(tmp_path / "a" / "metrics.parquet").to_dict("records")
    expected = time_to_accuracy(rows, summary["started_at"], 0.5)
    assert summary["target_acc"] == 0.5 and summary["tta_s"] == expected["tta_s"] is not None
    assert 0 < summary["tta_s"] <= summary["wall_s"] and summary["tta_epoch"] == expected["tta_epoch"]
    report = CliRunner().invoke(main, ["report", str(tmp_path / "a"), "--target-acc", "0.99", "--no-plot",
                                       "--save", str(tmp_path / "r.csv")])
    assert report.exit_code == 0, report.output
    table = pd.read_csv(tmp_path / "r.csv")
    # the execution --precision auto chose (measured: fp32 or bf16 on a CPU with avx512_bf16), as the run wrote it
    assert table["tta_s"].isna().all() and table["execution"].tolist() == [f"{summary['precision']}/contiguous"]
