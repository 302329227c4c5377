"""The DeepCore-style coreset pipeline (DeepCore, Guo et al. 2022, Sec. 4.1), read top to bottom:

1. warm-up: train the model on the full data for ``selection_epochs`` epochs
   (``repeats`` independent warm-ups, different seeds, for GraNd);
2. selection: compute the (weighted) subset with the warmed-up model(s);
3. train: a fresh model on the weighted subset for the full ``epochs`` budget,
   loss = sum_i w_i l_i / sum_i w_i.

Every phase is timed in the run's summary (``warmup``, ``selection``, ``train``, ``eval``
in seconds), so the pre-training tax is visible next to the training time it saves.
Warm-ups and selections are cached (``cache``); a cache hit shows ~0 s in ``phases``
and the time the cached work originally took under ``cached_seconds``.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import torch

from raypkg.data.base import DataSplits
from raypkg.engine.config import TrainConfig, config_fields
from raypkg.engine.loop import evaluate, fit, pick_device, seed_everything
from raypkg.engine.runner import load_data, use_augmentation
from raypkg.models.registry import build_model
from raypkg.selection.cache import SelectionCache, digest
from raypkg.selection.config import CoresetConfig
from raypkg.selection.registry import SelectionResult, get_selector, select
from raypkg.tracking.run import RunDir

REPEAT_SEED_STRIDE = 1_000  # warm-up repeat r trains with seed + r * stride


def warmup_key(cfg: CoresetConfig, repeat: int, device: torch.device) -> str:
    """Everything that determines a warm-up checkpoint."""
    return digest({
        "dataset": cfg.dataset, "data_dir": cfg.data_dir, "train_size": cfg.train_size,
        "test_size": cfg.test_size, "flat": cfg.flat, "data_seed": cfg.seed, "model": cfg.model,
        "seed": cfg.seed + repeat * REPEAT_SEED_STRIDE, "epochs": cfg.selection_epochs,
        "batch_size": cfg.batch_size, "lr": cfg.lr, "lrlen": cfg.lrlen, "schedule": cfg.schedule,
        "milestones": cfg.milestones, "gamma": cfg.gamma, "lr_warmup": cfg.warmup_epochs,
        "momentum": cfg.momentum, "nesterov": cfg.nesterov, "weight_decay": cfg.weight_decay,
        "augment": cfg.augment, "amp": cfg.amp, "device": device.type,
    })


def selection_key(cfg: CoresetConfig, warmup_digests: list[str]) -> str:
    return digest({
        "warmups": warmup_digests, "dataset": cfg.dataset, "train_size": cfg.train_size,
        "data_seed": cfg.seed, "flat": cfg.flat, "method": cfg.selection, "fraction": cfg.fraction,
        "budget": cfg.budget, "class_budget": cfg.class_budget, "balance": cfg.balance,
        "embedding": cfg.embedding, "proj_dim": cfg.proj_dim, "options": cfg.options,
        "seed": cfg.seed, "lr": cfg.lr[0],
    })


def warmup_config(cfg: CoresetConfig, repeat: int) -> CoresetConfig:
    return dataclasses.replace(cfg, epochs=max(cfg.selection_epochs, 1),
                               seed=cfg.seed + repeat * REPEAT_SEED_STRIDE, progress=cfg.progress)


def warm_up(cfg: CoresetConfig, data: DataSplits, repeat: int, device: torch.device,
            augment: bool) -> torch.nn.Module:
    """Repeat ``repeat``'s model after ``selection_epochs`` epochs of full-data training
    (0 epochs: the freshly initialised model)."""
    wcfg = warmup_config(cfg, repeat)
    seed_everything(wcfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes).to(device)
    if cfg.selection_epochs > 0:
        fit(model, data.train.to(device), None, wcfg, device=device, augment=augment,
            desc=f"warm-up {repeat + 1}")
    return model


def warmed_up_models(cfg: CoresetConfig, data: DataSplits, device: torch.device, augment: bool,
                     cache: SelectionCache) -> tuple[list[torch.nn.Module], list[str], float, int]:
    """The warm-up models (from the cache when there), their digests, the seconds they
    originally took, and how many came from the cache."""
    models, digests, seconds, hits = [], [], 0.0, 0
    for r in range(cfg.num_repeats):
        key = warmup_key(cfg, r, device)
        entry = cache.load_warmup(key)
        if entry is None:
            t0 = time.perf_counter()
            model = warm_up(cfg, data, r, device, augment)
            if device.type == "cuda":
                torch.cuda.synchronize()
            entry = cache.save_warmup(key, model.state_dict(), time.perf_counter() - t0)
        else:
            hits += 1
            model = build_model(cfg.model, data.input_shape, data.num_classes)
            model.load_state_dict(entry["state_dict"])
            model = model.to(device)
        models.append(model)
        digests.append(entry["digest"])
        seconds += entry["seconds"]
    return models, digests, seconds, hits


def run_selection(cfg: CoresetConfig, data: DataSplits, models: list[torch.nn.Module], device: torch.device,
                  ) -> SelectionResult:
    """Step 2, on ``cfg.actors`` shard actors (created here, so their start-up is counted)."""
    pool = None
    needs_model = get_selector(cfg.selection).needs_model
    if cfg.actors > 0 and needs_model:
        from raypkg.cluster import connect_ray
        from raypkg.engine.shard_pool import ShardPool

        connect_ray()
        pool = ShardPool(data.train.to("cpu"), cfg.actors)
    try:
        return select(cfg.selection, models if needs_model else None, data.train, fraction=cfg.fraction,
                      budget=cfg.budget, class_budget=cfg.class_budget, balance=cfg.balance, seed=cfg.seed,
                      embedding=cfg.embedding, proj_dim=cfg.proj_dim, options=cfg.options, device=device,
                      pool=pool, lr=cfg.lr[0])
    finally:
        if pool is not None:
            pool.close()


def warmup_and_select(cfg: CoresetConfig, data: DataSplits, run: RunDir, device: torch.device,
                      augment: bool) -> tuple[SelectionResult, dict]:
    """Steps 1 and 2 inside ``run``'s phases; writes selection.parquet (and scores.parquet)."""
    cache = SelectionCache(Path(cfg.out) / ".cache", enabled=cfg.cache)
    needs_model = get_selector(cfg.selection).needs_model
    cached: dict = {"warmup_hits": 0, "selection_hit": False}
    seconds: dict = {"warmup": 0.0, "selection": 0.0}
    models: list = []
    digests: list[str] = []
    with run.phase("warmup"):
        if needs_model:
            models, digests, seconds["warmup"], cached["warmup_hits"] = warmed_up_models(
                cfg, data, device, augment, cache)
    with run.phase("selection"):
        key = selection_key(cfg, digests)
        hit = cache.load_selection(key)
        if hit is not None:
            result, meta = hit
            seconds["selection"] = meta["seconds"]
            cached["selection_hit"] = True
        else:
            t0 = time.perf_counter()
            result = run_selection(cfg, data, models, device)
            seconds["selection"] = time.perf_counter() - t0
            cache.save_selection(key, result, seconds["selection"])
    run.write_table("selection.parquet", result.table())
    if result.all_scores is not None:
        run.write_table("scores.parquet", {"index": data.train.index.cpu().numpy(),
                                           "score": result.all_scores.numpy()})
    return result, {"cached": cached, "cached_seconds": seconds, "selection_key": key}


