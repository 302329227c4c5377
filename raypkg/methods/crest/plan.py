"""The batch plans of CREST and its random baseline, both at the budget of ``train_frac``.

Every epoch takes ``budget_steps`` steps: ceil(f * N / W) / B on each of W ranks, rounded
down with --drop-last (the default) and up with --keep-last: f times the steps of a full pass. ``RandomSubsetPlan`` draws a fresh uniform subset of
f * N each epoch and passes over it once (the paper's random baseline). ``CrestPlan``
cycles through the current region's mini-batch coresets; ``CrestCallback`` fills them
at every region start (the plan only yields what it was given).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterator

import torch

from raypkg.engine.plans import BatchPlan, PlannedBatch, batch_count, rank_share

if TYPE_CHECKING:
    from raypkg.engine.callbacks import TrainContext


def budget_size(n: int, train_frac: float) -> int:
    return max(1, round(train_frac * n))


def budget_steps(n: int, train_frac: float, batch_size: int, world_size: int = 1, drop_last: bool = True) -> int:
    """Steps per epoch on each rank: one pass over a rank's share of f * N examples, cut as
    every plan cuts its epoch (``raypkg.engine.plans.batch_count``)."""
    return batch_count(math.ceil(budget_size(n, train_frac) / world_size), batch_size, drop_last)


class RandomSubsetPlan(BatchPlan):
    """Each epoch a fresh uniform subset of f * N (seeded by (seed, epoch)), one pass, split
    over the ranks as DistributedSampler splits it."""

    fixed_per_epoch = True

    def __init__(self, n: int, train_frac: float, batch_size: int, seed: int):
        self.n, self.train_frac, self.batch_size, self.seed = n, train_frac, batch_size, seed

    def steps(self, epoch: int, rank: int, world_size: int) -> int:
        return self.batch_count(math.ceil(budget_size(self.n, self.train_frac) / world_size))

    def batches(self, ctx: "TrainContext") -> Iterator[PlannedBatch]:
        g = torch.Generator().manual_seed(self.seed * 100_003 + ctx.epoch)
        subset = torch.randperm(self.n, generator=g)[:budget_size(self.n, self.train_frac)]
        order = rank_share(subset, ctx.rank, ctx.world_size)
        for batch in self.batch_slices(len(order)):
            yield PlannedBatch(order[batch])


class CrestPlan(BatchPlan):
    """Yields the current region's coreset mini-batches (positions, weights of mean 1),
    cycling through them, ``budget_steps`` per epoch. ``set_coresets`` starts a region."""

    def __init__(self, n: int, train_frac: float, batch_size: int):
        self.n, self.train_frac, self.batch_size = n, train_frac, batch_size
        self.positions: list[torch.Tensor] = []
        self.weights: list[torch.Tensor] = []
        self.cursor = 0

    def set_coresets(self, positions: list[torch.Tensor], weights: list[torch.Tensor]) -> None:
        self.positions, self.weights, self.cursor = positions, weights, 0

    def steps(self, epoch: int, rank: int, world_size: int) -> int:
        return self.batch_count(math.ceil(budget_size(self.n, self.train_frac) / world_size))

    def batches(self, ctx: "TrainContext") -> Iterator[PlannedBatch]:
        for _ in range(self.steps(ctx.epoch, ctx.rank, ctx.world_size)):
            if not self.positions:
                raise RuntimeError("CrestPlan has no coresets yet (CrestCallback sets them at each region start)")
            k = self.cursor % len(self.positions)  # read now: a check after this step may re-select
            self.cursor += 1
            yield PlannedBatch(self.positions[k], self.weights[k])

    def state_dict(self) -> dict[str, Any]:
        return {"positions": self.positions, "weights": self.weights, "cursor": self.cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.positions, self.weights, self.cursor = state["positions"], state["weights"], state["cursor"]
