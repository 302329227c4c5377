"""`effray unlearn`: outputs, one-line refusals (exit 2), and a cached run that never changes."""

from __future__ import annotations

import hashlib
import json
import os

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from raypkg.methods.deltagrad.commands import unlearn


@pytest.fixture(scope="module", autouse=True)
def no_wandb():
    """W&B off for this module only (other modules check that runs write offline W&B runs)."""
    before = os.environ.get("EFFRAY_WANDB_MODE")
    os.environ["EFFRAY_WANDB_MODE"] = "disabled"
    yield
    if before is None:
        del os.environ["EFFRAY_WANDB_MODE"]
    else:
        os.environ["EFFRAY_WANDB_MODE"] = before

TRAIN = ["train", "--dataset", "digits", "--model", "logreg", "--batch-size", "128", "--epochs", "4",
         "--lr", "0.05", "0.02", "--lrlen", "2", "2", "--wd", "1e-3", "--holdout", "0.02", "--no-progress"]


def invoke(*args):
    return CliRunner().invoke(unlearn, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    result = invoke(*TRAIN, "--out", out, "--name", "dg")
    assert result.exit_code == 0, result.output
    return out / "dg"


def snapshot(run_dir):
    """Content hash and mtime of every file of the cached trajectory."""
    files = sorted((run_dir / "trajectory").iterdir())
    return {f.name: (hashlib.sha256(f.read_bytes()).hexdigest(), f.stat().st_mtime_ns) for f in files}


def test_train_writes_a_complete_cache(run_dir):
    summary = json.loads((run_dir / "summary.json").read_text())
    header = json.loads((run_dir / "trajectory" / "header.json").read_text())
    assert summary["method"] == "deltagrad" and summary["test_acc"] > 0.5
    assert header["complete"] and header["dtype"] == "float64" and len(header["lrs"]) == header["epochs"] * \
        header["steps_per_epoch"]
    assert os.path.getsize(run_dir / "trajectory" / "w.bin") == (summary["steps"] + 1) * summary["num_params"] * 8
    assert len(pd.read_parquet(run_dir / "metrics.parquet")) == header["epochs"] + 1


def test_train_warns_when_its_test_loss_rises_and_only_then(tmp_path):
    """DeltaGrad's quasi-Newton steps cannot follow an unstable run: `unlearn train` says so."""
    base = ["train", "--dataset", "digits", "--model", "logreg", "--epochs", "2", "--no-progress", "--out", tmp_path]
    stable, unstable = (invoke(*base, "--lr", lr, "--name", f"lr{lr}") for lr in ("0.05", "5"))
    assert stable.exit_code == unstable.exit_code == 0 and stable.stderr == ""
    assert unstable.stderr.startswith("warning: the test loss rises at epoch(s) [1]: SGD is unstable")


def test_delete_and_add_print_and_save_the_comparison(run_dir):
    before = snapshot(run_dir)
    result = invoke("delete", run_dir, "--ratio", "0.01", "--init", "6", "--name", "del")
    assert result.exit_code == 0, result.output
    for key in ("time_baseline", "time_deltagrad", "speedup", "||wU - w*||", "||wI - wU||",
                "test acc baseline", "test acc deltagrad"):
        assert key in result.output
    s = json.loads((run_dir / "requests" / "del" / "summary.json").read_text())
    assert s["n_ids"] == 13 and s["dist_I_U"] < 0.1 * s["dist_U_star"]
    assert len(pd.read_parquet(run_dir / "requests" / "del" / "ids.parquet")) == 13
    result = invoke("add", run_dir, "--ratio", "0.01", "--method", "deltagrad", "--name", "add")
    assert result.exit_code == 0, result.output
    s = json.loads((run_dir / "requests" / "add" / "summary.json").read_text())
    assert s["time_baseline"] is None and s["acc_deltagrad"] is not None
    assert snapshot(run_dir) == before


def test_online_stream(run_dir):
    before = snapshot(run_dir)
    result = invoke("online", run_dir, "--requests", 3, "--samples-per-request", 2, "--init", 6,
                    "--retrain-every", 3, "--name", "stream")
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(run_dir / "online" / "stream" / "requests.parquet")
    assert table["retrained"].tolist() == [False, False, True] and (table["n_ids"] == 2).all()
    summary = json.loads((run_dir / "online" / "stream" / "summary.json").read_text())
    assert summary["dist_I_U"] == 0.0  # the last request was answered by an exact retrain
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("content, message", [
    ("5 99999", "out of range"),
    ("3 4 3", "appears more than once"),
    ("", "empty"),
    ("1.5", "integer"),
    ("ALL", "cannot delete all"),
    ("HELD", "not in this run's training set"),
])
def test_bad_ids_are_refused_and_change_nothing(run_dir, tmp_path, content, message):
    header = json.loads((run_dir / "trajectory" / "header.json").read_text())
    holdout = np.setdiff1d(np.arange(header["n"]), np.fromfile(run_dir / "trajectory" / "perm.bin",
                                                                 dtype=np.int64)[:header["n_members"]])
    if content == "ALL":
        content = " ".join(map(str, np.setdiff1d(np.arange(header["n"]), holdout)))
    elif content == "HELD":
        content = str(holdout[0])
    ids = tmp_path / "ids.txt"
    ids.write_text(content)
    before = snapshot(run_dir)
    requests_before = sorted(p.name for p in (run_dir / "requests").iterdir()) \
        if (run_dir / "requests").exists() else []
    result = CliRunner().invoke(unlearn, ["delete", str(run_dir), "--ids", str(ids)])
    assert result.exit_code == 2, result.output
    assert message in result.output and result.output.count("\n") == 1 and "Traceback" not in result.output
    assert snapshot(run_dir) == before
    after = sorted(p.name for p in (run_dir / "requests").iterdir()) if (run_dir / "requests").exists() else []
    assert after == requests_before


@pytest.mark.parametrize("args, message", [
    (["add", "{run}", "--from", "{ids}"], "already in this run's training set"),
    (["delete", "{run}", "--ratio", "1.5"], "--ratio must be in (0, 1)"),
    (["delete", "{run}", "--ratio", "0.00001"], "selects none"),
    (["delete", "{run}"], "exactly one of --ids FILE or --ratio R"),
    (["delete", "{run}", "--ratio", "0.1", "--period", "0"], "--period (T0) must be >= 1"),
    (["online", "{run}", "--requests", "1000", "--samples-per-request", "100"], "would delete"),
    (["delete", "{tmp}", "--ratio", "0.1"], "is not a DeltaGrad run"),
])
def test_bad_requests_are_refused(run_dir, tmp_path, args, message):
    (tmp_path / "ids.txt").write_text("0 1")
    args = [a.format(run=run_dir, ids=tmp_path / "ids.txt", tmp=tmp_path) for a in args]
    before = snapshot(run_dir)
    result = CliRunner().invoke(unlearn, args)
    assert result.exit_code == 2 and message in result.output, result.output
    assert snapshot(run_dir) == before


@pytest.mark.parametrize("extra, message", [
    (["--momentum", "0.9"], "momentum breaks exact replay"),
    (["--augment"], "augmentation breaks exact replay"),
    (["--model", "lenet5"], "not a fully connected ReLU network"),
    (["--holdout", "0.0001"], "holds out nothing"),
    (["--batch-size", "-1"], "batch-size must be >= 0"),
])
def test_settings_that_break_exact_replay_are_refused(tmp_path, extra, message):
    result = CliRunner().invoke(unlearn, TRAIN + ["--out", str(tmp_path), "--name", "bad"] + extra)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "bad").exists()


