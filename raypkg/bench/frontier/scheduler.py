"""Where a frontier runs: its points as units of work on Ray, each declaring what it takes
(torch threads as CPUs; a share of a GPU where the cluster has GPUs), at most ``slots`` at
once, the longest first; or, with one slot and no cluster, one after another in this
process (no Ray).

A unit is the points of one seed that share work (``points.shared_work``: a model-based
selection's warm-up, LiPT's shard models; the cache that holds it is the store's), or one
point alone. Each unit's process loads its seed's data once, runs its points and writes each
one to the store as it finishes (``store.FrontierStore``); a point that raises is stored as
failed with its error, and its unit goes on. Ray retries a unit whose node was lost (its
finished points are stored already, so the retry runs only the rest).

Ray tasks rather than Ray Tune: Tune's ``Tuner.restore`` resumes only the exact experiment
it saved, so a frontier given more seeds or methods could not reuse its stored points, and a
trial per point would add Tune's controller, trial directories and result reporting to
what is one function call that writes one file.
"""

from __future__ import annotations

import functools
import json
import socket
import sys
import time
import traceback

import click

from raypkg.bench.frontier.judge import CLOCKED
from raypkg.bench.frontier.points import build_points, count_examples, point_id
from raypkg.bench.frontier.store import FrontierStore

HARNESS_PHASES = (*CLOCKED, "eval")  # what a run's cost_s holds (epoch_eval_s is read off its epochs)


@functools.lru_cache(maxsize=2)
def seed_data(settings_json: str, seed: int):
    """A seed's data (its noisy labels included), loaded once per process."""
    from raypkg.recipe import load_data

    settings = json.loads(settings_json)
    return load_data(build_points(settings, ["full-fp32"], seed)[0].cfg)


def point_record(p, row: dict, summary: dict, data, per_example, started_at: float, threads: int,
                 keep_selection: bool) -> dict:
    """What the store keeps of a finished point: its row on the frontier's clock (the
    per-epoch evaluations out of ``train_s`` into ``epoch_eval_s``, ``e2e_s`` the sum of the
    clocked phases), its conditions (threads, node, wall-clock span) and what judging it
    needs later: each epoch's accuracy and clocks, the phases' seconds, and a selection's
    picks and scores (SVP's agreement)."""
    row = count_examples(p, dict(row), summary, data, per_example)
    row["epoch_eval_s"] = sum(epoch.get("eval_s", 0.0) for epoch in summary["rows"])
    row["train_s"] -= row["epoch_eval_s"]
    row["e2e_s"] = sum(row[f"{phase}_s"] for phase in CLOCKED)
    row.update(threads=threads, node=node(), started_at=started_at, ended_at=time.time(), clock="measured",
               chance=1.0 / data.num_classes)
    tables = {name: {k: list(map(float, v)) for k, v in table.items()} for name, table in
              summary.get("tables", {}).items() if keep_selection and name in ("selection.parquet", "scores.parquet")}
    epochs = [{k: epoch.get(k) for k in ("epoch", "test_acc", "epoch_end_time", "eval_s")} for epoch in summary["rows"]]
    return {"row": row, "epochs": epochs, "started_at": summary["started_at"], "phases": summary.get("phases", {}),
            "cost_s": summary.get("cost_s", {}), "tables": tables}


def node() -> str:
    """Where this process runs: its Ray node's id in a Ray worker, else the host's name."""
    ray = sys.modules.get("ray")  # not imported here for a point run without Ray
    return ray.get_runtime_context().get_node_id() if ray and ray.is_initialized() else socket.gethostname()


def run_unit(settings: dict, methods: list[str], seed: int, ids: list[str], store_location: str,
             threads: int) -> list[str]:
    """Run the points ``ids`` of ``seed`` one after another, each stored as it finishes (or
    as failed, with its error); the ids it ran."""
    import torch

    from raypkg.bench.harness import PointRunner
    from raypkg.models.flops import flops_per_example
    from raypkg.selection.cache import SelectionCache

    store = FrontierStore(store_location)
    ids = [point for point in ids if point not in store.ids()]  # a retried unit: only what is not stored
    runner = PointRunner(threads)
    data = seed_data(json.dumps(settings, sort_keys=True), seed)
    points = {point_id(p): p for p in build_points(settings, methods, seed, n=len(data.train))}
    per_example = flops_per_example(settings["model"], data)
    cache = SelectionCache(store.cache_dir())
    for point in ids:
        p, started = points[point], time.time()
        try:
            ((row, summary),) = runner.rows([p], data, HARNESS_PHASES, "e2e_s", cache=cache)
            store.put(point, point_record(p, row, summary, data, per_example, started, torch.get_num_threads(),
                                          bool(settings["selection_models"])))
        except Exception as e:  # noqa: BLE001 (recorded with its traceback, the frontier goes on)
            store.fail(point, p.label, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}")
    return ids


