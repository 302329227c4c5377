"""Shared fixtures: one Ray instance per test session, small thread counts.

W&B needs nothing here: effray runs offline by default without a key (the CLI tests run
`effray` with WANDB_MODE, WANDB_API_KEY and RAY_ADDRESS removed from its environment)."""

from __future__ import annotations

import os
import tempfile

import pytest

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")
# The execution choices that --precision auto measures (raypkg.engine.execution) go to one cache per test
# run, shared by its xdist workers and every process they start, not to the user's ~/.cache/effray.
os.environ.setdefault("EFFRAY_CACHE_DIR", os.path.join(
    tempfile.gettempdir(), f"effray-test-cache-{os.environ.get('PYTEST_XDIST_TESTRUNUID') or os.getpid()}"))
# The tables the tests write are drafts: a bench refuses to store a result from a checkout whose raypkg/
# differs from its commit (raypkg.tracking.provenance), and a developer runs the tests on uncommitted code.
# tests/unit/test_provenance.py clears it to check the refusal itself.
os.environ["EFFRAY_DRAFT"] = "1"

from helpers import TEST_DIRS, TIERS  # noqa: E402  (after the environment: it imports torch and raypkg)


def pytest_collection_modifyitems(config, items):
    """Each test carries its tier's mark (its directory: unit, ray or docs); the ray and docs
    tiers are slow as a whole, and a unit test marked slow by hand is left out of the quick
    tier (`pytest tests/unit -m "not slow"`)."""
    for item in items:
        tier = next((t for t in TIERS if f"{os.sep}{t}{os.sep}" in str(item.path)), None)
        if tier:
            item.add_marker(tier)
        if tier in ("ray", "docs") or "ray_session" in item.fixturenames:  # a unit test that starts Ray
            item.add_marker("slow")


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
                     p for p in (*TEST_DIRS, os.environ.get("PYTHONPATH")) if p)}})
    yield ray
    ray.shutdown()
