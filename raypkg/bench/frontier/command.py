"""`effray bench frontier`: the command. Every method family on one dataset and model, over
seeds, against the budget curve: its points (``points``) run on Ray (``scheduler``), each
stored as it finishes (``store``), seeds added until its cells are decided (``until_decided``),
then judged (``judge``) and shown (``report``); ``--merge`` judges stored rows again (``merge``)."""

from __future__ import annotations

import contextlib
import json
import math

import click
import pandas as pd

from raypkg.bench.curve import CURVES
from raypkg.bench.deltagrad_panel import DELTAGRAD_RATIOS, deltagrad_configs, deltagrad_panel, deltagrad_table
from raypkg.bench.frontier.judge import TTA_BELOW_FULL, add_svp_agreement, add_tta, fair_clock, judge_rows
from raypkg.bench.frontier.merge import merge_runs
from raypkg.bench.frontier.points import (
    COUNTS,
    METHODS,
    PRESETS,
    REFERENCE,
    SCHEDULES,
    build_points,
    load_points,
    method_names,
    point_id,
    preset_settings,
    setup_name,
)
from raypkg.bench.frontier.report import epoch_table, log_points, name_code, name_machines, save_results
from raypkg.bench.frontier.scheduler import epochs_of_points, run_alone, run_order, run_units, unit_plan
from raypkg.bench.frontier.store import FrontierStore, Unwritable, describe, frontier_settings
from raypkg.bench.frontier.until_decided import added_points, runs_next, seeds_plan, undecided
from raypkg.bench.harness import SAVE_HELP, BenchRunner, bench_options, same_training
from raypkg.cli_options import (
    FLOATS,
    NAMES,
    address_option,
    check_bench_numbers,
    check_seed_count,
    list_option,
    target_acc_option,
)
from raypkg.distributed.cluster import check_address_used, check_reachable, connect_ray, requested_address
from raypkg.engine.config import SEED_LIMIT
from raypkg.errors import Interrupted, RunFailed, UsageError
from raypkg.interrupts import stopped_by
from raypkg.tracking.provenance import code_identity, machine


def count_options(func):
    for name, text in reversed(COUNTS.items()):
        func = click.option(f"--{name.replace('_', '-')}", type=int, help=text + " Default: the preset's.")(func)
    return func


@click.command("frontier")
@click.option("--setup", default="digits-aug:mlp", show_default=True, type=click.Choice(list(PRESETS)),
              help="Preset of every setting below (a flag given overrides it): digits-aug:mlp (20k train / 5k "
                   "test, MLP, 10 epochs, 3 seeds; minutes), digits-aug:mlp-noisy (the same with --label-noise 0.3), "
                   "digits-aug:resnet20 (5k / 1k, ResNet-20, batch 128, 1 seed; 30-60 minutes on 2 cores), "
                   "fashion-mnist:mlp, fashion-mnist:lenet5 and fashion-mnist:resnet20 (the full 60k / 10k real "
                   "images, every method and the curve on the linear schedule, seeds until decided: "
                   f"{PRESETS['fashion-mnist:mlp']['seeds']} seeds, then up to {PRESETS['fashion-mnist:mlp']['max_seeds']}; "
                   "`effray datasets` says where "
                   "the data comes from; ResNet-20 wants a GPU), and fashion-mnist:resnet20-2k, ResNet-20's stated "
                   "subset for a CPU (a class-stratified 2k / 2k of those images, drawn by seed; 43-46 minutes "
                   "a seed with 3 seeds side by side on 2 cores, 1 thread each); cifar10:resnet20 (the full 50k / "
                   "10k CIFAR-10 images, ResNet-20 as CREST trains it, 30 epochs: a GPU's) and cifar10:resnet20-cpu "
                   "(the same images, 5 epochs; hours a seed on 2 cores: docs/benchmarks.md, \"What CIFAR-10 costs "
                   "here\"); `effray datasets fetch cifar10` first.")
