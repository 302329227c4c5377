"""GradMatch (Killamsetty et al., ICML 2021, Alg. 1 "OMP"): pick a weighted subset whose
weighted gradient sum matches the full gradient sum, by orthogonal matching pursuit.

Per class (``balance``) or over the whole set, with A the block's embeddings and target
t = sum_i e_i:

    residual r = t - A_S^T x;  pick argmax_{i not in S} e_i . r  (positive correlations only)
    refit    x = argmin_{x >= 0} ||A_S^T x - t||^2 + lam ||x||^2     (``nnls.GramNNLS``)

everything through dot products: e_i . r = (K 1)_i - (K[:, S] x)_i with the kernel
columns K[:, j] = A e_j computed when j is picked (``Embedding.kernel``), so neither the
embeddings nor the n x n kernel are ever formed. OMP runs until ``budget`` picks carry a
positive weight; picks whose weight dropped to zero are left out. When OMP stops early
(residual below ``tol`` of the target, or no positive correlation left) the budget is
filled with uniformly random unpicked points of weight 1, so the subset always has
exactly the requested size.
"""

from __future__ import annotations

import torch

from raypkg.selection.embeddings import Embedding
from raypkg.selection.nnls import GramNNLS
from raypkg.selection.registry import Picks, SelectionContext, register_selector


def omp_select(emb: Embedding, budget: int, lam: float = 0.5, tol: float = 1e-6,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Non-negative OMP on one block; returns (positions, weights, correlation at pick)."""
    n = len(emb)
    emb = emb.to(torch.float64)
    k_target = emb.dot(emb.sum_vector())  # e_i . t = (K 1)_i
    tt = float(k_target.sum())  # ||t||^2
    big = n * max(budget, 1) > 2 ** 26
    cols = torch.zeros(n, min(n, 2 * budget + 8), dtype=torch.float32 if big else torch.float64)
    solver = GramNNLS(lam, capacity=min(n, 2 * budget + 8))
    in_s = torch.zeros(n, dtype=torch.bool)
    order: list[int] = []
    pick_corr: list[float] = []
    corr = k_target.clone()
    x = torch.zeros(0, dtype=torch.float64)
    while len(order) < n and int((x > 0).sum()) < budget:
        masked = corr.masked_fill(in_s, float("-inf"))
        j = int(masked.argmax())
        if not masked[j] > 0:
            break  # no positive correlation left
        if len(order) == cols.shape[1]:
            cols = torch.cat([cols, torch.zeros_like(cols)], 1)[:, :n]
        column = emb.kernel(emb.subset([j]))[:, 0]
        m = len(order)
        cols[:, m] = column.to(cols.dtype)
        idx = torch.tensor(order, dtype=torch.long)
        x = solver.add(column[idx] if m else column[:0], float(column[j]), float(k_target[j]))
        order.append(j)
        pick_corr.append(float(masked[j]))
        in_s[j] = True
        corr = k_target - cols[:, :m + 1].double() @ x
        resid2 = tt - 2.0 * float(solver.b @ x) + float(x @ (solver.q @ x)) - solver.lam * float(x @ x)
        if resid2 <= tol * tt:
            break
    order_t = torch.tensor(order, dtype=torch.long)
    keep = x > 0
    if int(keep.sum()) > budget:  # cannot happen with the loop above; keep the largest weights
        keep &= x >= torch.sort(x, descending=True).values[budget - 1]
    positions, weights = order_t[keep], x[keep]
    scores = torch.tensor(pick_corr, dtype=torch.float64)[keep] if len(pick_corr) else torch.zeros(0, dtype=torch.float64)
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


def gradmatch_job(emb: Embedding, budget: int, lam: float, tol: float, seed: int):
    """One class's OMP (module-level so that shard actors can run it)."""
    return omp_select(emb, budget, lam, tol, torch.Generator().manual_seed(seed))


@register_selector("gradmatch", "GradMatch: per-class OMP matching the gradient sum, non-negative "
                                "ridge refit, exact budget (random fill, weight 1)",
                   weighted=True, options={"lam": 0.5, "tol": 1e-6})
def gradmatch(ctx: SelectionContext) -> Picks:
    """Options: ``lam`` (ridge of the non-negative refit), ``tol`` (stop when the squared
    residual is below tol * ||target||^2)."""
    g, h = ctx.grads()
    blocks = ctx.blocks()
    jobs = [(ctx.kind.embed(g[pos], h[pos]), k, float(ctx.options["lam"]), float(ctx.options["tol"]),
             ctx.seed * 1_000_003 + 101 * c) for c, (pos, k) in enumerate(blocks)]
    results = ctx.run_blocks(gradmatch_job, jobs, [len(pos) * k for pos, k in blocks])
    picks = torch.cat([pos[p] for (pos, _), (p, _, _) in zip(blocks, results)])
    return Picks(picks, torch.cat([w for _, w, _ in results]), torch.cat([s for _, _, s in results]))
