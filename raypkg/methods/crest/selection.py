"""CREST's selection of one region's mini-batch coresets (spec crest.md, steps 1-3).

1. ``stratified_subsets``: disjoint random subsets of the candidates, each with their
   class proportions (every rank takes its own block of them).
2. ``minibatch_coresets``: for each random subset, one eval-mode forward gives the
   gradient proxy softmax(z) - onehot(y) (the last layer's input gradient, CRAIG/CREST
   Sec. 4.1); per class, facility location on the proxies' Euclidean distances
   (sim = max(d) - d) with the class budgets of ``class_budgets`` (each at most
   ceil(B / C), summing to B exactly); weights = cluster sizes. The (subset, class) blocks
   of all the subsets go through one padded batched greedy (``coresets_from_logits``).
3. The coresets' weights are normalised to mean 1 per coreset batch by the callback
   (globally over the ranks under DDP).

Every block's picks and weights are those of selecting each subset alone: the forward is
one per subset, each block's kernel one matrix product of its own (as
``DenseEmbedding.distances`` computes it), and the greedy's blocks do not interact.
``minibatch_coreset`` (one subset) is a module-level function of plain inputs, so the
shard actors run exactly what the in-process path runs (``select_coresets``);
``submit_coresets`` starts the actors' jobs and returns at once, so the next region's
selection can run while the current region trains.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from raypkg.engine.execution import autocast
from raypkg.errors import UsageError
from raypkg.selection.embeddings import logit_gradients
from raypkg.selection.facility_location import pick_best, tie_rtol


def stratified_subsets(candidates: torch.Tensor, labels: torch.Tensor, count: int, size: int,
                       generator: torch.Generator) -> list[torch.Tensor]:
    """``count`` disjoint subsets of ``candidates`` (positions), ``size`` each, stratified by class.

    A stratified sample of count * size positions is drawn (per class its share of the
    candidates, remainders to the largest fractional shares), shuffled within each class and
    dealt round-robin to the subsets; every subset gets exactly ``size`` positions.
    """
    total = count * size
    if total > len(candidates):
        raise UsageError(f"{count} random subsets of {size} do not fit in {len(candidates)} candidate examples")
    y = labels[candidates]
    classes, counts = torch.unique(y, return_counts=True)
    share = counts.double() * total / len(candidates)
    quota = share.floor().long()
    extra = total - int(quota.sum())
    order = torch.argsort(-(share - quota), stable=True)[:extra]
    quota[order] += 1
    dealt = []
    for c, q in zip(classes.tolist(), quota.tolist()):
        members = candidates[y == c]
        dealt.append(members[torch.randperm(len(members), generator=generator)[:q]])
    sample = torch.cat(dealt)  # class by class, shuffled within each class
    return [sample[i::count].sort().values for i in range(count)]


def class_budgets(counts, batch_size: int) -> torch.Tensor:
    """Per-class budgets summing to exactly ``batch_size``: one at a time to every class
    that still has points, largest classes first (ties: lower class), so each budget is
    at most ceil(batch_size / C) unless small classes leave a shortfall to spread."""
    counts = [int(c) for c in counts]
    if sum(counts) < batch_size:
        raise UsageError(f"a random subset of {sum(counts)} examples cannot give a coreset of {batch_size}")
    order = sorted(range(len(counts)), key=lambda c: (-counts[c], c))
    budgets = [0] * len(counts)
    left = batch_size
    while left:
        for c in order:
            if left and budgets[c] < counts[c]:
                budgets[c] += 1
                left -= 1
    return torch.tensor(budgets)


@dataclass
class Coreset:
    """One mini-batch coreset: positions in its random subset, cluster sizes, and the
    subset's per-example losses (for learned-example tracking)."""

    picks: torch.Tensor  # long [B], positions in the random subset
    weights: torch.Tensor  # float64 [B], cluster sizes (sum = subset size)
    losses: torch.Tensor  # float32 [subset size]


