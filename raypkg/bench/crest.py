"""`effray bench crest`: none vs random vs CREST at the same step budgets, in one process.

Per dataset and optimizer: full-data training (``none``, the reference), then per
train_frac f the random baseline (a fresh uniform f*N subset per epoch) and CREST (f
times the steps, on mini-batch coresets), from the same seed and LR schedule. ``paper``
trains as the reference code does (SGD without momentum, an LR warm-up over the first 10%
of the epochs), ``momentum`` with momentum 0.9. ``wall_s``: the whole training call,
CREST's selection and checks included; ``speed-up``: none's wall_s / the row's; ``vs
none``, ``vs random``: accuracy differences (points). ``--double-step`` adds ``crest-2g``,
CREST stepping with twice the gradient as the reference code does (twice the effective LR).
``--variant`` adds a CREST row per f with settings of its own (``variant`` names them).
``--seeds N`` runs every row with seeds --seed .. --seed+N-1 (each seed its own data, as
`effray run crest --seed S` loads it); the table is the mean over the seeds, with
``test_acc_std`` their spread.
"""

from __future__ import annotations

import dataclasses
import functools

import click
import pandas as pd

from raypkg.bench.harness import BenchRunner, bench_options, compare
from raypkg.cli_options import (
    address_option,
    bench_settings,
    check_bench_numbers,
    check_seed_count,
    config_options,
    list_option,
    name_list,
    number_list,
    once_each,
    set_option,
)
from raypkg.methods.crest.config import CrestSettings
from raypkg.methods.crest.recipe import CREST, OPTIMIZERS, crest_actor_pool, crest_point
from raypkg.plots import accuracy_vs_seconds
from raypkg.recipe import load_data

# The fields of CREST's config (CREST.config_cls) that are flags of this bench, with the bench's defaults.
BENCH_DEFAULTS = {"model": "mlp", "train_size": None, "test_size": None, "epochs": 10, "batch_size": 64, "lr": [0.1],
                  "random_subset_size": None, "check_thresh_factor": 0.1, "num_minibatch_coreset": 5,
                  "interval_mul": 1.0, "actors": 0, "seed": 0}
NOT_DIGITS = "Not applied to digits (fixed size)."


@click.command("crest")
@list_option("--datasets", default="digits-aug,digits", show_default=True, help="Comma-separated datasets.")
@config_options(CREST.config_cls, only=list(BENCH_DEFAULTS), defaults=BENCH_DEFAULTS, fill_defaults=True,
                more_help={"train_size": NOT_DIGITS, "test_size": NOT_DIGITS,
                           "random_subset_size": "Default: the larger of 0.01 and 4 batches.",
                           "actors": "CREST rows only (with --set overlap=false: blocking, else overlapped with "
                                     "training, the coresets one region stale)."})
@list_option("--optimizers", default="paper,momentum", show_default=True,
              help="Comma-separated: paper (SGD without momentum, LR warm-up over the first 10 percent of the epochs, "
                   "as the reference code trains) and/or momentum (SGD momentum 0.9, no warm-up).")
@list_option("--fracs", default="0.1,0.3", show_default=True, help="Comma-separated train_frac values.")
@click.option("--double-step", is_flag=True,
              help="Also a row per f of CREST as its reference code steps: with twice the gradient (method "
                   "crest-2g), so at twice the effective LR of the random and none rows.")
@set_option("Any other `effray run crest` setting, for every row (underscores; values read as YAML), e.g. "
            "--set approx_moment=false --set hessian_probes=2.")
@click.option("--variant", "variants", multiple=True, metavar="KEY=VALUE[;KEY=VALUE]",
              help="A further CREST row per train_frac with these settings on top of --set; repeatable, e.g. "
                   "--variant loss0_on_subsets=true --variant approx_with_coreset=false.")
@click.option("--seeds", type=click.IntRange(min=1), default=1, show_default=True,
              help="Seeds --seed .. --seed+N-1, each a run of every row (and its own data); the table is their "
                   "mean, test_acc_std their spread.")
