"""Shared fixtures: one Ray instance per test session, small thread counts.

W&B needs nothing here: effray runs offline by default without a key (the CLI tests run
`effray` with WANDB_MODE, WANDB_API_KEY and RAY_ADDRESS removed from its environment)."""

from __future__ import annotations

import os

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")


# Ray's own warning, logged with its traceback by Ray Train's controller when a request to its
# autoscaling coordinator takes over 5 s (ray/train/v2/.../autoscaling_coordinator_client.py):
# it happens on a busy 2-CPU machine, and Ray says it is safe to ignore.
RAY_SAFE_TO_IGNORE = "it's safe to ignore this error"


def without_ray_safe_to_ignore(text: str) -> str:
    """TEXT less Ray's warnings that call themselves safe to ignore and the traceback each
    one logs after it (lines with the warning's ``(Process pid=N)`` prefix, up to the
    exception's own line); any other traceback stays for the test to find."""
    kept, prefix = [], None
    for line in text.splitlines():
        if RAY_SAFE_TO_IGNORE in line:
            prefix = line.split(")", 1)[0] + ")"
            continue
        if prefix is not None and line.startswith(prefix):
            body = line[len(prefix):].removeprefix("\x1b[0m").removeprefix(" ")
            if not body.startswith(("Traceback", " ")):
                prefix = None  # the exception's line, the traceback's last
            continue
        prefix = None
        kept.append(line)
    return "\n".join(kept)


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
