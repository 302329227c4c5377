"""`effray tune sparse`: one Ray Tune trial = one sparse (or dense) training run, in the
trial's process with one thread, reporting every epoch's row (test_acc, density, R_s,
agc_c). Registered with ``raypkg.tuning``."""

from __future__ import annotations

from raypkg.sparse.config import SparseConfig
from raypkg.tuning import EPOCH_METRICS, register_tunable


@register_tunable("sparse", SparseConfig, EPOCH_METRICS + ("density", "R_s", "mask_updates", "agc_c", "agc_c_hat",
                                                         "agc_snapshot_s"))
def tune_sparse(config: dict, report) -> None:
    import torch

    from raypkg.engine.runner import load_data, use_augmentation
    from raypkg.engine.trainer import train
    from raypkg.sparse.train import build_callbacks, check_against_data

    cfg = SparseConfig(**{**config, "progress": False, "workers": 0}).validate()
    torch.set_num_threads(1)
    data = load_data(cfg)
    check_against_data(cfg, data)
    run_cfg = cfg.stretched()
    train(run_cfg, data, augment=use_augmentation(cfg, data), callbacks=build_callbacks(run_cfg), on_epoch=report)
