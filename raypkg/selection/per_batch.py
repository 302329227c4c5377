"""Per-batch selection (`--per-batch`): CORDS's GradMatchPB and CRAIGPB (Killamsetty et al.,
GradMatch, ICML 2021, Sec. 4 "per-batch"), where the units selected are mini-batches.

The training set is shuffled (seeded) and cut into floor(N / B) batches of B (the last
N mod B examples sit out, as with drop_last; CORDS cuts its unshuffled loader, which on a
class-sorted dataset gives one-class batches). A batch's embedding is the mean of its
examples' last-layer gradient embeddings, e_U = (1/B) sum_{i in U} e_i, the gradient of the
batch's mean loss. The selector picks ceil(k / B) batches with its weights; the subset is
their examples in pick order, the last pick's batch cut so that exactly k are kept, each
example weighing its batch's weight. Batches mix classes, so the subset is not balanced.
"""

from __future__ import annotations

import math

import torch

from raypkg.errors import UsageError
from raypkg.selection.embeddings import DenseEmbedding, Embedding

MAX_CHUNK_FLOATS = 1 << 24  # examples' explicit embeddings held at once while averaging


def batch_units(n: int, batch_size: int, seed: int) -> torch.Tensor:
    """[floor(n / B), B] positions: a seeded shuffle of range(n) cut into whole batches."""
    units = n // batch_size
    order = torch.randperm(n, generator=torch.Generator().manual_seed(int(seed) * 1_000_003 + 29))
    return order[:units * batch_size].view(units, batch_size)


def units_needed(k: int, n: int, batch_size: int) -> int:
    """How many whole batches of ``n`` examples hold a budget of ``k`` (a UsageError if all do not)."""
    m = math.ceil(k / batch_size)
    if m > n // batch_size:
        raise UsageError(f"--per-batch: a budget of {k} examples needs {m} batches of {batch_size}; "
                         f"the training set has {n // batch_size} whole ones")
    return m


def unit_embedding(emb: Embedding, units: torch.Tensor) -> DenseEmbedding:
    """Each batch's mean embedding e_U, explicit [U, dim], built a few batches at a time."""
    first = emb.subset(units[0]).materialize()
    per_chunk = max(1, MAX_CHUNK_FLOATS // (units.shape[1] * first.shape[1]))
    means = [emb.subset(units[s:s + per_chunk].reshape(-1)).materialize()
             .view(-1, units.shape[1], first.shape[1]).mean(1) for s in range(0, len(units), per_chunk)]
    return DenseEmbedding(torch.cat(means))


def unit_picks(units: torch.Tensor, picks: torch.Tensor, weights: torch.Tensor, scores: torch.Tensor,
               k: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(positions, weights, scores) of the picked batches' examples, in pick order, cut at k."""
    size = units.shape[1]
    positions = units[picks].reshape(-1)[:k]
    return (positions, weights.double().repeat_interleave(size)[:k],
            scores.double().repeat_interleave(size)[:k])
