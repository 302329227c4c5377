"""GradMatch (Killamsetty et al., ICML 2021, Alg. 1 "OMP"): pick a weighted subset whose
weighted gradient sum matches the full gradient sum, by orthogonal matching pursuit.

Per class (``balance``) or over the whole set, with A the block's embeddings and target
t = sum_i e_i:

    residual r = t - A_S^T x;  pick argmax_{i not in S} e_i . r  (positive correlations only)
    refit    x = argmin_{x >= 0} ||A_S^T x - t||^2 + lam ||x||^2     (``nnls.GramNNLS``)

everything through dot products: e_i . r = (K 1)_i - (K[:, S] x)_i with the kernel
columns K[:, j] = A e_j computed when j is picked (``Embedding.kernel``), so neither the
embeddings nor the n x n kernel are ever formed. For large budgets several atoms join per
step (generalized OMP, option ``atoms``). OMP runs until ``budget`` picks carry a
positive weight; picks whose weight dropped to zero are left out. When OMP stops early
(residual below ``tol`` of the target, or no positive correlation left) the budget is
filled with uniformly random unpicked points of weight 1, so the subset always has
exactly the requested size.
"""

from __future__ import annotations

import math

import torch

from raypkg.selection.embeddings import Embedding
from raypkg.selection.nnls import GramNNLS
from raypkg.selection.per_batch import batch_units, unit_embedding, unit_picks, units_needed
from raypkg.selection.registry import Picks, SelectionContext, register_selector

MAX_STEPS_AUTO = 200  # default: atoms per OMP step = ceil(budget / 200)


def omp_select(emb: Embedding, budget: int, lam: float = 0.5, tol: float = 1e-6,
               generator: torch.Generator | None = None,
               atoms_per_step: int = 1) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Non-negative OMP on one block; returns (positions, weights, correlation at pick).

    ``atoms_per_step`` > 1 is generalized OMP (Wang, Kwon, Shim 2012): the s largest
    positive correlations join before one refit, so a large budget needs s times fewer
    refits and correlation updates. Kernel columns are computed in the embedding's own
    precision (float32 halves the bytes read per pick) and kept, as rows of ``cols_t``,
    in float64, where the correlations and the refit are done.
    """
    n = len(emb)
    k_target = emb.to(torch.float64).dot(emb.to(torch.float64).sum_vector())  # e_i . t = (K 1)_i
    tt = float(k_target.sum())  # ||t||^2
    cap = min(n, 2 * budget + 8)
    store = torch.float32 if n * cap > 2 ** 26 else torch.float64
    cols_t = torch.zeros(cap, n, dtype=store)  # cols_t[m] = K[:, order[m]]
    order_t = torch.zeros(cap, dtype=torch.long)
    solver = GramNNLS(lam, capacity=cap)
    in_s = torch.zeros(n, dtype=torch.bool)
    pick_corr: list[float] = []
    corr = k_target.clone()
    x = torch.zeros(0, dtype=torch.float64)
    m = 0
    while m < n and (positive := int((x > 0).sum())) < budget:
        masked = corr.masked_fill(in_s, float("-inf"))
        step = min(atoms_per_step, budget - positive, n - m)
        top = torch.sort(masked, descending=True, stable=True).indices[:step]
        top = top[masked[top] > 0]
        if len(top) == 0:
            break  # no positive correlation left
        if m + len(top) > cap:  # grow
            cap = min(n, max(2 * cap, m + len(top)))
            cols_t = torch.cat([cols_t, torch.zeros(cap - len(cols_t), n, dtype=store)])
            order_t = torch.cat([order_t, torch.zeros(cap - len(order_t), dtype=torch.long)])
        columns = emb.kernel(emb.subset(top)).to(torch.float64)  # [n, s]
        for a, j in enumerate(top.tolist()):
            column = columns[:, a]
            cols_t[m] = column.to(store)
            x = solver.add(column.index_select(0, order_t[:m]), float(column[j]), float(k_target[j]),
                           solve=a == len(top) - 1)
            order_t[m] = j
            m += 1
            pick_corr.append(float(masked[j]))
            in_s[j] = True
        corr = k_target - x @ cols_t[:m].to(torch.float64)
        resid2 = tt - 2.0 * float(solver.b @ x) + float(x @ (solver.q @ x)) - solver.lam * float(x @ x)
        if resid2 <= tol * tt:
            break
    order = order_t[:m]
    keep = x > 0
    if int(keep.sum()) > budget:  # a refit can revive dropped atoms: keep the largest weights
        top = torch.sort(x, descending=True, stable=True).indices[:budget]
        keep = torch.zeros_like(keep)
        keep[top] = True
    positions, weights = order[keep], x[keep]
    scores = torch.tensor(pick_corr, dtype=torch.float64)[keep] if m else torch.zeros(0, dtype=torch.float64)
    short = budget - len(positions)
    if short > 0:
        free = torch.ones(n, dtype=torch.bool)
        free[positions] = False
        pool = torch.nonzero(free).squeeze(1)
        fill = pool[torch.randperm(len(pool), generator=generator)[:short]]
        positions = torch.cat([positions, fill])
        weights = torch.cat([weights, torch.ones(short, dtype=torch.float64)])
        scores = torch.cat([scores, torch.full((short,), float("nan"), dtype=torch.float64)])
    return positions, weights, scores


def gradmatch_job(emb: Embedding, budget: int, lam: float, tol: float, seed: int, atoms_per_step: int):
    """One class's OMP (module-level so that shard actors can run it)."""
    return omp_select(emb, budget, lam, tol, torch.Generator().manual_seed(seed), atoms_per_step)