@click.option("--dataset", help="Dataset (`effray datasets`) or MODULE:FACTORY. Default: digits-aug.")
@click.option("--model", help="Model (`effray models`) or MODULE:FACTORY. Default: the preset's.")
@click.option("--data-dir", type=click.Path(), help="Directory of the torchvision datasets / ImageFolder tree.")
@click.option("--label-noise", type=float,
              help="Symmetric noise on this fraction of the training labels, in [0, 1) (the same noisy labels for "
                   "every method of a seed). Default: the preset's (0, or 0.3 for digits-aug:mlp-noisy).")
@list_option("--methods", default=",".join(m for m, case in METHODS.items() if case.family != "full" and case.default),
              show_default=True, help="Comma-separated methods, or stacks of them joined by + (e.g. "
                                      "infobatch+rigl-itop,rs2+rigl-itop), or your own method's MODULE:CLASS "
                                      "(docs/methods/own-method.md). Full training always runs, at fp32 and "
                                      "contiguous weights (full-fp32: the reference of every ratio and of the TTA "
                                      "target) and at the precision and memory format that auto picks on this "
                                      "machine (full).")
@list_option("--fractions", type=FLOATS, help="Subset fractions (uniform, DeepCore, LiPT) and CREST's fractions "
                                               "of full training's steps, in (0, 1]. Default: 0.1,0.3.")
@list_option("--densities", type=FLOATS, help="Densities of the sparse methods, in (0, 1]. Default: 0.05.")
@list_option("--budgets", type=FLOATS,
             help="The budget curve: full training at these fractions of --epochs, in (0, 1], each with its "
                  "schedule compressed to round(B x epochs) epochs, at fp32 and at auto's execution; 1 always "
                  "runs. Default: 0.1,0.2,0.3,0.5,0.7,1.")
@list_option("--curve-schedules", type=NAMES,
             help="The budget curve's LR schedules, each decayed to 0 at its budget: cosine and linear (Budgeted "
                  "Training's); with both, the curve is the better of the two at every budget (a schedule other "
                  "than --schedule runs every budget, 1 included). Default: cosine,linear.")
@click.option("--schedule", type=click.Choice(SCHEDULES),
              help="LR schedule of every method and of full training at the whole budget (the reference), decayed "
                   "to 0 at the end. Default: cosine.")
@list_option("--lr", type=FLOATS, help="Learning rate of every method (--schedule).")
@list_option("--selection-models", type=NAMES,
             help="SVP (Coleman et al., ICLR 2020): comma-separated proxy models (`effray models`), each of which "
                  "also warms up and scores for every point whose selection uses a model (DeepCore's model-based "
                  "selectors, LiPT's shard models): a point of its own (setting svp=MODEL), its warm-up counted at "
                  "the proxy's FLOPs, with spearman and overlap against the point scored by --model. Default: none.")
@count_options
@click.option("--max-seeds", type=int,
              help="Seeds until decided: after --seeds seeds, add one seed at a time, running only the curve and the "
                   "points the table has not decided (inconclusive, or faster or slower that Holm's correction "
                   "marks ?) and that K seeds could still decide, until none is left or K seeds have run; every "
                   "interval is then at 1 - 5% / looks (Bonferroni over the looks), so stopping early keeps its 5% "
                   "error. E.g. --seeds 3 --max-seeds 7. "
                   "A store remembers it (the same command and --render judge at its level). --max-seeds equal to "
                   "--seeds: fixed seeds. Default: the preset's (fashion-mnist and cifar10: "
                   f"{PRESETS['fashion-mnist:mlp']['max_seeds']}), else --seeds, fixed.")
@click.option("--first-seed", type=int, default=0, show_default=True,
              help="The first of the --seeds seeds: runs seeds FIRST .. FIRST + N - 1.")
@click.option("--slots", type=int,
              help="Points that run at once, each a Ray task of --threads CPUs (and a GPU share where the cluster "
                   "has GPUs); 1 without --address: one after another in this process, no Ray. Default: the fair "
                   "clock: 1 on this machine, so that every point is timed alone; with --address, every CPU of the "
                   "cluster over --threads, then --time-alone. More than 1 without --time-alone packs points for "
                   "their accuracies: their seconds are marked † and no verdict rests on them alone.")
