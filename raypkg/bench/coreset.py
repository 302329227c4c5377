"""`effray bench coreset`: the coreset stages for every selector and weighting, side by side.

Full-data training, then per fraction and method: pretrain (full-data training for
--pretrain-epochs; GraNd pays --repeats of them, uniform none; shared through a scratch
cache, each method charged the ones it uses), selection, and training on the subset for
the same --epochs with the method's weighting (``craig:weighting=none`` overrides it).
``vs rs2``: the test-accuracy difference to RS2 at the same fraction; ``speed-up``: the
warmed full-data training's seconds / the method's total.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile

import click
import pandas as pd
import yaml

from raypkg.bench.harness import BenchRunner, accuracy_vs_seconds, bench_options, compare, name_list, number_list
from raypkg.cli_options import config_options
from raypkg.engine.config import config_fields
from raypkg.engine.runner import TRAIN
from raypkg.errors import UsageError
from raypkg.recipe import load_data
from raypkg.selection.cache import SelectionCache
from raypkg.selection.config import CoresetConfig
from raypkg.selection.recipe import CORESET, check_budget
from raypkg.selection.registry import get_selector

DEFAULT_METHODS = ("rs2,uniform,grand,glister,gradmatch,gradmatch:weighting=loss,gradmatch:weighting=none,"
                   "craig,craig:weighting=loss,craig:weighting=none")
# The CoresetConfig fields that are flags of this bench, with the bench's defaults.
BENCH_DEFAULTS = {"dataset": "digits-aug", "model": "mlp", "train_size": None, "test_size": None, "epochs": 10,
                  "pretrain_epochs": 2, "repeats": 3, "batch_size": 64, "lr": [0.1], "actors": 0, "seed": 0}
COLUMNS = ["fraction", "method", "weighting", "pretrain_s", "selection_s", "train_s", "total_s", "test_acc", "vs rs2",
           "speed-up"]


def method_config(base: CoresetConfig, spec: str, fraction: float, repeats: int) -> CoresetConfig:
    """One row's config, ``NAME:KEY=VALUE;...``: a KEY that is a config field (``weighting``,
    ``weight_cap``) sets it, any other is a selector option; the method's defaults fill the rest."""
    name, _, rest = (part.strip() for part in spec.partition(":"))
    fields, options = {"weighting": None, "weight_cap": None}, {}
    for pair in filter(None, rest.split(";")):
        key, sep, value = (part.strip() for part in pair.partition("="))
        if not sep:
            raise UsageError(f"method options take KEY=VALUE, got {pair!r} in {spec!r}")
        (fields if key in config_fields(CoresetConfig) else options)[key] = yaml.safe_load(value)
    return dataclasses.replace(base, selection=name, fraction=fraction, options=options,
                               repeats=repeats if get_selector(name).uses_repeats else None,
                               **fields).resolved().validate()


@click.command("coreset")
@config_options(CoresetConfig, only=list(BENCH_DEFAULTS), defaults=BENCH_DEFAULTS, fill_defaults=True,
                more_help={"epochs": "The same for full data and every subset."})
@click.option("--fractions", default="0.1,0.3", show_default=True, help="Comma-separated fractions.")
@click.option("--methods", default=DEFAULT_METHODS, show_default=True,
              help="Comma-separated selection methods, each optionally with config fields (weighting, weight_cap) "
                   "or selector options: NAME:KEY=VALUE;KEY=VALUE.")
@bench_options()
def coreset(fractions, methods, repeats, save, threads, **flags):
    """Full data vs RS2, uniform, GraNd, Glister, GradMatch, CRAIG at each fraction: accuracy and phase times.

    \b
    Examples:
      effray bench coreset                                  # digits-aug, fractions 0.1 and 0.3
      effray bench coreset --train-size 2000 --epochs 2 --pretrain-epochs 1 --repeats 2
    """
    specs, fracs = name_list(methods, "--methods"), number_list(fractions, "--fractions", "numbers")
    base = CoresetConfig(**flags, progress=False, wandb="disabled", cache=False).resolved().validate()
    configs = {(spec, f): method_config(base, spec, f, repeats) for spec in specs for f in fracs}
    runner = BenchRunner("coreset", save, threads)
    data = load_data(base)
    for cfg in configs.values():
        check_budget(cfg, data)
    runner.header(f"stages on {base.dataset}", data, model=base.model, epochs=base.epochs,
                  pretrain_epochs=base.pretrain_epochs, GraNd_repeats=repeats)
    phases = ("pretrain", "selection", "train")
    rows = [runner.row(TRAIN, base, data, {"fraction": 1.0, "method": "full data", "weighting": "-"}, phases,
                       "total_s")[0]]
    runner.progress("full data", rows[0], "total_s")
    with tempfile.TemporaryDirectory() as scratch:
        cache = SelectionCache(scratch)
        for i, ((spec, f), cfg) in enumerate(configs.items()):
            rows.append(runner.row(CORESET, cfg, data, {"fraction": f, "method": spec, "weighting": cfg.weighting},
                                   phases, "total_s", cache=cache)[0])
            runner.progress(f"{spec} @{f:g}", rows[-1], "total_s", f" ({i + 1}/{len(configs)})")
    frame = pd.DataFrame(rows)
    frame = compare(frame, frame["method"] == "rs2", ["fraction"], delta="vs rs2", points=False)
    frame = compare(frame, frame["method"] == "full data", [], "speed-up", seconds="total_s")
    runner.finish(frame, COLUMNS, title=f"coreset stages on {base.dataset}: test accuracy vs end-to-end seconds",
                  plot=functools.partial(accuracy_vs_seconds, seconds="total_s", by=["method"],
                                         label=lambda r: f"{r['fraction']:g}",
                                         xlabel="end-to-end seconds (pretrain + selection + train)"))
