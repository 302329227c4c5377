"""`effray bench selection`: selection time in-process vs on shard actors, and our facility
location against apricot-select's on the same similarity matrix.

Part 1: every method selects in-process, on 1 actor and on K actors (pools built before
the clock), with identical picks required, each timed by ``raypkg.timing.measure`` (warmed:
in-process on a small slice, on a pool by itself);
``scaling`` = 1 actor's seconds / K actors', ``vs in-process`` = in-process / K actors';
``calibration`` splits fixed matrix work over the actors. Part 2: the largest class's
CRAIG similarity matrix given to apricot's lazy greedy (as shipped, compiling in every
``fit``, and compiled once) and to ours (float64, float32; warmed up); then many small
blocks (CREST's): our batched greedy vs apricot block by block; each warmed on a small
stand-in (``measure_one``).
"""

from __future__ import annotations

import functools
import importlib.util
from contextlib import contextmanager

import click
import numpy as np
import pandas as pd
import torch

from raypkg.bench.harness import BenchRunner, bench_options
from raypkg.cli_options import address_option, check_bench_numbers, config_options, list_option, name_list
from raypkg.data.registry import load_dataset
from raypkg.distributed.cluster import connect_ray
from raypkg.distributed.shard_pool import ShardPool
from raypkg.engine.placement import Placement, decide_execution
from raypkg.errors import UsageError
from raypkg.plots import hbar
from raypkg.selection import Compute, Keep, Scoring, select
from raypkg.selection.config import CoresetConfig
from raypkg.selection.embeddings import EmbeddingKind, logit_gradients, logits_and_features
from raypkg.selection.facility_location import (
    greedy_batched,
    greedy_dense,
    objective,
    pad_blocks,
    similarity_from_distances,
)
from raypkg.selection.pipeline import pretrain_full
from raypkg.selection.registry import get_selector
from raypkg.timing import measure, measure_one, timed

DEFAULT_METHODS = "uniform,grand,glister,gradmatch,craig"
# The CoresetConfig fields that are flags of this bench, with the bench's defaults (its --actors,
# --repeats and --epochs mean other things here: the K of the K-actor pool, the same model R
# times, pre-training epochs).
BENCH_DEFAULTS = {"dataset": "digits-aug", "model": "mlp", "train_size": None, "fraction": 0.1, "seed": 0}


def apricot_select(sim: np.ndarray, k: int) -> list[int]:
    """apricot's FacilityLocationSelection on a precomputed similarity matrix (lazy greedy).
    numba's threading layer, started by apricot's kernels, resets torch's intra-op thread
    count; it is put back afterwards so that apricot does not slow down what runs next."""
    threads = torch.get_num_threads()
    try:
        from apricot import FacilityLocationSelection

        return list(FacilityLocationSelection(k, metric="precomputed", optimizer="lazy").fit(sim).ranking)
    finally:
        torch.set_num_threads(threads)


@contextmanager
def apricot_kernels_compiled_once():
    """apricot 0.6.1 builds and numba-compiles its gain kernels inside every ``fit``
    (``FacilityLocationSelection._initialize``). Within this context those builders are
    memoised, so a timed ``fit`` measures apricot's greedy, not its compiler."""
    import apricot.functions.facilityLocation as fl

    saved = {name: getattr(fl, name) for name in ("calculate_gains", "calculate_gains_sieve")}
    for name, builder in saved.items():
        setattr(fl, name, functools.lru_cache(maxsize=None)(builder))
    try:
        yield
    finally:
        for name, builder in saved.items():
            setattr(fl, name, builder)


