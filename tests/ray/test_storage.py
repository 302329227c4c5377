"""--storage (issue #20): Ray Train checkpoints and a copy of the finished run directory
in a shared place (a path or a URI); a cluster of several nodes refuses to run without it.
S3 is moto's standalone server on a loopback port (the ``s3`` fixture)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner
from helpers import bare_env, same_run_files

from raypkg.cli import main
from raypkg.errors import UsageError
from raypkg.storage import join
from raypkg.tracking.run import RunDir

BUCKET = "effray"


class S3Bucket:
    """The bucket of a running moto server: ``uri(path)`` for effray, ``fs`` to look inside."""

    def __init__(self, port: int):
        import pyarrow.fs as pafs

        self.endpoint = f"127.0.0.1:{port}"
        self.fs = pafs.S3FileSystem(endpoint_override=self.endpoint, scheme="http", allow_bucket_creation=True)

    def uri(self, path: str) -> str:
        return f"s3://{BUCKET}/{path}?endpoint_override={self.endpoint}&scheme=http"

    def files(self, path: str) -> list[str]:
        """Every file under ``path`` in the bucket, relative to it."""
        import pyarrow.fs as pafs

        infos = self.fs.get_file_info(pafs.FileSelector(f"{BUCKET}/{path}", recursive=True, allow_not_found=True))
        return sorted(i.path.removeprefix(f"{BUCKET}/{path}/") for i in infos if i.type == pafs.FileType.File)

    def read(self, path: str) -> bytes:
        with self.fs.open_input_file(f"{BUCKET}/{path}") as f:
            return f.read()

    def write(self, path: str, data: bytes) -> None:
        with self.fs.open_output_stream(f"{BUCKET}/{path}") as f:
            f.write(data)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answers(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    """moto's S3 server in a subprocess on a free loopback port (reachable from Ray Train's
    workers), with the bucket BUCKET, ended when the module's tests are done. Dummy AWS
    credentials go into this process's environment, and so into every subprocess."""
    log = tmp_path_factory.mktemp("moto") / "server.log"
    port = free_port()
    with pytest.MonkeyPatch.context() as env, open(log, "w") as out:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        server = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                                  stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while not answers(port):
                assert server.poll() is None and time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
            bucket = S3Bucket(port)
            bucket.fs.create_dir(BUCKET)
            yield bucket
        finally:
            server.terminate()
            server.wait(timeout=30)


