"""`effray bench coreset`: the coreset stages for every selector and weighting, side by side.

Full-data training, then per fraction and method: pretrain (full-data training for
--pretrain-epochs; GraNd pays --repeats of them, uniform none; shared through a scratch
cache, each method charged the ones it uses), selection, and training on the subset for
the same --epochs with the method's weighting (``craig:weighting=none`` overrides it).
``vs rs2``: the test-accuracy difference to RS2 at the same fraction; ``speed-up``: the
warmed full-data training's seconds / the method's total.

``--selection-models`` (SVP, Coleman et al., ICLR 2020): each model-based method also warms
up and scores with each of these cheaper proxies (``--selection-model``), and its rows say how
the proxy's choice compares with ``--model``'s own at the same fraction: ``spearman``, the
rank correlation of the two runs' per-example scores (NaN for a selector without scores),
and ``overlap``, the share of the subset both picked.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile

import click
import pandas as pd

from raypkg.bench.harness import BenchRunner, Point, bench_options, check_points, compare, selection_agreement
from raypkg.cli_options import config_options, list_option, name_list, number_list
from raypkg.errors import UsageError
from raypkg.methods.coreset.recipe import CORESET, coreset_point
from raypkg.methods.full.recipe import TRAIN
from raypkg.plots import accuracy_vs_seconds
from raypkg.recipe import load_data
from raypkg.selection.cache import SelectionCache
from raypkg.selection.config import CoresetConfig

DEFAULT_METHODS = ("rs2,uniform,grand,glister,gradmatch,gradmatch:weighting=loss,gradmatch:weighting=none,"
                   "craig,craig:weighting=loss,craig:weighting=none")
# The CoresetConfig fields that are flags of this bench, with the bench's defaults.
BENCH_DEFAULTS = {"dataset": "digits-aug", "model": "mlp", "train_size": None, "test_size": None, "epochs": 10,
                  "pretrain_epochs": 2, "repeats": 3, "batch_size": 64, "lr": [0.1], "actors": 0, "seed": 0}
COLUMNS = ["fraction", "method", "weighting", "pretrain_s", "selection_s", "train_s", "total_s", "test_acc", "vs rs2",
           "speed-up"]
SVP_COLUMNS = ["fraction", "method", "scorer", "pretrain_s", "selection_s", "train_s", "total_s", "test_acc",
               "vs rs2", "speed-up", "spearman", "overlap"]


@click.command("coreset")
@config_options(CoresetConfig, only=list(BENCH_DEFAULTS), defaults=BENCH_DEFAULTS, fill_defaults=True,
                more_help={"epochs": "The same for full data and every subset."})
@list_option("--fractions", default="0.1,0.3", show_default=True, help="Comma-separated fractions.")
@list_option("--methods", default=DEFAULT_METHODS, show_default=True,
              help="Comma-separated selection methods, each optionally with config fields (weighting, weight_cap) "
                   "or selector options: NAME:KEY=VALUE;KEY=VALUE.")
@list_option("--selection-models", help="SVP: comma-separated proxy models (`effray models`) that also warm up and "
                                         "score for every model-based method; rows compare each with --model's "
                                         "own scores (spearman, overlap).")
@bench_options()
def coreset(fractions, methods, selection_models, repeats, save, threads, wandb, **flags):
    """Full data vs RS2, uniform, GraNd, Glister, GradMatch, CRAIG at each fraction: accuracy and phase times.

    \b
    Examples:
      effray bench coreset                                  # digits-aug, fractions 0.1 and 0.3
      effray bench coreset --train-size 2000 --epochs 2 --pretrain-epochs 1 --repeats 2
      effray bench coreset --model lenet5 --methods rs2,grand,el2n --fractions 0.3 --selection-models mlp,logreg
    """
    from raypkg.models.registry import available_models
    from raypkg.selection.registry import get_selector

    specs, fracs = name_list(methods, "--methods"), number_list(fractions, "--fractions", "numbers")
    proxies = name_list(selection_models, "--selection-models", available_models(), what="model") \
        if selection_models is not None else []
    common = dict(flags, progress=False, wandb="disabled", cache=False)
    base = CoresetConfig(**common).resolved().validate()
    if base.model in proxies:
        raise UsageError(f"--selection-models names --model {base.model} itself: its rows are the ones each proxy "
                         "is compared with")
    scorer = {"scorer": "-"} if proxies else {}
    points = [Point("full data", TRAIN, base, {"fraction": 1.0, "method": "full data", "weighting": "-", **scorer})]
    for spec, f in ((spec, f) for spec in specs for f in fracs):
        cfg = coreset_point(spec, f, {**flags, "repeats": repeats}, common, None).resolved().validate()
        scored = get_selector(cfg.selection).needs_model
        labels = {"fraction": f, "method": spec, "weighting": cfg.weighting,
                  **({"scorer": base.model if scored else "-"} if proxies else {})}
        points.append(Point(f"{spec} @{f:g}", CORESET, cfg, labels))
        for proxy in proxies if scored else []:
            proxied = dataclasses.replace(cfg, selection_model=proxy).validate()
            points.append(Point(f"{spec} @{f:g} scored by {proxy}", CORESET, proxied, {**labels, "scorer": proxy}))
    if proxies and len(points) == 1 + len(specs) * len(fracs):  # no proxy row: nothing scores with a model
        raise UsageError(f"--selection-models scores with a proxy model, and none of --methods {','.join(specs)} "
                         "scores with a model (e.g. grand, el2n, glister)")
    runner = BenchRunner("coreset", save, threads, wandb)
    data = load_data(base)
    check_points(points, data)
    runner.header(f"stages on {base.dataset}", data, model=base.model, epochs=base.epochs,
                  pretrain_epochs=base.pretrain_epochs, GraNd_repeats=repeats)
    with tempfile.TemporaryDirectory() as scratch:
        done = runner.rows(points, data, ("pretrain", "selection", "train"), "total_s", cache=SelectionCache(scratch))
    if proxies:
        add_agreement(done, base.model)
    frame = pd.DataFrame([row for row, _ in done])
    frame = compare(frame, frame["method"] == "rs2", ["fraction"], delta="vs rs2", points=False)
    frame = compare(frame, frame["method"] == "full data", [], "speed-up", seconds="total_s")
    runner.finish(frame, SVP_COLUMNS if proxies else COLUMNS,
                  title=f"coreset stages on {base.dataset}: test accuracy vs end-to-end seconds",
                  plot=functools.partial(accuracy_vs_seconds, seconds="total_s", by=["method"],
                                         label=lambda r: f"{r['fraction']:g}",
                                         xlabel="end-to-end seconds (pretrain + selection + train)"))


def add_agreement(done: list[tuple[dict, dict]], model: str) -> None:
    """Each proxy-scored row's ``spearman`` and ``overlap`` against the same method scored by
    ``model`` (``selection_agreement``); NaN on the other rows."""
    tables = {(row["fraction"], row["method"], row["scorer"]): summary.get("tables", {}) for row, summary in done}
    for row, _ in done:
        own = tables.get((row["fraction"], row["method"], model))
        scored = row["scorer"] not in (model, "-") and own is not None
        row.update(selection_agreement(tables[row["fraction"], row["method"], row["scorer"]], own) if scored
                   else {"spearman": float("nan"), "overlap": float("nan")})