@click.option("--points-per-gpu", type=int, default=1, show_default=True,
              help="On a cluster with GPUs, points sharing one GPU (each asks for 1/K of a GPU; Ray's shares are "
                   "logical: they share the card's memory and compute).")
@click.option("--time-alone", is_flag=True,
              help="Time every point that ran beside other points once more, alone on its node (all of its CPUs "
                   "and GPUs), and judge those seconds: accuracy from the packed runs, time from isolated ones. "
                   "On one machine this costs a --slots 1 run again; on a cluster, one point a node at a time. "
                   "Resumes like the points; with --slots 1 every point is timed alone already.")
@click.option("--storage", help="Where the points are stored as they finish: a folder, or a URI every node of "
                                "the cluster reaches (file://, s3://, gs://). Default: STEM-points beside --save.")
@click.option("--rerun-stale", is_flag=True,
              help="Run again the stored points that other code ran (another commit's raypkg/, or a draft's edits; "
                   "without it such a store is refused, never reused in silence); they are moved to the store's "
                   "stale/.")
@click.option("--render", is_flag=True,
              help="Train nothing: write the tables and plots of the points stored so far (a partial frontier "
                   "while it runs, or after a kill).")
@click.option("--merge", multiple=True, type=click.Path(dir_okay=False),
              help="A frontier's stored rows (STEM.parquet) over other seeds of the same points; repeated, they are "
                   "merged into one table, summary and plots as if one run had made them, judged on today's clock "
                   "and statistics; nothing is trained, and --save's tables are replaced (a stored frontier "
                   "rendered again in place). No other flag.")
@click.option("--add", "panels", type=click.Choice(["deltagrad"]), multiple=True,
              help="A separate panel: deltagrad serves deletions of 0.1% and 1% of the training set by retraining "
                   "and by DeltaGrad (in `bench deltagrad`'s setting) on the same data, label noise and seeds.")
@click.option("--workers", type=int, default=0, show_default=True,
              help="Ray Train workers for every training (0: each point in its own task's process); with N, the "
                   "points run one after another, each on N workers.")
@target_acc_option("Time-to-accuracy target of every row. Default: the preset's (digits-aug:mlp 0.92, "
                   "digits-aug:mlp-noisy 0.84, digits-aug:resnet20 0.97); with a fashion-mnist preset or another "
                   "--dataset, --model or --label-noise, each seed's full training's final test accuracy minus 0.5 "
                   "points.")
@bench_options(save_help=SAVE_HELP + " Also STEM-summary.parquet (mean and spread over seeds), STEM-epochs.parquet "
                                     "(each point's test accuracy after every epoch) and STEM-flops.png (accuracy vs "
                                     "FLOPs).")