def effray(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """``effray ARGS`` in a new process with a new user's environment; it must succeed."""
    proc = subprocess.run([sys.executable, "-m", "raypkg.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=300, env=bare_env())
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


TRAIN = ["train", "--model", "logreg", "--epochs", "2", "--workers", "1", "--no-progress", "--wandb", "disabled",
         "--name", "r", "--keep-checkpoints"]


def test_ray_train_checkpoints_and_the_run_directory_go_to_s3_and_report_reads_them_back(tmp_path, s3):
    """One real Ray Train run (1 worker, 2 epochs) with moto's S3 as the storage (a file://
    storage: test_multinode.py's two-node run, its checkpoints kept)."""
    store = s3.uri("ray-train")
    proc = effray(*TRAIN, "--out", str(tmp_path / "runs"), "--storage", store, cwd=tmp_path)
    assert proc.stdout.strip().splitlines()[-2] == f"copied to storage: {join(store, 'r')}"
    files = s3.files("ray-train/r")
    assert {"config.yaml", "summary.json", "metrics.parquet"} <= set(files), files
    checkpoints = [f for f in files if f.startswith("ray/ray_train-") and f.endswith("/state.pt")]
    assert len(checkpoints) == 2, files
    summary = json.loads(s3.read("ray-train/r/summary.json"))
    assert summary == json.loads((tmp_path / "runs" / "r" / "summary.json").read_text())
    assert summary["storage"] == join(store, "r") and summary["epochs"] == 2

    table = effray("report", join(store, "r"), "--no-plot", cwd=tmp_path).stdout.splitlines()
    assert table[0].split()[:3] == ["run", "method", "dataset"]
    assert table[1].split()[:2] == ["r", "train"], table
    assert list(tmp_path.iterdir()) == [tmp_path / "runs"]  # the report wrote nothing here (--no-plot)


def finished_run(out: Path, name: str, storage: str | None = None, test_acc: float = 0.9) -> Path:
    """A finished run directory without training (two epochs of made-up metrics)."""
    with RunDir.create(out, "train", {}, "digits", "mlp", name=name, wandb_mode="disabled", storage=storage) as run:
        for epoch in (1, 2):
            run.log_metrics({"epoch": epoch, "test_acc": test_acc, "epoch_s": 0.5})
        run.finish(test_acc=test_acc)
    return run.path


def test_report_reads_runs_from_a_uri(tmp_path, s3, monkeypatch):
    monkeypatch.chdir(tmp_path)
    finished_run(tmp_path / "runs", "in-s3", storage=s3.uri("report"), test_acc=0.8)
    local = finished_run(tmp_path / "runs", "local")
    store = tmp_path / "store"
    finished_run(tmp_path / "runs", "in-file-uri", storage=f"file://{store}", test_acc=0.7)
    result = CliRunner().invoke(main, ["report", s3.uri("report/in-s3"), str(local), f"file://{store}/in-file-uri"])
    assert result.exit_code == 0, result.output
    header, *rows = [line.split() for line in result.stdout.splitlines()[:4]]
    acc = header.index("test_acc")
    assert [(r[0], float(r[acc])) for r in rows] == [("in-s3", 0.8), ("local", 0.9), ("in-file-uri", 0.7)], rows
    assert result.stdout.splitlines()[-1] == f"plot: {tmp_path / 'report.png'}"  # the first run is a URI

    for missing in (s3.uri("report/none"), f"file://{store}/none"):
        result = CliRunner().invoke(main, ["report", missing, "--no-plot"])
        assert result.exit_code == 2 and result.stderr == f"error: {missing!r} is not a run directory " \
                                                           "(no such directory)\n", result.output


@pytest.mark.parametrize("where", ["file", "s3"])
def test_a_config_file_is_read_from_a_uri(tmp_path, s3, monkeypatch, where):
    """``--config URI``: a YAML file through file://, a JSON file in the bucket."""
    monkeypatch.chdir(tmp_path)
    if where == "file":
        (tmp_path / "config.yaml").write_text("epochs: 1\nlr: 0.05\nmodel: logreg\n")
        uri = f"file://{tmp_path / 'config.yaml'}"
    else:
        s3.write("configs/config.json", json.dumps({"epochs": 1, "lr": 0.05, "model": "logreg"}).encode())
        uri = s3.uri("configs/config.json")
    result = CliRunner().invoke(main, ["train", "--config", uri, "--workers", "0", "--no-progress",
                                       "--wandb", "disabled", "--name", "c"])
    assert result.exit_code == 0, result.output
    config = yaml.safe_load((tmp_path / "runs" / "c" / "config.yaml").read_text())
    assert (config["epochs"], config["lr"], config["model"]) == (1, [0.05], "logreg")

    missing = uri.replace("config.", "none.")
    result = CliRunner().invoke(main, ["train", "--config", missing, "--name", "d"])
    assert result.exit_code == 2 and result.stderr.startswith(f"error: cannot read config file {missing!r}: ")
    assert len(result.stderr.splitlines()) == 1 and not (tmp_path / "runs" / "d").exists()


def test_unreachable_s3_storage_or_a_missing_bucket_is_refused_quickly(tmp_path, s3, monkeypatch):
    monkeypatch.chdir(tmp_path)
    closed = f"s3://{BUCKET}/x?endpoint_override=127.0.0.1:{free_port()}&scheme=http"
    no_bucket = s3.uri("x").replace(f"s3://{BUCKET}/", "s3://no-such-bucket/")
    s3.write("a-file", b"x")
    for storage, reason in ((closed, "cannot reach it (When getting information for key 'x' in bucket "
                                     f"'{BUCKET}': AWS Error NETWORK_CONNECTION"),
                            (no_bucket, "there is no bucket 'no-such-bucket'"),
                            (s3.uri("a-file"), f"'{BUCKET}/a-file' is a file, not a directory")):
        started = time.monotonic()
        result = CliRunner().invoke(main, ["train", "--storage", storage, "--workers", "1", "--name", "r"])
        assert result.exit_code == 2 and result.stderr.startswith(f"error: --storage {storage!r}: {reason}"), \
            result.output
        assert len(result.stderr.splitlines()) == 1 and time.monotonic() - started < 5
    assert not (tmp_path / "runs").exists()


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
    from raypkg.distributed.node_storage import check_shared_storage

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


def test_an_object_store_that_does_not_answer_is_refused_within_the_deadline(monkeypatch):
    """Every probe of a store (--storage, --config URI, report URI) runs under one deadline:
    a call that hangs (no network: S3's region lookup, GCS's credentials) is one line."""
    from raypkg import storage

    monkeypatch.setattr(storage, "PROBE_TIMEOUT_S", 0.5)
    start = time.monotonic()
    with pytest.raises(UsageError, match="no answer within 0.5 s"):
        storage.within_deadline(lambda: time.sleep(30), "--storage", "gs://b/x")
    assert time.monotonic() - start < 3
    assert storage.within_deadline(lambda: 7, "--storage", "gs://b/x") == 7
    with pytest.raises(UsageError, match="File URI cannot be relative"):
        storage.check_storage("file:rel")


def test_local_storage_and_its_join_expand_a_tilde(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert join("~/store", "run") == str(tmp_path / "store" / "run")
