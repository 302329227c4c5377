"""The platform as a new user meets it, through real `effray` processes in a bare shell
(no WANDB_MODE, no W&B key, no RAY_ADDRESS): tune without a key, Ray connections that
never hang, jobs that name themselves, a fast `effray --help`."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from conftest import bare_env

REPO = Path(__file__).resolve().parents[1]


def effray(*args, cwd=None, timeout=300, **env):
    return subprocess.run([sys.executable, "-m", "raypkg.cli", *map(str, args)], capture_output=True,
                          text=True, cwd=cwd, timeout=timeout, env=bare_env(**env))


def one_error_line(proc) -> str:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    return lines[0]


def test_tune_in_a_bare_shell_writes_best_config_and_offline_wandb_runs(tmp_path):
    space = tmp_path / "tiny.yaml"
    space.write_text(yaml.safe_dump({
        "method": "train", "metric": "test_acc", "mode": "max", "scheduler": "fifo", "search": "random",
        "base": {"dataset": "digits", "model": "logreg", "epochs": 2, "progress": False},
        "space": {"lr": {"choice": [0.05, 0.1]}}}))
    out = tmp_path / "runs"
    proc = effray("tune", "train", "--space", space, "--num-samples", 2, "--out", out, cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "No WandB API key" not in proc.stderr
    assert "ray: started a private local Ray with" in proc.stdout
    (sweep,) = out.glob("tune-train-*")
    best = yaml.safe_load((sweep / "best_config.yaml").read_text())
    assert best["lr"] in (0.05, 0.1) and best["epochs"] == 2
    runs = list(sweep.glob("wandb/offline-run-*"))
    assert len(runs) == 2, sorted(p.name for p in sweep.rglob("*"))[:50]
    assert (sweep / "trials.parquet").is_file()


def test_a_local_run_never_joins_another_programs_ray(ray_session, tmp_path):
    """This test process runs a Ray instance; an `effray select --actors 2` started beside it
    starts its own private Ray: no driver joins this one, and it keeps its resources."""
    from ray._private.state import jobs

    drivers, resources = len(jobs()), ray_session.available_resources()
    proc = effray("select", "--method", "grand", "--fraction", 0.1, "--dataset", "digits", "--model", "logreg",
                  "--pretrain-epochs", 1, "--repeats", 1, "--actors", 2, "--no-progress", "--out", tmp_path / "runs",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "ray: started a private local Ray with" in proc.stdout
    assert len(jobs()) == drivers, jobs()
    assert ray_session.available_resources() == resources


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
    assert time.monotonic() - start < 30
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


def test_help_is_fast_and_imports_no_heavy_module():
    probe = ("import sys, time; t = time.perf_counter(); from raypkg.cli import main; "
             "heavy = [m for m in ('torch', 'ray', 'pandas', 'wandb') if m in sys.modules]; "
             "print(heavy, time.perf_counter() - t)")
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=bare_env(), timeout=60)
    heavy, seconds = proc.stdout.rsplit(" ", 1)
    assert heavy == "[]", proc.stdout
    start = time.monotonic()
    assert effray("--help").returncode == 0
    assert time.monotonic() - start < 1.5


def test_default_tune_space_is_found_from_any_directory(tmp_path, monkeypatch):
    from raypkg.tuning import default_space, read_space

    monkeypatch.chdir(tmp_path)
    for method in ("train", "coreset", "deltagrad"):
        assert read_space(default_space(method))["method"] == method
    proc = effray("tune", "nosuch", "--num-samples", 1, cwd=tmp_path)
    assert "no built-in search space for 'nosuch'" in one_error_line(proc)
