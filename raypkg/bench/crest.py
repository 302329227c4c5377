"""`effray bench crest`: none vs random vs CREST at the same step budgets, in one process.

For each dataset and optimizer: full-data training (``none``, the accuracy reference),
then for each train_frac f the random baseline (a fresh uniform subset of f*N per epoch)
and CREST (f times the steps, on mini-batch coresets), all from the same seed and LR
schedule. Optimizers (``--optimizers``): ``paper`` trains as the reference code does
(plain SGD: it parses momentum 0.9 but never passes it to its optimizer; a linear LR
warm-up from 0 over the first 10% of the epochs, 20 of its 200), ``momentum`` with SGD
momentum 0.9 and no warm-up. ``wall_s`` is the whole training call: CREST's selection
(random subsets, proxies, facility location, the quadratic model) and validity checks are
in it and also shown apart. ``speed-up`` = none's wall_s / the row's; ``vs none`` and
``vs random`` are test-accuracy differences (points) to none and to random at the same f
and optimizer. One untimed warm-up run first pays the process's one-time costs.
``--double-step`` adds a ``crest-2g`` row per f: CREST stepping with twice the gradient, as
the reference code does (a second ``loss.backward()``), so at twice the effective LR of
the random and none rows; ``vs random`` then compares unequal step sizes.
"""

from __future__ import annotations

import functools

import click
import torch

from raypkg.bench.harness import (accuracy_vs_seconds, bench_options, bench_settings, bench_stem, check_bench_numbers,
                                  name_list, number_list, print_table, save_bench, use_threads, warm_up)
from raypkg.cli_options import address_option, config_options
from raypkg.crest.config import CrestConfig

PAPER_WARMUP = 0.1  # the reference warms the LR up over 20 of its 200 epochs
# The CrestConfig fields that are flags of this bench, with the bench's defaults.
BENCH_DEFAULTS = {"model": "mlp", "train_size": None, "test_size": None, "epochs": 10, "batch_size": 64, "lr": [0.1],
                  "random_subset_size": None, "check_thresh_factor": 0.1, "num_minibatch_coreset": 5,
                  "interval_mul": 1.0, "actors": 0, "seed": 0}
NOT_DIGITS = "Not applied to digits (fixed size)."


def paper_warmup_epochs(epochs: int) -> int:
    """The reference's warm-up share of ``epochs`` (at least 1, and below ``epochs``)."""
    return min(max(1, round(PAPER_WARMUP * epochs)), epochs - 1)


# --optimizers: the label in the table, and the CrestConfig fields each sets (given epochs)
OPTIMIZERS = {
    "paper": ("as in the paper (SGD, no momentum, warm-up)",
              lambda epochs: dict(momentum=0.0, lr_warmup_epochs=paper_warmup_epochs(epochs))),
    "momentum": ("SGD momentum 0.9, no warm-up", lambda epochs: dict(momentum=0.9, lr_warmup_epochs=0)),
}


@click.command("crest")
@click.option("--datasets", default="digits-aug,digits", show_default=True, help="Comma-separated datasets.")
@config_options(CrestConfig, only=list(BENCH_DEFAULTS), defaults=BENCH_DEFAULTS, fill_defaults=True,
                more_help={"train_size": NOT_DIGITS, "test_size": NOT_DIGITS,
                           "random_subset_size": "Default: the larger of 0.01 and 4 batches.",
                           "actors": "CREST rows only (with --set overlap=false: blocking, else overlapped with "
                                     "training, the coresets one region stale)."})
@click.option("--optimizers", default="paper,momentum", show_default=True,
              help="Comma-separated: paper (SGD without momentum, LR warm-up over the first 10 percent of the epochs, "
                   "as the reference code trains) and/or momentum (SGD momentum 0.9, no warm-up).")
@click.option("--fracs", default="0.1,0.3", show_default=True, help="Comma-separated train_frac values.")
@click.option("--double-step", is_flag=True,
              help="Also a row per f of CREST as its reference code steps: with twice the gradient (method "
                   "crest-2g), so at twice the effective LR of the random and none rows.")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any other `effray run crest` setting, for every row (underscores; values read as YAML), "
                   "e.g. --set approx_moment=false --set hessian_probes=2.")
