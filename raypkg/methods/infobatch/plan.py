"""InfoBatch as a batch plan and a callback on the engine's loop (Qin et al., ICLR 2024,
sec. 3 and Alg. 1).

Each example keeps a score H_i, its loss the last time it was trained on. At the start of
a pruning epoch, the well-learned examples (H_i below the mean of all scores) are each
dropped with probability r; the well-learned ones kept weigh 1/(1-r) in the loss (eq. 3),
the others 1. The rest are shuffled into batches as usual, so the epoch takes fewer steps.
The rescaling keeps the epoch's expected gradient that of the full data:
E[sum_kept w_i g_i] = sum_well (1-r) g_i / (1-r) + sum_other g_i = sum_i g_i (eq. 4).
After ``delta`` of the epochs every epoch trains on all the data, unweighted (annealing).
Scores start equal (none below the mean), so the first epoch trains on everything.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any, Iterator

import torch
import torch.nn.functional as F

from raypkg.engine.callbacks import Callback
from raypkg.engine.plans import BatchPlan, PlannedBatch, epoch_permutation, rank_share

if TYPE_CHECKING:
    from raypkg.engine.callbacks import TrainContext


def epoch_weights(scores: torch.Tensor, kept_draw: torch.Tensor, prune_ratio: float) -> torch.Tensor:
    """Each example's loss weight this epoch: 0 pruned, 1/(1-r) kept well-learned, 1 otherwise.
    ``kept_draw[i]``: whether example i survives its draw (it matters only when well-learned)."""
    well_learned = scores < scores.mean()
    weights = torch.ones(len(scores), dtype=torch.float32)
    weights[well_learned & kept_draw] = 1.0 / (1.0 - prune_ratio)
    weights[well_learned & ~kept_draw] = 0.0
    return weights


class InfoBatchPlan(BatchPlan):
    """This epoch's kept examples, shuffled (seeded by (seed, epoch)) and split by rank as
    DistributedSampler splits them, with their weights."""

    fixed_per_epoch = True

    def __init__(self, n: int, batch_size: int, seed: int, prune_ratio: float, pruning_epochs: int):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.prune_ratio, self.pruning_epochs = prune_ratio, pruning_epochs
        self.scores = torch.ones(n)  # H_i; refreshed by InfoBatch from the losses it sees
        self._epoch: tuple[int, torch.Tensor, torch.Tensor | None] | None = None

    def epoch_plan(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(kept positions in shuffled order, their weights or None), fixed once per epoch."""
        if self._epoch is None or self._epoch[0] != epoch:
            order = epoch_permutation(self.n, self.seed, epoch)
            if epoch >= self.pruning_epochs or self.prune_ratio == 0:
                self._epoch = (epoch, order, None)
            else:
                g = torch.Generator().manual_seed(self.seed * 100_003 + epoch + 7_919)
                kept_draw = torch.rand(self.n, generator=g) >= self.prune_ratio
                weights = epoch_weights(self.scores, kept_draw, self.prune_ratio)[order]
                self._epoch = (epoch, order[weights > 0], weights[weights > 0])
        return self._epoch[1], self._epoch[2]

    def steps(self, epoch: int, rank: int, world_size: int) -> int:
        positions, _ = self.epoch_plan(epoch)
        return self.batch_count(math.ceil(len(positions) / world_size))

    def batches(self, ctx: "TrainContext") -> Iterator[PlannedBatch]:
        positions, weights = self.epoch_plan(ctx.epoch)
        mine = rank_share(torch.arange(len(positions)), ctx.rank, ctx.world_size)
        positions = positions[mine].to(ctx.train.x.device)
        weights = None if weights is None else weights[mine].to(ctx.train.x.device)
        for batch in self.batch_slices(len(positions)):
            yield PlannedBatch(positions[batch], None if weights is None else weights[batch])

    def state_dict(self) -> dict[str, Any]:
        return {"scores": self.scores.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scores = state["scores"].clone()
        self._epoch = None


class InfoBatch(Callback):
    """Keeps the plan's scores: each trained example's latest loss (unweighted), gathered
    over the ranks at the epoch's end. Adds the epoch's kept examples and steps to its row."""

    def __init__(self, n: int, batch_size: int, seed: int, prune_ratio: float, pruning_epochs: int):
        self.plan = InfoBatchPlan(n, batch_size, seed, prune_ratio, pruning_epochs)
        self.steps = 0  # optimizer steps taken (this rank)
        self.full_steps = 0  # the steps full-data epochs would have taken
        self.kept: list[int] = []  # examples trained per epoch

    def on_epoch_start(self, ctx: "TrainContext") -> None:
        self._loss_sum = torch.zeros(self.plan.n, dtype=torch.float64)
        self._seen = torch.zeros(self.plan.n, dtype=torch.float64)

    def on_after_backward(self, ctx: "TrainContext") -> None:
        with torch.no_grad():
            losses = F.cross_entropy(ctx.batch.logits.detach().float(), ctx.batch.y, reduction="none")
        positions = ctx.batch.positions.cpu()
        self._loss_sum.index_add_(0, positions, losses.double().cpu())
        self._seen.index_add_(0, positions, torch.ones(len(positions), dtype=torch.float64))

    def on_step_end(self, ctx: "TrainContext") -> None:
        self.steps += 1

    def on_epoch_end(self, ctx: "TrainContext", row: dict) -> None:
        # one all-reduce of [sums, counts] (DistributedSampler's padding can repeat a few examples)
        totals = ctx.all_reduce(torch.cat([self._loss_sum, self._seen]).to(ctx.device)).cpu()
        loss_sum, seen = totals[:self.plan.n], totals[self.plan.n:]
        trained = seen > 0
        self.plan.scores[trained] = (loss_sum[trained] / seen[trained]).float()
        kept = len(self.plan.epoch_plan(ctx.epoch)[0])
        self.kept.append(kept)
        self.full_steps += self.plan.batch_count(math.ceil(self.plan.n / ctx.world_size))  # as full training cuts its epochs
        row["infobatch_kept"] = kept

    def summary(self) -> dict[str, Any]:
        return {"steps": self.steps, "full_steps": self.full_steps,
                "steps_saved": 1 - self.steps / self.full_steps if self.full_steps else 0.0,
                "kept_per_epoch": list(self.kept)}

    def state_dict(self) -> dict[str, Any]:  # the scores are the plan's (the loop checkpoints both)
        return {"steps": self.steps, "full_steps": self.full_steps, "kept": list(self.kept)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.steps, self.full_steps, self.kept = state["steps"], state["full_steps"], list(state["kept"])
