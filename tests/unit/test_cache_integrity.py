"""Damaged caches are refused with one line naming the file, and left as they are:
DeltaGrad trajectories, the selection cache, Ray Train checkpoint state."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from helpers import bare_env

from raypkg.checksums import verify_sidecar, write_sidecar
from raypkg.cli import main
from raypkg.errors import UsageError


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def assert_refused(result, names_file: str):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert names_file in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def dg_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("dg")
    result = invoke("unlearn", "train", "--dataset", "digits", "--model", "logreg", "--epochs", 2,
                    "--batch-size", 256, "--out", out, "--name", "dg", "--wandb", "disabled", "--no-progress")
    assert result.exit_code == 0, result.output
    return out / "dg"


def damaged_copy(dg_run, tmp_path, damage) -> Path:
    run = tmp_path / "dg"
    shutil.copytree(dg_run, run)
    for f in (run / "trajectory").iterdir():
        os.chmod(f, 0o644)
    damage(run / "trajectory")
    return run


def truncate(path: Path):
    with open(path, "r+b") as f:
        f.truncate(path.stat().st_size - 8)


def overwrite_40k(path: Path):
    size = path.stat().st_size
    assert size > 50_000
    with open(path, "r+b") as f:
        f.seek(size // 4)
        f.write(os.urandom(40_000))
    assert path.stat().st_size == size


DAMAGES = [
    ("w.bin", lambda t: truncate(t / "w.bin")),
    ("g.bin", lambda t: (t / "g.bin").unlink()),
    ("header.json", lambda t: (t / "header.json").write_text('{"dataset": "digits", garbage')),
    ("membership.pt", lambda t: (t / "membership.pt").write_bytes(b"\x80\x04garbage" * 10)),
    ("w.bin", lambda t: overwrite_40k(t / "w.bin")),
    ("checksums.json", lambda t: (t / "checksums.json").unlink()),
]


@pytest.mark.parametrize("name, damage", DAMAGES, ids=["truncated-w", "missing-g", "garbage-header",
                                                      "garbage-membership", "overwritten-w", "no-checksums"])
def test_damaged_trajectory_is_refused_and_left_alone(dg_run, tmp_path, name, damage):
    run = damaged_copy(dg_run, tmp_path, damage)
    before = {f.name: f.read_bytes() for f in (run / "trajectory").iterdir()}
    result = invoke("unlearn", "delete", run, "--ratio", 0.01, "--wandb", "disabled")
    line = assert_refused(result, name)
    assert "damaged" in line or "incomplete" in line
    assert {f.name: f.read_bytes() for f in (run / "trajectory").iterdir()} == before
    assert not (run / "requests").exists() or not any((run / "requests").iterdir())


@pytest.mark.slow
def test_intact_trajectory_still_serves_requests_and_a_real_process_refuses_damage(dg_run, tmp_path):
    result = invoke("unlearn", "delete", dg_run, "--ratio", 0.01, "--wandb", "disabled", "--name", "ok")
    assert result.exit_code == 0, result.output
    run = damaged_copy(dg_run, tmp_path, lambda t: overwrite_40k(t / "w.bin"))
    proc = subprocess.run([sys.executable, "-m", "raypkg.cli", "unlearn", "delete", str(run), "--ratio", "0.01"],
                          capture_output=True, text=True, env=bare_env(), timeout=120)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().startswith("error: ") and "\n" not in proc.stderr.strip()
    assert "w.bin" in proc.stderr and "checksum" in proc.stderr


def test_damaged_selection_cache_is_refused_naming_the_file(tmp_path):
    out = tmp_path / "runs"
    common = ["select", "--method", "grand", "--repeats", 1, "--fraction", 0.1, "--pretrain-epochs", 1,
              "--model", "logreg", "--out", out, "--wandb", "disabled", "--no-progress"]
    assert invoke(*common, "--name", "first").exit_code == 0
    warmups = list((out / ".cache" / "warmup").glob("*.pt"))
    selections = list((out / ".cache" / "selection").glob("*.parquet"))
    assert len(warmups) == 1 and selections
    table = next(p for p in selections if not p.name.endswith(".scores.parquet"))
    data = bytearray(table.read_bytes())
    data[len(data) // 2] ^= 0xFF
    table.write_bytes(bytes(data))
    line = assert_refused(invoke(*common, "--name", "second"), table.name)
    assert "selection cache" in line and "--no-cache" in line
    assert table.read_bytes() == bytes(data)  # not overwritten
    assert not (out / "second").exists()
    truncate(warmups[0])
    assert_refused(invoke(*common, "--name", "third"), warmups[0].name)


def test_checkpoint_state_sidecar_detects_damage(tmp_path):
    state = tmp_path / "state.pt"
    torch.save({"model": {"w": torch.arange(20000.0)}, "epoch": 3}, state)
    write_sidecar(state)
    verify_sidecar(state, "the Ray Train checkpoint")
    data = bytearray(state.read_bytes())
    data[-5000] ^= 0x01
    state.write_bytes(bytes(data))
    with pytest.raises(UsageError, match=r"Ray Train checkpoint is damaged: '.*state.pt' does not match"):
        verify_sidecar(state, "the Ray Train checkpoint")
    (tmp_path / "state.pt.sum").unlink()
    with pytest.raises(UsageError, match=r"state.pt.sum"):
        verify_sidecar(state, "the Ray Train checkpoint")
