"""CRAIG (Mirzasoleiman, Bilmes, Leskovec, ICML 2020, Sec. 3-4): the subset whose points
are, together, closest to every point's gradient, by facility location.

Per class (``balance``) or over the whole set: similarity = max(d) - d with d the
Euclidean distance between last-layer gradient embeddings (computed from kernels in row
chunks, ``Embedding.distances``), greedy facility location (``facility_location``), and
each pick weighted by its cluster size: how many points it is the most similar pick for.
Small classes are batched on the device in one padded tensor, large ones use the
incremental greedy, classes above ``max_dense`` points the streaming stochastic greedy.
On streamed data (``--data-path stream``) each class reads its own images and only its
embeddings are held.
"""

from __future__ import annotations

import torch

from raypkg.selection.embeddings import logit_gradients, logits_and_features
from raypkg.selection.facility_location import SMALL_BLOCK, embedding_facility_location
from raypkg.selection.per_batch import batch_units, unit_embedding, unit_picks, units_needed
from raypkg.selection.registry import Picks, SelectionContext, register_selector


def craig_job(embeddings: list, budgets: list[int], seed: int, max_dense: int, chunk: int) -> list:
    """Facility location over some classes (module-level so that shard actors can run it)."""
    return embedding_facility_location(embeddings, budgets, seed=seed, max_dense=max_dense, chunk=chunk)


@register_selector("craig", "CRAIG: per-class facility location on max(d) - d of gradient "
                            "embeddings, weights = cluster sizes",
                   weighted=True, weighting="sample", weight_cap=2.0, streams=True,
                   options={"max_dense": 12_288, "chunk": 2048}, per_batch=True)
def craig(ctx: SelectionContext) -> Picks:
    """Options: ``max_dense`` (largest class held as an n x n similarity matrix; larger
    ones use stochastic greedy on chunked distances), ``chunk`` (rows per distance chunk).
    Cluster sizes can be extremely skewed on warmed-up models: the well-fit examples'
    near-zero gradients form one cluster, whose pick may carry over half of its class;
    how such weights train is ``--weighting`` (``raypkg.selection.weighting``). Per batch
    (CRAIGPB): facility location over the mini-batches' mean embeddings."""
    blocks = [(pos, k) for pos, k in ctx.blocks() if k > 0]
    max_dense, chunk = int(ctx.options["max_dense"]), int(ctx.options["chunk"])
    if ctx.batch_size:
        g, h = ctx.grads()
        units = batch_units(len(g), ctx.batch_size, ctx.seed)
        budget = units_needed(ctx.k, len(g), ctx.batch_size)
        r = craig_job([unit_embedding(ctx.kind.embed(g, h), units)], [budget], ctx.seed, max_dense, chunk)[0]
        return Picks(*unit_picks(units, r.picks, r.weights, r.gains, ctx.k))
    if ctx.data.streamed:
        return craig_streamed(ctx, blocks, max_dense, chunk)
    g, h = ctx.grads()
    device = ctx.device if ctx.pool is None else torch.device("cpu")
    embs = [ctx.kind.embed(g[pos].to(device), h[pos].to(device)) for pos, _ in blocks]
    budgets = [k for _, k in blocks]
    if ctx.pool is None or all(len(pos) <= SMALL_BLOCK for pos, _ in blocks):
        results = craig_job(embs, budgets, ctx.seed, max_dense, chunk)  # small blocks batched together
    else:
        jobs = [([e], [k], ctx.seed + c, max_dense, chunk) for c, (e, k) in enumerate(zip(embs, budgets))]
        results = [r[0] for r in ctx.run_blocks(craig_job, jobs, [len(pos) ** 2 for pos, _ in blocks])]
    return block_picks(blocks, results)


def block_picks(blocks: list[tuple[torch.Tensor, int]], results: list) -> Picks:
    picks = torch.cat([pos[r.picks] for (pos, _), r in zip(blocks, results)])
    weights = torch.cat([r.weights for r in results])
    return Picks(picks, weights, torch.cat([r.gains for r in results]))


def craig_class_job(data, model, kind, budget: int, seed: int, max_dense: int, chunk: int, device: str,
                    precision: str) -> object:
    """One class of a streamed dataset: read its images, embed, facility location. Only
    this class's embeddings are ever held (on a shard actor, it reads the files itself)."""
    z, h = logits_and_features(model.to(device), data.x, device, precision=precision)
    embedding = kind.embed(logit_gradients(z, data.y.to(z.device)), h)
    return embedding_facility_location([embedding], [budget], seed=seed, max_dense=max_dense, chunk=chunk)[0]


def craig_streamed(ctx: SelectionContext, blocks: list[tuple[torch.Tensor, int]], max_dense: int,
                   chunk: int) -> Picks:
    """CRAIG over images read from disk: one class at a time (in-process, or one job per
    class on the shard actors); the seeds are the in-memory path's, so are the picks."""
    device = "cpu" if ctx.pool is not None else str(ctx.device)
    jobs = [(ctx.data.subset(pos), ctx.model, ctx.kind, k, ctx.seed + c, max_dense, chunk, device, ctx.precision)
            for c, (pos, k) in enumerate(blocks)]
    results = ctx.run_blocks(craig_class_job, jobs, [len(pos) ** 2 for pos, _ in blocks])
    return block_picks(blocks, results)