def slots_of(slots: int | None, threads: int) -> int:
    """How many points run at once on Ray: ``--slots``, else every CPU of the cluster over the
    threads a point takes."""
    import ray

    return slots or max(1, int(ray.cluster_resources().get("CPU", 1) // threads))


def gpu_share(points_per_gpu: int) -> float:
    """Each point's share of a GPU where the cluster has GPUs (Ray's fractional GPUs, logical
    only: the points on one card share its memory and compute), else 0."""
    import ray

    return 1.0 / points_per_gpu if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


class Progress:
    """``frontier: D/T points stored (F failed), M min, ETA E min`` each time the count moves;
    the ETA from this call's pace (the points stored before it took no time now)."""

    def __init__(self, store: FrontierStore, wanted: set[str]):
        self.store, self.wanted, self.start = store, wanted, time.monotonic()
        self.before = len(wanted & store.ids())
        self.shown = -1

    def show(self) -> None:
        done, failed = len(self.wanted & self.store.ids()), len(self.wanted & set(self.store.failed_ids()))
        if done + failed == self.shown:
            return
        self.shown, minutes = done + failed, (time.monotonic() - self.start) / 60
        now = done + failed - self.before
        eta = f", ETA {minutes / now * (len(self.wanted) - done - failed):.0f} min" if now > 0 else ""
        click.echo(f"frontier: {done}/{len(self.wanted)} points stored" + (f" ({failed} failed)" if failed else "")
                   + f", {minutes:.1f} min{eta}", err=True)


def run_units(units: list[tuple[int, list[str]]], settings: dict, methods: list[str], store: FrontierStore,
              threads: int, slots: int | None, use_ray: bool, points_per_gpu: int, everything: set[str]) -> None:
    """Every unit ``(seed, point ids)``: here one after another, or on Ray with at most
    ``slots`` at once (the units in the order given: the longest first); the progress over
    ``everything``, the frontier's points, those stored before included."""
    progress = Progress(store, everything)
    progress.show()
    if not use_ray:
        for seed, ids in units:
            run_unit(settings, methods, seed, ids, store.location, threads)
            progress.show()
        return
    import ray

    task = ray.remote(run_unit).options(num_cpus=threads, num_gpus=gpu_share(points_per_gpu), max_retries=3)
    window, queue, running = slots_of(slots, threads), list(units), {}
    click.echo(f"frontier: {len(units)} units of work on Ray, {window} at once, {threads} thread(s) each", err=True)
    while queue or running:
        while queue and len(running) < window:
            seed, ids = queue.pop(0)
            running[task.remote(settings, methods, seed, ids, store.location, threads)] = ids
        ready, _ = ray.wait(list(running), num_returns=1, timeout=10)
        for ref in ready:
            ids = running.pop(ref)
            try:
                ray.get(ref)
            except Exception as e:  # noqa: BLE001 (the unit's process or node died past its retries)
                for point in set(ids) - store.ids():
                    store.fail(point, point, f"{type(e).__name__}: {e}")
        progress.show()


def longest_first(units: list[tuple[int, list[str]]], epochs_of) -> list[tuple[int, list[str]]]:
    """Units ordered by their points' epochs summed, the most first (so the last to finish
    are short, and the slots stay busy to the end)."""
    return sorted(units, key=lambda unit: -sum(epochs_of(point) for point in unit[1]))


def unit_plan(points, stored: set[str], data) -> list[list[str]]:
    """The missing points' ids in units: the points of one shared work together, and a point
    that trains exactly as an earlier one (``same_training``) with it, so it takes its run."""
    from raypkg.bench.frontier.points import shared_work
    from raypkg.bench.harness import same_training

    units: dict = {}
    owner: dict[str, tuple] = {}
    for p in points:
        point = point_id(p)
        if point in stored:
            continue
        twin = same_training(p, data)
        key = owner.setdefault(twin, shared_work(p) or ("alone", point))
        units.setdefault(key, []).append(point)
    return list(units.values())


def epochs_of_points(points) -> dict[str, float]:
    """Each point's training epochs (the longest stage), a measure of its length."""
    return {point_id(p): float(getattr(p.cfg, "epochs", 1) or 1) + float(getattr(p.cfg, "pretrain_epochs", 0) or 0)
            + float(getattr(p.cfg, "pre_epochs", 0) or 0) for p in points}

