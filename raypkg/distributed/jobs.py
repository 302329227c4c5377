"""Per-class (per-block) work spread over the shard pool's actors.

The shard actors hold data shards for per-example work; between those calls they are
idle, so the greedy steps of a selection (one job per class) run on them too. Jobs go to
actors longest-first (LPT scheduling by ``sizes``); results come back in job order, so
the outcome is the same as running the jobs in a loop.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence


def run_jobs(_shard, fn: Callable, jobs: Sequence[tuple]) -> list[Any]:
    """Runs inside an actor (the shard is not used): ``fn(*job)`` for each job, in order."""
    return [fn(*job) for job in jobs]


def assign_jobs(sizes: Sequence[float], num_workers: int) -> list[list[int]]:
    """Longest-processing-time-first assignment of jobs to workers (deterministic)."""
    loads = [0.0] * num_workers
    plan: list[list[int]] = [[] for _ in range(num_workers)]
    for j in sorted(range(len(sizes)), key=lambda i: (-sizes[i], i)):
        w = min(range(num_workers), key=lambda i: (loads[i], i))
        plan[w].append(j)
        loads[w] += sizes[j]
    return plan


def run_on_actors(pool, fn: Callable, jobs: Sequence[tuple], sizes: Sequence[float] | None = None) -> list[Any]:
    """``[fn(*job) for job in jobs]``, with the jobs spread over ``pool.actors``."""
    import ray

    sizes = list(sizes) if sizes is not None else [1.0] * len(jobs)
    plan = assign_jobs(sizes, len(pool.actors))
    fn_ref = ray.put(fn)
    refs = [(ids, actor.run.remote(run_jobs, fn_ref, [jobs[i] for i in ids]))
            for actor, ids in zip(pool.actors, plan) if ids]
    out: list[Any] = [None] * len(jobs)
    for ids, ref in refs:
        for i, res in zip(ids, ray.get(ref)):
            out[i] = res
    return out
