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

**Timed alone.** A point's seconds are fair only against points timed under the same
conditions; points packed beside each other slow each other (two on this 2-core machine:
1.44x a point, median). The anchors take accuracy from packed runs and time from isolated
ones, so ``--time-alone`` runs every point that shared its node once more, alone on it (a
task that takes all the node's CPUs and GPUs, one a node at a time), and its verdict
compares those seconds. A point run with one slot ran alone already and is kept as it is.

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
from raypkg.bench.frontier.store import FrontierStore, Unwritable, frontier_digest
from raypkg.tracking.provenance import machine

HARNESS_PHASES = (*CLOCKED, "eval")  # what a run's cost_s holds (epoch_eval_s is read off its epochs)


@functools.lru_cache(maxsize=2)
def seed_data(settings_json: str, seed: int):
    """A seed's data (its noisy labels included), loaded once per process."""
    from raypkg.recipe import load_data

    settings = json.loads(settings_json)
    return load_data(build_points(settings, ["full-fp32"], seed)[0].cfg)


def point_record(p, row: dict, summary: dict, data, per_example, started_at: float, threads: int,
                 keep_selection: bool, timed: str, code: dict) -> dict:
    """What the store keeps of a finished point: its row on the frontier's clock (the
    per-epoch evaluations out of ``train_s`` into ``epoch_eval_s``, ``e2e_s`` the sum of the
    clocked phases), its conditions (threads, node, the ``machine`` that timed it:
    ``provenance.machine``, wall-clock span, ``timed``: ``alone`` on its node or ``packed``
    beside other points), the ``code`` that ran it (``commit``, ``code``, ``draft``:
    ``provenance.code_identity``) and what judging it needs later: each epoch's accuracy and
    clocks, the phases' seconds, and a selection's picks and scores (SVP's agreement)."""
    row = count_examples(p, dict(row), summary, data, per_example)
    row["epoch_eval_s"] = sum(epoch.get("eval_s", 0.0) for epoch in summary["rows"])
    row["train_s"] -= row["epoch_eval_s"]
    row["e2e_s"] = sum(row[f"{phase}_s"] for phase in CLOCKED)
    row.update(threads=threads, node=node(), machine=machine(), started_at=started_at, ended_at=time.time(),
               clock="measured", chance=1.0 / data.num_classes, timed=timed, **code)
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
             threads: int, kind: str = "points", timed: str = "alone") -> list[str]:
    """Run the points ``ids`` of ``seed`` one after another, each stored as it finishes (or
    as failed, with its error) as a run of ``kind`` (``store.KINDS``), ``timed`` alone or
    packed; the ids it ran."""
    import torch

    from raypkg.bench.harness import PointRunner
    from raypkg.models.flops import flops_per_example
    from raypkg.selection.cache import SelectionCache

    store = FrontierStore(store_location)
    ids = [point for point in ids if point not in store.ids(kind)]  # a retried unit: only what is not stored
    runner = PointRunner(threads)
    data = seed_data(json.dumps(settings, sort_keys=True), seed)
    points = {point_id(p): p for p in build_points(settings, methods, seed, n=len(data.train))}
    per_example = flops_per_example(settings["model"], data)
    cache = SelectionCache(store.cache_dir(kind))
    frontier = frontier_digest({**settings, "threads": threads})  # as its frontier.json holds them
    for point in ids:
        p, started = points[point], time.time()
        try:
            ((row, summary),) = runner.rows([p], data, HARNESS_PHASES, "e2e_s", cache=cache)
            record = point_record(p, row, summary, data, per_example, started, torch.get_num_threads(),
                                  bool(settings["selection_models"]), timed, settings.get("code", {}))
            store.put(point, {**record, "frontier": frontier}, kind)  # the frontier it belongs to
        except Unwritable:
            raise  # the store cannot take this point, nor its failure: the frontier stops, in one line
        except Exception as e:  # noqa: BLE001 (recorded with its traceback, the frontier goes on)
            store.fail(point, p.label, f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=8)}", kind)
    return ids