@address_option
def frontier_bench(setup, methods, max_seeds, first_seed, slots, points_per_gpu, time_alone, storage, rerun_stale,
                   render, merge, panels, workers, target_acc, wandb, threads, save, **flags):
    """Every method family on one dataset and model: accuracy vs end-to-end seconds and FLOPs.

    Every method's bench cases, in the registry's order (full training first; --methods
    picks), each through its recipe, at one epoch budget and LR schedule, over --seeds
    seeds: a row per method, setting and seed, means and spreads, verdicts against the
    budget curve with their 95% intervals, and the Pareto fronts. The points run on Ray,
    spread over every core (or --address's cluster); each is stored as it finishes, and the
    same command after a kill, or with more seeds or methods, runs only the points not yet
    stored.

    \b
    Examples:
      effray bench frontier                                      # digits-aug, MLP, 3 seeds
      effray bench frontier --setup digits-aug:mlp-noisy         # the same with 30% label noise
      effray bench frontier --label-noise 0.2 --seeds 5          # any noise level, more seeds
      effray bench frontier --setup fashion-mnist:mlp --save runs/fm   # real data; again after a kill: resumes
      effray bench frontier --setup fashion-mnist:mlp --save runs/fm --render   # the table so far
      effray bench frontier --seeds 3 --max-seeds 7              # seeds until every cell is decided
      effray bench frontier --slots 2                            # packed two at a time: accuracies only (†)
      effray bench frontier --slots 2 --time-alone               # packed, then each point timed alone
    """
    if merge:
        context = click.get_current_context()
        return merge_runs(setup, merge, save, wandb, threads, given=[
            param.opts[0] for param in context.command.params if param.name not in ("setup", "merge", "save", "wandb")
            and context.get_parameter_source(param.name) not in (None, click.core.ParameterSource.DEFAULT)])
    names = [REFERENCE, "full"] + [m for m in method_names(methods) if m not in (REFERENCE, "full")]
    settings = preset_settings(setup, {**flags, "workers": workers, "target_acc": target_acc})
    check_bench_numbers(workers=workers, threads=threads, slots=slots, points_per_gpu=points_per_gpu)
    if render and time_alone:
        raise UsageError("--render trains nothing: leave out --time-alone (or --render)")
    if render and rerun_stale:
        raise UsageError("--render trains nothing and sets nothing aside: leave out --rerun-stale (or --render)")
    check_seed_count(settings["seeds"], check_first_seed(first_seed))
    points = build_points(settings, names, seed=0)  # every config checked before any data is loaded
    if settings["selection_models"] and not any(",svp=" in p.labels["setting"] for p in points):
        raise UsageError(f"--selection-models {','.join(settings['selection_models'])}: no method of --methods scores "
                         "with a model (DeepCore's model-based selectors such as grand, LiPT), so no proxy would run")
    if panels:
        deltagrad_configs(settings, seed=0)
    if slots is None and not render and workers == 0:  # the fair clock as typed: every point timed alone
        slots, time_alone = (None, True) if requested_address() else (1, time_alone)
    check_address_used(workers > 0 or slots != 1 or requested_address() is not None)
    runner = BenchRunner("frontier", save, threads, wandb, overwrite=True)
    store = FrontierStore(storage or f"{runner.stem}-points")
    stored_settings = {**settings, "threads": runner.threads}
    store.check(stored_settings)
    here = None if render or requested_address() else machine()  # the clock its points run on (a cluster's: theirs)
    if here:
        store.check_machine(here)
    if render and not store.settings():
        raise UsageError(f"--render: no frontier is stored in {store.location}: run it first (without --render)")
    settings["seeds"], max_seeds, looks = seeds_plan(PRESETS[setup], settings["seeds"], flags["seeds"], max_seeds, store,
                                                     render, slots, time_alone, first_seed)
    if render and store.driver():  # its driver will write STEM's tables: these go beside them
        runner.stem = runner.stem.with_name(runner.stem.name + "-partial")
        click.echo(f"# a driver runs on {store.location} ({describe(store.driver())}): --render writes "
                   f"{runner.stem}.* beside the tables it will write", err=True)
    use_ray = not render and workers == 0 and (slots != 1 or requested_address() is not None)
    if use_ray and requested_address():
        check_reachable(requested_address())  # before anything is loaded or written; Ray only for work to do
    seeds = list(range(first_seed, first_seed + settings["seeds"]))
    wanted, trains, data = [], {}, None
    for seed in seeds:  # each seed's data in turn: its points' sizes, checks and twins (the units load it again)
        seed_points, data = load_points(settings, names, seed)
        if not render:
            trains.update({point_id(p): same_training(p, data) for p in seed_points})
        wanted.append(seed_points)
    per_point = {point_id(p): p for seed_points in wanted for p in seed_points}
    if panels:
        check_deletions(len(data.train))
    code = code_identity()
    stale = store.stale(code["code"], {point: p.labels.get("plugin") for point, p in per_point.items()})
    if stale and not render and not rerun_stale:
        plugins = sorted({p.labels["plugin"] for p in per_point.values() if p.labels.get("plugin")})
        raise UsageError(f"{store.location} holds {len(stale)} point runs of other code "
                         f"({', '.join(sorted(set(stale.values())))}) than this checkout's ({code['commit']}"
                         f"{', a draft' if code['draft'] else ''}{''.join(f', plug-in {p}' for p in plugins)}): add "
                         "--rerun-stale to run them again with this code, or give a new --save or --storage")
    if not render:  # every check passed: this process is the store's one driver, the store this frontier's
        store.drive()
        click.get_current_context().call_on_close(store.release)
    for line in store.heal(fix=not render):
        click.echo(line, err=True)
    store.claim(stored_settings, {"seeds": settings["seeds"], "max_seeds": max_seeds} if looks > 1 and not render
                else None, machine=here)
    if render and looks > 1:  # the seeds its looks added: the points of them it holds
        per_point.update(added_points(settings, names, seeds[-1] + 1, first_seed + max_seeds, len(data.train),
                                      store.ids()))
    if looks > 1:
        runner.source["looks"] = str(looks)  # what a --merge of its rows judges at (``merge.rows_looks``)
    runner.source["settings"] = json.dumps(frontier_settings(stored_settings), sort_keys=True, default=float)  # --merge
    runner.header(setup_name(setup, settings), data, methods=names, **{
        k: v for k, v in settings.items() if k not in ("dataset", "model", "data_dir", "train_size", "test_size",
                                                       "target_acc")},
        target_acc=settings["target_acc"] or f"full training's less {TTA_BELOW_FULL * 100:g} points",
        **({"max_seeds": max_seeds} if looks > 1 else {}))
    if stale and not render:
        for kind, point in stale:
            store.set_aside(kind, point, "stale")
        click.echo(f"# --rerun-stale: {len(stale)} point runs of other code set aside to stale/, run again", err=True)
    chance = 1.0 / data.num_classes
    run = dict(settings={**settings, "code": code}, names=names, store=store, threads=runner.threads, slots=slots,
               use_ray=use_ray, points_per_gpu=points_per_gpu, time_alone=time_alone, trains=trains)
    with points_kept_on_interrupt(store, resumed_by(save, storage, store)):  # to the last look
        if not render:
            run_points(wanted, per_point, **run)
        while not render and len(seeds) < max_seeds:  # seeds until decided: a look after each seed
            left = undecided(judge_stored(store, per_point, settings, time_alone, chance, looks)[3], max_seeds)
            if not left:
                break
            seed = first_seed + len(seeds)
            seed_points, data = load_points(settings, names, seed)
            seed_points = [p for p in seed_points if runs_next(p.labels, left)]
            click.echo(f"# seeds until decided: {len(left)} cells not decided at the table's standard (inconclusive, or "
                       f"marked ?) after {len(seeds)} seeds; seed {seed} runs them and the curve ({len(seed_points)} points)")
            trains.update({point_id(p): same_training(p, data) for p in seed_points})
            per_point.update({point_id(p): p for p in seed_points})
            seeds.append(seed)
            wanted.append(seed_points)
            run_points([seed_points], per_point, **run)
    records, alone, frame, table = judge_stored(store, per_point, settings, time_alone, chance, looks)
    table = add_missing(table, per_point, records)
    failed = {k: v for k, v in store.failures().items() if k in per_point and k not in records}
    if time_alone:
        failed.update({k: v for k, v in store.failures("alone").items() if k in records})
    deltagrad_rows = []
    if panels and not render:
        import tempfile
        from pathlib import Path

        with tempfile.TemporaryDirectory(prefix="effray-frontier-") as scratch:
            for seed in seeds:
                deltagrad_rows += deltagrad_panel(settings, seed, Path(scratch))
    click.echo(f"# frontier: {len(records)} of {len(per_point)} points stored in {store.location}; "
               f"{int(frame['timed'].eq('alone').sum())} timed alone on their node"
               + ("" if frame["timed"].eq("alone").all() else " (--time-alone times the others alone)"))
    differ = frame["packed_acc_delta"].fillna(0.0).abs()
    if differ.gt(0).any():
        click.echo(f"# accuracy differs between the packed and the alone run at {int(differ.gt(0).sum())} points "
                   f"(at most {differ.max():.4f}): the verdicts take both from the alone runs", err=True)
    name_code(runner, frame, code)
    name_machines(runner, frame)
    runner.group = f"frontier-{runner.stem.name}"  # the frontier's run and a run per point
    epochs = epoch_table({**records, **alone})
    save_results(runner, frame, table, settings, deltagrad_table(deltagrad_rows) if deltagrad_rows else None, epochs)
    log_points(runner, frame, epochs)
    for record in failed.values():
        click.echo(f"failed: {record['label']}: {record['error'].splitlines()[0]}", err=True)
    if failed:
        raise click.exceptions.Exit(1)


