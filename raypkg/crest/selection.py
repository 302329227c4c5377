"""CREST's selection of one region's mini-batch coresets (spec crest.md, steps 1-3).

1. ``stratified_subsets``: disjoint random subsets of the candidates, each with their
   class proportions (every rank takes its own block of them).
2. ``minibatch_coreset``: for one random subset, one eval-mode forward gives the gradient
   proxy softmax(z) - onehot(y) (the last layer's input gradient, CRAIG/CREST Sec. 4.1);
   per class, facility location on the proxies' Euclidean distances (sim = max(d) - d)
   with the class budgets of ``class_budgets`` (each at most ceil(B / C), summing to B
   exactly), all classes in one padded batched greedy; weights = cluster sizes.
3. The coresets' weights are normalised to mean 1 per coreset batch by the callback
   (globally over the ranks under DDP).

``minibatch_coreset`` is a module-level function of plain inputs, so the shard actors run
exactly what the in-process path runs (``select_coresets``); ``submit_coresets`` starts
the actors' jobs and returns at once, so the next region's selection can run while the
current region trains.
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
from raypkg.selection.embeddings import DenseEmbedding, logit_gradients
from raypkg.selection.facility_location import greedy_batched, pad_blocks, similarity_from_distances


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


def class_budgets(counts: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Per-class budgets summing to exactly ``batch_size``: one at a time to every class
    that still has points, largest classes first (ties: lower class), so each budget is
    at most ceil(batch_size / C) unless small classes leave a shortfall to spread."""
    counts = counts.long().cpu()
    if int(counts.sum()) < batch_size:
        raise UsageError(f"a random subset of {int(counts.sum())} examples cannot give a coreset of {batch_size}")
    order = sorted(range(len(counts)), key=lambda c: (-int(counts[c]), c))
    budgets = torch.zeros_like(counts)
    left = batch_size
    while left:
        for c in order:
            if left and budgets[c] < counts[c]:
                budgets[c] += 1
                left -= 1
    return budgets


@dataclass
class Coreset:
    """One mini-batch coreset: positions in its random subset, cluster sizes, and the
    subset's per-example losses (for learned-example tracking)."""

    picks: torch.Tensor  # long [B], positions in the random subset
    weights: torch.Tensor  # float64 [B], cluster sizes (sum = subset size)
    losses: torch.Tensor  # float32 [subset size]


@torch.no_grad()
def minibatch_coreset(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int,
                      num_classes: int, precision: str = "fp32") -> Coreset:
    """Facility location on one random subset's gradient proxies, per class (spec steps 2-3);
    the forward at ``precision``."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with autocast(precision, device):
        z = model(x.to(device)).float()
    model.train(was_training)
    y = y.to(device)
    losses = F.cross_entropy(z, y, reduction="none")
    g = logit_gradients(z, y)
    members = [torch.nonzero(y == c).squeeze(1) for c in range(num_classes)]
    members = [m for m in members if len(m)]
    budgets = class_budgets(torch.tensor([len(m) for m in members]), batch_size)
    sims = [similarity_from_distances(DenseEmbedding(g[m]).distances()) for m in members]
    batch, valid = pad_blocks(sims)
    results = greedy_batched(batch, budgets, valid)
    picks = torch.cat([m.cpu()[r.picks] for m, r in zip(members, results)])
    weights = torch.cat([r.weights for r in results])
    return Coreset(picks, weights, losses.cpu())


def select_coresets(model: nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, subsets: list[torch.Tensor],
                    batch_size: int, num_classes: int, actor_pool=None, precision: str = "fp32") -> list[Coreset]:
    """One coreset per random subset (positions into ``train_x``), in-process or, with an
    ``actor_pool`` (a ShardPool), one job per subset on its actors from a CPU snapshot of the weights."""
    if actor_pool is None:
        at = [s.to(train_x.device) for s in subsets]
        return [minibatch_coreset(model, train_x[p], train_y[p], batch_size, num_classes, precision) for p in at]
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
