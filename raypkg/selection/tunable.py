"""`effray tune coreset`: one Ray Tune trial = pretrain, select, train on the subset.

Registered with ``raypkg.tuning`` (which imports this module). A trial runs the coreset
stages of ``raypkg.selection.pipeline`` in its own process with one thread, without the
cache or a run directory (Tune keeps the trial's results), and reports one row per
subset-training epoch, with the pretrain and selection seconds in every row so that a
sweep can trade accuracy against the pre-training tax.
"""

from __future__ import annotations

from raypkg.selection.config import CoresetConfig
from raypkg.tuning import EPOCH_METRICS, register_tunable


@register_tunable("coreset", CoresetConfig, EPOCH_METRICS + ("pretrain_s", "selection_s", "subset_size"))
def tune_coreset(config: dict, report) -> None:
    import torch

    from raypkg.selection.pipeline import prepare, pretrain, select_stage, train_stage

    cfg = CoresetConfig(**{**config, "progress": False, "actors": 0, "cache": False})
    torch.set_num_threads(1)
    data, device, augment = prepare(cfg)
    pretrained = pretrain(cfg, data, device, augment)
    result, selection_s, _ = select_stage(cfg, data, pretrained, device)
    extra = {"pretrain_s": pretrained.seconds, "selection_s": selection_s, "subset_size": len(result)}
    train_stage(cfg, data, result, on_epoch=lambda row: report({**row, **extra}))
