"""Runs that do not finish: Ctrl-C and Ray Train failures end with one line, the right exit
status and no half-written run directory (in-process training, Ray Train, the CLI)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from conftest import bare_env

from raypkg.cli import main
from raypkg.engine.config import TrainConfig
from raypkg.errors import RunFailed


def nothing_left(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


def test_ctrl_c_during_in_process_training_removes_the_run_and_exits_130(tmp_path, monkeypatch):
    """KeyboardInterrupt from inside the training (after the run directory filled up a bit):
    the directory goes, one `interrupted:` line, status 130."""
    import raypkg.engine.runner as runner

    seen = {}

    def train_then_ctrl_c(cfg, data, *, on_epoch, storage, **_):
        on_epoch({"epoch": 1, "train_loss": 1.0, "test_acc": 0.5})  # metrics.parquet exists now
        seen["run"] = Path(storage).parent
        assert (seen["run"] / "metrics.parquet").is_file()
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "train", train_then_ctrl_c)
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["train", "--model", "logreg", "--epochs", "3", "--out", str(out),
                                       "--wandb", "offline", "--no-progress"])
    assert result.exit_code == 130, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1].startswith("interrupted: ") and "Traceback" not in result.output
    assert not seen["run"].exists() and nothing_left(out)


def test_ctrl_c_stops_a_ray_train_run_promptly_and_leaves_no_run_directory(tmp_path):
    """A real `effray train --workers 1` in a bare shell, SIGINT after its first epoch
    line: Ray Train's controller must not go on (it used to retry or ignore Ctrl-C)."""
    out = tmp_path / "runs"
    proc = subprocess.Popen([sys.executable, "-m", "raypkg.cli", "train", "--workers", "1", "--epochs", "50",
                             "--out", str(out), "--no-progress"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=bare_env(),
                            # Ctrl-C reaches it even when these tests run in a background job
                            # (which starts with SIGINT ignored, and Python keeps it so)
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    start = time.monotonic()
    while time.monotonic() - start < 120 and not any("[ray train] epoch" in line for line in lines):
        if proc.poll() is not None:
            break
        time.sleep(0.2)
    assert proc.poll() is None, "".join(lines)[-3000:]
    assert any("[ray train] epoch" in line for line in lines), "no epoch line within 120 s"
    assert out.exists() and any(out.iterdir()), "the run directory should exist while training"
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    try:
        status = proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail("effray train ignored Ctrl-C for 40 s:\n" + "".join(lines)[-3000:])
    stopped_after = time.monotonic() - sent
    reader.join(timeout=5)
    assert status == 130, "".join(lines)[-3000:]
    assert stopped_after < 20, stopped_after
    ours = [line for line in lines if not line.startswith(("(", "\x1b"))]  # not a Ray process's log
    assert ours[-1].startswith("interrupted: "), "".join(lines)[-3000:]
    assert nothing_left(out), sorted(p.name for p in out.rglob("*"))[:20]


@pytest.mark.ray
def test_a_worker_loss_with_max_failures_0_is_one_error_and_no_run_directory(ray_session, tmp_path, monkeypatch):
    from raypkg.engine.ray_train import FAULT_ENV
    from raypkg.engine.runner import run_training

    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, f"2:{marker}")
    out = tmp_path / "runs"
    cfg = TrainConfig(dataset="digits", model="logreg", epochs=4, workers=1, out=str(out), name="mf0",
                      wandb="disabled", progress=False, max_failures=0)
    with pytest.raises(RunFailed) as failure:
        run_training(cfg)
    assert marker.exists(), "the injected failure did not happen"
    message = str(failure.value)
    assert "\n" not in message and "--max-failures 0" in message, message
    assert "worker 0" in message and "died" in message, message
    assert nothing_left(out)


def test_a_failed_run_is_one_error_line_with_status_1(tmp_path, monkeypatch):
    import raypkg.engine.runner as runner

    def fails(*args, **kwargs):
        raise RunFailed("Ray Train stopped after --max-failures 0 restart(s): worker 0: it died")

    monkeypatch.setattr(runner, "train", fails)
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["train", "--model", "logreg", "--out", str(out), "--no-progress"])
    assert result.exit_code == 1, result.output
    assert [line for line in result.output.splitlines() if line.startswith("error: ")] == [
        "error: Ray Train stopped after --max-failures 0 restart(s): worker 0: it died"]
    assert nothing_left(out)
