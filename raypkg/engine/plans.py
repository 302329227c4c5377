"""Batch plans: what each step of the loop trains on.

A plan says how many steps an epoch has on a rank (the LR schedule needs it) and yields
``PlannedBatch(positions, weights)``; positions index the training split the loop was
given, and the loader (``raypkg.engine.loader``) reads them, from memory or streamed. The
default is a seeded shuffle split by rank as DistributedSampler splits it;
``WeightedSampling`` draws a weighted subset with replacement each epoch; CREST supplies
one that yields coreset mini-batches with their weights. Plans that depend only on
(seed, epoch) resume exactly at an epoch boundary; others keep their state in
``state_dict()``, which goes into checkpoints with the callbacks'.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import torch

if TYPE_CHECKING:
    from raypkg.engine.callbacks import TrainContext


@dataclass
class PlannedBatch:
    positions: torch.Tensor
    weights: torch.Tensor | None = None
    # The inputs and labels, filled in by the loader (``raypkg.engine.loader.read_batches``).
    x: torch.Tensor | None = None
    y: torch.Tensor | None = None


def epoch_permutation(n: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """This rank's share of epoch ``epoch``'s shuffle, as DistributedSampler would give it.

    The permutation depends only on (seed, epoch), so a run resumed from a checkpoint at
    an epoch boundary sees the same batches it would have seen without the failure.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    return rank_share(perm, rank, world_size)


def rank_share(order: torch.Tensor, rank: int, world_size: int) -> torch.Tensor:
    """DistributedSampler's split: pad to a multiple of ``world_size`` by repeating the
    head, then take every ``world_size``-th element starting at ``rank``."""
    if world_size == 1:
        return order
    n = len(order)
    padded = math.ceil(n / world_size) * world_size
    return torch.cat([order, order[: padded - n]])[rank::world_size]


def batch_count(size: int, batch_size: int, drop_last: bool) -> int:
    """Batches in an epoch of ``size`` positions: floor(size / B) with ``drop_last`` (a
    ragged last batch is dropped unless it is the only one), else ceil(size / B)."""
    if drop_last and size >= batch_size:
        return size // batch_size
    return math.ceil(size / batch_size)


def trained_examples(size: int, batch_size: int, drop_last: bool) -> int:
    """Examples an epoch of ``size`` positions trains on: all of them, less a dropped ragged
    batch (the frontier's count of examples seen)."""
    return min(size, batch_count(size, batch_size, drop_last) * batch_size)


class BatchPlan:
    """The interface the loop uses; subclasses fill in ``steps`` and ``batches``, and cut an
    epoch's positions into batches with ``batch_count`` and ``batch_slices``, so that every
    plan follows the run's ``--drop-last`` (set here by the loop, ``fit``)."""

    batch_size: int
    # Drop each epoch's ragged last batch (timm's training loader), unless it is the only one.
    drop_last: bool = False
    # The epoch's batches are fixed when it starts (nothing within the epoch changes them), so
    # the loader may read them ahead (streamed data).
    fixed_per_epoch: bool = False

    def batch_count(self, size: int) -> int:
        """Batches in ``size`` positions (one rank's share of an epoch)."""
        return batch_count(size, self.batch_size, self.drop_last)

    def batch_slices(self, size: int) -> list[slice]:
        """The batches of ``size`` positions, as slices of them."""
        return [slice(i * self.batch_size, (i + 1) * self.batch_size) for i in range(self.batch_count(size))]

    def steps(self, epoch: int, rank: int, world_size: int) -> int:
        raise NotImplementedError

    def batches(self, ctx: "TrainContext") -> Iterator[PlannedBatch]:
        raise NotImplementedError

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ShuffledBatches(BatchPlan):
    """A fresh seeded permutation of ``n`` positions every epoch, this rank's share of it,
    cut into ``batch_size`` batches; ``weights[positions]`` ride along when given."""

    fixed_per_epoch = True

    def __init__(self, n: int, batch_size: int, seed: int, weights: torch.Tensor | None = None):
        self.n, self.batch_size, self.seed = n, batch_size, seed
        self.weights = weights

    def order(self, epoch: int, rank: int, world_size: int) -> torch.Tensor:
        return epoch_permutation(self.n, self.seed, epoch, rank, world_size)

    def steps(self, epoch: int, rank: int, world_size: int) -> int:
        return self.batch_count(math.ceil(self.n / world_size))

    def batches(self, ctx: "TrainContext") -> Iterator[PlannedBatch]:
        # One copy of the epoch's order to the device: indexing device data with CPU
        # positions would copy (and synchronise) at every step.
        order = self.order(ctx.epoch, ctx.rank, ctx.world_size).to(ctx.train.x.device)
        for batch in self.batch_slices(len(order)):
            positions = order[batch]
            yield PlannedBatch(positions, self._weights(positions))

    def _weights(self, positions: torch.Tensor) -> torch.Tensor | None:
        if self.weights is None:
            return None
        if self.weights.device != positions.device:  # once: the weights follow the data (no copy per step)
            self.weights = self.weights.to(positions.device)
        return self.weights[positions]


class WeightedSampling(ShuffledBatches):
    """Each epoch, ``n`` draws with replacement in proportion to ``weights`` (unit weights
    in the loss): the sampling form of a weighted coreset (Mirzasoleiman et al. 2020,
    Sec. 4: a weighted subset as the multiset that repeats each pick w times). Every rank
    draws the same sample from (seed, epoch) and takes its DistributedSampler share."""

    def __init__(self, weights: torch.Tensor, batch_size: int, seed: int):
        super().__init__(len(weights), batch_size, seed)
        self.probabilities = (weights.double() / weights.double().sum()).cpu()

    def order(self, epoch: int, rank: int, world_size: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        draws = torch.multinomial(self.probabilities, self.n, replacement=True, generator=g)
        return rank_share(draws, rank, world_size)