def add_missing(table, per_point: dict, records: dict):
    """The summary with each row's ``missing``: the seeds of its point the frontier planned but
    holds no stored run of (not run yet, failed, or a broken file set aside), a row (``n`` 0,
    verdict ``-``) for a point with none, so that a partial table says it is one; a line says
    how many."""
    from collections import Counter

    planned = Counter(point_key(p.labels) for p in per_point.values())
    stored = Counter(point_key(record["row"]) for record in records.values())
    families = {point_key(p.labels): p.labels["family"] for p in per_point.values()}
    absent = [point for point in planned if point not in set(zip(table["method"], table["setting"]))]
    table = pd.concat([table, pd.DataFrame({"family": [families[p] for p in absent], "method": [p[0] for p in absent],
                                            "setting": [p[1] for p in absent], "n": 0, "verdict": "-"})],
                      ignore_index=True) if absent else table
    table["missing"] = [planned[point] - stored[point] for point in zip(table["method"], table["setting"])]
    if table["missing"].sum():
        click.echo(f"# partial: {int(table['missing'].sum())} of {sum(planned.values())} point runs are not stored; "
                   "their cells say so", err=True)
    return table


def point_key(labels: dict) -> tuple[str, str]:
    """A point over its seeds, as a summary row names it: its method and setting."""
    return labels["method"], labels["setting"]