@torch.no_grad()
def eval_logits(model: nn.Module, x: torch.Tensor, precision: str = "fp32") -> torch.Tensor:
    """Float32 logits of ``x`` from one eval-mode forward at ``precision`` (the mode restored)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with autocast(precision, device):
            return model(x.to(device)).float()
    finally:
        model.train(was_training)


@torch.no_grad()
def coresets_from_logits(logits: list[torch.Tensor], labels: list[torch.Tensor], batch_size: int,
                         num_classes: int) -> list[Coreset]:
    """One coreset per random subset from its logits and labels (spec steps 2-3): the
    blocks of every (subset, class) with members, padded to one [blocks, n, n] batch, one
    greedy over all of them."""
    z = torch.cat(logits)
    y = torch.cat(labels).to(z.device)
    sizes = [len(t) for t in labels]
    losses = F.cross_entropy(z, y, reduction="none")
    g = logit_gradients(z, y)
    # positions in the union, grouped by subset, then class (ascending within a block)
    subset_of = torch.repeat_interleave(torch.arange(len(sizes), device=z.device), torch.tensor(sizes, device=z.device))
    block_of = subset_of * num_classes + y
    order = torch.argsort(block_of, stable=True)
    per_class = torch.bincount(block_of, minlength=len(sizes) * num_classes).view(len(sizes), num_classes).tolist()
    block_sizes = [k for row in per_class for k in row if k]
    budgets = torch.cat([class_budgets([k for k in row if k], batch_size) for row in per_class])
    n = max(block_sizes)
    valid = torch.arange(n, device=z.device) < torch.tensor(block_sizes, device=z.device)[:, None]
    members = torch.full((len(block_sizes), n), -1, dtype=torch.long, device=z.device)
    members[valid] = order
    e = g.new_zeros(len(block_sizes), n, g.shape[1])
    e[valid] = g[order]
    kernel = g.new_zeros(len(block_sizes), n, n)
    for i, k in enumerate(block_sizes):  # one product per block: the rounding of selecting it alone
        kernel[i, :k, :k] = e[i, :k] @ e[i, :k].T
    sq = e.square().sum(2)
    d = torch.triu((sq[:, :, None] + sq[:, None, :] - 2.0 * kernel).clamp_min_(0).sqrt_(), 1)
    inside = valid.to(d.dtype)[:, :, None] * valid.to(d.dtype)[:, None, :]  # 1 within a block, else 0
    d = (d + d.transpose(1, 2)) * inside  # DenseEmbedding.distances of each block (symmetric, 0 diagonal)
    sim = (d.amax(dim=(1, 2), keepdim=True) - d) * inside  # max(d) - d per block (similarity_from_distances)
    picks, weights = greedy_blocks(sim, budgets.to(z.device), valid)
    chosen = picks >= 0  # block by block, each block's picks in greedy order: every subset's B picks in a row
    positions = members.gather(1, picks.clamp_min(0))[chosen].view(len(sizes), batch_size)
    starts = torch.tensor([0, *sizes], device=z.device).cumsum(0)
    positions = (positions - starts[:-1, None]).cpu()
    weights = weights[chosen].view(len(sizes), batch_size).cpu()
    losses = losses.cpu()
    return [Coreset(positions[s], weights[s], losses[int(starts[s]):int(starts[s + 1])]) for s in range(len(sizes))]


@torch.no_grad()
def greedy_blocks(sim: torch.Tensor, budgets: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``greedy_batched``'s picks and cluster sizes, with no loop over the blocks: ``sim``
    [blocks, n, n] zero outside each block's ``valid`` [blocks, n] points, ``budgets``
    [blocks]. Returns picks [blocks, k] (greedy order; -1 past a block's budget) and the
    picks' cluster sizes [blocks, k] (float64; each valid point counts for its most
    similar pick, ties to the earlier one, and a pick for itself)."""
    b, n, _ = sim.shape
    k = int(budgets.max())
    rows, steps = torch.arange(b, device=sim.device), torch.arange(k, device=sim.device)
    cover = sim.new_zeros(b, n)
    taken = ~valid
    picks = torch.full((b, k), -1, dtype=torch.long, device=sim.device)
    for t in range(k):  # greedy_batched's step
        active = budgets > t
        gain = (sim - cover[:, :, None]).clamp_min_(0).sum(1, dtype=torch.float64)
        best = pick_best(gain.masked_fill_(taken, float("-inf")), tie_rtol(sim.dtype))
        picks[:, t] = torch.where(active, best, -1)
        taken[rows, best] |= active
        cover = torch.where(active[:, None], torch.maximum(cover, sim[rows, :, best]), cover)
    chosen = picks >= 0
    to_picks = sim.gather(2, picks.clamp_min(0)[:, None, :].expand(b, n, k)).masked_fill_(~chosen[:, None, :], -1.0)
    owner = torch.cat([to_picks.argmax(2), torch.zeros(b, 1, dtype=torch.long, device=sim.device)], 1)
    owner.scatter_(1, torch.where(chosen, picks, n), steps.expand(b, k))  # a pick owns itself (n: no pick)
    owner = owner[:, :n].masked_fill_(~valid, -1)
    weights = (owner[:, :, None] == steps).sum(1).double()
    return picks, weights


