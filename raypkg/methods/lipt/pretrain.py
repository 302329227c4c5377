"""LiPT's pre-training, stages 1 and 2 of its recipe (Ro et al. 2023, Sec. 3).

Stage 1 (``train_shards``) is one ``train_ensemble`` call: K models with seeds
``seed + k * 1000`` (data order, augmentation), all starting from the weights seeded by
``seed`` unless ``shared_init`` is off (then each from its own seed), model k trained for
``pre_epochs`` epochs on shard k only (``raypkg.methods.lipt.shards``), with a ``StaticMask``
(``raypkg.sparsity.masks``: ERK at ``density``) and the LiPT augmentation; in this process
one after another (``workers 0``) or on ``workers`` Ray Train workers without gradient
sync, worker w taking shards w, w + W, ... The mask is drawn from ``seed`` for every
shard with ``--merge shared-mask`` (one mask per run), else from shard k's own seed.

Stage 2 (``merge_shards``) merges the K state dicts by the ``merge`` rule with the masks
the shards trained under (drawn again from the same seeds: a mask depends only on the
model's shapes and its seed, and every shard's zeros are checked against it), then
re-estimates batch-norm statistics (``raypkg.methods.lipt.merge``). Selection then looks through
the merged model, or for GraNd with ``--score ensemble`` through the K shard models
(their scores averaged in place of DeepCore's repeats).

The K shard models and the merged model are cached under one key (the whole config
minus what cannot change them; the merge rule is part of it); their test accuracies go
into the summary.
"""

from __future__ import annotations

import dataclasses
import functools
import time

import torch

from raypkg.data.base import DataSplits
from raypkg.engine.callbacks import Callback
from raypkg.engine.execution import to_memory_format
from raypkg.engine.loop import evaluate, seed_everything
from raypkg.engine.trainer import SHARD_SEED_STRIDE, train_ensemble
from raypkg.methods.lipt.augment import lipt_augment
from raypkg.methods.lipt.config import LiptConfig
from raypkg.methods.lipt.merge import average_state_dicts, reestimate_bn
from raypkg.methods.lipt.shards import stratified_shards
from raypkg.models.registry import build_model
from raypkg.recipe import Run
from raypkg.selection.pipeline import PRETRAIN_EXCLUDE, Pretrained, config_key
from raypkg.selection.stages import selection_cache
from raypkg.storage import join

# What selects with the models, trains afterwards or runs the full-data warm-up does not
# change LiPT's pre-trained models.
LIPT_PRETRAIN_EXCLUDE = PRETRAIN_EXCLUDE | {"score", "pretrain_epochs"}


class SharedInit(Callback):
    """Start from the given weights (the same for every shard model): model soups average
    models that share their initialisation (Wortsman et al. 2022, Sec. 2); models from
    different random inits do not average into a working model."""

    def __init__(self, state: dict[str, torch.Tensor]):
        self.state = state

    @torch.no_grad()
    def on_fit_start(self, ctx) -> None:
        if ctx.epoch == 0 and ctx.global_step == 0:  # not on a resumed run
            ctx.model.load_state_dict(self.state)


def mask_seed(cfg: LiptConfig, shard: int) -> int:
    """The seed of shard ``shard``'s mask: the run's ``seed`` for every shard with
    ``--merge shared-mask``, else the shard's own (``seed + shard * SHARD_SEED_STRIDE``,
    as its data order)."""
    return cfg.seed if cfg.merge == "shared-mask" else cfg.seed + shard * SHARD_SEED_STRIDE


def shard_callbacks(cfg: LiptConfig, init_state: dict | None, shard: int) -> list[Callback]:
    """Shard ``shard``'s callbacks: the shared initial weights (if any), then its random
    mask, drawn from ``mask_seed``."""
    from raypkg.sparsity.masks import StaticMask

    mask = StaticMask(cfg.density, cfg.sparse_init, mask_seed(cfg, shard), scale_init=cfg.scale_init,
                      backend=cfg.sparse_backend)
    return [SharedInit(init_state), mask] if init_state is not None else [mask]


def shard_masks(cfg: LiptConfig, data: DataSplits, states: list[dict]) -> list[dict[str, torch.Tensor]]:
    """The K masks the shard models trained under, drawn again as ``StaticMask`` draws them
    (``random_masks`` from ``mask_seed``); raises if a shard has a nonzero weight off its mask."""
    from raypkg.sparsity.masks import random_masks

    model = build_model(cfg.model, data.input_shape, data.num_classes)
    masks = []
    for k, state in enumerate(states):
        generator = torch.Generator().manual_seed(mask_seed(cfg, k))
        mask = {name: m.cpu() for name, m in random_masks(model, cfg.density, cfg.sparse_init, generator).items()}
        for name, m in mask.items():
            if bool(state[name].cpu()[~m].any()):
                raise RuntimeError(f"shard {k}: {name} has nonzero weights off the mask drawn from its seed")
        masks.append(mask)
    return masks


def pretrain_config(cfg: LiptConfig) -> LiptConfig:
    """Every shard model's training config: ``pre_epochs`` epochs (its LR schedule spans them)."""
    return dataclasses.replace(cfg, epochs=cfg.pre_epochs)


