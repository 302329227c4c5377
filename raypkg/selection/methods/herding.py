"""Herding (DeepCore ``deepcore/methods/herding.py``; Welling, "Herding Dynamical Weights to
Learn", ICML 2009; in the form of Rebuffi et al., iCaRL, CVPR 2017, Alg. 4) on the
penultimate features h of the warmed-up model, per class when balanced, else over all:

    p_t = argmin_{i not chosen} || mu - (x_i + sum_{s<t} x_{p_s}) / t ||,   t = 1..k,

with mu the mean of the block: each pick brings the running mean of the picks closest to
the block mean. Equivalently argmin_i ||r_t - x_i|| with r_t = t mu - sum_{s<t} x_{p_s},
DeepCore's residual. DeepCore takes the argmax of that distance (the point farthest from
the residual), contrary to its paper's description (Guo et al., DEXA 2022: "minimizing
distance between centers of coreset and the original dataset"); here the argmin, as in
iCaRL. Memory: O(n) per step besides the features (||x_i||^2 - 2 r_t.x_i for every i), no
n x n matrix. Deterministic, ties to the lower position; weights 1; a pick's score is
||mu - running mean|| after it is added.
"""

from __future__ import annotations

import torch

from raypkg.selection.registry import Picks, SelectionContext, register_selector


def herding(x: torch.Tensor, budget: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Herding picks (in order) of ``budget`` rows of ``x`` and the gap ||mu - mean of picks|| after each."""
    n = len(x)
    mu, sq = x.mean(dim=0), x.square().sum(dim=1)
    total = torch.zeros_like(mu)
    chosen = torch.zeros(n, dtype=torch.bool, device=x.device)
    picks, gaps = [], []
    for t in range(1, min(budget, n) + 1):
        residual = t * mu - total
        d = sq - 2.0 * (x @ residual)  # ||residual - x_i||^2 - ||residual||^2
        d[chosen] = float("inf")
        p = int(torch.argmin(d))
        chosen[p] = True
        total = total + x[p]
        picks.append(p)
        gaps.append(float((mu - total / t).norm()))
    return torch.tensor(picks, dtype=torch.long), torch.tensor(gaps, dtype=torch.float64)


@register_selector("herding", "Herding: greedily keep the running mean of the picks closest to the "
                              "class mean of penultimate features")
def herding_selector(ctx: SelectionContext) -> Picks:
    _, h = ctx.logits_features()
    device = ctx.device if ctx.pool is None else torch.device("cpu")
    blocks = [(pos, k) for pos, k in ctx.blocks() if k > 0]
    results = ctx.run_blocks(herding, [(h[pos].to(device), k) for pos, k in blocks],
                             [len(pos) * k for pos, k in blocks])
    picks = torch.cat([pos[r[0].cpu()] for (pos, _), r in zip(blocks, results)])
    return Picks(picks, torch.ones(len(picks), dtype=torch.float64), torch.cat([r[1] for r in results]))
