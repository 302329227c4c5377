"""`effray bench lipt`: DeepCore-style pre-training vs LiPT vs uniform vs full data, in one run.

The same subset-training budget for every row (Ro et al. 2023, Sec. 5): ``full data``,
``uniform``, ``deepcore`` (a full-data warm-up, GraNd x --repeats, then selection) and
``lipt`` (--shards sparse shard models merged by --merge, then selection), a LiPT row per
merge rule and --backends value; pre-trained models cached and charged their original
seconds. LiPT rows: ``pretrain_x`` = DeepCore's pre-training seconds / LiPT's (with the
merge), ``e2e_x`` the same end to end, ``acc_vs_deepcore`` (points), ``merged_acc``,
``shard_acc``, ``shard_s``, and how the two selections agree: ``spearman`` (of the
per-example scores; NaN without them) and ``overlap`` (share of the picks both made).
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile

import click
import pandas as pd

from raypkg.bench.harness import BenchRunner, Point, bench_options, check_points, compare, selection_agreement
from raypkg.cli_options import bench_settings, config_options, list_option, name_list, number_list, set_option
from raypkg.errors import UsageError
from raypkg.methods.coreset.recipe import CORESET, coreset_point
from raypkg.methods.full.recipe import TRAIN
from raypkg.methods.lipt.config import MERGE_RULES, LiptConfig
from raypkg.methods.lipt.recipe import LIPT, lipt_point
from raypkg.plots import accuracy_vs_seconds
from raypkg.recipe import load_data
from raypkg.selection.cache import SelectionCache
from raypkg.selection.config import CoresetConfig
from raypkg.selection.registry import get_selector
from raypkg.sparsity.settings import SPARSE_BACKENDS

COLUMNS = ["fraction", "pipeline", "method", "merge", "pretrain_s", "shard_s", "merge_s", "selection_s", "train_s",
           "total_s", "test_acc", "merged_acc", "shard_acc", "spearman", "overlap", "pretrain_x", "e2e_x",
           "acc_vs_deepcore"]
# The LiptConfig fields that are flags of this bench, with the bench's defaults.
BENCH_DEFAULTS = {"dataset": "digits-aug", "model": "mlp", "train_size": None, "test_size": None, "epochs": 10,
                  "pretrain_epochs": 10, "repeats": 10, "shards": 10, "pre_epochs": 5, "density": 0.05,
                  "randaugment": True, "workers": 0, "batch_size": 64, "lr": [0.1], "seed": 0}
DEEPCORE_ONLY, LIPT_ONLY = "DeepCore rows only.", "LiPT rows only."


@click.command("lipt")
@config_options(LiptConfig, only=list(BENCH_DEFAULTS), defaults=BENCH_DEFAULTS, fill_defaults=True,
                more_help={"epochs": "The same for full data and every subset.", "pretrain_epochs": DEEPCORE_ONLY,
                           "repeats": DEEPCORE_ONLY, "shards": LIPT_ONLY, "pre_epochs": LIPT_ONLY,
                           "density": LIPT_ONLY, "randaugment": LIPT_ONLY,
                           "workers": "LiPT rows only: the shard models."})
@list_option("--fractions", default="0.1,0.3", show_default=True, help="Comma-separated fractions.")
@list_option("--methods", default="grand,glister", show_default=True, help="Comma-separated gradient-based selectors.")
@list_option("--merge", default=MERGE_RULES[0], show_default=True,
              help=f"LiPT: how the sparse shard models merge, comma-separated for one LiPT row each "
                   f"({', '.join(MERGE_RULES)}; see `effray run lipt --help`).")
@list_option("--backends", default="masked", show_default=True,
              help="LiPT: the shard models' --sparse-backend (masked, sparse, auto), comma-separated for one LiPT "
                   "row each (with several, a backend column).")
@set_option("Any other LiPT-only setting of `effray run lipt`, for the LiPT rows (underscores; values read as "
            "YAML), e.g. --set score=ensemble --set bn_samples=2000.")
@bench_options()
def lipt_bench(fractions, methods, merge, backends, settings, threads, save, wandb, **flags):
    """DeepCore-style warm-up vs LiPT vs uniform vs full data: seconds per phase, end to end, accuracy.

    \b
    Examples:
      effray bench lipt                                            # digits-aug, GraNd and Glister, 0.1 and 0.3
      effray bench lipt --train-size 10000 --epochs 5 --pretrain-epochs 5 --repeats 5 --shards 10
      effray bench lipt --methods grand --pre-epochs 5 --set score=ensemble
    """
    f = flags  # every number is checked by the configs' validate(), before any data is loaded
    fracs, names = number_list(fractions, "--fractions", "numbers"), name_list(methods, "--methods")
    for name in names:
        if not get_selector(name).needs_model:
            raise UsageError(f"--methods are gradient-based selectors (pre-training is what is compared); got {name!r}")
    merges = name_list(merge, "--merge", MERGE_RULES, "merge rule")
    backend_list = name_list(backends, "--backends", SPARSE_BACKENDS, "sparse backend")
    lipt_only = {x.name for x in dataclasses.fields(LiptConfig)} - {x.name for x in dataclasses.fields(CoresetConfig)}
    extra = bench_settings(settings, lipt_only, "LiPT-only",
                           own_flags={"shards", "pre_epochs", "density", "merge", "randaugment", "sparse_backend"})
    common = {k: v for k, v in f.items() if k not in ("shards", "pre_epochs", "density", "randaugment", "workers",
                                                      "repeats", "pretrain_epochs")}
    common.update(progress=False, wandb="disabled")
    deepcore_common = dict(common, pretrain_epochs=f["pretrain_epochs"])
    lipt_common = dict(common, density=f["density"], randaugment=f["randaugment"], workers=f["workers"], **extra)
    base = CoresetConfig(**deepcore_common, cache=False).resolved().validate()

    def point(pipeline: str, cfg) -> Point:
        cfg, ours = cfg.resolved().validate(), pipeline == "lipt"
        label = " ".join(dict.fromkeys([pipeline, cfg.selection] + ([cfg.merge, cfg.sparse_backend] if ours else [])))
        return Point(f"{label} @{cfg.fraction:g}", LIPT if ours else CORESET, cfg,
                     {"fraction": cfg.fraction, "pipeline": pipeline, "method": cfg.selection,
                      "merge": cfg.merge if ours else "-", "backend": cfg.sparse_backend if ours else "-"},
                     cfg.sparse_backend if ours else None)

    points = [Point("full data", TRAIN, base, {"fraction": 1.0, "pipeline": "full data", "method": "-", "merge": "-",
                                               "backend": "-"})]
    for x in fracs:
        points.append(point("uniform", coreset_point("uniform", x, f, deepcore_common, None)))
        for m in names:
            points.append(point("deepcore", coreset_point(m, x, f, deepcore_common, None)))
            points += [point("lipt", lipt_point(m, x, f, dict(lipt_common, merge=r, sparse_backend=b), None))
                       for r in merges for b in backend_list]
    runner = BenchRunner("lipt", save, threads, wandb)
    data = load_data(base)
    check_points(points, data)
    runner.header(f"on {base.dataset}", data, model=base.model, epochs=base.epochs,
                  DeepCore_warm_up=f"{base.pretrain_epochs} epochs x {f['repeats']} GraNd repeats",
                  LiPT=f"{f['shards']} shards x {f['pre_epochs']} epochs at density {f['density']}", merge=merges,
                  randaugment=f["randaugment"], **extra, Ray_Train_workers=f["workers"])
    # the warm-up pays the pre-training's first calls too
    runner.warm(CORESET, next(p.cfg for p in points if p.labels["pipeline"] == "deepcore"), data)
    with tempfile.TemporaryDirectory() as scratch:
        done = runner.rows(points, data, ("pretrain", "merge", "selection", "train"), "total_s",
                           cache=SelectionCache(scratch))
    tables = {(row["pipeline"], row["method"], row["fraction"]): summary["tables"] for row, summary in done}
    for p, (row, summary) in zip(points, done):
        if p.labels["pipeline"] == "lipt":
            row.update(merged_acc=summary["merged_test_acc"], shard_acc=sum(summary["shard_test_acc"]) / p.cfg.shards,
                       shard_s=row["pretrain_s"] / p.cfg.shards,
                       **selection_agreement(summary["tables"], tables["deepcore", row["method"], row["fraction"]]))
    frame = pd.DataFrame([row for row, _ in done]).assign(prepare_s=lambda t: t["pretrain_s"] + t["merge_s"])
    reference, ours = frame["pipeline"] == "deepcore", frame["pipeline"] == "lipt"
    frame = compare(frame, reference, ["method", "fraction"], "pretrain_x", seconds="prepare_s", rows=ours)
    frame = compare(frame, reference, ["method", "fraction"], "e2e_x", "acc_vs_deepcore", seconds="total_s", rows=ours)
    columns = COLUMNS if len(backend_list) == 1 else [*COLUMNS[:4], "backend", *COLUMNS[4:]]

    def label(row) -> str:
        if row["pipeline"] == "full data":
            return "full"
        extra = ([row["merge"]] if len(merges) > 1 else []) + ([row["backend"]] if len(backend_list) > 1 else [])
        return " ".join([row["method"], f"{row['fraction']:g}", *(extra if row["pipeline"] == "lipt" else [])])

    runner.finish(frame.reindex(columns=columns), columns,
                  title=f"{base.dataset}/{base.model}: accuracy vs end-to-end time (DeepCore vs LiPT)",
                  plot=functools.partial(accuracy_vs_seconds, seconds="total_s", by=["pipeline"], label=label,
                                         xlabel="end-to-end seconds (pre-training + selection + training)"))
