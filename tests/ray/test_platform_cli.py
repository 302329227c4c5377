"""The platform as a new user meets it, through real `effray` processes in a bare shell
(no WANDB_MODE, no W&B key, no RAY_ADDRESS): Ray connections that never hang, jobs that
name themselves, an `effray --help` that imports no heavy module. (Tune without a key: the
README's `effray tune train` in tests/docs/test_readme.py; a local run beside another program's
Ray starts its own: tests/unit/test_plugins.py.)"""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from helpers import REPO, bare_env


def effray(*args, cwd=None, timeout=300, **env):
    return subprocess.run([sys.executable, "-m", "raypkg.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=bare_env(**env))


def one_error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_an_address_is_refused_by_a_run_that_uses_no_ray(monkeypatch):
    from types import SimpleNamespace

    from raypkg.distributed import cluster
    from raypkg.engine.config import TrainConfig
    from raypkg.errors import UsageError

    monkeypatch.setattr(cluster, "_requested_address", None)  # restored after the test
    assert not cluster.uses_ray(TrainConfig())
    assert cluster.uses_ray(TrainConfig(workers=2)) and cluster.uses_ray(TrainConfig(data_path="stream"))
    assert cluster.uses_ray(SimpleNamespace(actors=2))  # a coreset or CREST config
    streamed = SimpleNamespace(train=SimpleNamespace(streamed=True))  # --data-path auto chose to stream
    assert cluster.uses_ray(TrainConfig(), streamed)
    cluster.check_address_used(False)  # no --address: nothing to refuse
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    cluster.check_address_used(False)  # `ray job submit` sets RAY_ADDRESS for every job
    cluster.set_address("127.0.0.1:1")
    cluster.check_address_used(True)
    with pytest.raises(UsageError) as refused:
        cluster.check_address_used(cluster.uses_ray(TrainConfig()))
    assert str(refused.value) == ("--address 127.0.0.1:1 joins a Ray cluster, but this run uses no Ray "
                                  "(--workers 0, --actors 0): drop --address or add --workers N")


def test_workers_beyond_the_cpus_are_refused_before_ray_starts_with_no_run_directory(tmp_path):
    out = tmp_path / "runs"
    proc = effray("train", "--dataset", "digits", "--model", "logreg", "--epochs", 1, "--workers", 5,
                  "--out", out, "--no-progress", timeout=120, EFFRAY_RAY_NUM_CPUS="2")
    line = one_error_line(proc)  # refused before Ray starts: no "ray: started ..." line
    assert "--workers 5" in line and "a private local Ray (1 node(s), 2 CPUs) holds at most 4" in line, line
    assert "ray:" not in proc.stdout, proc.stdout
    assert not out.exists() or not any(out.iterdir())


def test_a_named_cluster_that_does_not_answer_is_one_line(tmp_path):
    with socket_on_free_port() as port:
        pass  # closed again: nothing listens there
    start = time.monotonic()
    proc = effray("train", "--model", "logreg", "--workers", 1, "--epochs", 1,
                  "--address", f"127.0.0.1:{port}", "--out", tmp_path / "runs", "--no-progress",
                  timeout=120, EFFRAY_RAY_CONNECT_TIMEOUT_S="2")
    line = one_error_line(proc)
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in line
    assert time.monotonic() - start < 60  # 2 s to connect plus start-up; 32 s seen on a loaded 2-core machine
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
    # RAY_ADDRESS (as `ray job submit` sets it) is followed the same way
    proc = effray("train", "--model", "logreg", "--workers", 1, "--epochs", 1,
                  "--out", tmp_path / "runs", "--no-progress", timeout=120,
                  EFFRAY_RAY_CONNECT_TIMEOUT_S="2", RAY_ADDRESS=f"127.0.0.1:{port}")
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in one_error_line(proc)


def socket_on_free_port():
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))

    class Port:
        def __enter__(self):
            return s.getsockname()[1]

        def __exit__(self, *exc):
            s.close()

    return Port()


@pytest.mark.parametrize("script, usage", [("train.py", "Usage: python jobs/train.py [OPTIONS]"),
                                           ("coreset.py", "Usage: python jobs/coreset.py [OPTIONS]"),
                                           ("deltagrad.py", "Usage: python jobs/deltagrad.py [OPTIONS] COMMAND")])
def test_jobs_name_themselves(script, usage):
    proc = subprocess.run([sys.executable, f"jobs/{script}", "--help"], capture_output=True, text=True,
                          cwd=REPO, env=bare_env(), timeout=60)
    assert proc.returncode == 0 and proc.stdout.startswith(usage), proc.stdout[:200]
    assert "effray" not in proc.stdout.splitlines()[0]


def test_help_imports_no_heavy_module():
    """Its start-up time is measured by `effray bench overhead` (CLI start-up line)."""
    probe = ("import sys; from raypkg.cli import main; "
             "print([m for m in ('torch', 'ray', 'pandas', 'wandb') if m in sys.modules])")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=bare_env(), timeout=60)
    assert proc.stdout.strip() == "[]", proc.stdout + proc.stderr
    help_ = effray("--help")
    assert help_.returncode == 0 and help_.stdout.startswith("Usage: "), help_.stdout + help_.stderr


def test_default_tune_space_is_found_from_any_directory(tmp_path, monkeypatch):
    from raypkg.tune_space import read_space
    from raypkg.tuning import default_space

    monkeypatch.chdir(tmp_path)
    for method in ("train", "coreset", "deltagrad"):
        assert read_space(default_space(method))["method"] == method
    proc = effray("tune", "nosuch", "--num-samples", 1, cwd=tmp_path)
    assert "no built-in search space for 'nosuch'" in one_error_line(proc)
