"""LiPT's pre-training kind (``kind="lipt"`` of ``raypkg.selection.pipeline.pretrain``):
stage 1 (K sparse shard models) and stage 2 (their merge), Ro et al. 2023, Sec. 3.

Stage 1 is one ``train_ensemble`` call: K models with seeds ``seed + k * 1000`` (data
order, augmentation), all starting from the weights seeded by ``seed`` unless
``shared_init`` is off (then each from its own seed), model k trained for ``pre_epochs``
epochs on shard k only (``raypkg.lipt.shards``), with a ``StaticMask``
(``raypkg.sparse.masks``: ERK at ``density``) and the LiPT augmentation; in this process
one after another (``workers 0``) or on ``workers`` Ray Train workers without gradient
sync, worker w taking shards w, w + W, ... The mask is drawn from ``seed`` for every
shard with ``--merge shared-mask`` (one mask per run), else from shard k's own seed.

Stage 2 merges the K state dicts by the ``merge`` rule with the masks the shards trained
under (drawn again from the same seeds: a mask depends only on the model's shapes and
its seed, and every shard's zeros are checked against it), then re-estimates batch-norm
statistics (``raypkg.lipt.merge``). Selection then looks through the merged model, or
for GraNd with ``--score ensemble`` through the K shard models (their scores averaged in
place of DeepCore's repeats).

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
from raypkg.engine.loop import evaluate, seed_everything
from raypkg.engine.trainer import SHARD_SEED_STRIDE, train_ensemble
from raypkg.lipt.augment import lipt_augment
from raypkg.lipt.config import LiptConfig
from raypkg.lipt.merge import average_state_dicts, reestimate_bn
from raypkg.lipt.shards import stratified_shards
from raypkg.models.registry import build_model
from raypkg.selection.cache import SelectionCache, state_digest
from raypkg.selection.pipeline import PRETRAIN_EXCLUDE, Pretrained, config_key

# What selects with the models, trains afterwards or runs the full-data warm-up does not
# change LiPT's pre-trained models.
LIPT_PRETRAIN_EXCLUDE = PRETRAIN_EXCLUDE | {"score", "reselect", "pretrain_epochs"}


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
    from raypkg.sparse.masks import StaticMask

    mask = StaticMask(cfg.density, cfg.sparse_init, mask_seed(cfg, shard), scale_init=cfg.sparse_scale_init)
    return [SharedInit(init_state), mask] if init_state is not None else [mask]


def shard_masks(cfg: LiptConfig, data: DataSplits, states: list[dict]) -> list[dict[str, torch.Tensor]]:
    """The K masks the shard models trained under, drawn again as ``StaticMask`` draws them
    (``random_masks`` from ``mask_seed``); raises if a shard has a nonzero weight off its mask."""
    from raypkg.sparse.masks import random_masks

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


def train_shard_models(cfg: LiptConfig, data: DataSplits, storage=None) -> tuple[list[dict], list[torch.Tensor]]:
    """Stage 1: the K shard models' CPU state dicts, and the shards (positions)."""
    shards = stratified_shards(data.train.y, data.num_classes, cfg.shards, cfg.seed)
    init_state = None
    if cfg.shared_init:
        seed_everything(cfg.seed)
        init_state = build_model(cfg.model, data.input_shape, data.num_classes).state_dict()
    callbacks_for = functools.partial(shard_callbacks, cfg, init_state)
    results = train_ensemble(pretrain_config(cfg), data, shards, augment=lipt_augment(cfg, data),
                             callbacks_for=callbacks_for, storage=storage)
    return [state for state, _ in results], shards


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
    return model.to(device)


def _seconds(device: torch.device, t0: float) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def pretrain_lipt(cfg: LiptConfig, data: DataSplits, device: torch.device, augment,
                  cache: SelectionCache | None) -> Pretrained:
    """Stages 1 and 2, from the cache when there. ``augment`` (the subset training's) is
    not used: pre-training has its own (``lipt_augment``)."""
    key = config_key(cfg, LIPT_PRETRAIN_EXCLUDE, kind="lipt", device=device.type)
    names = [f"{key}-shard{k}" for k in range(cfg.shards)] + [f"{key}-merged"]
    entries = [cache.load_warmup(name) for name in names] if cache else [None]
    hit = all(e is not None for e in entries)
    if hit:
        shard_states = [e["state_dict"] for e in entries[:-1]]
        merged = _load(cfg, data, entries[-1]["state_dict"], device)
        pretrain_s, merge_s = sum(e["seconds"] for e in entries[:-1]), entries[-1]["seconds"]
        shard_sizes = [len(s) for s in stratified_shards(data.train.y, data.num_classes, cfg.shards, cfg.seed)]
    else:
        t0 = time.perf_counter()
        shard_states, shards = train_shard_models(cfg, data)
        pretrain_s = _seconds(device, t0)
        t0 = time.perf_counter()
        merged = merge_models(cfg, data, shard_states, device)
        merge_s = _seconds(device, t0)
        shard_sizes = [len(s) for s in shards]
        states = [*shard_states, merged.state_dict()]
        seconds = [pretrain_s / cfg.shards] * cfg.shards + [merge_s]
        entries = ([cache.save_warmup(n, s, t) for n, s, t in zip(names, states, seconds)] if cache else
                   [{"digest": state_digest(s), "seconds": t} for s, t in zip(states, seconds)])
    shard_models = [_load(cfg, data, s, device) for s in shard_states]
    test = data.test.to(device)
    info = {"shards": cfg.shards, "shard_sizes": shard_sizes, "pre_epochs": cfg.pre_epochs, "density": cfg.density,
            "sparse_init": cfg.sparse_init, "score": cfg.score, "merge": cfg.merge,
            "shard_test_acc": [evaluate(m, test, device)["acc"] for m in shard_models],
            "merged_test_acc": evaluate(merged, test, device)["acc"],
            "lipt_seconds": {"pretrain": pretrain_s, "merge": merge_s}}
    if cfg.score == "ensemble":
        models, digests = shard_models, [e["digest"] for e in entries[:-1]]
    else:
        models, digests = [merged], [entries[-1]["digest"]]
    return Pretrained(models, digests, pretrain_s + merge_s, len(names) if hit else 0, info,
                      phases={} if hit else {"merge": merge_s})