@contextlib.contextmanager
def points_kept_on_interrupt(store, again: str = "the same command"):
    """Ctrl-C (or SIGTERM) while points run or seeds are added (a look included), or a store that cannot
    be written mid-run (``store.Unwritable``: a full disk): one line saying that the stored
    points are kept and what goes on from them, ``again`` (``resumed_by``; not ``effray
    train``'s "no run directory is kept")."""
    try:
        yield
    except KeyboardInterrupt:
        by = stopped_by()
        raise Interrupted(f"stopped by {by}; the {len(store.ids())} points stored in {store.location} are kept, "
                          f"and {again} goes on from them", by) from None
    except Unwritable as e:
        raise RunFailed(f"{e}; the {len(store.ids())} points stored in {store.location} are kept, and {again} goes "
                        "on from them") from None


def resumed_by(save: str | None, storage: str | None, store) -> str:
    """What command goes on from ``store``'s points: the same one where it finds the same
    store (``--storage``, or ``--save STEM``: STEM-points), else, --save naming a directory or
    nothing (a new timestamped stem, so a new store, each time), the same one with --storage."""
    from pathlib import Path

    if storage or save and not Path(save).is_dir():
        return "the same command"
    return f"the same command with --storage {store.location}"


def run_points(wanted: list[list], per_point: dict, settings: dict, names: list[str], store, threads: int,
               slots: int | None, use_ray: bool, points_per_gpu: int, time_alone: bool, trains: dict) -> None:
    """The points of ``wanted`` (a list of each seed's points) not yet stored (``run_order``:
    packed, the longest units first; one at a time, seed by seed, each seed's curve first),
    then with ``time_alone`` each that ran beside others once more alone."""
    stored = store.ids()
    units = [(seed_points[0].labels["seed"], ids) for seed_points in wanted
             for ids in unit_plan(seed_points, stored, trains)]
    length = epochs_of_points(per_point.values()).get
    curve = {point for point, p in per_point.items() if p.labels["method"] in CURVES}
    if units:  # every point stored: no Ray started for nothing
        if use_ray:
            connect_ray()
        ordered = run_order(units, length, curve, one_at_a_time=slots == 1)
        run_units(ordered, settings, names, store, threads, slots, use_ray, points_per_gpu, set(per_point))
    if time_alone:
        records = {k: v for k, v in store.points().items() if k in per_point}  # the alone pass adds none
        skip = timed_alone(records, store.ids("alone")) | (set(per_point) - set(records))  # failed: not stored
        units = [(seed_points[0].labels["seed"], ids) for seed_points in wanted
                 for ids in unit_plan(seed_points, skip, trains)]
        if units:
            if use_ray:
                connect_ray()
            ordered = run_order(units, length, curve, one_at_a_time=False)
            run_alone(ordered, settings, names, store, threads, set(per_point) - skip, use_ray)


