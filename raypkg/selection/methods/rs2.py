"""RS2, repeated random sampling (Okanovic et al., "Repeated Random Sampling for Minimizing
the Time-to-Accuracy of Learning", ICLR 2024; arXiv 2305.18424), without replacement: every
epoch (a round) trains on a fresh uniform subset of the budget, drawn without replacement
across rounds until the data is used up, then from a new shuffle (the paper's Alg. 1, RS2
w/o replacement). Per class when balanced: each class's examples run through their own
shuffles at their own budget.

``effray select --selection rs2`` saves round 0's subset; `run coreset` trains each epoch
on that epoch's round through ``RS2Plan``, over the whole training set.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Iterator

import torch

from raypkg.engine.plans import BatchPlan, PlannedBatch, rank_share
from raypkg.selection.registry import Picks, SelectionContext, register_selector

if TYPE_CHECKING:
    from raypkg.engine.callbacks import TrainContext


def rs2_round(blocks: list[tuple[torch.Tensor, int]], seed: int, round_: int) -> torch.Tensor:
    """Round ``round_``'s subset: per block (positions, budget k), the round's slice of k from
    the current shuffle of the block; a shuffle serves floor(len / k) rounds (the few left
    over wait for the next shuffle), and shuffle p is seeded by (seed, block, p)."""
    picks = []
    for b, (positions, k) in enumerate(blocks):
        if k == 0:
            continue
        rounds_per_shuffle = len(positions) // k
        shuffle, slot = divmod(round_, rounds_per_shuffle)
        g = torch.Generator().manual_seed(int(seed) * 1_000_003 + b * 10_007 + shuffle)
        order = torch.randperm(len(positions), generator=g)
        picks.append(positions[order[slot * k:(slot + 1) * k]])
    return torch.cat(picks) if picks else torch.empty(0, dtype=torch.long)


def blocks_of(y: torch.Tensor, budgets: list[int] | None, k: int) -> list[tuple[torch.Tensor, int]]:
    """(positions, budget) per class when ``budgets`` are given, else one block of everything."""
    y = y.cpu()
    if budgets is None:
        return [(torch.arange(len(y)), k)]
    return [(torch.nonzero(y == c).squeeze(1), b) for c, b in enumerate(budgets)]


class RS2Plan(BatchPlan):
    """Epoch e trains on ``rs2_round(blocks, seed, e)``, shuffled and split by rank as
    DistributedSampler splits it; unit weights. Depends only on (seed, epoch): resumes exactly."""

    fixed_per_epoch = True

    def __init__(self, blocks: list[tuple[torch.Tensor, int]], batch_size: int, seed: int):
        self.blocks, self.batch_size, self.seed = blocks, batch_size, seed
        self.k = sum(k for _, k in blocks)

    def steps(self, epoch: int, rank: int, world_size: int) -> int:
        return self.batch_count(math.ceil(self.k / world_size))

    def batches(self, ctx: "TrainContext") -> Iterator[PlannedBatch]:
        subset = rs2_round(self.blocks, self.seed, ctx.epoch)
        g = torch.Generator().manual_seed(self.seed * 100_003 + ctx.epoch)
        order = rank_share(subset[torch.randperm(len(subset), generator=g)], ctx.rank, ctx.world_size)
        order = order.to(ctx.train.y.device)
        for batch in self.batch_slices(len(order)):
            yield PlannedBatch(order[batch])


def rs2_plan(train, result, batch_size: int, seed: int, balance: bool) -> RS2Plan:
    """The plan of a ``rs2`` selection ``result`` over ``train``: the same blocks and budgets."""
    budgets = torch.bincount(result.labels, minlength=train.num_classes).tolist() if balance else None
    return RS2Plan(blocks_of(train.y, budgets, len(result)), batch_size, seed)


@register_selector("rs2", "repeated random sampling (RS2): a fresh uniform subset every epoch, without "
                          "replacement across epochs; the selection is epoch 1's; no model",
                   needs_model=False, epoch_plan=rs2_plan)
def rs2(ctx: SelectionContext) -> Picks:
    return Picks(rs2_round(ctx.blocks(), ctx.seed, 0), torch.ones(ctx.k, dtype=torch.float64))
