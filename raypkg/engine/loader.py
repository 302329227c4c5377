"""How a plan's batches are read: the plan says which positions, the loader reads them.

In memory, a batch's inputs are ``train.x[positions]``. Streamed (``--data-path stream``),
``train.x`` is image files: when the plan fixes an epoch's batches as the epoch starts
(``BatchPlan.fixed_per_epoch``: every plan but CREST's, whose checks may re-select within
an epoch), Ray Data reads and decodes the whole epoch ahead of the loop, in the plan's order
(``raypkg.data.stream.stream_batches``); otherwise each batch is decoded as it comes. Every
path gives a step the same inputs, bit for bit (tested in tests/ray/test_stream.py).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Iterator

import torch

from raypkg.engine.plans import BatchPlan, PlannedBatch

if TYPE_CHECKING:
    from raypkg.engine.callbacks import TrainContext


def read_batches(plan: BatchPlan, ctx: "TrainContext") -> Iterator[PlannedBatch]:
    """``plan``'s batches for this epoch and rank, each with its inputs ``x`` and labels ``y``."""
    train = ctx.train
    batches = plan.batches(ctx)
    if train.streamed and plan.fixed_per_epoch:
        batches = list(batches)
        if all(len(b.positions) == plan.batch_size for b in batches[:-1]):  # Ray Data cuts every batch_size
            yield from read_ahead(batches, plan.batch_size, ctx)
            return
    for planned in batches:
        yield dataclasses.replace(planned, x=train.x[planned.positions], y=train.y[planned.positions])


def read_ahead(batches: list[PlannedBatch], batch_size: int, ctx: "TrainContext") -> Iterator[PlannedBatch]:
    """``batches`` (all but the last of ``batch_size``) read and decoded by Ray Data tasks while
    the loop trains on earlier ones."""
    from raypkg.data.stream import stream_batches

    if not batches:
        return
    files = ctx.train.x
    order = torch.cat([b.positions.cpu() for b in batches])
    streamed = stream_batches(files, order, batch_size, ctx.cfg.decode_block)
    for planned, (positions, pixels) in zip(batches, streamed, strict=True):
        assert torch.equal(positions, planned.positions.cpu()), "Ray Data gave the batches out of the plan's order"
        yield dataclasses.replace(planned, x=files.normalise(pixels), y=ctx.train.y[planned.positions])
