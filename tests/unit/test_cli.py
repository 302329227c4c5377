"""The `effray` command line: runs, run directories, report, and bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner

from raypkg.cli import main
from raypkg.engine.loop import CLOCK_COLUMNS


def run_cli(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_train_writes_a_complete_run_directory_and_config_repeats_it(tmp_path):
    out = tmp_path / "runs"
    common = ["--dataset", "digits", "--model", "logreg", "--epochs", "3", "--out", str(out),
              "--wandb", "offline", "--no-progress"]
    result = run_cli("train", *common, "--name", "a")
    assert result.exit_code == 0, result.output
    run = out / "a"
    summary = json.loads((run / "summary.json").read_text())
    assert {"method", "dataset", "model", "test_acc", "wall_s", "phases"} <= set(summary)
    assert summary["method"] == "train" and "train" in summary["phases"]
    metrics = pd.read_parquet(run / "metrics.parquet")
    assert list(metrics["epoch"]) == [1, 2, 3]
    assert summary["test_acc"] == metrics["test_acc"].iloc[-1] > 0.5  # the last epoch's; chance is 0.1
    assert (run / "model.pt").is_file()
    assert list((run / "wandb").glob("offline-run-*")), "W&B offline run missing"
    # the saved config repeats the run exactly
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["name"] = "b"
    (tmp_path / "again.yaml").write_text(yaml.safe_dump(config))
    assert run_cli("train", "--config", str(tmp_path / "again.yaml")).exit_code == 0
    again = pd.read_parquet(out / "b" / "metrics.parquet")
    pd.testing.assert_frame_equal(metrics.drop(columns=list(CLOCK_COLUMNS)), again.drop(columns=list(CLOCK_COLUMNS)))

    table = run_cli("report", str(run), str(out / "b"))
    assert table.exit_code == 0 and "speedup" in table.output and "train_s" in table.output


def test_piecewise_lr_flags_in_deltagrad_readme_form(tmp_path):
    result = run_cli("train", "--model", "logreg", "--epochs", "2", "--lr", "0.1", "0.05", "--lrlen", "1", "1",
                     "--out", str(tmp_path), "--name", "p", "--wandb", "disabled", "--no-progress")
    assert result.exit_code == 0, result.output
    assert list(pd.read_parquet(tmp_path / "p" / "metrics.parquet")["lr"]) == [0.1, 0.05]


def test_unknown_config_key_and_missing_cifar_files(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("epochs: 2\nlearning_rate: 0.1\n")
    result = CliRunner().invoke(main, ["train", "--config", str(bad), "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "learning_rate" in result.output
    empty = tmp_path / "data"
    empty.mkdir()
    result = CliRunner().invoke(main, ["train", "--dataset", "cifar10", "--data-dir", str(empty),
                                       "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "--download" in result.output
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_real_process_prints_one_line_and_exits_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "raypkg.cli", "train", "--model", "nope", "--out", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: unknown model 'nope'")
    assert "Traceback" not in proc.stderr


def test_registries_are_listed_one_name_a_line():
    from raypkg.data.registry import DATASETS
    from raypkg.models.registry import MODELS

    datasets = [line.split()[0] for line in run_cli("datasets").output.splitlines()]
    assert sorted(datasets) == sorted(DATASETS) and {"digits", "digits-aug", "synthetic", "mnist", "cifar10",
                                                     "cifar100", "imagefolder"} <= set(datasets)
    models = [line.split()[0] for line in run_cli("models").output.splitlines()]
    assert sorted(models) == sorted(MODELS) and {"logreg", "mlp", "lenet5", "lenet300-100", "resnet20", "resnet32",
                                                 "resnet56", "resnet18", "resnet34", "wrn-16-8", "wrn-22-8",
                                                 "wrn-28-2", "vgg-c", "resnet50"} <= set(models)


def test_a_leading_tilde_is_expanded_in_flags_and_config_files(tmp_path, monkeypatch):
    """``--out=~/runs`` (no shell expands it) and ``out: ~/runs`` in a config file both
    mean HOME/runs, as does ``--config=~/c.yaml``."""
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "c.yaml").write_text("out: ~/from-config\nmodel: logreg\nepochs: 1\nwandb: disabled\n")
    for args, where in ((["--out=~/runs", "--model", "logreg", "--epochs", "1", "--wandb", "disabled"], "runs"),
                        (["--config=~/c.yaml"], "from-config")):
        result = CliRunner().invoke(main, ["train", "--no-progress", "--name", "t", *args])
        assert result.exit_code == 0, result.output
        assert (tmp_path / where / "t" / "summary.json").is_file()
    assert not (tmp_path / "~").exists()