def minibatch_coresets(model: nn.Module, xs: list[torch.Tensor], ys: list[torch.Tensor], batch_size: int,
                       num_classes: int, precision: str = "fp32") -> list[Coreset]:
    """One coreset per random subset (its examples ``xs[i]``, labels ``ys[i]``): a forward
    per subset at ``precision``, then facility location on all of them at once."""
    return coresets_from_logits([eval_logits(model, x, precision) for x in xs], ys, batch_size, num_classes)


def minibatch_coreset(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                      num_classes: int, precision: str = "fp32") -> Coreset:
    """The coreset of one random subset (a shard actor's job)."""
    return minibatch_coresets(model, [x], [y], batch_size, num_classes, precision)[0]


def select_coresets(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, subsets: list[torch.Tensor],
                    batch_size: int, num_classes: int, actor_pool=None, precision: str = "fp32") -> list[Coreset]:
    """One coreset per random subset (positions into ``train_x``), in-process or, with an
    ``actor_pool`` (a ShardPool), one job per subset on its actors from a CPU snapshot of the weights."""
    if actor_pool is None:
        at = [s.to(train_x.device) for s in subsets]
        return minibatch_coresets(model, [train_x[p] for p in at], [train_y[p] for p in at], batch_size, num_classes,
                                  precision)
    return submit_coresets(model, train_x, train_y, subsets, batch_size, num_classes, actor_pool, precision).result()


class PendingCoresets:
    """Coresets being selected on the shard actors: the random ``subsets`` they come from,
    and ``result()``, which waits for them (in subset order)."""

    def __init__(self, subsets: list[torch.Tensor], refs: list[tuple[list[int], Any]]):
        self.subsets, self._refs = subsets, refs

    def result(self) -> list[Coreset]:
        import ray

        out: list[Any] = [None] * len(self.subsets)
        for ids, ref in self._refs:
            for i, coreset in zip(ids, ray.get(ref)):
                out[i] = coreset
        return out


def submit_coresets(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, subsets: list[torch.Tensor],
                    batch_size: int, num_classes: int, actor_pool, precision: str = "fp32") -> PendingCoresets:
    """Start one ``minibatch_coreset`` job per subset on ``actor_pool``'s actors, from a CPU
    snapshot of the weights taken now, and return at once (the jobs run while the caller
    trains on); the jobs go to the actors as ``run_on_actors`` spreads them."""
    import ray

    from raypkg.distributed.jobs import assign_jobs, run_jobs

    snapshot = snapshot_model(model)
    jobs = [(snapshot, train_x[s].cpu(), train_y[s].cpu(), batch_size, num_classes, precision) for s in subsets]
    fn_ref = ray.put(minibatch_coreset)
    plan = assign_jobs([1.0] * len(jobs), len(actor_pool.actors))
    refs = [(ids, actor.run.remote(run_jobs, fn_ref, [jobs[i] for i in ids]))
            for actor, ids in zip(actor_pool.actors, plan) if ids]
    return PendingCoresets(subsets, refs)


def snapshot_model(model: nn.Module) -> nn.Module:
    """A CPU copy of ``model`` with the current weights (what the actors select with)."""
    import copy

    snap = copy.deepcopy(model).cpu()
    snap.eval()
    return snap


def coresets_per_region(num_minibatch_coreset: int, mul: float, ratio: float, most: int) -> int:
    """Adaptive count (spec step 7): P * batch_num_mul * (first region's curvature norm /
    current), at least 1 and at most what the candidates hold."""
    return max(1, min(most, round(num_minibatch_coreset * mul * ratio)))


def check_interval(num_minibatch_coreset: int, mul: float, ratio: float) -> int:
    """Adaptive interval (spec step 7): P * interval_mul * curvature ratio steps, at least 1."""
    return max(1, math.floor(num_minibatch_coreset * mul * ratio + 0.5))
