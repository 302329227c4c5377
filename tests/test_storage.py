"""--storage (issue #20): Ray Train checkpoints and a copy of the finished run directory
in a shared place (a path or a URI); a cluster of several nodes refuses to run without it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml
from click.testing import CliRunner
from conftest import bare_env

from raypkg.cli import main
from raypkg.errors import UsageError
from raypkg.tracking.run import RunDir


def same_run_files(local: Path, copy: Path) -> dict:
    """The copy's summary.json and metrics.parquet equal the local run directory's; returns the summary."""
    summary = json.loads((local / "summary.json").read_text())
    assert json.loads((copy / "summary.json").read_text()) == summary
    pd.testing.assert_frame_equal(pd.read_parquet(copy / "metrics.parquet"), pd.read_parquet(local / "metrics.parquet"))
    return summary


def test_ray_train_checkpoints_and_the_run_directory_go_to_a_file_uri(tmp_path):
    """One real Ray Train run (1 worker, 2 epochs) with a file:// storage and --keep-checkpoints."""
    store = tmp_path / "store"
    uri = f"file://{store}"
    proc = subprocess.run([sys.executable, "-m", "raypkg.cli", "train", "--model", "logreg", "--epochs", "2",
                           "--workers", "1", "--no-progress", "--wandb", "disabled", "--out", str(tmp_path / "runs"),
                           "--name", "r", "--storage", uri, "--keep-checkpoints"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300, env=bare_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    assert lines[-2:] == [f"copied to storage: {uri}/r", f"run directory: {tmp_path / 'runs' / 'r'}"]
    local, copy = tmp_path / "runs" / "r", store / "r"
    summary = same_run_files(local, copy)
    assert summary["storage"] == f"{uri}/r" and summary["epochs"] == 2
    assert yaml.safe_load((copy / "config.yaml").read_text())["storage"] == uri
    checkpoints = sorted((copy / "ray").glob("ray_train-*/checkpoint_*/state.pt"))
    assert len(checkpoints) == 2, sorted(p.relative_to(store) for p in store.rglob("*"))
    assert not (local / "ray").exists()  # with --storage nothing is checkpointed locally


@pytest.mark.parametrize("keep", [False, True])
def test_a_finished_run_removes_its_checkpoints_in_storage_unless_kept(tmp_path, keep):
    store = tmp_path / "store"
    with RunDir.create(tmp_path / "runs", "train", {}, "digits", "mlp", name="r", wandb_mode="disabled",
                       storage=str(store), keep_checkpoints=keep) as run:
        assert run.storage == str(store / "r" / "ray")
        Path(run.storage, "ray_train-1").mkdir(parents=True)  # as Ray Train writes them
        Path(run.storage, "ray_train-1", "state.pt").write_bytes(b"state")
        run.log_metrics({"epoch": 1, "train_loss": 0.5})
        run.finish(test_acc=0.9)
    assert same_run_files(tmp_path / "runs" / "r", store / "r")["storage"] == str(store / "r")
    assert (store / "r" / "ray" / "ray_train-1" / "state.pt").exists() == keep


def test_a_failed_run_leaves_nothing_in_storage(tmp_path):
    store = tmp_path / "store"
    with pytest.raises(RuntimeError):
        with RunDir.create(tmp_path / "runs", "train", {}, "digits", "mlp", name="r", wandb_mode="disabled",
                           storage=str(store)) as run:
            Path(run.storage).mkdir(parents=True)
            raise RuntimeError("the run failed")
    assert not (store / "r").exists() and not (tmp_path / "runs" / "r").exists()


def test_effray_storage_is_the_default_and_a_taken_name_is_refused(tmp_path, monkeypatch):
    store = tmp_path / "store"
    monkeypatch.setenv("EFFRAY_STORAGE", str(store))
    monkeypatch.chdir(tmp_path)
    args = ["train", "--model", "logreg", "--epochs", "1", "--no-progress", "--wandb", "disabled", "--name", "r"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert f"copied to storage: {store / 'r'}" in result.output
    same_run_files(tmp_path / "runs" / "r", store / "r")
    # the same name again, in another --out: the storage already holds it
    result = CliRunner().invoke(main, [*args, "--out", "other"])
    assert result.exit_code == 2 and "already exists in the storage" in result.stderr, result.output
    assert not (tmp_path / "other" / "r").exists()


def two_nodes(monkeypatch, alive=(True, True)):
    import ray

    from raypkg.distributed import cluster

    monkeypatch.setattr(cluster, "connect_ray", lambda *a, **k: None)
    monkeypatch.setattr(ray, "nodes", lambda: [{"Alive": a, "Resources": {"CPU": 2}} for a in alive])


def test_a_cluster_of_several_nodes_needs_storage(monkeypatch):
    from raypkg.distributed.cluster import check_shared_storage

    two_nodes(monkeypatch)
    with pytest.raises(UsageError, match=r"^a cluster of 2 nodes needs --storage \(Ray Train checkpoints must "
                                         r"be reachable from every node\)$"):
        check_shared_storage(None, "Ray Train checkpoints")
    check_shared_storage("s3://bucket/x", "Ray Train checkpoints")  # storage given: fine
    two_nodes(monkeypatch, alive=(True, False))
    check_shared_storage(None, "Ray Train checkpoints")  # one node alive: local checkpoints are fine


def test_ray_train_and_tune_refuse_a_cluster_without_storage_before_starting(monkeypatch, tmp_path):
    from raypkg.engine.config import TrainConfig
    from raypkg.engine.ray_train import _run
    from raypkg.tuning import run_tune

    two_nodes(monkeypatch)
    with pytest.raises(UsageError, match="^a cluster of 2 nodes needs --storage"):
        _run(None, TrainConfig(workers=2, storage=None), {}, tmp_path, "x")  # fails before the trainer is built
    monkeypatch.setenv("WANDB_MODE", "disabled")  # run_tune sets it
    with pytest.raises(UsageError, match=r"^a cluster of 2 nodes needs --storage \(Tune trials"):
        run_tune("train", None, out=str(tmp_path / "runs"), wandb_mode="disabled")
    assert not list((tmp_path / "runs").glob("*"))
