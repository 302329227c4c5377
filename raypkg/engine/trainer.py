"""One call that trains: ``train`` (one model) and ``train_ensemble`` (K models, K shards).

``cfg.workers`` picks the placement: 0 runs ``fit`` in this process, N >= 1 runs the same
``fit`` in N Ray Train workers (DDP; see ``raypkg.engine.ray_train``). Method code
calls these and never branches on workers itself.

Ensemble placement (LiPT's pre-training): K models, each trained on its own disjoint
shard with its own seed and no gradient sync (``raypkg.engine.ensemble``); on Ray
Train, worker w trains shards w, w + W, w + 2W, ...; in-process, one after another.
Same seed, same K models.

This is the engine's public face: ``SHARD_SEED_STRIDE`` and ``EnsembleResult`` are
importable from here too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch import nn

from raypkg.data.augment import CropFlip
from raypkg.data.base import DataSplits
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import TrainConfig
from raypkg.engine.ensemble import SHARD_SEED_STRIDE, CallbackFactory, EnsembleResult, train_shard
from raypkg.engine.execution import to_memory_format
from raypkg.engine.loop import fit, pick_device, seed_everything
from raypkg.engine.plans import BatchPlan, ShuffledBatches
from raypkg.models.registry import build_model

__all__ = ["SHARD_SEED_STRIDE", "EnsembleResult", "EpochHook", "TrainResult", "train", "train_ensemble"]


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict]
    restarts: int = 0  # Ray Train worker-group restarts after failures
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    precision: str = "fp32"  # what the run trained at, and every later pass of ``model`` runs at


def train(cfg: TrainConfig, data: DataSplits, *, weights: torch.Tensor | None = None,
          callbacks: Sequence[Callback] = (), plan: BatchPlan | None = None, augment: CropFlip | None = None,
          on_epoch: Callable[[dict], None] | None = None, storage: str | Path | None = None,
          desc: str = "train") -> TrainResult:
    """Train a fresh ``cfg.model`` (seeded by ``cfg.seed``) on ``data.train``, evaluating on
    ``data.test`` each epoch; in-process when ``cfg.workers == 0``, else on Ray Train.

    ``weights`` (aligned with ``data.train``, mean 1) weight the loss; ``plan`` replaces
    the default shuffled batches; ``callbacks`` act on the loop. ``on_epoch`` sees every
    metrics row (live in-process; after the run on Ray Train). The callbacks passed in end
    up with the training's final state: in-process directly, from Ray Train through the
    last checkpoint (taken at the last epoch's end, so before ``on_fit_end``).
    """
    if plan is None and weights is not None:  # the weighted loss of coreset training
        plan = ShuffledBatches(len(data.train), cfg.batch_size, cfg.seed, weights)
    if cfg.workers == 0:
        device = pick_device(cfg.use_gpu)
        seed_everything(cfg.seed)
        model = build_model(cfg.model, data.input_shape, data.num_classes).to(device)
        tracking = [EpochHook(on_epoch)] if on_epoch else []
        history = fit(model, data.train.to(device), data.test.to(device), cfg, augment=augment,
                      callbacks=[*callbacks, *tracking], plan=plan, desc=desc)
        return TrainResult(model, history, device=device, precision=cfg.precision)

    from raypkg.engine.ray_train import fit_on_ray_train

    outcome = fit_on_ray_train(cfg, data, storage=storage, callbacks=callbacks, plan=plan, augment=augment)
    for cb, state in zip(callbacks, outcome.callback_states):
        cb.load_state_dict(state)
    model = to_memory_format(build_model(cfg.model, data.input_shape, data.num_classes), outcome.memory_format)
    model.load_state_dict(outcome.model_state)
    for row in outcome.history:
        if on_epoch:
            on_epoch(row)
    return TrainResult(model, outcome.history, restarts=outcome.restarts, precision=outcome.precision)


class EpochHook(Callback):
    """Calls ``fn(row)`` at every epoch end, after the methods' callbacks filled the row."""

    def __init__(self, fn: Callable[[dict], None]):
        self.fn = fn

    def on_epoch_end(self, ctx, row: dict) -> None:
        self.fn(row)


def train_ensemble(cfg: TrainConfig, data: DataSplits, shards: Sequence[torch.Tensor], *,
                   augment: CropFlip | None = None, callbacks_for: CallbackFactory | None = None,
                   storage: str | Path | None = None) -> EnsembleResult:
    """K models on K shards (positions into ``data.train``): their CPU state dicts and
    histories in shard order, and Ray Train's restarts (``raypkg.engine.ensemble``).
    ``callbacks_for(k)`` builds shard k's callbacks (e.g. its mask)."""
    if cfg.workers == 0:
        device = pick_device(cfg.use_gpu)
        trained = [train_shard(cfg, data, positions, k, device=device, augment=augment, callbacks_for=callbacks_for)
                   for k, positions in enumerate(shards)]
        return EnsembleResult([state for state, _ in trained], [history for _, history in trained])

    from raypkg.engine.ray_train import ensemble_on_ray_train

    return ensemble_on_ray_train(cfg, data, list(shards), storage=storage, augment=augment,
                                 callbacks_for=callbacks_for)
