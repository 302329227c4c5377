"""LiPT's recipe: stage 1 (K sparse shard models) and 2 (their merge) from
``raypkg.lipt.pretrain``, stage 3 the coreset recipe's selection, stage 4 training on
the subset, re-selecting every ``reselect`` epochs when asked (``raypkg.lipt.reselect``).

Phases: pretrain, merge, selection, train, eval. The summary has the shard models' and
the merged model's test accuracies.
"""

from __future__ import annotations

from raypkg.lipt.config import LiptConfig
from raypkg.lipt.pretrain import merge_shards, train_shards
from raypkg.lipt.reselect import train_lipt_stage
from raypkg.lipt.shards import check_shards
from raypkg.recipe import Recipe, Run, register
from raypkg.selection.recipe import SELECTION_METRICS, check_budget, choose_subset


def check_data(cfg: LiptConfig, data) -> None:
    """The budget and the K shards fit the loaded data."""
    check_budget(cfg, data)
    check_shards(data.train.y, data.num_classes, cfg.shards)


def train_subset(run: Run) -> None:
    """Stage 4: a fresh model on the subset, re-selected every ``reselect`` epochs if set."""
    cfg = run.cfg
    with run.sink.phase("train"):
        run.trained = train_lipt_stage(cfg, run.data, run.state["selection"], on_epoch=run.sink.log_metrics,
                                       storage=run.sink.storage)
    run.note(weighting=cfg.weighting, weight_cap=cfg.weight_cap, epochs=cfg.epochs, workers=cfg.workers,
             reselect=cfg.reselect)


LIPT = register(Recipe("lipt", LiptConfig, [train_shards, merge_shards, choose_subset, train_subset],
                       label=lambda cfg: f"lipt-{cfg.selection}", check=check_data,
                       metrics=SELECTION_METRICS + ("merge_s", "merged_test_acc", "reselect_s"),
                       tune_phases=("pretrain", "merge", "selection")))
