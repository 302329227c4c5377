"""The Ray Job path: `ray job submit ... -- python jobs/train.py` against a head that this
test starts itself (``ray_nodes``). jobs/lipt.py is submitted to a two-node cluster in
test_multinode.py."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from ray_nodes import RAY_CLI, free_ports, head_env, start_node

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def ray_head(request):
    """A 2-CPU head with the dashboard (the job server): yields (dashboard URL, temp dir)."""
    head = start_node()

    def cleanup():
        left = head.end()
        assert not left, f"processes of the test head still alive: {left}"

    request.addfinalizer(cleanup)
    yield head.dashboard, head.temp_dir


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
