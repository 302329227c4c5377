"""Placing a run's Ray work: what each Ray Train worker, shard actor or Tune trial asks
for (``resources``, its GPU share: ``gpu_share``, ``gpus_for``), whether that many fit
(``check_local_placement`` before the private local Ray starts, ``check_placement`` on the
Ray joined; Ray would otherwise wait for them forever), and where they ran
(``record_nodes``, ``take_recorded_nodes``: a run summary's ``nodes``). Connecting to Ray
is ``raypkg.distributed.cluster``'s.
"""

from __future__ import annotations

import math
import os

from raypkg.distributed.cluster import requested_address
from raypkg.errors import UsageError

MIN_CPUS_PER_WORKER = 0.5  # the least CPU share a Ray Train worker is given
MIN_CPUS_PER_ACTOR = 0.05  # the least CPU share a shard actor is given (``shard_pool``)


def check_local_placement(num_workers: int, placement: str = "pack", what: str = "--workers",
                          cpus_each: float = MIN_CPUS_PER_WORKER) -> None:
    """Before any data is loaded or Ray starts: on the private local Ray a run would start
    (no --address, no RAY_ADDRESS), one node whose CPUs are known (EFFRAY_RAY_NUM_CPUS, else
    this machine's), refuse more CPU workers (``what``: Ray Train's --workers, or shard
    --actors) than it can hold at ``cpus_each`` CPU each (Ray Train gives a worker at least
    half a CPU, ``engine.ray_train``), or one per node for several;
    ``check_placement`` checks again once connected."""
    if requested_address():
        return
    if placement == "strict-spread" and num_workers > 1:
        raise UsageError(f"--placement strict-spread puts each of the {num_workers} {what[2:]} on its own node, "
                         "but a private local Ray is one node; use another --placement or --address a cluster")
    cpus = int(os.environ.get("EFFRAY_RAY_NUM_CPUS") or os.cpu_count() or 1)
    fits = math.floor(cpus / cpus_each + 1e-9)
    if num_workers > fits:
        raise UsageError(f"{what} {num_workers} needs {cpus_each:g} CPU per {what[2:-1]}, but a private "
                         f"local Ray (1 node(s), {cpus} CPUs) holds at most {fits}; use {what} {fits} or "
                         f"--address a bigger cluster")


def ray_strategy(placement: str) -> str:
    """Ray's name of a ``--placement`` value: strict-spread -> STRICT_SPREAD."""
    return placement.upper().replace("-", "_")


GPU_SHARES = 10_000  # Ray keeps resource amounts to 4 decimals: a share is floored to 1/10,000ths


def resources(cpus: float, gpus: float) -> dict:
    """What one Ray worker or actor asks for (a placement-group bundle, Ray Train's
    ``resources_per_worker``): its CPUs, and its GPU (share) when it has one."""
    return {"CPU": cpus, **({"GPU": gpus} if gpus else {})}


def gpu_share(count: int, gpus: float) -> float:
    """Each of ``count`` Ray workers', actors' or trials' share of ``gpus`` GPUs: a whole
    one where each can have one, else 1/k with k = ceil(count / whole GPUs) floored to
    Ray's 4 decimals, so that k of them fit on every GPU; 0 without a GPU."""
    whole = math.floor(gpus + 1e-9)
    if count < 1 or whole < 1:
        return 0.0
    per_gpu = math.ceil(count / whole)
    return 1.0 if per_gpu <= 1 else math.floor(GPU_SHARES / per_gpu) / GPU_SHARES


def gpus_for(use_gpu: bool | None, count: int, what: str) -> float:
    """The GPU share of each of ``count`` actors or trials of a run whose ``use_gpu`` is
    ``--gpu`` (True: the cluster must have one), ``--cpu`` (False: none) or unset (a share
    when the connected cluster has GPUs)."""
    import ray

    if use_gpu is False:
        return 0.0
    gpus = float(ray.cluster_resources().get("GPU", 0))
    if use_gpu and gpus < 1:
        raise UsageError(f"--gpu: the Ray cluster has no GPU for the {what}; drop --gpu or join one with GPUs")
    return gpu_share(count, gpus)


def check_placement(num_workers: int, cpus_per_worker: float, gpus_per_worker: float = 0,
                    placement: str = "pack", what: str = "--workers") -> None:
    """Raise a one-line UsageError when the connected cluster cannot hold ``num_workers``
    workers of ``cpus_per_worker`` CPUs (and ``gpus_per_worker`` GPUs) each, placed by
    ``placement`` (strict-spread: one per node; strict-pack: all on one node): Ray would
    otherwise wait for them forever."""
    import ray

    nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
    per_node = [min(math.floor(r.get("CPU", 0) / cpus_per_worker + 1e-9) if cpus_per_worker else num_workers,
                    math.floor(r.get("GPU", 0) / gpus_per_worker + 1e-9) if gpus_per_worker else num_workers)
                for r in nodes]
    fits = {"strict-spread": sum(1 for f in per_node if f >= 1),
            "strict-pack": max(per_node, default=0)}.get(placement, sum(per_node))
    if fits >= num_workers:
        return
    total_cpu = sum(r.get("CPU", 0) for r in nodes)
    need = f"{cpus_per_worker:g} CPU" + (f" + {gpus_per_worker:g} GPU" if gpus_per_worker else "")
    gpus = f", {sum(r.get('GPU', 0) for r in nodes):g} GPUs" if gpus_per_worker else ""
    placed = f" with --placement {placement}" if placement.startswith("strict") else ""
    raise UsageError(f"{what} {num_workers} needs {need} per worker{placed}, but the Ray cluster "
                     f"({len(nodes)} node(s), {total_cpu:g} CPUs{gpus}) holds at most {fits}; "
                     f"use {what} {fits} or a bigger cluster")


# Where the Ray work of the current run went: what ("train", "ensemble", "shard_actors")
# -> the node id of each rank or actor, in order. ``Recipe.run`` clears it and puts it in
# the summary as ``nodes``.
_placed: dict[str, list[str]] = {}


def record_nodes(what: str, node_ids: list[str]) -> None:
    _placed[what] = list(node_ids)


def take_recorded_nodes() -> dict[str, list[str]]:
    """What ``record_nodes`` saw since the last call (and forget it)."""
    placed = dict(_placed)
    _placed.clear()
    return placed
