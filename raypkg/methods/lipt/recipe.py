"""LiPT's recipe: stage 1 (K sparse shard models) and 2 (their merge) from
``raypkg.methods.lipt.pretrain``, stage 3 the coreset recipe's selection, stage 4 training on
the subset, re-selecting every ``reselect_every`` epochs when asked (the coreset recipe's
``train_subset``, ``raypkg.selection.adaptive``).

Phases: pretrain, merge, selection, train, eval. The summary has the shard models' and
the merged model's test accuracies.
"""

from __future__ import annotations

import dataclasses
import sys

from raypkg.methods.lipt.config import LiptConfig
from raypkg.methods.lipt.pretrain import merge_shards, train_shards
from raypkg.methods.lipt.shards import check_shards
from raypkg.recipe import BenchCase, Recipe
from raypkg.recipe_registry import register, register_case
from raypkg.selection.stages import SELECTION_METRICS, check_coreset, choose_subset, train_subset, without_ccs
from raypkg.sparsity.masks import check_layers_keep_weights


def check_data(cfg: LiptConfig, data) -> None:
    """The budget, the selection model and the K shards fit the loaded data; the masks keep a
    weight in every layer of the shard models."""
    check_coreset(cfg, data)
    check_shards(data.train.y, data.num_classes, cfg.shards)
    check_layers_keep_weights(cfg.scoring_config(), data)


def train_subset_on_whole_gpus(run) -> None:
    """Stage 4 on GPU workers that shared GPUs for the shard models: DDP ranks cannot share
    one (NCCL), so the subset trains on one rank per whole GPU; the summary's
    ``train_workers`` and a note say so."""
    placement = run.placement
    if placement is not None and 1 <= placement.ddp_workers < run.cfg.workers:
        ranks = placement.ddp_workers
        print(f"note: the {run.cfg.workers} shard-model workers shared {placement.gpus:g} GPU(s) "
              f"({placement.ensemble_gpu_share:g} each); the subset trains on {ranks} DDP rank(s), one per GPU "
              "(NCCL refuses two ranks on one GPU)", file=sys.stderr, flush=True)
        run.note(train_workers=ranks)
        run.cfg = dataclasses.replace(run.cfg, workers=ranks)
    train_subset(run)


LIPT = register(Recipe("lipt", LiptConfig, [train_shards, merge_shards, choose_subset, train_subset_on_whole_gpus],
                       label=lambda cfg: f"lipt-{cfg.selection}", check=check_data,
                       metrics=SELECTION_METRICS + ("merge_s", "merged_test_acc", "reselect_s"),
                       tune_phases=("pretrain", "merge", "selection"), ddp_on_whole_gpus=True))


def lipt_point(method: str, fraction: float, s: dict, common: dict, n: int | None) -> LiptConfig:
    """LiPT's --shards sparse shard models of --pre-epochs, merged by its default rule, on the
    auto sparse backend (``common`` may name others: `bench lipt`'s --merge and --backends)."""
    selection, stratify = without_ccs(method.removeprefix("lipt-"))
    return LiptConfig(**{"sparse_backend": "auto", **common}, weighting=None, weight_cap=None, cache=False,
                      selection=selection, stratify=stratify, fraction=fraction, shards=s["shards"],
                      pre_epochs=s["pre_epochs"])


def lipt_examples(cfg: LiptConfig, summary: dict, n: int, per_example) -> tuple[int, float]:
    """K shard models of their shards' examples, masked (SVP: the proxy's), then the subset,
    dense (less dropped ragged batches)."""
    from raypkg.engine.plans import trained_examples

    pre = cfg.pre_epochs * sum(trained_examples(size, cfg.batch_size, cfg.drop_last) for size in summary["shard_sizes"])
    train = cfg.epochs * trained_examples(summary["subset_size"], cfg.batch_size, cfg.drop_last)
    proxy = {"model": cfg.selection_model} if cfg.selection_model else {}
    return pre + train, pre * per_example(cfg.density, cfg.sparse_init, **proxy) + train * per_example()


register_case(BenchCase("lipt", "lipt", ("lipt-grand", "lipt-glister"), "fractions", lipt_point, lipt_examples,
                        marker="*"))
register_case(BenchCase("lipt", "lipt", ("lipt-grand-ccs",), "fractions", lipt_point, lipt_examples, default=False,
                        marker="*"))  # LiPT's GraNd scores re-picked by coverage (CCS): run when named
