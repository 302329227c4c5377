"""`effray bench coreset`: the coreset stages for every selector and weighting, side by side.

One process, one dataset, one seed: full-data training (the accuracy reference), then
for each fraction and each method the three stages with their seconds: pretrain
(full-data training for --pretrain-epochs; GraNd pays --repeats of them, uniform none),
selection, and training on the subset for the same --epochs with the method's weighting
(``craig:weighting=none`` overrides it). The pre-trained models are trained once and
shared by the methods (each method is charged the ones it uses). ``vs rs2`` is the
test-accuracy difference to RS2 (a fresh uniform subset every epoch, the random baseline
the literature compares against) at the same fraction, NaN without an rs2 row;
``speed-up`` is full-data training time / the method's total time.
"""

from __future__ import annotations

import dataclasses
import functools

import click
import torch

from raypkg.bench.harness import (accuracy_vs_seconds, bench_options, bench_stem, name_list, number_list, print_table,
                                  save_bench, use_threads, warm_up)
from raypkg.cli_options import config_options
from raypkg.selection.config import CoresetConfig

DEFAULT_METHODS = ("rs2,uniform,grand,glister,gradmatch,gradmatch:weighting=loss,gradmatch:weighting=none,"
                   "craig,craig:weighting=loss,craig:weighting=none")
# The CoresetConfig fields that are flags of this bench, with the bench's defaults.
BENCH_DEFAULTS = {"dataset": "digits-aug", "model": "mlp", "train_size": None, "test_size": None, "epochs": 10,
                  "pretrain_epochs": 2, "repeats": 3, "batch_size": 64, "lr": [0.1], "actors": 0, "seed": 0}


def parse_method(spec: str) -> tuple[str, dict]:
    """``"craig:weighting=none"`` -> ("craig", {"weighting": "none"}): a method with options."""
    import yaml

    from raypkg.errors import UsageError

    name, _, rest = spec.partition(":")
    options = {}
    for pair in filter(None, rest.split(";")):
        key, sep, value = pair.partition("=")
        if not sep:
            raise UsageError(f"method options take KEY=VALUE, got {pair!r} in {spec!r}")
        options[key.strip()] = yaml.safe_load(value)
    return name.strip(), options


@click.command("coreset")
@config_options(CoresetConfig, only=list(BENCH_DEFAULTS), defaults=BENCH_DEFAULTS, fill_defaults=True,
                more_help={"epochs": "The same for full data and every subset."})
@click.option("--fractions", default="0.1,0.3", show_default=True, help="Comma-separated fractions.")
@click.option("--methods", default=DEFAULT_METHODS, show_default=True,
              help="Comma-separated selection methods, each optionally with config fields (weighting, weight_cap) "
                   "or selector options: NAME:KEY=VALUE;KEY=VALUE.")
