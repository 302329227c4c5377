"""Exact gradient sums over chosen training rows: in-process, or sharded over Ray actors.

DeltaGrad's explicit steps (and the full-gradient evaluations of GD mode) need
sum_{i in ids} grad l_i(w) for a set of training positions ``ids``. ``ExactGradients``
computes it in this process; ``ShardedGradients`` asks a ``ShardPool`` of actors, each
holding a contiguous shard of the training set, for the partial sum over its part of
``ids`` and adds the partial sums in shard order (spec: "Where Ray comes in").
``sum_in_process(shard_grad_sum, ...)`` over the same shards gives the same numbers
without Ray, which is what the tests compare.

Both are used the same way: ``rows = grads.rows(ids)`` once per id set (gathers the
rows; GD mode reuses them every iteration), then ``grads.grad_sum(w, rows)``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from raypkg.data.base import IndexedDataset
from raypkg.deltagrad.flatnet import FlatNet


@dataclass
class Rows:
    ids: torch.Tensor
    x: torch.Tensor | None = None
    y: torch.Tensor | None = None
    token: int = 0


class ExactGradients:
    """In-process gradient sums over rows of (x, y), on x's device and in w's dtype."""

    def __init__(self, net: FlatNet, x: torch.Tensor, y: torch.Tensor):
        self.net, self.x, self.y = net, x, y

    def rows(self, ids: torch.Tensor) -> Rows:
        ids = ids.to(self.x.device)
        return Rows(ids, self.x.index_select(0, ids), self.y.index_select(0, ids))

    def grad_sum(self, w: torch.Tensor, rows: Rows) -> torch.Tensor:
        if len(rows.ids) == 0:
            return torch.zeros_like(w)
        return self.net.grad_sum(w, rows.x, rows.y)

    def close(self) -> None:
        pass


# ----- the sharded path ------------------------------------------------------------------

_SHARD_CACHE: dict = {}  # per actor process: the last gathered rows, keyed by token


def shard_grad_sum(shard: IndexedDataset, net: FlatNet, w: torch.Tensor, ids: torch.Tensor,
                   token: int = 0) -> torch.Tensor:
    """This shard's part of sum_{i in ids} grad l_i(w); ``ids`` are training-set positions.

    ``shard.index`` holds the positions of its rows (a contiguous range). With a nonzero
    ``token`` the gathered rows are kept until a different token arrives (GD mode sends
    the same ids every iteration).
    """
    key = (id(shard), token)
    cached = _SHARD_CACHE.get("rows") if token else None
    if cached is not None and cached[0] == key:
        x, y = cached[1], cached[2]
    else:
        lo = int(shard.index[0])
        hi = lo + len(shard)
        local = ids[(ids >= lo) & (ids < hi)] - lo
        x, y = shard.x.index_select(0, local), shard.y.index_select(0, local)
        if token:
            _SHARD_CACHE["rows"] = (key, x, y)
    if len(y) == 0:
        return torch.zeros_like(w)
    return net.grad_sum(w, x.to(w.dtype), y)


class ShardedGradients:
    """Gradient sums as partial sums over a ShardPool's actors (``--actors K``)."""

    _tokens = itertools.count(1)

    def __init__(self, net: FlatNet, x: torch.Tensor, y: torch.Tensor, num_actors: int):
        from raypkg.engine.shard_pool import ShardPool

        self.net = net
        data = IndexedDataset(x.cpu(), y.cpu(), net.num_classes, torch.arange(len(y)))
        self.pool = ShardPool(data, num_actors)

    def rows(self, ids: torch.Tensor) -> Rows:
        return Rows(ids.cpu(), token=next(self._tokens))

    def grad_sum(self, w: torch.Tensor, rows: Rows) -> torch.Tensor:
        if len(rows.ids) == 0:
            return torch.zeros_like(w)
        return self.pool.sum(shard_grad_sum, self.net, w.cpu(), rows.ids, rows.token).to(w.device)

    def close(self) -> None:
        self.pool.close()


def make_gradients(net: FlatNet, x: torch.Tensor, y: torch.Tensor, actors: int = 0):
    """In-process for ``actors == 0``, else a pool of ``actors`` shard actors (Ray)."""
    if actors <= 0:
        return ExactGradients(net, x, y)
    from raypkg.cluster import connect_ray

    connect_ray()
    return ShardedGradients(net, x, y, actors)
