"""LiPT stage 4: training on the selected (weighted) subset, optionally re-selected every
k epochs (the released ``--reselect`` flag: "dynamic" selection, as GradMatch/CRAIG
re-select with the model being trained, Killamsetty et al. 2021, Sec. 4).

Without ``reselect`` this is the coreset pipeline's ``train_stage``. With it, the loop is
given the whole training split and a ``SubsetPlan`` that only ever yields the current
subset; the ``Reselect`` callback replaces that subset at the start of epochs k, 2k, ...
by selecting again with the model being trained (on Ray Train: on rank 0, broadcast to
every rank, so all ranks train the same subset). The plan's state (the subset) goes into
every checkpoint, so a restarted Ray Train run resumes with the subset it had.
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from raypkg.engine.callbacks import Callback, TrainContext
from raypkg.engine.plans import ShuffledBatches, rank_share
from raypkg.engine.runner import use_augmentation
from raypkg.engine.trainer import TrainResult, train
from raypkg.selection.pipeline import train_stage
from raypkg.selection.registry import SelectionResult, select
from raypkg.selection.weighting import normalised_weights


class SubsetPlan(ShuffledBatches):
    """Batches of a subset of the ``n`` training positions, under a weighting scheme:
    ``loss`` (weights of mean 1 in the loss), ``sample`` (|S| weighted draws with
    replacement per epoch, unit weights) or ``none``. ``set_subset`` swaps the subset."""

    def __init__(self, n: int, positions: torch.Tensor, weights: torch.Tensor, scheme: str, cap: float | None,
                 batch_size: int, seed: int):
        super().__init__(n, batch_size, seed)
        self.scheme, self.cap = scheme, cap
        self.set_subset(positions, weights)

    def set_subset(self, positions: torch.Tensor, weights: torch.Tensor) -> None:
        self.positions = positions.cpu().long()
        self.raw_weights = weights.cpu().double()
        normalised = normalised_weights(self.raw_weights, self.cap)
        self.probabilities = normalised.double() / normalised.double().sum()
        self.weights = None
        if self.scheme == "loss":  # aligned with the full split's positions, read per batch
            self.weights = torch.zeros(self.n)
            self.weights[self.positions] = normalised

    def order(self, epoch: int, rank: int, world_size: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        m = len(self.positions)
        if self.scheme == "sample":
            picks = torch.multinomial(self.probabilities, m, replacement=True, generator=g)
        else:
            picks = torch.randperm(m, generator=g)
        return rank_share(self.positions[picks], rank, world_size)

    def steps(self, epoch: int, rank: int, world_size: int) -> int:
        return math.ceil(math.ceil(len(self.positions) / world_size) / self.batch_size)

    def state_dict(self) -> dict[str, Any]:
        return {"positions": self.positions.clone(), "weights": self.raw_weights.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.set_subset(state["positions"], state["weights"])


class Reselect(Callback):
    """Select again with the model being trained at the start of every ``every``-th epoch
    (not the first: stage 3 chose that subset), with the run's selection config; the
    plan (a ``SubsetPlan``) gets the new subset. Adds ``reselect_s`` (seconds spent
    selecting at this epoch's start, 0 if none) and ``subset_size`` to each row."""

    def __init__(self, every: int):
        self.every = every
        self.seconds = 0.0

    def on_epoch_start(self, ctx: TrainContext) -> None:
        self.seconds = 0.0
        if ctx.epoch == 0 or ctx.epoch % self.every:
            return
        t0 = time.perf_counter()
        size = len(ctx.plan.positions)
        positions = torch.zeros(size, dtype=torch.long, device=ctx.device)
        weights = torch.zeros(size, dtype=torch.float64, device=ctx.device)
        if ctx.is_main:
            cfg = ctx.cfg
            result = select(cfg.selection, ctx.model, ctx.train, fraction=cfg.fraction, budget=cfg.budget,
                            class_budget=cfg.class_budget, balance=cfg.balance, seed=cfg.seed + ctx.epoch,
                            embedding=cfg.embedding, proj_dim=cfg.proj_dim, options=cfg.options,
                            device=ctx.device, lr=ctx.lr or cfg.lr[0])
            positions.copy_(result.positions)
            weights.copy_(result.weights)
        ctx.broadcast(positions, src=0)
        ctx.broadcast(weights, src=0)
        ctx.plan.set_subset(positions.cpu(), weights.cpu())
        self.seconds = time.perf_counter() - t0

    def on_epoch_end(self, ctx: TrainContext, row: dict) -> None:
        row["reselect_s"] = self.seconds
        row["subset_size"] = len(ctx.plan.positions)


def train_lipt_stage(cfg, data, result: SelectionResult, *, on_epoch=None, storage=None) -> TrainResult:
    """Stage 4: ``train_stage`` on the selection; with ``cfg.reselect``, the whole split
    behind a ``SubsetPlan`` that ``Reselect`` refreshes every ``reselect`` epochs."""
    if cfg.reselect is None:
        return train_stage(cfg, data, result, on_epoch=on_epoch, storage=storage)
    plan = SubsetPlan(len(data.train), result.positions, result.weights, cfg.weighting, cfg.weight_cap,
                      cfg.batch_size, cfg.seed)
    return train(cfg, data, plan=plan, callbacks=[Reselect(cfg.reselect)],
                 augment=use_augmentation(cfg, data), on_epoch=on_epoch, storage=storage,
                 desc=f"train {cfg.selection} (reselect every {cfg.reselect})")
