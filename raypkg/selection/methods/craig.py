"""CRAIG (Mirzasoleiman, Bilmes, Leskovec, ICML 2020, Sec. 3-4): the subset whose points
are, together, closest to every point's gradient, by facility location.

Per class (``balance``) or over the whole set: similarity = max(d) - d with d the
Euclidean distance between last-layer gradient embeddings (computed from kernels in row
chunks, ``Embedding.distances``), greedy facility location (``facility_location``), and
each pick weighted by its cluster size: how many points it is the most similar pick for.
Small classes are batched on the device in one padded tensor, large ones use the
incremental greedy, classes above ``max_dense`` points the streaming stochastic greedy.
"""

from __future__ import annotations

import torch

from raypkg.selection.facility_location import SMALL_BLOCK, embedding_facility_location
from raypkg.selection.registry import Picks, SelectionContext, register_selector


def craig_job(embeddings: list, budgets: list[int], seed: int, max_dense: int, chunk: int) -> list:
    """Facility location over some classes (module-level so that shard actors can run it)."""
    return embedding_facility_location(embeddings, budgets, seed=seed, max_dense=max_dense, chunk=chunk)


@register_selector("craig", "CRAIG: per-class facility location on max(d) - d of gradient "
                            "embeddings, weights = cluster sizes",
                   weighted=True, weighting="sample", weight_cap=2.0, options={"max_dense": 12_288, "chunk": 2048})
def craig(ctx: SelectionContext) -> Picks:
    """Options: ``max_dense`` (largest class held as an n x n similarity matrix; larger
    ones use stochastic greedy on chunked distances), ``chunk`` (rows per distance chunk).
    Cluster sizes can be extremely skewed on warmed-up models: the well-fit examples'
    near-zero gradients form one cluster, whose pick may carry over half of its class;
    how such weights train is ``--weighting`` (``raypkg.selection.weighting``)."""
    g, h = ctx.grads()
    device = ctx.device if ctx.pool is None else torch.device("cpu")
    blocks = [(pos, k) for pos, k in ctx.blocks() if k > 0]
    embs = [ctx.kind.embed(g[pos].to(device), h[pos].to(device)) for pos, _ in blocks]
    budgets = [k for _, k in blocks]
    max_dense, chunk = int(ctx.options["max_dense"]), int(ctx.options["chunk"])
    if ctx.pool is None or all(len(pos) <= SMALL_BLOCK for pos, _ in blocks):
        results = craig_job(embs, budgets, ctx.seed, max_dense, chunk)  # small blocks batched together
    else:
        jobs = [([e], [k], ctx.seed + c, max_dense, chunk) for c, (e, k) in enumerate(zip(embs, budgets))]
        results = [r[0] for r in ctx.run_blocks(craig_job, jobs, [len(pos) ** 2 for pos, _ in blocks])]
    picks = torch.cat([pos[r.picks] for (pos, _), r in zip(blocks, results)])
    weights = torch.cat([r.weights for r in results])
    return Picks(picks, weights, torch.cat([r.gains for r in results]))
