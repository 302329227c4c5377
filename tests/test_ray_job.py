"""The Ray Job path: `ray job submit ... -- python jobs/train.py` against a head that this
test starts itself with `ray start --head` (own ports, own temp dir, no token auth) and
ends by its own process ids. Never `ray stop`: that would end every Ray on the machine."""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import bare_env

try:
    import psutil
except ImportError:  # Ray vendors psutil and puts it on sys.path when imported
    import ray  # noqa: F401
    import psutil

REPO = Path(__file__).resolve().parents[1]
RAY_CLI = [sys.executable, "-m", "ray.scripts.scripts"]


def free_ports(count: int) -> list[int]:
    """Distinct ports the OS has free right now (held open together, then released)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def free_port_range(width: int) -> tuple[int, int]:
    """A run of ``width`` free ports below the OS's ephemeral range (for Ray's workers)."""
    for _ in range(50):
        low = random.randrange(20000, 30000 - width)
        try:
            held = []
            for port in range(low, low + width):
                s = socket.socket()
                held.append(s)
                s.bind(("", port))
            return low, low + width - 1
        except OSError:
            continue
        finally:
            for s in held:
                s.close()
    raise RuntimeError("no free port range for Ray's workers")


def processes_of(marker: str) -> list[psutil.Process]:
    """Processes whose command line names ``marker`` (this head's temp dir), and all
    their descendants (workers rename themselves `ray::...` and lose the marker)."""
    found: dict[int, psutil.Process] = {}
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or []):
            found[proc.pid] = proc
            try:
                found.update({child.pid: child for child in proc.children(recursive=True)})
            except psutil.Error:
                pass
    found.pop(os.getpid(), None)
    return list(found.values())


def end_processes(marker: str) -> list[psutil.Process]:
    """Terminate, then kill, everything of this head; returns what is still alive."""
    procs = processes_of(marker)
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=3)  # gcs_server and raylet drain slowly
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=10)
    return [p for p in processes_of(marker) if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def head_env(temp_dir: str | None = None) -> dict[str, str]:
    """Environment of the head (and so of its jobs) and of the submitting client."""
    env = bare_env(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0")
    if temp_dir:  # scratch files of the head's processes go where the finalizer removes them
        os.makedirs(os.path.join(temp_dir, "tmp"), exist_ok=True)
        env["TMPDIR"] = os.path.join(temp_dir, "tmp")
    # The job's `python` is looked up on the head's PATH: make it this venv's.
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return env


@pytest.fixture
def ray_head(request):
    """A 2-CPU head with the dashboard (the job server): yields (dashboard URL, temp dir)."""
    temp_dir = tempfile.mkdtemp(prefix="ej-", dir="/tmp")  # short: unix sockets live here
    (gcs, node_manager, object_manager, client_server, dashboard, agent_listen, agent_grpc,
     runtime_env_agent, metrics) = free_ports(9)
    min_worker, max_worker = free_port_range(100)

    def cleanup():
        left = end_processes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"processes of the test head still alive: {left}"

    request.addfinalizer(cleanup)
    start = subprocess.run(
        [*RAY_CLI, "start", "--head", "--temp-dir", temp_dir, "--num-cpus", "2", "--num-gpus", "0",
         "--port", str(gcs), "--node-manager-port", str(node_manager),
         "--object-manager-port", str(object_manager), "--ray-client-server-port", str(client_server),
         "--min-worker-port", str(min_worker), "--max-worker-port", str(max_worker),
         "--include-dashboard", "true", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
         "--dashboard-agent-listen-port", str(agent_listen), "--dashboard-agent-grpc-port", str(agent_grpc),
         "--runtime-env-agent-port", str(runtime_env_agent), "--metrics-export-port", str(metrics),
         "--object-store-memory", str(300 * 1024 * 1024), "--disable-usage-stats"],
        env=head_env(temp_dir), capture_output=True, text=True, timeout=120)
    assert start.returncode == 0, start.stdout + start.stderr
    yield f"http://127.0.0.1:{dashboard}", temp_dir


@pytest.mark.ray
def test_train_job_submitted_to_a_head_writes_its_run(ray_head, tmp_path):
    address, temp_dir = ray_head
    out = tmp_path / "runs"
    job = subprocess.run(
        [*RAY_CLI, "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
         "python", "jobs/train.py", "--dataset", "digits", "--model", "mlp", "--epochs", "3",
         "--out", str(out), "--wandb", "disabled", "--no-progress"],
        env=head_env(temp_dir), capture_output=True, text=True, timeout=240)  # no token auth
    log = job.stdout + job.stderr
    assert job.returncode == 0, log
    assert "succeeded" in log
    assert "test_acc" in job.stdout, log
    summaries = list(out.glob("*/summary.json"))
    assert len(summaries) == 1, log
    summary = json.loads(summaries[0].read_text())
    assert (summary["method"], summary["dataset"], summary["model"]) == ("train", "digits", "mlp")
    assert summary["test_acc"] >= 0.8
    assert f"test_acc {summary['test_acc']:.4f}" in job.stdout


def test_job_rejects_bad_flags_in_one_line_before_touching_ray(tmp_path):
    out = tmp_path / "runs"
    # RAY_ADDRESS names a port where no Ray listens: a job that connected before checking
    # its flags would hang there (ray.init retries for minutes) and run into the timeout.
    env = dict(head_env(), RAY_ADDRESS=f"127.0.0.1:{free_ports(1)[0]}")
    result = subprocess.run([sys.executable, "jobs/train.py", "--epochs", "0", "--out", str(out)],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "epochs" in lines[0], result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    assert not out.exists()


@pytest.mark.ray
def test_lipt_job_submitted_to_a_head_runs_all_four_stages_on_ray_train(ray_head, tmp_path):
    """jobs/lipt.py with --workers 2: the shard ensemble and the subset training are Ray
    Train jobs on the submitted-to cluster."""
    address, temp_dir = ray_head
    out = tmp_path / "runs"
    job = subprocess.run(
        [*RAY_CLI, "job", "submit", "--address", address, "--working-dir", str(REPO), "--",
         "python", "jobs/lipt.py", "--selection", "grand", "--fraction", "0.1", "--shards", "3",
         "--pre-epochs", "1", "--density", "0.2", "--epochs", "2", "--workers", "2", "--dataset", "digits",
         "--model", "mlp", "--out", str(out), "--wandb", "disabled", "--no-progress"],
        env=head_env(temp_dir), capture_output=True, text=True, timeout=400)
    log = job.stdout + job.stderr
    assert job.returncode == 0, log
    assert "succeeded" in log
    assert "shard 3/3 done" in log  # the ensemble ran as a Ray Train job
    summaries = list(out.glob("lipt-*/summary.json"))
    assert len(summaries) == 1, log
    summary = json.loads(summaries[0].read_text())
    assert {"pretrain", "merge", "selection", "train"} <= set(summary["phases"])
    assert len(summary["shard_test_acc"]) == 3 and summary["subset_size"] == round(0.1 * summary["train_size"])
    assert (summaries[0].parent / "selection.parquet").is_file()
