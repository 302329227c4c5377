"""Runs that do not finish: Ctrl-C and Ray Train failures end with one line, the right exit
status and no half-written run directory (in-process training, Ray Train, the CLI)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner
from helpers import bare_env, without_ray_noise

from raypkg.cli import main
from raypkg.engine.config import TrainConfig
from raypkg.errors import RunFailed
from raypkg.interrupts import keep_sigterm, sigterm_as_interrupt, stopped_by


def nothing_left(out: Path) -> bool:
    return not out.exists() or not any(out.iterdir())


def interrupt(by: str) -> None:
    """Ctrl-C's KeyboardInterrupt, or a real SIGTERM to this process."""
    if by == "Ctrl-C":
        raise KeyboardInterrupt
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(10)  # its handler runs at the next bytecode boundary
    pytest.fail("SIGTERM raised nothing")


@pytest.mark.parametrize("by, status", [("Ctrl-C", 130), ("SIGTERM", 143)])
def test_ctrl_c_during_in_process_training_removes_the_run_and_exits_130(tmp_path, monkeypatch, by, status):
    """KeyboardInterrupt (or SIGTERM: `kill PID`) from inside the training (after the run
    directory filled up a bit): the directory goes, one `interrupted:` line naming it, status
    130 (143)."""
    import raypkg.engine.trainer as trainer  # train_stack's engine call

    seen = {}

    def train_then_ctrl_c(cfg, data, *, on_epoch, storage, **_):
        on_epoch({"epoch": 1, "train_loss": 1.0, "test_acc": 0.5})  # metrics.parquet exists now
        seen["run"] = Path(storage).parent
        assert (seen["run"] / "metrics.parquet").is_file()
        interrupt(by)

    monkeypatch.setattr(trainer, "train", train_then_ctrl_c)
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["train", "--model", "logreg", "--epochs", "3", "--out", str(out),
                                       "--wandb", "offline", "--no-progress"])
    assert result.exit_code == status, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines[-1] == f"interrupted: stopped by {by}; no half-written run directory is kept", result.output
    assert "Traceback" not in result.output
    assert not seen["run"].exists() and nothing_left(out)


def test_sigterm_is_an_interrupt_inside_and_ray_init_does_not_take_it_over():
    """Inside ``sigterm_as_interrupt`` SIGTERM raises KeyboardInterrupt and ``stopped_by``
    names it; a handler set inside ``keep_sigterm`` (as ``ray.init`` sets ``sys.exit``) is
    undone at its end; outside, the handler before it is back and Ctrl-C is named again."""
    before = signal.getsignal(signal.SIGTERM)
    with sigterm_as_interrupt():
        assert stopped_by() == "Ctrl-C"
        with keep_sigterm():
            signal.signal(signal.SIGTERM, lambda *_: sys.exit(15))
        with pytest.raises(KeyboardInterrupt):
            interrupt("SIGTERM")
        assert stopped_by() == "SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before and stopped_by() == "Ctrl-C"
    try:
        with keep_sigterm():  # not ours before: left as set
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)


@pytest.mark.ray
@pytest.mark.parametrize("signum, by, status", [(signal.SIGINT, "Ctrl-C", 130), (signal.SIGTERM, "SIGTERM", 143)])
def test_ctrl_c_stops_a_ray_train_run_promptly_and_leaves_no_run_directory(ray_session, tmp_path, signum, by, status):
    """A real `effray train --workers 1` in a bare shell (W&B offline, beside this session's
    Ray), SIGINT (or SIGTERM: `kill`, `ray job stop`) after its first epoch line: Ray Train's
    controller must not go on (it used to retry or ignore Ctrl-C), and nothing prints a
    traceback (Ray Train's placement-group cleaner did, with two Ray instances on the
    machine). SIGTERM gives the same line, naming it, after ``ray.init`` set its own handler."""
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
    proc.send_signal(signum)
    sent = time.monotonic()
    try:
        exit_status = proc.wait(timeout=40)
    except subprocess.TimeoutExpired:
        proc.kill()
        pytest.fail(f"effray train ignored {by} for 40 s:\n" + "".join(lines)[-3000:])
    stopped_after = time.monotonic() - sent
    reader.join(timeout=5)
    assert exit_status == status, "".join(lines)[-3000:]
    assert stopped_after < 20, stopped_after
    ours = [line for line in lines if not line.startswith(("(", "\x1b"))]  # not a Ray process's log
    assert ours[-1].startswith(f"interrupted: stopped by {by}; "), "".join(lines)[-3000:]
    assert "Traceback" not in without_ray_noise("".join(lines)), "".join(lines)[-3000:]
    assert nothing_left(out), sorted(p.name for p in out.rglob("*"))[:20]


# What a Ctrl-C inside Logger.setLevel leaves behind on Python < 3.13: the logging module
# lock held by the main thread (logging.Manager._clear_cache takes it without try/finally).
LEAKED_LOGGING_LOCK = """
import logging, sys
from pathlib import Path
from raypkg.tracking.wandb_logger import WandbLogger

run = WandbLogger(Path(sys.argv[1]), name="leak", group="train", config={}, mode="offline")
run.log({"epoch": 1, "test_acc": 0.5})
logging._lock.acquire()
try:
    raise KeyboardInterrupt
except KeyboardInterrupt:
    run.finish(exit_code=1)
    print("interrupted", flush=True)
"""


def test_a_ctrl_c_that_leaves_the_logging_lock_held_still_exits(tmp_path):
    """W&B's teardown at exit waits for its service thread, which logs: with the lock left
    held, `effray train` hung after a Ctrl-C during a Ray Train run's start-up."""
    proc = subprocess.run([sys.executable, "-c", LEAKED_LOGGING_LOCK, str(tmp_path)], capture_output=True,
                          text=True, env=bare_env(), timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "interrupted", proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr


@pytest.mark.ray
def test_a_worker_loss_with_max_failures_0_is_one_error_and_no_run_directory(ray_session, tmp_path, monkeypatch):
    from raypkg.engine.ray_train import FAULT_ENV
    from raypkg.methods.full.recipe import TRAIN

    marker = tmp_path / "killed"
    monkeypatch.setenv(FAULT_ENV, f"2:{marker}")
    out = tmp_path / "runs"
    cfg = TrainConfig(dataset="digits", model="logreg", epochs=4, workers=1, out=str(out), name="mf0",
                      wandb="disabled", progress=False, max_failures=0)
    with pytest.raises(RunFailed) as failure:
        TRAIN.run(cfg)
    assert marker.exists(), "the injected failure did not happen"
    message = str(failure.value)
    assert "\n" not in message and "--max-failures 0" in message, message
    assert "worker 0" in message and "died" in message, message
    assert nothing_left(out)


def test_a_failed_run_is_one_error_line_with_status_1(tmp_path, monkeypatch):
    import raypkg.engine.trainer as trainer  # train_stack's engine call

    def fails(*args, **kwargs):
        raise RunFailed("Ray Train stopped after --max-failures 0 restart(s): worker 0: it died")

    monkeypatch.setattr(trainer, "train", fails)
    out = tmp_path / "runs"
    result = CliRunner().invoke(main, ["train", "--model", "logreg", "--out", str(out), "--no-progress"])
    assert result.exit_code == 1, result.output
    assert [line for line in result.output.splitlines() if line.startswith("error: ")] == [
        "error: Ray Train stopped after --max-failures 0 restart(s): worker 0: it died"]
    assert nothing_left(out)