def train_shard_models(cfg: LiptConfig, data: DataSplits, storage=None) -> tuple[list[dict], int]:
    """The K shard models' CPU state dicts, and how often Ray Train restarted on the way."""
    shards = stratified_shards(data.train.y, data.num_classes, cfg.shards, cfg.seed)
    init_state = None
    if cfg.shared_init:
        seed_everything(cfg.seed)
        init_state = build_model(cfg.model, data.input_shape, data.num_classes).state_dict()
    callbacks_for = functools.partial(shard_callbacks, cfg, init_state)
    result = train_ensemble(pretrain_config(cfg), data, shards, augment=lipt_augment(cfg, data),
                            callbacks_for=callbacks_for, storage=storage)
    return result.states, result.restarts


def merge_models(cfg: LiptConfig, data: DataSplits, states: list[dict], device: torch.device) -> torch.nn.Module:
    """Stage 2: the K shard models merged by ``cfg.merge``, BN statistics re-estimated."""
    masks = None if cfg.merge == "zeros" else shard_masks(cfg, data, states)
    model = build_model(cfg.model, data.input_shape, data.num_classes).to(device)
    model.load_state_dict(average_state_dicts(states, masks))
    reestimate_bn(model, data.train, cfg.bn_samples, cfg.batch_size, cfg.seed, device)
    return model


def _load(cfg: LiptConfig, data: DataSplits, state: dict, device: torch.device) -> torch.nn.Module:
    model = build_model(cfg.model, data.input_shape, data.num_classes)
    model.load_state_dict(state)
    return to_memory_format(model.to(device), cfg.memory_format)  # the run's layout, as its shards trained


def _seconds(device: torch.device, t0: float) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def cache_names(run: Run) -> tuple[list[str], str]:
    """The cache entries of the K shard models and of the merged model."""
    key = config_key(run.cfg, LIPT_PRETRAIN_EXCLUDE, kind="lipt", device=run.device.type)
    return [f"{key}-shard{k}" for k in range(run.cfg.shards)], f"{key}-merged"


def train_shards(run: Run) -> None:
    """Stage 1: the K sparse shard models (from the cache when there), of ``--selection-model``
    when given (SVP's proxy), else of ``--model``."""
    cfg, data, cache = run.cfg.scoring_config(), run.data, selection_cache(run)
    names, _ = cache_names(run)
    restarts, hits = 0, cfg.shards
    with run.sink.phase("pretrain"):
        entries = [cache.load_warmup(name) for name in names]
        if any(e is None for e in entries):
            hits = 0
            t0 = time.perf_counter()
            storage = run.sink.storage and join(run.sink.storage, "pretrain")
            states, restarts = train_shard_models(cfg, data, storage=storage)
            seconds = _seconds(run.device, t0) / cfg.shards
            entries = [cache.save_warmup(name, state, seconds) for name, state in zip(names, states)]
    shard_sizes = [len(s) for s in stratified_shards(data.train.y, data.num_classes, cfg.shards, cfg.seed)]
    run.state["shards"], run.state["shard_hits"] = entries, hits
    run.note(shards=cfg.shards, shard_sizes=shard_sizes, pre_epochs=cfg.pre_epochs, density=cfg.density,
             sparse_init=cfg.sparse_init, score=cfg.score, merge=cfg.merge, restarts=restarts,
             **({"selection_model": cfg.model} if run.cfg.selection_model else {}))


def merge_shards(run: Run) -> None:
    """Stage 2: the shard models merged (from the cache when there); leaves the models
    selection looks through (the merged one, or the K shards with ``--score ensemble``)."""
    cfg, data, cache, shards = run.cfg.scoring_config(), run.data, selection_cache(run), run.state["shards"]
    _, name = cache_names(run)
    with run.sink.phase("merge"):
        entry = cache.load_warmup(name)
        hits = run.state["shard_hits"] + (entry is not None)
        if entry is None:
            t0 = time.perf_counter()
            merged = merge_models(cfg, data, [e["state_dict"] for e in shards], run.device)
            entry = cache.save_warmup(name, merged.state_dict(), _seconds(run.device, t0))
    merged = _load(cfg, data, entry["state_dict"], run.device)
    shard_models = [_load(cfg, data, e["state_dict"], run.device) for e in shards]
    test = data.test.to(run.device)
    pretrain_s = sum(e["seconds"] for e in shards)
    run.sink.timings.charge("pretrain", pretrain_s)  # cached shard models and merge: their own seconds
    run.sink.timings.charge("merge", entry["seconds"])
    run.note(shard_test_acc=[evaluate(m, test, run.device, precision=cfg.precision)["acc"] for m in shard_models],
             merged_test_acc=evaluate(merged, test, run.device, precision=cfg.precision)["acc"])
    ensemble = cfg.score == "ensemble"
    models, digests = ((shard_models, [e["digest"] for e in shards]) if ensemble else ([merged], [entry["digest"]]))
    run.state["pretrained"] = Pretrained(models, digests, pretrain_s + entry["seconds"], hits)
