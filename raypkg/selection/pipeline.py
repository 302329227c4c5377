"""The coreset stages (DeepCore, Guo et al. 2022, Sec. 4.1), as functions of their inputs:

1. ``pretrain``: the model(s) selection looks through: DeepCore's full-data warm-up for
   ``pretrain_epochs`` (``repeats`` independent ones, different seeds, for GraNd). Other
   pre-trainers (LiPT's sharded sparse ensemble) produce the same ``Pretrained``.
2. ``select_stage``: the (weighted) subset chosen with those models.
3. training a fresh model on the subset for the full ``epochs`` budget, its weights
   applied as ``cfg.weighting`` says (``raypkg.selection.weighting``), in process or on Ray
   Train (``cfg.workers``): the recipe's ``train_subset``, through ``SubsetTraining``.

``raypkg.selection.stages`` puts them in a run (`effray select`, `effray run coreset`,
its Tune trials and bench rows); LiPT's recipe reuses stages 2 and 3. Pre-trained models
and selections are cached under keys that hash the whole resolved config minus the
fields that cannot change them (``*_EXCLUDE``); a cache hit shows ~0 s in ``phases`` and
the original seconds in ``cost_s`` (``raypkg.tracking.timings.Timings``).
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch

from raypkg.data.base import DataSplits
from raypkg.engine.execution import to_memory_format
from raypkg.engine.loop import fit, seed_everything
from raypkg.models.registry import build_model
from raypkg.selection.cache import SelectionCache, digest, state_digest
from raypkg.selection.config import CoresetConfig
from raypkg.selection.registry import Compute, Keep, Scoring, SelectionResult, get_selector, select

REPEAT_SEED_STRIDE = 1_000  # pre-training repeat r trains with seed + r * stride

# Fields that never change what a stage computes (where results go, how they are shown,
# how the work is spread); everything else in the resolved config is in the cache key.
# data_path: streamed and in-memory inputs are bit-identical (raypkg.data.stream).
RUN_ONLY_FIELDS = {"out", "name", "wandb", "wandb_project", "progress", "max_failures", "cache", "actors",
                   "data_path", "decode_block", "storage", "keep_checkpoints", "placement", "cpus_per_worker",
                   "target_acc"}  # target_acc only measures the training's time to an accuracy
# A pre-trained model does not depend on what is selected with it or how the subset trains.
PRETRAIN_EXCLUDE = RUN_ONLY_FIELDS | {
    "selection", "fraction", "budget", "class_budget", "balance", "embedding", "proj_dim", "options",
    "repeats", "weighting", "weight_cap", "epochs", "workers", "stratify", "ccs_beta", "reselect_every",
    "warm_start", "per_batch"}
# A selection does not depend on how the subset trains afterwards, nor, given the model it
# looks through (in the key), on when it happens.
SELECTION_EXCLUDE = RUN_ONLY_FIELDS | {"epochs", "workers", "weighting", "weight_cap", "reselect_every", "warm_start"}


def config_key(cfg, exclude: set[str], **extra) -> str:
    """Hash of every config field not in ``exclude``, plus ``extra``, plus the source hash of
    a plug-in model, dataset or method (editing the plug-in's module makes a new key). A
    stack (``--with``) and its members' settings are left out: they act on the subset's
    training, which neither a warm-up nor a selection sees (a round's model is in its key);
    a plug-in method in it is keyed by its source all the same (an edit recomputes)."""
    own = {f.name for f in dataclasses.fields(getattr(type(cfg), "BASE", type(cfg)))} - {"stack"}
    values = {k: v for k, v in dataclasses.asdict(cfg).items() if k in own and k not in exclude}
    sources = plugin_sources(cfg)
    return digest({**values, **extra, **({"plugin_sources": sources} if sources else {})})


def plugin_sources(cfg) -> dict:
    """``{"model": hash, "dataset": hash, "methods": {name: hash}}`` of the plug-ins ``cfg``
    names (registered ones have none, so their keys are unchanged)."""
    from raypkg.data.registry import dataset_entry
    from raypkg.models.registry import model_entry
    from raypkg.plugins import source_digest

    sources = {}
    if model_entry(cfg.model).plugin:
        sources["model"] = source_digest("model", cfg.model)
    if dataset_entry(cfg.dataset).plugin:
        sources["dataset"] = source_digest("dataset", cfg.dataset)
    methods = plugin_methods(cfg)
    if methods:
        sources["methods"] = {name: source_digest("method", name) for name in methods}
    return sources


def plugin_methods(cfg) -> list[str]:
    """The plug-in methods (``MODULE:CLASS``, ``raypkg.method_registry.find_method``) that
    ``cfg`` runs: its own and those of its stack (none for effray's methods)."""
    from raypkg.method_registry import find_method

    names = [vars(getattr(type(cfg), "BASE", type(cfg))).get("METHOD"), *getattr(cfg, "stack", ())]
    return [name for name in names if name and (m := find_method(name)) is not None and m.plugin]


@dataclass
class Pretrained:
    models: list[torch.nn.Module]
    digests: list[str]  # hashes of their weights (part of the selection's cache key)
    seconds: float  # what computing them took (originally, when they came from the cache)
    cache_hits: int


def pretrain_config(cfg: CoresetConfig, repeat: int) -> CoresetConfig:
    """Repeat ``repeat``'s full-data warm-up: ``pretrain_epochs`` epochs, in this process, of
    the model that scores (``--selection-model``'s proxy, else ``--model``)."""
    return dataclasses.replace(cfg.scoring_config(), epochs=max(cfg.pretrain_epochs, 1), workers=0,
                               seed=cfg.seed + repeat * REPEAT_SEED_STRIDE)


def pretrain_full(cfg: CoresetConfig, data: DataSplits, device: torch.device, augment,
                  cache: SelectionCache | None) -> Pretrained:
    """DeepCore's warm-up, ``num_repeats`` times; each from the cache when it is there. A
    selector's ``warmup_callback`` (Forgetting's counts) trains with it; its record is cached
    with the weights and set on the model as ``model.warmup_record`` (an older entry without
    one is trained again)."""
    recorder = get_selector(cfg.selection).warmup_callback
    models, digests, seconds, hits = [], [], 0.0, 0
    for r in range(cfg.num_repeats):
        rcfg = pretrain_config(cfg, r)
        key = config_key(rcfg, PRETRAIN_EXCLUDE, kind="full", device=device.type)
        entry = cache.load_warmup(key) if cache else None
        if entry is not None and recorder is not None and "record" not in entry:
            entry = None
        if entry is None:
            t0 = time.perf_counter()
            seed_everything(rcfg.seed)
            model = build_model(rcfg.model, data.input_shape, data.num_classes).to(device)
            callbacks = [recorder(len(data.train))] if recorder is not None else []
            if cfg.pretrain_epochs > 0:
                fit(model, data.train.to(device), None, rcfg, augment=augment,
                    callbacks=callbacks, desc=f"pretrain {r + 1}")
            if device.type == "cuda":
                torch.cuda.synchronize()
            seconds_taken = time.perf_counter() - t0
            record = callbacks[0].state_dict() if callbacks else None
            entry = (cache.save_warmup(key, model.state_dict(), seconds_taken, record) if cache else
                     {"digest": state_digest(model.state_dict()), "seconds": seconds_taken, "record": record})
        else:
            hits += 1
            model = build_model(rcfg.model, data.input_shape, data.num_classes)
            model.load_state_dict(entry["state_dict"])
            model = to_memory_format(model.to(device), cfg.memory_format)  # as ``fit`` laid the fresh one out
        if recorder is not None:
            model.warmup_record = entry["record"]
        models.append(model)
        digests.append(entry["digest"])
        seconds += entry["seconds"]
    return Pretrained(models, digests, seconds, hits)


def pretrain(cfg: CoresetConfig, data: DataSplits, device: torch.device, augment,
             cache: SelectionCache | None = None) -> Pretrained:
    """Stage 1: the models selection uses (none for model-free selectors such as uniform).
    ``cache=None`` neither reads nor writes a cache."""
    if not cfg.deepcore_warmup:
        return Pretrained([], [], 0.0, 0)
    return pretrain_full(cfg, data, device, augment, cache)


@contextmanager
def selection_pool(cfg: CoresetConfig, data: DataSplits) -> Iterator:
    """``cfg.actors`` shard actors over the training split for a model-based selector
    (created here, so their start-up is counted; closed at the end), else None; on shares
    of the cluster's GPUs unless --cpu (``open_pool``)."""
    if not (cfg.actors > 0 and get_selector(cfg.selection).needs_model):
        yield None
        return
    from raypkg.distributed.shard_pool import open_pool

    pool = open_pool(data.train.to("cpu"), cfg.actors, placement=cfg.placement, use_gpu=cfg.use_gpu)
    try:
        yield pool
    finally:
        pool.close()


def select_by_config(cfg: CoresetConfig, models, train, device: torch.device, pool=None, *,
                     seed: int | None = None, lr: float | None = None) -> SelectionResult:
    """``select`` with ``cfg``'s selection settings (method, size, balance, embedding,
    options, CCS, per-batch); ``seed`` and ``lr`` default to the config's."""
    needs_model = get_selector(cfg.selection).needs_model
    keep = Keep(fraction=cfg.fraction, budget=cfg.budget, class_budget=cfg.class_budget, balance=cfg.balance,
                per_batch=cfg.batch_size if cfg.per_batch else None, stratify=cfg.stratify, ccs_beta=cfg.ccs_beta)
    scoring = Scoring(embedding=cfg.embedding, proj_dim=cfg.proj_dim, lr=lr or cfg.lr[0], precision=cfg.precision)
    return select(cfg.selection, models if needs_model else None, train, keep, seed=cfg.seed if seed is None else seed,
                  options=cfg.options, scoring=scoring, compute=Compute(device=device, pool=pool))


def run_selection(cfg: CoresetConfig, data: DataSplits, models: list[torch.nn.Module], device: torch.device,
                  ) -> SelectionResult:
    """Selection with ``models``, on ``cfg.actors`` shard actors or in-process."""
    with selection_pool(cfg, data) as pool:
        return select_by_config(cfg, models, data.train, device, pool)


def select_stage(cfg: CoresetConfig, data: DataSplits, pretrained: Pretrained, device: torch.device,
                 cache: SelectionCache | None = None) -> tuple[SelectionResult, float, bool]:
    """Stage 2: (selection, seconds it took, whether it came from the cache)."""
    key = config_key(cfg, SELECTION_EXCLUDE, pretrained=pretrained.digests, device=device.type)
    hit = cache.load_selection(key) if cache else None
    if hit is not None:
        result, meta = hit
        return result, meta["seconds"], True
    t0 = time.perf_counter()
    result = run_selection(cfg, data, pretrained.models, device)
    seconds = time.perf_counter() - t0
    if cache:
        cache.save_selection(key, result, seconds)
    return result, seconds, False