def prepare(cfg: CoresetConfig) -> tuple[DataSplits, torch.device, bool]:
    """Validate and load before any run directory exists (bad input: one line, nothing written)."""
    cfg.validate()
    data = load_data(cfg)
    if cfg.class_budget is not None:
        from raypkg.selection.budget import check_class_budgets

        check_class_budgets(data.train.y, data.num_classes, [cfg.class_budget] * data.num_classes)
    elif cfg.budget is not None and cfg.budget > len(data.train):
        raise_budget(cfg.budget, len(data.train))
    return data, pick_device(cfg.use_gpu), use_augmentation(cfg, data)


def raise_budget(budget: int, n: int) -> None:
    from raypkg.errors import UsageError

    raise UsageError(f"budget {budget} is larger than the dataset ({n} examples)")


def summary_extra(cfg: CoresetConfig, data: DataSplits, result: SelectionResult, notes: dict,
                  device: torch.device) -> dict:
    return {"selection": cfg.selection, "fraction": cfg.fraction, "subset_size": len(result),
            "train_size": len(data.train), "selection_epochs": cfg.selection_epochs,
            "repeats": cfg.num_repeats if get_selector(cfg.selection).needs_model else 0,
            "actors": cfg.actors, "embedding": cfg.embedding, "options": cfg.options,
            "epochs": cfg.epochs, "device": str(device), **notes}


def run_select(cfg: CoresetConfig) -> dict:
    """`effray select`: warm-up and selection only; returns the run's summary."""
    data, device, augment = prepare(cfg)
    with RunDir.create(cfg.out, f"select-{cfg.selection}", cfg.to_dict(), cfg.dataset, cfg.model,
                       name=cfg.name, wandb_mode=cfg.wandb, wandb_project=cfg.wandb_project) as run:
        result, notes = warmup_and_select(cfg, data, run, device, augment)
        return run.finish(test_acc=None, **summary_extra(cfg, data, result, notes, device))


def run_coreset(cfg: CoresetConfig) -> dict:
    """`effray run coreset`: warm-up, selection, training on the weighted subset."""
    data, device, augment = prepare(cfg)
    with RunDir.create(cfg.out, f"coreset-{cfg.selection}", cfg.to_dict(), cfg.dataset, cfg.model,
                       name=cfg.name, wandb_mode=cfg.wandb, wandb_project=cfg.wandb_project) as run:
        result, notes = warmup_and_select(cfg, data, run, device, augment)
        subset = data.train.subset(result.positions).to(device)
        weights = result.weights.float().to(device)
        with run.phase("train"):
            seed_everything(cfg.seed)
            model = build_model(cfg.model, data.input_shape, data.num_classes).to(device)
            if cfg.workers > 0:
                model = train_on_ray(cfg, data, result, run, model)
            else:
                fit(model, subset, data.test.to(device), cfg, device=device, weights=weights,
                    augment=augment, on_epoch=run.log_metrics, desc=f"train {cfg.selection}")
        with run.phase("eval"):
            final = evaluate(model, data.test.to(device), device)
        torch.save({k: v.cpu() for k, v in model.state_dict().items()}, run.path / "model.pt")
        return run.finish(test_acc=final["acc"], test_loss=final["loss"],
                          **summary_extra(cfg, data, result, notes, device))


def train_on_ray(cfg: CoresetConfig, data: DataSplits, result: SelectionResult, run: RunDir,
                 model: torch.nn.Module) -> torch.nn.Module:
    """The weighted subset trained by Ray Train workers (DDP)."""
    from raypkg.cluster import connect_ray
    from raypkg.engine.ray_train import fit_on_ray_train

    connect_ray()
    subset = dataclasses.replace(data, train=data.train.subset(result.positions))
    train_cfg = TrainConfig(**{name: getattr(cfg, name) for name in config_fields(TrainConfig)})
    state, history = fit_on_ray_train(train_cfg, subset, run.path / "ray", use_augmentation(cfg, data),
                                      weights=result.weights.float())
    for row in history:
        run.log_metrics(row)
    device = next(model.parameters()).device
    model.load_state_dict(state)
    return model.to(device)