@bench_options()
@address_option
def crest_bench(datasets, model, train_size, test_size, optimizers, fracs, double_step, epochs, batch_size, lr,
                random_subset_size, check_thresh_factor, num_minibatch_coreset, interval_mul, settings, actors, seed,
                threads, save):
    """none vs random vs CREST at each train_frac and optimizer: wall seconds, steps, regions, test accuracy.

    \b
    Examples:
      effray bench crest                                         # digits-aug and digits, f = 0.1, 0.3
      effray bench crest --datasets digits-aug --train-size 20000 --epochs 8
      effray bench crest --datasets digits-aug --fracs 0.1 --set approx_with_coreset=false
      effray bench crest --datasets digits-aug --model resnet20 --train-size 5000 --test-size 2000 --optimizers paper
      effray bench crest --datasets digits --optimizers paper --actors 1 --set overlap=false
      effray bench crest --datasets digits-aug --optimizers paper --double-step   # + the reference's 2g step
    """
    import dataclasses

    import pandas as pd

    from raypkg.crest.recipe import CREST, crest_actor_pool
    from raypkg.recipe import load_data
    from raypkg.recipe import MemorySink
    from raypkg.errors import UsageError

    check_bench_numbers(epochs=epochs, batch_size=batch_size, train_size=train_size, test_size=test_size,
                        num_minibatch_coreset=num_minibatch_coreset)
    if actors < 0:
        raise UsageError(f"--actors must be >= 0, got {actors}")
    frac_values = number_list(fracs, "--fracs", "numbers")
    names = name_list(datasets, "--datasets")
    optimizer_names = name_list(optimizers, "--optimizers", OPTIMIZERS, "optimizer")
    methods = ("random", "crest", "crest-2g") if double_step else ("random", "crest")

    def bench_fields(dataset: str, n: int | None, optimizer: str, method: str, frac: float) -> dict:
        """The CrestConfig fields this bench sets itself (its flags and the row)."""
        subset = random_subset_size or (max(0.01, 4 * batch_size / n) if n else 0.01)
        sized = dataset != "digits"
        return dict(dataset=dataset, model=model, train_size=train_size if sized else None,
                    test_size=test_size if sized else None, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed,
                    selection_method=method.removesuffix("-2g"), reference_double_step=method == "crest-2g",
                    train_frac=frac, random_subset_size=min(subset, 1.0),
                    check_thresh_factor=check_thresh_factor, num_minibatch_coreset=num_minibatch_coreset,
                    interval_mul=interval_mul, actors=actors if method.startswith("crest") else 0,
                    progress=False, wandb="disabled", **OPTIMIZERS[optimizer][1](epochs))

    extra = bench_settings(settings, {f.name for f in dataclasses.fields(CrestConfig)}, "CREST",
                           own_flags=set(bench_fields("digits", None, "paper", "none", 1.0)))
    stem = bench_stem(save, "crest")
    use_threads(threads)

    def config(dataset: str, n: int | None, optimizer: str, method: str, frac: float) -> CrestConfig:
        return CrestConfig(**bench_fields(dataset, n, optimizer, method, frac), **extra).resolved().validate()

    plan = {}
    for dataset in names:  # every config (and its data) checked before anything trains
        data = load_data(config(dataset, None, optimizer_names[0], "none", 1.0))
        n = len(data.train)
        plan[dataset] = (data, [(o, config(dataset, n, o, m, f)) for o in optimizer_names
                                for m, f in [("none", 1.0)] + [(m, f) for f in frac_values for m in methods]])
        for _, cfg in plan[dataset][1]:
            cfg.check_sizes(n)

    rows = []
    for i, (dataset, (data, configs)) in enumerate(plan.items()):
        click.echo(f"# {dataset}: {len(data.train)} train / {len(data.test)} test, {model}, {epochs} epochs, "
                   f"batch {batch_size}, lr {' '.join(map(str, lr))} {configs[0][1].schedule}, weight decay {configs[0][1].weight_decay:g}, "
                   f"random subsets {configs[-1][1].random_subset_size:.3g} x N, P {num_minibatch_coreset}, "
                   f"check_thresh_factor {check_thresh_factor}, interval_mul {interval_mul}, "
                   + "".join(f"{k} {v}, " for k, v in extra.items()) +
                   (f"{actors} selection actors, " if actors else "") + f"torch threads {torch.get_num_threads()}",
                   err=True)
        with crest_actor_pool(configs[-1][1], data) as actor_pool:
            if i == 0:
                warm_up(CREST, configs[-1][1], data, actor_pool=actor_pool)
            for optimizer, cfg in configs:
                method = "crest-2g" if cfg.reference_double_step else cfg.selection_method
                summary = CREST.run(cfg, MemorySink, data=data,
                                    actor_pool=actor_pool if cfg.selection_method == "crest" else None)
                crest = summary["crest"]
                rows.append({"dataset": dataset, "optimizer": OPTIMIZERS[optimizer][0],
                             "method": method, "train_frac": cfg.train_frac, "steps": summary["steps"],
                             "regions": summary["regions"], "checks": summary["checks"],
                             "selection_s": crest.get("selection_s", 0.0), "check_s": crest.get("check_s", 0.0),
                             "wait_s": crest.get("selection_wait_s", 0.0),
                             "wall_s": sum(summary["cost_s"][p] for p in ("train", "selection", "check")),
                             "test_acc": summary["test_acc"]})
                click.echo(f"  {optimizer} {method} f={cfg.train_frac:g}: test_acc "
                           f"{rows[-1]['test_acc']:.4f}, {rows[-1]['wall_s']:.1f}s, {rows[-1]['regions']} regions",
                           err=True)
    frame = pd.DataFrame(rows)
    for (dataset, optimizer), group in frame.groupby(["dataset", "optimizer"], sort=False):
        mask = (frame.dataset == dataset) & (frame.optimizer == optimizer)
        ref = frame[mask & (frame.method == "none")].iloc[0]
        frame.loc[mask, "speed-up"] = ref["wall_s"] / frame.loc[mask, "wall_s"]
        frame.loc[mask, "vs none"] = 100 * (frame.loc[mask, "test_acc"] - ref["test_acc"])
        for f in frac_values:
            at = mask & (frame.train_frac == f)
            random_acc = frame[at & (frame.method == "random")]["test_acc"].iloc[0]
            frame.loc[at, "vs random"] = 100 * (frame.loc[at, "test_acc"] - random_acc)
    print_table(frame.to_dict("records"), ["dataset", "optimizer", "method", "train_frac", "steps", "regions",
                                           "checks", "selection_s"] + (["wait_s"] if actors else []) +
                ["check_s", "wall_s", "test_acc", "speed-up", "vs none", "vs random"])
    plot = functools.partial(accuracy_vs_seconds, seconds="wall_s", by=["dataset", "method", "optimizer"],
                             label=lambda r: "" if r["method"] == "none" else f"f={r['train_frac']:g}",
                             xlabel="wall seconds (selection and checks included)")
    save_bench(frame, stem, plot=plot, title="CREST vs random vs full data")
