"""The shard-actor pool: K Ray actors, each holding one contiguous shard of a dataset.

Each actor loads its shard once and keeps it. ``map`` sends a function and its
arguments (put in the object store once, shared by all actors) and returns per-example
results concatenated in the dataset's order; ``sum`` adds per-shard partial results
(e.g. gradient sums). ``map_in_process`` / ``sum_in_process`` do the same work without
Ray over the same shards, so the two paths can be compared exactly.

A function passed here has the signature ``fn(shard: IndexedDataset, *args)`` and must
be importable by the actors (a module-level function, not a lambda in a test body).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch

from raypkg.data.base import IndexedDataset
from raypkg.distributed.placement import resources

ShardFn = Callable[..., Any]


def shard_positions(n: int, num_shards: int) -> list[np.ndarray]:
    """Contiguous, nearly equal shards of range(n); concatenated they give range(n)."""
    return [p for p in np.array_split(np.arange(n), num_shards) if len(p)]


def concat_results(parts: list[Any]) -> Any:
    """Concatenate per-shard results along dim 0 (tensors, or dicts of tensors)."""
    if isinstance(parts[0], dict):
        return {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    return torch.cat(parts)


def sum_results(parts: list[Any]) -> Any:
    """Add per-shard results in shard order (a fixed order keeps the sum reproducible)."""
    if isinstance(parts[0], dict):
        return {k: sum_results([p[k] for p in parts]) for k in parts[0]}
    total = parts[0].clone()
    for p in parts[1:]:
        total += p
    return total


def map_in_process(fn: ShardFn, dataset: IndexedDataset, *args, num_shards: int = 1) -> Any:
    return concat_results([fn(dataset.subset(p), *args) for p in shard_positions(len(dataset), num_shards)])


def sum_in_process(fn: ShardFn, dataset: IndexedDataset, *args, num_shards: int = 1) -> Any:
    return sum_results([fn(dataset.subset(p), *args) for p in shard_positions(len(dataset), num_shards)])


class ShardActor:
    """Holds one shard; runs functions over it. Wrapped with ``ray.remote`` by the pool."""

    def __init__(self, shard: IndexedDataset, num_threads: int, device: str = "cpu"):
        torch.set_num_threads(max(1, num_threads))
        # on its GPU (share) the shard is held there, once; streamed images are read per batch
        self.shard = shard if device == "cpu" or shard.streamed else shard.to(device)

    def run(self, fn: ShardFn, *args) -> Any:
        return fn(self.shard, *args)

    def node(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()


class ShardPool:
    """K actors over contiguous shards of ``dataset``; use as a context manager.

    ``cpus_per_actor`` defaults to an even share of the cluster's CPUs (fractional, so a
    pool never blocks other Ray work on a small machine); each actor runs torch with that
    many threads. With ``gpus_per_actor`` (a share of one GPU, ``gpu_share``) each actor
    holds its shard on its GPU and ``device`` is "cuda": the shard functions compute there
    and return CPU tensors, so ``map``'s concatenation and ``sum``'s additions are the same
    on either device. The actors are one placement group's bundles, placed across the
    cluster's nodes by ``placement`` (``--placement``); ``nodes`` is each actor's node id.
    """

    PLACE_TIMEOUT_S = 60.0

    def __init__(self, dataset: IndexedDataset, num_actors: int, cpus_per_actor: float | None = None,
                 placement: str = "pack", gpus_per_actor: float = 0.0):
        import ray
        from ray.util.placement_group import placement_group, remove_placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from raypkg.distributed.placement import MIN_CPUS_PER_ACTOR, check_placement, ray_strategy, record_nodes
        from raypkg.errors import UsageError

        if num_actors < 1:
            raise ValueError("a shard pool needs at least one actor")
        if cpus_per_actor is None:
            total = ray.cluster_resources().get("CPU", 1.0)
            cpus_per_actor = max(total / num_actors * 0.9, MIN_CPUS_PER_ACTOR)
        check_placement(num_actors, cpus_per_actor, gpus_per_actor, placement=placement, what="--actors")
        self._ray, self._remove_group, self.actors = ray, remove_placement_group, []
        self.device = "cuda" if gpus_per_actor else "cpu"
        self.group = placement_group([resources(cpus_per_actor, gpus_per_actor)] * num_actors,
                                     strategy=ray_strategy(placement))
        if not self.group.wait(self.PLACE_TIMEOUT_S):
            self.close()
            raise UsageError(f"--actors {num_actors} of {cpus_per_actor:g} CPU each (--placement {placement}) were "
                             f"not placed within {self.PLACE_TIMEOUT_S:g}s; the cluster's CPUs are busy")
        threads = max(1, int(round(cpus_per_actor)))
        remote_cls = ray.remote(ShardActor)
        self.positions = shard_positions(len(dataset), num_actors)
        self.actors = [remote_cls.options(num_cpus=cpus_per_actor, num_gpus=gpus_per_actor,
                                          scheduling_strategy=PlacementGroupSchedulingStrategy(
                                              self.group, placement_group_bundle_index=i),
                                          ).remote(dataset.subset(p), threads, self.device)
                       for i, p in enumerate(self.positions)]
        self.nodes = ray.get([a.node.remote() for a in self.actors])  # also waits until every shard is loaded
        record_nodes("shard_actors", self.nodes)

    def _run(self, fn: ShardFn, args: tuple) -> list[Any]:
        ray = self._ray
        refs = [ray.put(a) for a in args]  # one copy in the object store for all actors
        return ray.get([actor.run.remote(fn, *refs) for actor in self.actors])

    def map(self, fn: ShardFn, *args) -> Any:
        """Per-example results of ``fn`` over every shard, in dataset order."""
        return concat_results(self._run(fn, args))

    def sum(self, fn: ShardFn, *args) -> Any:
        """Sum of ``fn``'s per-shard results, added in shard order."""
        return sum_results(self._run(fn, args))

    def close(self) -> None:
        for actor in self.actors:
            self._ray.kill(actor)
        self.actors = []
        if self.group is not None:
            self._remove_group(self.group)
            self.group = None

    def __enter__(self) -> "ShardPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_pool(dataset: IndexedDataset, num_actors: int, *, leave_cpus: float = 0.0,
              placement: str = "pack", use_gpu: bool | None = False) -> ShardPool:
    """Join (or start) the run's Ray and start ``num_actors`` shard actors over ``dataset``.
    ``leave_cpus`` of the cluster's CPUs stay free for work running beside the actors (CREST
    trains while they select: on 2 cores, a 2-thread actor beside training made each
    selection 5x slower); the actors share the rest. ``use_gpu`` (the run's ``--gpu/--cpu``;
    None: when the cluster has GPUs): the actors share the cluster's GPUs (``gpus_for``)."""
    import ray

    from raypkg.distributed.cluster import connect_ray
    from raypkg.distributed.placement import MIN_CPUS_PER_ACTOR, gpus_for

    connect_ray()
    cpus = None
    if leave_cpus:
        cpus = max((ray.cluster_resources().get("CPU", 1.0) - leave_cpus) / num_actors, MIN_CPUS_PER_ACTOR)
    return ShardPool(dataset, num_actors, cpus_per_actor=cpus, placement=placement,
                     gpus_per_actor=gpus_for(use_gpu, num_actors, "shard actors"))
