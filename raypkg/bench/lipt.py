"""`effray bench lipt`: DeepCore-style pre-training vs LiPT vs uniform vs full data, in one run.

One process, one dataset, one seed, the same subset-training budget for every row
(Ro et al. 2023, Sec. 5, the comparison of Table 1/Fig. 1):

- ``full data``: training on everything for --epochs.
- ``uniform``: a random class-balanced subset (no pre-training).
- ``deepcore``: full-model full-data warm-up for --pretrain-epochs (GraNd: --repeats of
  them, different seeds, scores averaged), selection, subset training.
- ``lipt``: --shards sparse shard models (--density, ERK) for --pre-epochs each on their
  shard (in this process one after another, or on --workers Ray Train workers), merged by
  the --merge rule, selection with the merged model, subset training. With several
  rules (``--merge shared-mask,keepers,zeros``) one LiPT row per rule, and with several
  ``--backends`` (the shard models' ``--sparse-backend``) one per backend, against the
  same DeepCore row.

Every row runs its recipe (``full data``: train; ``uniform``, ``deepcore``: coreset;
``lipt``: LiPT) in memory. Pre-trained models are computed once and shared through a scratch
cache (fractions and methods reuse them); each row is charged their original seconds.
Ratios in the LiPT rows: ``pretrain_x`` = DeepCore's pre-training seconds / LiPT's
(pre-training + merge), ``e2e_x`` = DeepCore's end-to-end seconds / LiPT's, and
``acc_vs_deepcore`` = the test-accuracy difference (points of %); ``merged_acc`` is the
merged LiPT model's own test accuracy (before any subset training), ``shard_acc`` the
mean of its K shard models' and ``shard_s`` the pre-training seconds per shard model.
The paper's targets (CIFAR-10, ResNet-18, K=10 workers in parallel): pretrain_x >= 15,
e2e_x >= 2.8, accuracy within 1 point.

Does LiPT's selection see what DeepCore's sees? In the LiPT rows, against the DeepCore
row of the same method and fraction: ``spearman``, the Spearman rank correlation of the
two per-example scores over the whole training set (GraNd's mean gradient norms; NaN for
selectors that expose no per-example score for every example, e.g. Glister, whose gains
exist only for its picks, at the time of each pick), and ``overlap``, |S_lipt & S_deepcore| / k,
the share of the k picked examples both pipelines picked (for GraNd the top-k sets, per
class when balanced; for Glister its greedy picks).
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile

import click
import torch

from raypkg.bench.harness import (accuracy_vs_seconds, bench_options, bench_settings, bench_stem, check_bench_numbers,
                                  name_list, number_list, print_table, save_bench, use_threads, warm_up)
from raypkg.cli_options import config_options
from raypkg.lipt.config import MERGE_RULES, LiptConfig
from raypkg.sparse.config import SPARSE_BACKENDS

COLUMNS = ["fraction", "pipeline", "method", "merge", "pretrain_s", "shard_s", "merge_s", "selection_s", "train_s",
           "total_s", "test_acc", "merged_acc", "shard_acc", "spearman", "overlap", "pretrain_x", "e2e_x",
           "acc_vs_deepcore"]
# The LiptConfig fields that are flags of this bench, with the bench's defaults.
BENCH_DEFAULTS = {"dataset": "digits-aug", "model": "mlp", "train_size": None, "test_size": None, "epochs": 10,
                  "pretrain_epochs": 10, "repeats": 10, "shards": 10, "pre_epochs": 5, "density": 0.05,
                  "randaugment": True, "workers": 0, "batch_size": 64, "lr": [0.1], "seed": 0}
DEEPCORE_ONLY, LIPT_ONLY = "DeepCore rows only.", "LiPT rows only."


def agreement(ours: dict, reference: dict) -> dict[str, float]:
    """How LiPT's selection agrees with DeepCore's, from the two runs' tables (on the same
    data): Spearman correlation of every example's score (scores.parquet; NaN unless both
    have one) and the share of the k picks (selection.parquet) both made."""
    import pandas as pd

    spearman = float("nan")
    if "scores.parquet" in ours and "scores.parquet" in reference:
        spearman = float(pd.Series(ours["scores.parquet"]["score"]).corr(
            pd.Series(reference["scores.parquet"]["score"]), method="spearman"))
    picks = [set(pd.Series(t["selection.parquet"]["index"]).tolist()) for t in (ours, reference)]
    return {"spearman": spearman, "overlap": len(picks[0] & picks[1]) / max(len(picks[0]), 1)}


@click.command("lipt")
@config_options(LiptConfig, only=list(BENCH_DEFAULTS), defaults=BENCH_DEFAULTS, fill_defaults=True,
                more_help={"epochs": "The same for full data and every subset.", "pretrain_epochs": DEEPCORE_ONLY,
                           "repeats": DEEPCORE_ONLY, "shards": LIPT_ONLY, "pre_epochs": LIPT_ONLY,
                           "density": LIPT_ONLY, "randaugment": LIPT_ONLY,
                           "workers": "LiPT rows only: the shard models."})
@click.option("--fractions", default="0.1,0.3", show_default=True, help="Comma-separated fractions.")
@click.option("--methods", default="grand,glister", show_default=True, help="Comma-separated gradient-based selectors.")
@click.option("--merge", default=MERGE_RULES[0], show_default=True,
              help=f"LiPT: how the sparse shard models merge, comma-separated for one LiPT row each "
                   f"({', '.join(MERGE_RULES)}; see `effray run lipt --help`).")
@click.option("--backends", default="masked", show_default=True,
              help="LiPT: the shard models' --sparse-backend (masked, sparse, auto), comma-separated for one LiPT "
                   "row each (with several, a backend column).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Any other LiPT-only setting of `effray run lipt`, for the LiPT rows (underscores; values "
                   "read as YAML), e.g. --set score=ensemble --set bn_samples=2000.")
@bench_options()
def lipt_bench(dataset, model, train_size, test_size, fractions, methods, epochs, pretrain_epochs, repeats, shards,
               pre_epochs, density, merge, backends, randaugment, settings, workers, batch_size, lr, seed, threads,
               save):
    """DeepCore-style warm-up vs LiPT vs uniform vs full data: seconds per phase, end to end, accuracy.

    \b
    Examples:
      effray bench lipt                                            # digits-aug, GraNd and Glister, 0.1 and 0.3
      effray bench lipt --train-size 10000 --epochs 5 --pretrain-epochs 5 --repeats 5 --shards 10
      effray bench lipt --methods grand --pre-epochs 5 --set score=ensemble
      effray bench lipt --model resnet20 --train-size 4000 --test-size 2000 --shards 4 --merge shared-mask,zeros
      effray bench lipt --methods grand --fractions 0.1 --shards 4 --backends masked,sparse   # the sparse kernels
    """
    import pandas as pd

    from raypkg.engine.loop import pick_device
    from raypkg.engine.runner import TRAIN
    from raypkg.recipe import load_data
    from raypkg.errors import UsageError
    from raypkg.lipt.recipe import LIPT, check_data
    from raypkg.recipe import MemorySink
    from raypkg.selection.cache import SelectionCache
    from raypkg.selection.config import CoresetConfig
    from raypkg.selection.recipe import CORESET
    from raypkg.selection.registry import get_selector

    check_bench_numbers(train_size=train_size, test_size=test_size, epochs=epochs, repeats=repeats, shards=shards,
                        pre_epochs=pre_epochs, batch_size=batch_size)
    if pretrain_epochs < 0:
        raise UsageError(f"--pretrain-epochs must be >= 0, got {pretrain_epochs}")
    from raypkg.sparse.config import check_density
    check_density(density)
    fracs = number_list(fractions, "--fractions", "numbers")
    names = name_list(methods, "--methods")
    for name in names:
        if not get_selector(name).needs_model:
            raise UsageError(f"--methods are gradient-based selectors (pre-training is what is compared); got {name!r}")
    if workers < 0:
        raise UsageError(f"--workers must be >= 0, got {workers}")
    merges = name_list(merge, "--merge", MERGE_RULES, "merge rule")
    backend_list = name_list(backends, "--backends", SPARSE_BACKENDS, "sparse backend")
    lipt_only = {f.name for f in dataclasses.fields(LiptConfig)} - {f.name for f in dataclasses.fields(CoresetConfig)}
    extra = bench_settings(settings, lipt_only, "LiPT-only",
                           own_flags={"shards", "pre_epochs", "density", "merge", "randaugment", "sparse_backend"})
    common = dict(dataset=dataset, model=model, train_size=train_size, test_size=test_size, epochs=epochs,
                  batch_size=batch_size, lr=lr, seed=seed, progress=False, wandb="disabled", cache=False)
    base = CoresetConfig(**common, pretrain_epochs=pretrain_epochs).resolved().validate()
    lipt_base = LiptConfig(**common, shards=shards, pre_epochs=pre_epochs, density=density, merge=merges[0],
                           randaugment=randaugment, workers=workers, selection=names[0],
                           **extra).resolved().validate()
    deepcore = {(m, f): dataclasses.replace(base, selection=m, fraction=f, weighting=None, weight_cap=None,
                                            repeats=repeats if get_selector(m).uses_repeats else None
                                            ).resolved().validate() for m in names for f in fracs}
    lipt = {(m, f, r, b): dataclasses.replace(lipt_base, selection=m, fraction=f, weighting=None, weight_cap=None,
                                              merge=r, sparse_backend=b).resolved().validate()
            for m in names for f in fracs for r in merges for b in backend_list}
    stem = bench_stem(save, "lipt")
    use_threads(threads)
    data, device = load_data(base), pick_device(base.use_gpu)
    check_data(lipt_base, data)
    click.echo(f"# LiPT bench on {dataset} ({len(data.train)} train / {len(data.test)} test), {model}, "
               f"{epochs} training epochs, torch threads {torch.get_num_threads()}, device {device}\n"
               f"# DeepCore: warm-up {pretrain_epochs} epochs on the full data, GraNd x{repeats} repeats; "
               f"LiPT: {shards} shards x {pre_epochs} epochs, density {density} ERK, merge {', '.join(merges)}, "
               f"randaugment {'on' if randaugment else 'off'}, " + "".join(f"{k} {v}, " for k, v in extra.items()) +
               f"{f'{workers} Ray Train workers' if workers else 'in this process, one shard after another'}")

    # every timed row, the baseline's included, after the one-time costs (each backend's too)
    for recipe, cfg in ((TRAIN, base), (CORESET, deepcore[names[0], fracs[0]]),
                        *((LIPT, lipt[names[0], fracs[0], merges[0], b]) for b in backend_list)):
        warm_up(recipe, cfg, data)
    full = TRAIN.run(base, MemorySink, data=data)
    rows = [{"fraction": 1.0, "pipeline": "full data", "method": "-", "merge": "-", "backend": "-", "pretrain_s": 0.0,
             "merge_s": 0.0, "selection_s": 0.0, "train_s": full["phases"]["train"], "total_s": full["phases"]["train"],
             "test_acc": full["test_acc"]}]

    def run_row(cfg, pipeline: str, cache):
        """The row of one pipeline, and its tables (selection.parquet, scores.parquet)."""
        summary = (LIPT if pipeline == "lipt" else CORESET).run(cfg, MemorySink, data=data, cache=cache)
        seconds = {"merge": 0.0, **summary["cost_s"]}
        selection_s, train_s = seconds["selection"], seconds["train"]
        total = seconds["pretrain"] + seconds["merge"] + selection_s + train_s
        row = {"fraction": cfg.fraction, "pipeline": pipeline, "method": cfg.selection,
               "merge": summary.get("merge", "-"), "backend": getattr(cfg, "sparse_backend", "-"),
               "pretrain_s": seconds["pretrain"], "merge_s": seconds["merge"],
               "selection_s": selection_s, "train_s": train_s, "total_s": total, "test_acc": summary["test_acc"]}
        if pipeline == "lipt":
            row.update(merged_acc=summary["merged_test_acc"], shard_acc=sum(summary["shard_test_acc"]) / cfg.shards,
                       shard_s=seconds["pretrain"] / cfg.shards)
        label = " ".join(dict.fromkeys([pipeline, cfg.selection] +
                                       ([row["merge"], row["backend"]] if pipeline == "lipt" else [])))
        click.echo(f"  {label} @{cfg.fraction:g}: test_acc {row['test_acc']:.4f}, {total:.1f}s", err=True)
        return row, summary["tables"]

    with tempfile.TemporaryDirectory() as scratch:
        cache = SelectionCache(scratch)
        for f in fracs:
            uniform, _ = run_row(dataclasses.replace(base, selection="uniform", fraction=f, weighting=None,
                                                     weight_cap=None, repeats=None).resolved().validate(),
                                 "uniform", cache)
            rows.append(uniform)
            for m in names:
                reference, reference_picks = run_row(deepcore[m, f], "deepcore", cache)
                rows.append(reference)
                for r, b in ((r, b) for r in merges for b in backend_list):
                    ours, our_picks = run_row(lipt[m, f, r, b], "lipt", cache)
                    ours.update(pretrain_x=reference["pretrain_s"] / (ours["pretrain_s"] + ours["merge_s"]),
                                e2e_x=reference["total_s"] / ours["total_s"],
                                acc_vs_deepcore=100 * (ours["test_acc"] - reference["test_acc"]),
                                **agreement(our_picks, reference_picks))
                    rows.append(ours)
    columns = COLUMNS if len(backend_list) == 1 else [*COLUMNS[:4], "backend", *COLUMNS[4:]]
    frame = pd.DataFrame(rows, columns=columns)
    print_table(frame.to_dict("records"), columns)

    def label(row) -> str:
        text = "full" if row["pipeline"] == "full data" else f"{row['method']} {row['fraction']:g}"
        if row["pipeline"] == "lipt":
            text += (f" {row['merge']}" if len(merges) > 1 else "") + (f" {row['backend']}" if len(backend_list) > 1
                                                                        else "")
        return text

    plot = functools.partial(accuracy_vs_seconds, seconds="total_s", by=["pipeline"], label=label,
                             xlabel="end-to-end seconds (pre-training + selection + training)")
    save_bench(frame, stem, plot=plot, title=f"{dataset}/{model}: accuracy vs end-to-end time (DeepCore vs LiPT)")