@bench_options()
def coreset(dataset, model, train_size, test_size, fractions, methods, epochs, pretrain_epochs, repeats,
            batch_size, lr, actors, seed, save, threads):
    """Full data vs RS2, uniform, GraNd, Glister, GradMatch, CRAIG at each fraction: accuracy and phase times.

    \b
    Examples:
      effray bench coreset                                  # digits-aug, fractions 0.1 and 0.3
      effray bench coreset --train-size 2000 --epochs 2 --pretrain-epochs 1 --repeats 2
    """
    import tempfile

    import pandas as pd

    from raypkg.engine.loop import pick_device
    from raypkg.engine.runner import TRAIN
    from raypkg.recipe import load_data
    from raypkg.errors import UsageError
    from raypkg.recipe import MemorySink
    from raypkg.selection.cache import SelectionCache
    from raypkg.selection.recipe import CORESET, check_budget

    use_threads(threads)
    specs = name_list(methods, "--methods")
    stem = bench_stem(save, "coreset")
    fracs = number_list(fractions, "--fractions", "numbers")
    base = CoresetConfig(dataset=dataset, model=model, train_size=train_size, test_size=test_size, epochs=epochs,
                         pretrain_epochs=pretrain_epochs, batch_size=batch_size, lr=lr, seed=seed, actors=actors,
                         progress=False, wandb="disabled", cache=False).resolved().validate()
    configs = {(spec, f): method_config(base, spec, f, repeats) for spec in specs for f in fracs}
    data = load_data(base)
    for cfg in configs.values():
        check_budget(cfg, data)
    click.echo(f"# coreset stages on {dataset} ({len(data.train)} train / {len(data.test)} test), {model}, "
               f"torch threads {torch.get_num_threads()}, {epochs} epochs, pretrain {pretrain_epochs} epochs, "
               f"GraNd repeats {repeats}, device {pick_device(base.use_gpu)}")

    warm_up(TRAIN, base, data)  # every timed row, the baseline's included, after the one-time costs
    warm_up(CORESET, next(iter(configs.values())), data)
    full = TRAIN.run(base, MemorySink, data=data)
    full_s = full["phases"]["train"]
    rows = [{"fraction": 1.0, "method": "full data", "weighting": "-", "pretrain_s": 0.0, "selection_s": 0.0,
             "train_s": full_s, "total_s": full_s, "test_acc": full["test_acc"], "vs rs2": float("nan"),
             "speed-up": 1.0}]
    click.echo(f"  full data: test_acc {rows[0]['test_acc']:.4f}, {full_s:.1f}s", err=True)
    # Pre-trained models are computed once and shared through a scratch cache; each method
    # is charged the seconds of the ones it uses (``cost_s`` counts cache hits at their own seconds).
    with tempfile.TemporaryDirectory() as scratch:
        cache = SelectionCache(scratch)
        for (spec, f), cfg in configs.items():
            summary = CORESET.run(cfg, MemorySink, data=data, cache=cache)
            seconds = summary["cost_s"]
            total = seconds["pretrain"] + seconds["selection"] + seconds["train"]
            rows.append({"fraction": f, "method": spec, "weighting": cfg.weighting, "pretrain_s": seconds["pretrain"],
                         "selection_s": seconds["selection"], "train_s": summary["phases"]["train"],
                         "total_s": total, "test_acc": summary["test_acc"], "speed-up": full_s / total})
            click.echo(f"  {spec} @{f:g}: test_acc {rows[-1]['test_acc']:.4f}, {total:.1f}s "
                       f"({len(rows) - 1}/{len(configs)})", err=True)
    rs2 = {r["fraction"]: r["test_acc"] for r in rows if r["method"] == "rs2"}
    for r in rows:
        r["vs rs2"] = r["test_acc"] - rs2[r["fraction"]] if r["fraction"] in rs2 else float("nan")
    columns = ["fraction", "method", "weighting", "pretrain_s", "selection_s", "train_s", "total_s", "test_acc",
               "vs rs2", "speed-up"]
    print_table(rows, columns)
    plot = functools.partial(accuracy_vs_seconds, seconds="total_s", by=["method"],
                             label=lambda r: f"{r['fraction']:g}",
                             xlabel="end-to-end seconds (pretrain + selection + train)")
    save_bench(pd.DataFrame(rows), stem, plot=plot,
               title=f"coreset stages on {dataset}: test accuracy vs end-to-end seconds")


def method_config(base, spec: str, fraction: float, repeats: int):
    """The config of one table row: ``NAME:KEY=VALUE;...`` where a KEY that is a config
    field (``weighting``, ``weight_cap``) sets it and any other KEY is a selector option;
    the method's own defaults fill the rest."""
    from raypkg.engine.config import config_fields
    from raypkg.selection.registry import get_selector

    name, options = parse_method(spec)
    fields = {k: v for k, v in options.items() if k in config_fields(type(base))}
    selector_options = {k: v for k, v in options.items() if k not in fields}
    fields = {"weighting": None, "weight_cap": None, **fields}
    return dataclasses.replace(base, selection=name, fraction=fraction, options=selector_options,
                               repeats=repeats if get_selector(name).uses_repeats else None,
                               **fields).resolved().validate()