def judge_stored(store, per_point: dict, settings: dict, time_alone: bool, chance: float, looks: int):
    """The stored points of ``per_point`` judged (``judge.judge_rows`` at ``looks``): (their
    records, their runs timed alone, the rows, the summary)."""
    records = {k: v for k, v in store.points().items() if k in per_point}
    if not records:
        raise UsageError(f"no point of this frontier is stored in {store.location} yet")
    alone = {k: v for k, v in store.points("alone").items() if k in records}
    replaced = pd.DataFrame([records[i]["row"] for i in alone])  # packed runs their alone reruns replaced
    frame, table = judge_rows(stored_rows(records, list(per_point), settings, alone, store.settings().get("machine")),
                              chance=chance, looks=looks, also_ran=replaced)
    return records, alone, frame, table


def timed_alone(records: dict[str, dict], again: set[str]) -> set[str]:
    """The stored points (``records``, by id) timed alone: run alone the first time (one
    slot), or once more by ``--time-alone`` (``again``: the ids of those runs)."""
    return {k for k, record in records.items() if record["row"].get("timed") == "alone" or k in again}


def stored_rows(records: dict[str, dict], order: list[str], settings: dict,
                alone: dict[str, dict] | None = None, machine: str | None = None) -> pd.DataFrame:
    """The stored points as a frame, a row per point and seed in the frontier's ``order`` (of
    point ids), each with its time-to-accuracy and (SVP) agreement, on the frontier's clock
    (``judge.fair_clock``: a row timed on another ``machine`` than the store's is not judged).
    A point timed again alone (``alone``) is that run, time and accuracy, with
    ``packed_acc_delta``, its accuracy less the packed run's (0 where training is deterministic)."""
    alone = alone or {}
    chosen = {i: alone.get(i, records[i]) for i in order if i in records}
    done = [(dict(record["row"]), {"rows": record["epochs"], **record}) for record in chosen.values()]
    for (row, _), i in zip(done, chosen):
        row["packed_acc_delta"] = row["test_acc"] - records[i]["row"]["test_acc"] if i in alone else math.nan
    add_tta(done, settings["target_acc"])
    if settings["selection_models"]:
        add_svp_agreement(done)
    return fair_clock(pd.DataFrame([row for row, _ in done]), settings["epochs"], machine)


def check_deletions(n: int) -> None:
    """``--add deltagrad`` on ``n`` training examples: each of its deletions must select a
    sample (refused before any point trains, not after every one has)."""
    smallest = min(DELTAGRAD_RATIOS)
    if round(smallest * n) < 1:
        raise UsageError(f"--add deltagrad deletes {smallest:.1%} of the training set, none of {n} examples: give "
                         f"--train-size {math.ceil(0.5 / smallest)} or more, or leave out --add deltagrad")


def check_first_seed(first: int) -> int:
    """``--first-seed``: a seed itself (the seeds after it are ``check_seed_count``'s)."""
    if not 0 <= first < SEED_LIMIT:
        raise UsageError(f"--first-seed must be a seed in [0, 2**32), got {first}")
    return first
