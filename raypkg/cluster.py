"""Connecting to Ray: the running cluster when there is one, else a local instance."""

from __future__ import annotations

import os


def connect_ray(num_cpus: int | None = None) -> None:
    """Attach to a cluster (RAY_ADDRESS, as `ray job submit` sets it, or one already
    running on this machine); without one, start a local Ray with ``num_cpus``."""
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if os.environ.get("RAY_ADDRESS"):
        ray.init(log_to_driver=True)
        return
    try:
        ray.init(address="auto", log_to_driver=True)
    except ConnectionError:
        ray.init(address="local", num_cpus=num_cpus, log_to_driver=True)
