"""`effray report` skips unfinished runs, warns on mismatches and writes a PNG; benchmarks
write their table as Parquet and a PNG beside it."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from click.testing import CliRunner
from helpers import assert_png

from raypkg.bench.harness import BenchRunner
from raypkg.cli import main
from raypkg.plots import hbar


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("report") / "runs"
    for name, model in (("a", "logreg"), ("b", "mlp")):
        result = CliRunner().invoke(main, ["train", "--model", model, "--epochs", "2", "--out", str(out),
                                           "--name", name, "--wandb", "disabled", "--no-progress"])
        assert result.exit_code == 0, result.output
    (out / "interrupted").mkdir()
    (out / "interrupted" / "config.yaml").write_text("epochs: 30\n")
    return out


def test_report_skips_unfinished_warns_and_plots(runs, tmp_path):
    plot, table = tmp_path / "cmp.png", tmp_path / "cmp.parquet"
    result = CliRunner().invoke(main, ["report", str(runs / "a"), str(runs / "interrupted"), str(runs / "b"),
                                       "--plot", str(plot), "--save", str(table)])
    assert result.exit_code == 0, result.output
    warnings = result.stderr.splitlines()
    assert any("skipping" in w and "interrupted" in w for w in warnings), warnings
    assert any("differ in model (logreg, mlp)" in w for w in warnings), warnings
    assert not any("differ in dataset" in w for w in warnings)
    frame = pd.read_parquet(table).set_index("run")
    assert list(frame.index) == ["a", "b"]
    a, b = (json.loads((runs / name / "summary.json").read_text()) for name in ("a", "b"))
    assert list(frame["wall_s"]) == [a["wall_s"], b["wall_s"]]
    assert list(frame["speedup"]) == [1.0, a["wall_s"] / b["wall_s"]]  # wall_s of the first run / this run's
    assert list(frame["train_s"]) == [a["phases"]["train"], b["phases"]["train"]]
    assert list(frame["test_acc"]) == [a["test_acc"], b["test_acc"]]
    assert_png(plot, min_width=900)


def test_a_truncated_metrics_file_is_one_warning_and_the_report_still_plots(runs, tmp_path):
    import shutil

    damaged = tmp_path / "damaged"
    shutil.copytree(runs / "a", damaged)
    data = (damaged / "metrics.parquet").read_bytes()
    (damaged / "metrics.parquet").write_bytes(data[:len(data) // 2])
    result = CliRunner().invoke(main, ["report", str(damaged), str(runs / "b"), "--plot", str(tmp_path / "r.png")])
    assert result.exit_code == 0, result.output
    assert result.stderr.splitlines()[0] == f"warning: {str(damaged)!r}: unreadable metrics.parquet, no curves for " \
                                            "this run"
    assert_png(tmp_path / "r.png", min_width=900)


def test_run_labels_stay_unique_when_long_names_share_a_start(tmp_path):
    from pathlib import Path

    from raypkg.tracking.report import run_labels

    same_day = [Path(f"coreset-grand-digits-resnet20-20261123-1346{s}") for s in ("47-649943", "58-100200")]
    labels = run_labels([(p, {}) for p in same_day])
    assert len(set(labels)) == 2 and all(len(label) == 24 for label in labels)
    assert labels[0].startswith("coreset-gra") and labels[0].endswith("34647-649943")
    assert run_labels([(Path("a"), {}), (Path("b"), {})]) == ["a", "b"]


def test_report_default_plot_lands_beside_the_runs(runs):
    result = CliRunner().invoke(main, ["report", str(runs / "a")])
    assert result.exit_code == 0 and result.stderr == "", result.output
    assert_png(runs / "report.png")


def test_a_bench_table_is_written_as_parquet_and_png(tmp_path):
    frame = pd.DataFrame({"method": ["uniform", "grand"], "in-process_s": [0.5, 2.0], "2 actors_s": [0.4, 1.1]})
    written = BenchRunner("selection", str(tmp_path / "selection-test")).finish(
        frame, list(frame.columns), title="t",
        plot=lambda f, ax: hbar(f, ax, "method", ["in-process_s", "2 actors_s"], "seconds"))
    assert [p.name for p in written] == ["selection-test.parquet", "selection-test.png"]
    pd.testing.assert_frame_equal(pd.read_parquet(written[0]), frame)
    assert_png(written[1])


def test_bench_deltagrad_writes_its_table_and_plot(tmp_path):
    stem = tmp_path / "dg"
    result = CliRunner().invoke(main, ["bench", "deltagrad", "--train-size", "600", "--test-size", "200",
                                       "--batch-size", "128", "--epochs", "2", "--lr", "0.1", "--lrlen", "2",
                                       "--ratios", "0.01", "--add-ratio", "0", "--gd-epochs", "0", "--no-mlp",
                                       "--online-requests", "0", "--repeat", "1", "--save", str(stem)])
    assert result.exit_code == 0, result.output
    frame = pd.read_parquet(tmp_path / "dg.parquet")
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["time_baseline"] > 0 and row["time_deltagrad"] > 0
    assert row["speedup"] == row["time_baseline"] / row["time_deltagrad"]  # retraining s / DeltaGrad s
    assert_png(tmp_path / "dg.png")


def test_bench_deltagrad_removes_its_cached_runs_however_it_ends(tmp_path, monkeypatch):
    import tempfile

    import raypkg.bench.deltagrad as bench

    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    args = ["bench", "deltagrad", "--train-size", "600", "--test-size", "200", "--batch-size", "128", "--epochs",
            "2", "--lr", "0.1", "--lrlen", "2", "--ratios", "0.01", "--add-ratio", "0", "--gd-epochs", "0",
            "--no-mlp", "--online-requests", "0", "--repeat", "1", "--wandb", "disabled",
            "--save", str(tmp_path / "dg")]
    monkeypatch.setattr(bench, "measure_request", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("measure failed")))
    failed = CliRunner().invoke(main, args)  # after the first cached run was trained
    assert isinstance(failed.exception, RuntimeError) and "trained logreg-sgd" in failed.output
    assert list(scratch.iterdir()) == []