def test_tune_space_parses_and_one_trial_reports():
    from raypkg.recipe_registry import run_trial
    from raypkg.tune_space import read_space

    spec = read_space("tune_spaces/deltagrad.yaml")
    assert spec["metric"] == "score" and set(spec["space"]) == {"period", "init", "m"}
    reports = []
    base = {**spec["base"], "dataset": "digits", "train_size": None, "test_size": None, "batch_size": 128,
            "epochs": 4, "lrlen": [2, 2], "repeat": 1}
    trial = {**base, "period": 5, "init": 6, "m": 2}
    # score = speedup when ||wI - wU|| <= max_ratio ||wU - w*||, else 0: one trial on each side
    run_trial("deltagrad", {**trial, "max_ratio": 1.0}, reports.append)
    run_trial("deltagrad", {**trial, "max_ratio": 1e-9}, reports.append)
    within, beyond = reports
    for r in reports:
        assert r["explicit_steps"] == 6 + 8 and 1e-9 < r["dist_ratio"] < 0.2
        assert r["speedup"] == pytest.approx(r["time_baseline"] / r["time_deltagrad"])
    assert within["score"] == within["speedup"] > 0 and beyond["score"] == 0.0


def test_deltagrads_training_settings_are_the_engines_at_the_papers_defaults():
    """DeltaGradConfig is no TrainConfig (the engine's schedule, precision, workers and --with
    would be flags it cannot honour), but each setting it shares with TrainConfig is that
    setting (flag, choices, and help unless narrowed): only the defaults are DeltaGrad's."""
    import dataclasses

    from raypkg.engine.config import RunConfig, TrainConfig
    from raypkg.methods.deltagrad.config import CachedRunConfig, DeltaGradConfig, OnlineConfig

    engine = {f.name: f for f in dataclasses.fields(TrainConfig)}
    ours = {f.name: f for f in dataclasses.fields(DeltaGradConfig) if f.name in engine}
    trained = set(engine) - {f.name for f in dataclasses.fields(RunConfig)}
    assert set(ours) & trained == {"epochs", "batch_size", "lr", "lrlen", "weight_decay", "momentum", "augment"}
    for served in (CachedRunConfig, OnlineConfig):
        ours.update({f"{served.__name__}.{f.name}": f for f in dataclasses.fields(served) if f.name in engine
                     and f.metadata["cli"]})
    assert {"CachedRunConfig.use_gpu", "CachedRunConfig.wandb", "OnlineConfig.name"} <= set(ours)
    for name, f in ours.items():
        theirs = engine[name.split(".")[-1]].metadata
        assert (f.metadata["flag"], f.metadata["choices"]) == (theirs["flag"], theirs["choices"]), name
    assert ours["weight_decay"].metadata["help"] == engine["weight_decay"].metadata["help"]
    assert (DeltaGradConfig().momentum, TrainConfig().momentum) == (0.0, 0.9)  # the defaults differ
    assert not issubclass(DeltaGradConfig, TrainConfig)
