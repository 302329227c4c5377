"""`effray tune lipt`: one Ray Tune trial = LiPT's stages in the trial's process.

Registered with ``raypkg.tuning`` (which imports this module); no cache, no run
directory; one row per subset-training epoch, with the pretrain, merge and selection
seconds and the merged model's accuracy in every row.
"""

from __future__ import annotations

from raypkg.lipt.config import LiptConfig
from raypkg.tuning import register_tunable


@register_tunable("lipt", LiptConfig)
def tune_lipt(config: dict, report) -> None:
    import torch

    from raypkg.lipt.reselect import train_lipt_stage
    from raypkg.selection.pipeline import prepare, pretrain, select_stage

    cfg = LiptConfig(**{**config, "progress": False, "actors": 0, "cache": False})
    torch.set_num_threads(1)
    data, device, augment = prepare(cfg)
    pretrained = pretrain(cfg, data, device, augment, kind="lipt")
    result, selection_s, _ = select_stage(cfg, data, pretrained, device)
    seconds = pretrained.info.get("lipt_seconds", {})
    extra = {"pretrain_s": seconds.get("pretrain", 0.0), "merge_s": seconds.get("merge", 0.0),
             "merged_test_acc": pretrained.info.get("merged_test_acc", float("nan")),
             "selection_s": selection_s, "subset_size": len(result)}
    train_lipt_stage(cfg, data, result, on_epoch=lambda row: report({**row, **extra}))
