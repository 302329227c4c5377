"""`effray tune crest`: one Ray Tune trial = one CREST run (raypkg/tune_spaces/crest.yaml).

A trial trains in its own process with one thread and no run directory (Tune keeps the
trial's results, W&B gets every row); each epoch's row carries the CREST columns
(regions, checks, selection and check seconds) next to test_acc.
"""

from __future__ import annotations

from raypkg.crest.config import CrestConfig
from raypkg.tuning import EPOCH_METRICS, register_tunable


@register_tunable("crest", CrestConfig, EPOCH_METRICS + ("crest_regions", "crest_checks", "crest_check_interval",
                                                       "crest_pool", "crest_selection_s", "crest_check_s"))
def tune_crest(config: dict, report) -> None:
    import torch

    from raypkg.crest.runner import prepare, train_crest

    cfg = CrestConfig(**{**config, "progress": False, "actors": 0, "workers": 0})
    torch.set_num_threads(1)
    data = prepare(cfg)
    train_crest(cfg, data, on_epoch=report)
