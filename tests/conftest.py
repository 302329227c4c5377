"""Shared fixtures: one Ray instance per test session, small thread counts.

W&B needs nothing here: effray runs offline by default without a key (the CLI tests run
`effray` with WANDB_MODE, WANDB_API_KEY and RAY_ADDRESS removed from its environment)."""

from __future__ import annotations

import os
import tempfile

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
# The execution choices that --precision auto measures (raypkg.engine.execution) go to one cache per test
# run, shared by its xdist workers and every process they start, not to the user's ~/.cache/effray.
os.environ.setdefault("EFFRAY_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"effray-test-cache-{os.environ.get('PYTEST_XDIST_TESTRUNUID') or os.getpid()}"))


# Ray's own warning, logged with its traceback by Ray Train's controller when a request to its
# autoscaling coordinator takes over 5 s (ray/train/v2/.../autoscaling_coordinator_client.py):
# it happens on a busy 2-CPU machine, and Ray says it is safe to ignore.
RAY_SAFE_TO_IGNORE = "it's safe to ignore this error"


def without_ray_noise(text: str) -> str:
    """TEXT less two kinds of Ray's own noise, each with the traceback it logs under its
    ``(Process pid=N)`` prefix (up to the exception's own line); any other traceback stays
    for the test to find:
    - Ray's warnings that call themselves safe to ignore;
    - a Ray worker stopped by SIGTERM (Ray's handler raises SystemExit) while Python ran a
      garbage-collection callback, which Python reports as "Exception ignored in: ...":
      a Tune trial's actor ended by Tune on a busy machine."""
    lines, kept, i = text.splitlines(), [], 0
    while i < len(lines):
        prefix = lines[i].split(")", 1)[0] + ")"
        ignored = _body(lines[i], prefix).startswith("Exception ignored in:")
        if RAY_SAFE_TO_IGNORE in lines[i] or ignored:
            end, exception = _traceback_after(lines, i, prefix)
            if not ignored or exception.startswith("SystemExit"):
                i = end
                continue
        kept.append(lines[i])
        i += 1
    return "\n".join(kept)


def _body(line: str, prefix: str) -> str:
    return line[len(prefix):].removeprefix("\x1b[0m").removeprefix(" ")


def _traceback_after(lines: list[str], i: int, prefix: str) -> tuple[int, str]:
    """(the line after it, the exception's line) of the traceback that follows line I under
    PREFIX: its lines start with "Traceback" or a space, the exception's line ends it."""
    j = i + 1
    while j < len(lines) and lines[j].startswith(prefix):
        body = _body(lines[j], prefix)
        j += 1
        if not body.startswith(("Traceback", " ")):
            return j, body
    return j, ""


def bare_env(**extra) -> dict:
    """The environment of a new user's shell: no W&B mode or key, no Ray cluster named."""
    env = {k: v for k, v in os.environ.items() if k not in ("WANDB_MODE", "WANDB_API_KEY", "RAY_ADDRESS")}
    env.update(extra)
    return env


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One intra-op thread per test: the tensors here are small, and on a 2-vCPU machine
    whose other core is busy (Ray workers, a second test process) two OpenMP threads can
    make small ops many times slower."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_session():
    """A local 2-CPU Ray instance started once for every test that asks for it."""
    import ray

    if not ray.is_initialized():
        # Workers import shard functions defined in test modules from tests/.
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 object_store_memory=600 * 1024 * 1024,
                 runtime_env={"env_vars": {"PYTHONPATH": os.pathsep.join(
                     p for p in (TESTS_DIR, os.environ.get("PYTHONPATH")) if p)}})
    yield ray
    ray.shutdown()