@register_selector("gradmatch", "GradMatch: per-class OMP matching the gradient sum, non-negative "
                                "ridge refit, exact budget (random fill, weight 1)",
                   weighted=True, weighting="sample", weight_cap=2.0, options={"lam": 0.5, "tol": 1e-6, "atoms": 0},
                   per_batch=True)
def gradmatch(ctx: SelectionContext) -> Picks:
    """Options: ``lam`` (ridge of the non-negative refit), ``tol`` (stop when the squared
    residual is below tol * ||target||^2), ``atoms`` (atoms added per OMP step; 0:
    ceil(budget / 200) per class, so at most ~200 refits; 1: plain OMP). Per batch
    (GradMatchPB): OMP over the mini-batches' mean embeddings."""
    g, h = ctx.grads()
    if ctx.batch_size:
        units = batch_units(len(g), ctx.batch_size, ctx.seed)
        m = units_needed(ctx.k, len(g), ctx.batch_size)
        picks, weights, scores = gradmatch_job(unit_embedding(ctx.kind.embed(g, h), units), m,
                                               float(ctx.options["lam"]), float(ctx.options["tol"]), ctx.seed,
                                               int(ctx.options["atoms"]) or max(1, math.ceil(m / MAX_STEPS_AUTO)))
        return Picks(*unit_picks(units, picks, weights, scores, ctx.k))
    blocks = ctx.blocks()
    atoms = int(ctx.options["atoms"])
    jobs = [(ctx.kind.embed(g[pos], h[pos]), k, float(ctx.options["lam"]), float(ctx.options["tol"]),
             ctx.seed * 1_000_003 + 101 * c, atoms or max(1, math.ceil(k / MAX_STEPS_AUTO)))
            for c, (pos, k) in enumerate(blocks)]
    results = ctx.run_blocks(gradmatch_job, jobs, [len(pos) * k for pos, k in blocks])
    picks = torch.cat([pos[p] for (pos, _), (p, _, _) in zip(blocks, results)])
    return Picks(picks, torch.cat([w for _, w, _ in results]), torch.cat([s for _, _, s in results]))
