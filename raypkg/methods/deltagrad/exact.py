"""Exact gradient sums over chosen training rows: in-process, or sharded over Ray actors.

DeltaGrad's explicit steps (and the full-gradient evaluations of GD mode) need
sum_{i in ids} grad l_i(w) for a set of training positions ``ids``. ``ExactGradients``
computes it in this process; ``ShardedGradients`` asks a ``ShardPool`` of actors, each
holding a contiguous shard of the training set, for the partial sum over its part of
``ids`` and adds the partial sums in shard order (spec: "Where Ray comes in").
``sum_in_process(shard_grad_sum, ...)`` over the same shards gives the same numbers
without Ray, which is what the tests compare.

Both are used the same way: ``rows = grads.rows(ids)`` once per id set (GD mode reuses
it every iteration), then ``grads.grad_sum(w, rows)``; rows are gathered in cache-sized
chunks inside the sum (``FlatNet.grad_sum_rows``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from raypkg.data.base import IndexedDataset
from raypkg.methods.deltagrad.flatnet import FlatNet


@dataclass
class Rows:
    """A set of training positions prepared for repeated gradient sums (ids on the device)."""

    ids: torch.Tensor


def chunk_rows(device: torch.device) -> int:
    """Rows gathered per chunk: cache-sized on CPU, whole batches on a GPU."""
    return 1024 if device.type == "cpu" else 1 << 20


class ExactGradients:
    """In-process gradient sums over rows of (x, y), on x's device and in w's dtype."""

    def __init__(self, net: FlatNet, x: torch.Tensor, y: torch.Tensor):
        self.net, self.x, self.y = net, x, y
        self.chunk = chunk_rows(x.device)

    def rows(self, ids: torch.Tensor) -> Rows:
        return Rows(ids.to(self.x.device))

    def grad_sum(self, w: torch.Tensor, rows: Rows) -> torch.Tensor:
        return self.net.grad_sum_rows(w, self.x, self.y, rows.ids, self.chunk)

    def close(self) -> None:
        pass


# ----- the sharded path ------------------------------------------------------------------

def shard_grad_sum(shard: IndexedDataset, net: FlatNet, w: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """This shard's part of sum_{i in ids} grad l_i(w); ``ids`` are training-set positions
    and ``shard.index`` holds the positions of the shard's rows (a contiguous range)."""
    lo = int(shard.index[0])
    local = ids[(ids >= lo) & (ids < lo + len(shard))] - lo
    return net.grad_sum_rows(w, shard.x, shard.y, local, chunk_rows(shard.x.device))


class ShardedGradients:
    """Gradient sums as partial sums over a ShardPool's actors (``--actors K``)."""

    def __init__(self, net: FlatNet, x: torch.Tensor, y: torch.Tensor, num_actors: int):
        from raypkg.distributed.shard_pool import open_pool

        self.net = net
        data = IndexedDataset(x.cpu(), y.cpu(), net.num_classes, torch.arange(len(y)))
        self.pool = open_pool(data, num_actors)

    def rows(self, ids: torch.Tensor) -> Rows:
        return Rows(ids.cpu())

    def grad_sum(self, w: torch.Tensor, rows: Rows) -> torch.Tensor:
        if len(rows.ids) == 0:
            return torch.zeros_like(w)
        return self.pool.sum(shard_grad_sum, self.net, w.cpu(), rows.ids).to(w.device)

    def close(self) -> None:
        self.pool.close()


def make_gradients(net: FlatNet, x: torch.Tensor, y: torch.Tensor, actors: int = 0):
    """In-process for ``actors == 0``, else a pool of ``actors`` shard actors (Ray)."""
    if actors <= 0:
        return ExactGradients(net, x, y)
    return ShardedGradients(net, x, y, actors)