@bench_options()
@address_option
def crest_bench(datasets, optimizers, fracs, double_step, settings, variants, seeds, threads, save, wandb, **flags):
    """none vs random vs CREST at each train_frac and optimizer: wall seconds, steps, regions, test accuracy.

    \b
    Examples:
      effray bench crest                                         # digits-aug and digits, f = 0.1, 0.3
      effray bench crest --datasets digits-aug --train-size 20000 --epochs 8
      effray bench crest --datasets digits-aug --fracs 0.1 --set approx_with_coreset=false
      effray bench crest --datasets digits-aug --optimizers paper --seeds 3 --variant loss0_on_subsets=true
    """
    f = flags
    check_bench_numbers(**{k: f[k] for k in ("epochs", "batch_size", "train_size", "test_size",
                                             "num_minibatch_coreset", "actors")})
    check_seed_count(seeds, f["seed"])
    frac_values = number_list(fracs, "--fracs", "numbers")
    names = name_list(datasets, "--datasets")
    optimizer_names = name_list(optimizers, "--optimizers", OPTIMIZERS, "optimizer")
    methods = ("random", "crest", "crest-2g") if double_step else ("random", "crest")

    def common(dataset: str, optimizer: str) -> dict:
        """The config fields every row of ``dataset`` and ``optimizer`` shares."""
        sized = dataset != "digits"
        return dict(f, dataset=dataset, train_size=f["train_size"] if sized else None,
                    test_size=f["test_size"] if sized else None, progress=False, wandb="disabled",
                    **OPTIMIZERS[optimizer][1](f["epochs"]))

    fields = {x.name for x in dataclasses.fields(CREST.config_cls)}
    own_flags = {*common("digits", "paper"), "selection_method", "reference_double_step", "train_frac"}
    extra = bench_settings(settings, fields, "CREST", own_flags=own_flags)
    variant_settings = {v: bench_settings(tuple(v.split(";")), fields, "CREST", own_flags, "--variant")
                        for v in once_each(list(variants), "--variant")}
    per_f = [(m, "", {}) for m in methods] + [("crest", v, kw) for v, kw in variant_settings.items()]
    points = [("none", 1.0, "", {})] + [(m, x, v, kw) for x in frac_values for m, v, kw in per_f]  # per optimizer
    runner = BenchRunner("crest", save, threads, wandb)

    def config(dataset: str, n: int | None, optimizer: str, method: str, frac: float, seed: int,
               variant: dict | None = None) -> CrestSettings:
        return crest_point(method, frac, f, {**common(dataset, optimizer), **extra, **(variant or {}), "seed": seed},
                           n).resolved().validate()

    plan = {}
    for dataset in names:  # every config (and its data) checked before anything trains
        for seed in range(f["seed"], f["seed"] + seeds):
            data = load_data(config(dataset, None, optimizer_names[0], "none", 1.0, seed))
            n = len(data.train)
            plan[dataset, seed] = (data, [(o, v, config(dataset, n, o, m, x, seed, kw)) for o in optimizer_names
                                          for m, x, v, kw in points])
            for _, _, cfg in plan[dataset, seed][1]:
                cfg.check_sizes(n)

    results = []
    for (dataset, seed), (data, configs) in plan.items():
        last = configs[-1][2]
        shown = dict(model=last.model, epochs=last.epochs, batch=last.batch_size,
                     lr=f"{' '.join(map(str, last.lr))} {last.schedule}", weight_decay=last.weight_decay,
                     random_subsets=f"{last.random_subset_size:.3g} x N", P=last.num_minibatch_coreset,
                     check_thresh_factor=last.check_thresh_factor, interval_mul=last.interval_mul,
                     selection_actors=last.actors)
        if seed == f["seed"]:
            runner.header(f"on {dataset}", data, **{**shown, **extra},  # a --set of a shown setting shows once
                          **({"seeds": f"{seed}-{seed + seeds - 1}"} if seeds > 1 else {}))
        with crest_actor_pool(last, data) as actor_pool:
            runner.warm(CREST, last, data, actor_pool=actor_pool)  # CREST's own code paths warmed too
            for optimizer, variant, cfg in configs:
                method = "crest-2g" if cfg.reference_double_step else cfg.selection_method
                summary = runner.run(CREST, cfg, data, actor_pool=actor_pool if method.startswith("crest") else None)
                crest = summary["crest"]
                results.append({"dataset": dataset, "optimizer": OPTIMIZERS[optimizer][0], "method": method,
                                "variant": variant, "seed": seed, "train_frac": cfg.train_frac,
                                "steps": summary["steps"], "regions": summary["regions"], "checks": summary["checks"],
                                "selection_s": crest.get("selection_s", 0.0), "check_s": crest.get("check_s", 0.0),
                                "wait_s": crest.get("selection_wait_s", 0.0),
                                "wall_s": sum(summary["cost_s"][p] for p in ("train", "selection", "check")),
                                "test_acc": summary["test_acc"]})
                runner.progress(f"seed {seed} {optimizer} {method} {variant} f={cfg.train_frac:g}".replace("  ", " "),
                                results[-1], "wall_s", f", {results[-1]['regions']} regions")
    frame = mean_over_seeds(pd.DataFrame(results))
    frame = compare(frame, frame.method == "none", ["dataset", "optimizer"], "speed-up", "vs none", seconds="wall_s")
    frame = compare(frame, frame.method == "random", ["dataset", "optimizer", "train_frac"], delta="vs random")
    runner.finish(frame, ["dataset", "optimizer", "method"] + (["variant"] if variants else []) +
                  ["train_frac", "steps", "regions", "checks", "selection_s"] + (["wait_s"] if f["actors"] else []) +
                  ["check_s", "wall_s", "test_acc"] + (["test_acc_std", "seeds"] if seeds > 1 else []) +
                  ["speed-up", "vs none", "vs random"],
                  title="CREST vs random vs full data",
                  plot=functools.partial(accuracy_vs_seconds, seconds="wall_s", by=["dataset", "method", "optimizer"],
                                         label=lambda r: "" if r["method"] == "none" else f"f={r['train_frac']:g}",
                                         xlabel="wall seconds (selection and checks included)"))


def mean_over_seeds(rows: pd.DataFrame) -> pd.DataFrame:
    """A row per dataset, optimizer, method, variant and train_frac: the mean over its seeds
    of every number, ``test_acc_std`` their spread (0 for one seed) and ``seeds``, in the
    order the rows first ran."""
    keys = ["dataset", "optimizer", "method", "variant", "train_frac"]
    groups = rows.drop(columns="seed").groupby(keys, sort=False)
    table = groups.mean().reset_index()
    table["test_acc_std"] = groups["test_acc"].std(ddof=0).to_numpy()
    table["seeds"] = groups.size().to_numpy()
    return table
