"""`effray tune coreset`: one Ray Tune trial = warm-up, selection, weighted-subset training.

Registered with ``raypkg.tuning`` (which imports this module). A trial runs in its own
process with one thread, skips the cache and run directory (Tune keeps the trial's
results), and reports one row per subset-training epoch, with the warm-up and selection
seconds in every row so that a sweep can trade accuracy against the pre-training tax.
"""

from __future__ import annotations

import time

from raypkg.tuning import register_tunable
from raypkg.selection.config import CoresetConfig


@register_tunable("coreset", CoresetConfig)
def tune_coreset(config: dict, report) -> None:
    import torch

    from raypkg.engine.loop import fit, seed_everything
    from raypkg.models.registry import build_model
    from raypkg.selection.pipeline import prepare, run_selection, warm_up
    from raypkg.selection.registry import get_selector

    cfg = CoresetConfig(**{**config, "progress": False, "actors": 0, "cache": False})
    torch.set_num_threads(1)
    data, device, augment = prepare(cfg)
    t0 = time.perf_counter()
    models = ([warm_up(cfg, data, r, device, augment) for r in range(cfg.num_repeats)]
              if get_selector(cfg.selection).needs_model else [])
    t1 = time.perf_counter()
    result = run_selection(cfg, data, models, device)
    t2 = time.perf_counter()
    seed_everything(cfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes).to(device)
    extra = {"warmup_s": t1 - t0, "selection_s": t2 - t1, "subset_size": len(result)}
    fit(model, data.train.subset(result.positions).to(device), data.test.to(device), cfg, device=device,
        weights=result.weights.float().to(device), augment=augment, on_epoch=lambda row: report({**row, **extra}))