def shard_matmul_burn(shard, total_products: int, num_actors: int) -> torch.Tensor:
    """Calibration work for one actor: its share of a fixed number of 512x512 products
    (independent of the data), so 1 vs K actors shows the parallelism the machine gives."""
    a = torch.randn(512, 512, generator=torch.Generator().manual_seed(0))
    for _ in range(total_products // num_actors):
        a = torch.tanh(a @ a)
    return torch.zeros(len(shard))


def scaling_table(train, model, methods, fraction, actors, seed, repeats, precision):
    """Part 1's rows (calibration first, then a row per method) and each pool's start-up
    seconds; the model's passes at ``precision``. Each place (in-process, 1 actor, K actors)
    times every method by ``raypkg.timing.measure``: warmed (in-process on a 500-example
    slice, where the selector needs no warm-up record of the whole set), then one timed call."""
    import ray

    models = {m: ([model] * repeats if get_selector(m).uses_repeats else model) for m in methods}
    head = train.subset(torch.arange(min(len(train), 500)))

    def selections(pool=None, data=train) -> dict:
        return {m: functools.partial(select, m, models[m], data, Keep(fraction=fraction), seed=seed,
                                     scoring=Scoring(precision=precision), compute=Compute(pool=pool)) for m in methods}

    slices = selections(data=head)
    in_process = measure(selections(), warm={m: slices[m] for m in methods if get_selector(m).warmup_callback is None})
    picks, times = {"in-process": in_process[0]}, {"in-process": in_process[1]}
    connect_ray()
    total, startup = ray.cluster_resources().get("CPU", 1.0), {}
    for k in sorted({1, actors}):
        # one torch thread per actor (at most one CPU each), like the in-process run's --threads 1
        pool, startup[k] = timed(ShardPool, train, k, cpus_per_actor=min(0.9, 0.9 * total / k))
        with pool:
            picks[k], times[k] = measure({"calibration": functools.partial(pool.map, shard_matmul_burn, 400, k),
                                          **selections(pool)})
    times["in-process"].update(measure({"calibration": functools.partial(shard_matmul_burn, train, 400, 1)})[1])
    rows = []
    for m in ["calibration", *methods]:
        t = {where: times[where][m].seconds for where in times}
        same = None if m == "calibration" else all(picks[w][m].indices.tolist() == picks["in-process"][m].indices
                                                   .tolist() for w in picks)  # None, not "": one type a column
        rows.append({"method": m, "in-process_s": t["in-process"], "1 actor_s": t[1], f"{actors} actors_s": t[actors],
                     "scaling": t[1] / t[actors], "vs in-process": t["in-process"] / t[actors], "same picks": same})
    return rows, startup


def facility_location_table(train, model, seed, blocks, block_size, block_budget, precision):
    """Part 2's rows: each implementation's seconds, objective and speed-up against apricot's
    greedy with its kernels compiled once, on one class's matrix, then on many small blocks."""
    z, h = logits_and_features(model, train.x, precision=precision)
    g = logit_gradients(z, train.y)
    members = torch.nonzero(train.y == int(torch.bincount(train.y).argmax())).squeeze(1)
    sim64 = similarity_from_distances(EmbeddingKind("full").embed(g[members].double(), h[members].double()).distances())
    k = max(1, round(0.1 * len(members)))
    sim_np = sim64.cpu().numpy()
    head = functools.partial(apricot_select, sim_np[:20, :20].copy(), 3)  # the warm-up: numba's own start-up
    shipped, t_shipped = measure_one(functools.partial(apricot_select, sim_np, k), warm=head)
    with apricot_kernels_compiled_once():  # its warm-up compiles the memoised kernels
        reference, t_ap = measure_one(functools.partial(apricot_select, sim_np, k), warm=head)
    runs = [("apricot lazy, as shipped (compiles in fit)", shipped, t_shipped),
            ("apricot lazy, kernels compiled once", reference, t_ap)]
    for name, sim in (("ours incremental (float64)", sim64), ("ours incremental (float32)", sim64.float())):
        # as CRAIG calls it (sim symmetric by construction)
        res, t = measure_one(functools.partial(greedy_dense, sim, k, symmetric=True),
                             warm=functools.partial(greedy_dense, sim[:20, :20], 3, symmetric=True))
        runs.append((name, res.picks.tolist(), t))
    case = f"1 class, n={len(members)}, k={k}"
    rows = [{"case": case, "implementation": name, "seconds": t, "objective / apricot": objective(sim64, picks) /
             objective(sim64, reference), "speed-up vs apricot": t_ap / t} for name, picks, t in runs]
    gen, sims = torch.Generator().manual_seed(seed), []  # many small blocks (CREST's): random subsets
    for _ in range(blocks):
        pos = torch.randperm(len(train), generator=gen)[:block_size]
        sims.append(similarity_from_distances(EmbeddingKind("bias").embed(g[pos].double(), h[pos].double())
                                              .distances()))  # CREST's proxy: g alone
    (batch, valid), (warm_batch, warm_valid) = pad_blocks(sims), pad_blocks(sims[:2])
    ours, t_ours = measure_one(functools.partial(greedy_batched, batch, [block_budget] * blocks, valid),
                               warm=functools.partial(greedy_batched, warm_batch, [block_budget] * 2, warm_valid))
    with apricot_kernels_compiled_once():
        theirs, t_ap2 = measure_one(lambda: [apricot_select(s.numpy(), block_budget) for s in sims],
                                    warm=lambda: apricot_select(sims[0].numpy(), block_budget))
    f_ap2 = sum(objective(s, p) for s, p in zip(sims, theirs))
    case = f"{blocks} blocks, n={block_size}, k={block_budget}"
    return rows + [{"case": case, "implementation": "apricot lazy, block by block (compiled once)", "seconds": t_ap2,
                    "objective / apricot": 1.0, "speed-up vs apricot": 1.0},
                   {"case": case, "implementation": "ours batched (one padded tensor)", "seconds": t_ours,
                    "objective / apricot": sum(objective(s, r.picks.tolist()) for s, r in zip(sims, ours)) / f_ap2,
                    "speed-up vs apricot": t_ap2 / t_ours}]


@click.command("selection")
@config_options(CoresetConfig, only=list(BENCH_DEFAULTS), defaults=BENCH_DEFAULTS, fill_defaults=True)
@list_option("--methods", default=DEFAULT_METHODS, show_default=True, help="Comma-separated selection methods.")
@click.option("--actors", type=int, default=2, show_default=True, help="K for the K-actor pool.")
@click.option("--repeats", type=int, default=2, show_default=True,
              help="GraNd: models averaged (the same model R times).")
@click.option("--epochs", "pretrain_epochs", type=int, default=1, show_default=True,
              help="Full-data training epochs of the model before selection.")
@click.option("--blocks", type=int, default=200, show_default=True,
              help="Small blocks for the batched facility location.")
@click.option("--block-size", type=int, default=50, show_default=True)
@click.option("--block-budget", type=int, default=7, show_default=True)
@click.option("--skip-fl", is_flag=True, help="Skip the facility-location comparison.")
@click.option("--skip-scaling", is_flag=True, help="Skip the in-process vs actors comparison (no Ray).")
@bench_options()
@address_option
def selection(dataset, model, train_size, fraction, methods, actors, repeats, pretrain_epochs, blocks,
              block_size, block_budget, skip_fl, skip_scaling, seed, threads, save, wandb):
    """Selection time in-process vs K actors, and our facility location vs apricot-select.

    \b
    Examples:
      effray bench selection                       # digits-aug, 60,000 examples
      effray bench selection --train-size 3000 --methods grand,craig --blocks 20
    """
    names = name_list(methods, "--methods")
    for m in names:
        get_selector(m)
    if actors < 2:
        raise UsageError(f"--actors must be >= 2 to measure scaling, got {actors}")
    if not skip_fl and importlib.util.find_spec("apricot") is None:
        raise UsageError("the facility-location comparison needs apricot-select (pip install apricot-select, "
                         "or pip install -e '.[test]'); or pass --skip-fl")
    check_bench_numbers(fraction=fraction, repeats=repeats, pretrain_epochs=pretrain_epochs, blocks=blocks,
                        block_size=block_size, block_budget=block_budget, train_size=train_size)
    runner = BenchRunner("selection", save, threads, wandb)
    data = load_dataset(dataset, seed=seed, train_size=train_size)
    # the coreset pipeline's own warm-up, once, with what a selector records during it
    # (Forgetting's events) when one of the methods does
    recording = next((m for m in names if get_selector(m).warmup_callback is not None), names[0])
    warm_up, _ = decide_execution(CoresetConfig(dataset=dataset, model=model, train_size=train_size, seed=seed,
                                                selection=recording, pretrain_epochs=pretrain_epochs, repeats=1,
                                                progress=False), data, Placement(0, "cpu"))  # warmed up here
    net = pretrain_full(warm_up, data, torch.device("cpu"), augment=None, cache=None).models[0]
    runner.header(f"on {dataset}", data, model=model, fraction=fraction)
    if not skip_scaling:
        rows, startup = scaling_table(data.train, net, names, fraction, actors, seed, repeats, warm_up.precision)
        seconds = ["in-process_s", "1 actor_s", f"{actors} actors_s"]
        runner.finish(pd.DataFrame(rows), ["method", *seconds, "scaling", "vs in-process", "same picks"],
                      suffix="-scaling", title="selection time: in-process vs actors",
                      plot=lambda f, ax: hbar(f, ax, "method", seconds, "seconds"))
        click.echo("pool start-up (not in the times above): "
                   + ", ".join(f"{k} actor(s) {s:.1f}s" for k, s in startup.items()))
    if not skip_fl:
        click.echo("\n# facility location: ours vs apricot-select on the same similarity matrix")
        fl = pd.DataFrame(facility_location_table(data.train, net, seed, blocks, block_size, block_budget,
                                                  warm_up.precision))
        fl["label"] = fl["case"].astype(str) + ": " + fl["implementation"].astype(str)
        runner.finish(fl, ["case", "implementation", "seconds", "objective / apricot", "speed-up vs apricot"],
                      {"objective / apricot": ".7f"}, suffix="-facility-location",
                      title="facility location: ours vs apricot-select",
                      plot=lambda f, ax: hbar(f, ax, "label", ["seconds"], "seconds (log)", log=True))