def slots_of(slots: int | None, threads: int) -> int:
    """How many points run at once on Ray: every CPU of the cluster over the threads a point
    takes, or ``--slots`` where it asks fewer (more would only wait for CPUs: capped, and a
    note says so)."""
    import ray

    capacity = max(1, int(ray.cluster_resources().get("CPU", 1) // threads))
    if slots and slots > capacity:
        click.echo(f"frontier: --slots {slots} capped at {capacity}: the cluster's CPUs run {capacity} points of "
                   f"{threads} thread(s) at once", err=True)
    return min(slots or capacity, capacity)


def gpu_share(points_per_gpu: int) -> float:
    """Each point's share of a GPU where the cluster has GPUs (Ray's fractional GPUs, logical
    only: the points on one card share its memory and compute), else 0."""
    import ray

    return 1.0 / points_per_gpu if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0


class Progress:
    """``frontier: D/T points stored (F failed), M min, ETA E min`` each time the count moves
    (``timed alone`` for the runs timed alone); the ETA from this call's pace (the points
    stored before it took no time now)."""

    def __init__(self, store: FrontierStore, wanted: set[str], kind: str = "points"):
        self.store, self.wanted, self.kind, self.start = store, wanted, kind, time.monotonic()
        self.before = len(wanted & store.ids(kind))
        self.shown = -1

    def show(self) -> None:
        done = len(self.wanted & self.store.ids(self.kind))
        failed = len(self.wanted & self.store.failed_ids(self.kind))
        if done + failed == self.shown:
            return
        self.shown, minutes = done + failed, (time.monotonic() - self.start) / 60
        now = done + failed - self.before
        left = minutes / now * (len(self.wanted) - done - failed) if now > 0 else None
        eta = "" if left is None else f", ETA {left:.0f} min" if left >= 1 else f", ETA {left * 60:.0f} s"
        what = "points stored" if self.kind == "points" else "points timed alone"
        click.echo(f"frontier: {done}/{len(self.wanted)} {what}" + (f" ({failed} failed)" if failed else "")
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

    window = slots_of(slots, threads)
    task = ray.remote(run_unit).options(num_cpus=threads, num_gpus=gpu_share(points_per_gpu), max_retries=3)
    click.echo(f"frontier: {len(units)} units of work on Ray, {window} at once, {threads} thread(s) each", err=True)
    timed = "alone" if window == 1 else "packed"
    queue, running = list(units), {}
    while queue or running:
        while queue and len(running) < window:
            seed, ids = queue.pop(0)
            running[task.remote(settings, methods, seed, ids, store.location, threads, "points", timed)] = ids
        ready, _ = ray.wait(list(running), num_returns=1, timeout=10)
        for ref in ready:
            ids = running.pop(ref)
            try:
                ray.get(ref)
            except Exception as e:  # noqa: BLE001 (the unit's process or node died past its retries)
                for point in set(ids) - store.ids():
                    store.fail(point, point, f"{type(e).__name__}: {e}")
        progress.show()


def run_alone(units: list[tuple[int, list[str]]], settings: dict, methods: list[str], store: FrontierStore,
              threads: int, everything: set[str], use_ray: bool) -> None:
    """Every unit ``(seed, point ids)`` once more, each alone on its node, stored as runs timed
    alone (``kind`` alone): here one after another, or on Ray as tasks pinned to a node that
    take all of its CPUs and GPUs, one a node at a time (a unit whose node is lost runs again
    on another); the progress over ``everything``, the points to time alone."""
    progress = Progress(store, everything, "alone")
    progress.show()
    if not use_ray:
        for seed, ids in units:
            run_unit(settings, methods, seed, ids, store.location, threads, "alone", "alone")
            progress.show()
        return
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    nodes = alive_nodes(threads)
    click.echo(f"frontier: {len(units)} units timed again alone, on {len(nodes)} node(s) one at a time", err=True)
    queue, running, busy = list(units), {}, {}
    while queue or running:
        for node_id, resources in alive_nodes(threads).items():
            if queue and node_id not in busy.values():
                seed, ids = queue.pop(0)
                ref = ray.remote(run_unit).options(
                    num_cpus=resources.get("CPU", 0), num_gpus=resources.get("GPU", 0), max_retries=0,
                    scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=False),
                ).remote(settings, methods, seed, ids, store.location, threads, "alone", "alone")
                running[ref], busy[ref] = (seed, ids), node_id
        if not running:
            raise click.ClickException(f"no node with {threads} CPUs is left to time {len(queue)} units alone")
        for ref in ray.wait(list(running), num_returns=1, timeout=10)[0]:
            unit, node_id = running.pop(ref), busy.pop(ref)
            try:
                ray.get(ref)
            except Exception as e:  # noqa: BLE001 (a lost node: the unit again elsewhere; else recorded)
                if node_id in alive_nodes(threads):
                    for point in set(unit[1]) - store.ids("alone"):
                        store.fail(point, point, f"{type(e).__name__}: {e}", "alone")
                else:
                    queue.append(unit)
        progress.show()


def alive_nodes(threads: int) -> dict[str, dict]:
    """The cluster's live nodes with at least ``threads`` CPUs: node id -> its resources."""
    import ray

    return {n["NodeID"]: n["Resources"] for n in ray.nodes()
            if n["Alive"] and n["Resources"].get("CPU", 0) >= threads}


def run_order(units: list[tuple[int, list[str]]], epochs_of, curve: set[str],
              one_at_a_time: bool) -> list[tuple[int, list[str]]]:
    """Units ``(seed, point ids)`` in the order they run. Packed, the longest (their points'
    epochs summed) first, so the last to finish are short and the slots stay busy to the end.
    One at a time there is nothing to pack: seed by seed, each seed's budget curve (the points
    of ``curve``) first, the whole budget down, then its other units the longest first, so each
    point is judged against its seed's whole curve as it lands, and a stop leaves whole seeds."""
    def length(unit):
        return sum(epochs_of(point) for point in unit[1])

    if not one_at_a_time:
        return sorted(units, key=lambda unit: -length(unit))
    return sorted(units, key=lambda unit: (unit[0], curve.isdisjoint(unit[1]), -length(unit)))


def unit_plan(points, stored: set[str], trains: dict[str, str]) -> list[list[str]]:
    """The ids of ``points`` not in ``stored``, in units: the points of one shared work
    together, and a point that trains exactly as an earlier one (the same ``trains`` value:
    ``harness.same_training``) with it, so it takes its run."""
    from raypkg.bench.frontier.points import shared_work

    units: dict = {}
    owner: dict[str, tuple] = {}
    for p in points:
        point = point_id(p)
        if point not in stored:
            key = owner.setdefault(trains[point], shared_work(p) or ("own", point))
            units.setdefault(key, []).append(point)
    return list(units.values())


def epochs_of_points(points) -> dict[str, float]:
    """Each point's training epochs (the longest stage), a measure of its length."""
    return {point_id(p): float(getattr(p.cfg, "epochs", 1) or 1) + float(getattr(p.cfg, "pretrain_epochs", 0) or 0)
            + float(getattr(p.cfg, "pre_epochs", 0) or 0) for p in points}

