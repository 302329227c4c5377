"""One shard model of an ensemble (LiPT's pre-training), and what an ensemble returns.

An ensemble is K models, model k trained on its own disjoint shard with its own seed
(``seed + k * SHARD_SEED_STRIDE``) and no gradient sync. ``train_shard`` trains one of
them; ``raypkg.engine.trainer.train_ensemble`` places the K calls (in this process one
after another, or on Ray Train workers through ``raypkg.engine.ray_train``). Both import
this module, and it imports neither of them.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Callable, Sequence

import torch

from raypkg.data.augment import CropFlip
from raypkg.data.base import DataSplits
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import TrainConfig
from raypkg.engine.loop import fit, seed_everything
from raypkg.models.registry import build_model

SHARD_SEED_STRIDE = 1_000  # shard k of an ensemble trains with seed + k * stride

CallbackFactory = Callable[[int], Sequence[Callback]]  # shard k -> its callbacks


@dataclass
class EnsembleResult:
    states: list[dict]  # CPU state dicts, in shard order
    histories: list[list[dict]]  # each shard's metrics rows
    restarts: int = 0  # Ray Train worker-group restarts after failures (0 in-process)


def shard_config(cfg: TrainConfig, shard: int) -> TrainConfig:
    return dataclasses.replace(cfg, seed=cfg.seed + shard * SHARD_SEED_STRIDE)


def train_shard(cfg: TrainConfig, data: DataSplits, positions: torch.Tensor, shard: int, *,
                device: torch.device, augment: CropFlip | None = None,
                callbacks_for: CallbackFactory | None = None) -> tuple[dict, list[dict]]:
    """Shard ``shard`` of an ensemble: a fresh model, seeded ``seed + shard * stride``,
    trained on ``data.train[positions]``; returns its CPU state_dict and history."""
    scfg = shard_config(cfg, shard)
    seed_everything(scfg.seed)
    model = build_model(cfg.model, data.input_shape, data.num_classes).to(device)
    callbacks = list(callbacks_for(shard)) if callbacks_for else []
    history = fit(model, data.train.subset(positions).to(device), None, scfg, augment=augment,
                  callbacks=callbacks, desc=f"shard {shard + 1}")
    return {k: v.detach().cpu() for k, v in model.state_dict().items()}, history
