"""The Ray Job scripts (`jobs/<method>.py`, each one `run_job` call): bad flags are refused
before the script touches Ray. A job submitted with `ray job submit` that writes its run:
jobs/lipt.py on the two-node cluster of test_multinode.py."""

from __future__ import annotations

import subprocess
import sys

from helpers import REPO
from ray_nodes import free_ports, head_env


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
