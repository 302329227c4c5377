"""k-Center Greedy and Contextual Diversity: greedy max-min (farthest-point) selection.

k-Center Greedy (Sener & Savarese, "Active Learning for Convolutional Neural Networks: A
Core-Set Approach", ICLR 2018, Alg. 1; DeepCore ``deepcore/methods/kcentergreedy.py``,
``k_center_greedy``): start from one center, then repeatedly add

    u = argmax_{i not chosen} min_{j chosen} d(x_i, x_j),

here with d the Euclidean distance between penultimate features h of the warmed-up model.

Contextual Diversity (Agarwal, Arora, Anand, Arora, "Contextual Diversity for Active
Learning", ECCV 2020; DeepCore ``deepcore/methods/contextualdiversity.py``, ``_metric``):
the same greedy on the softmax outputs p with DeepCore's symmetric KL divergence

    d(a, b) = 0.5 sum_c a_c log(a_c / b_c) + 0.5 sum_c b_c log(b_c / a_c)
            = 0.5 sum_c (a_c - b_c)(log a_c - log b_c),

computed from log-softmax so that it stays finite where a probability underflows (DeepCore's
log(a / b) gives NaN there). DeepCore uses one softmax vector per image; the CDAL paper
averages class-conditional probabilities over the regions of an image.

The first center is uniformly random, as in DeepCore (``np.random.randint``), drawn from
``ctx.generator(class)``; ties go to the lower position (``argmax``). Per class when
balanced, else over the whole set. Memory is O(n) per block besides the features: only the
running min distance of every point to the chosen centers is kept and updated from the new
center alone (||x||^2 - 2 x.c + ||c||^2 for Euclidean), never an n x n (or DeepCore's
k x n) distance matrix. Weights are 1; a pick's score is its min distance to the earlier
picks when it was chosen (NaN for the first center).
"""

from __future__ import annotations

import torch

from raypkg.selection.registry import Picks, SelectionContext, register_selector


def euclidean_from(x: torch.Tensor, sq: torch.Tensor, j: int) -> torch.Tensor:
    """||x_i - x_j|| for every row i, from the squared norms ``sq`` (O(n) extra memory)."""
    return (sq - 2.0 * (x @ x[j]) + sq[j]).clamp_min(0).sqrt()


def symmetric_kl_from(logp: torch.Tensor, j: int) -> torch.Tensor:
    """DeepCore's contextual-diversity distance from row j to every row of log-probabilities ``logp``."""
    return 0.5 * ((logp.exp() - logp[j].exp()) * (logp - logp[j])).sum(dim=1)


def k_center_greedy(x: torch.Tensor, budget: int, first: int, metric: str = "euclidean"
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy max-min picks (in pick order) of ``budget`` rows of ``x`` starting at ``first``,
    and each pick's min distance to the earlier ones. ``metric``: "euclidean" on features,
    "kl" on log-probabilities (``symmetric_kl_from``)."""
    n = len(x)
    if budget <= 0:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float64)
    if metric == "euclidean":
        sq = x.square().sum(dim=1)
        distance = lambda j: euclidean_from(x, sq, j)  # noqa: E731
    else:
        distance = lambda j: symmetric_kl_from(x, j)  # noqa: E731
    picks, gains = [int(first)], [float("nan")]
    mins = distance(first)
    mins[first] = -float("inf")  # chosen points stay at -inf: min(-inf, d) = -inf
    for _ in range(min(budget, n) - 1):
        p = int(torch.argmax(mins))
        picks.append(p)
        gains.append(float(mins[p]))
        mins = torch.minimum(mins, distance(p))
        mins[p] = -float("inf")
    return torch.tensor(picks, dtype=torch.long), torch.tensor(gains, dtype=torch.float64)


def greedy_blocks(ctx: SelectionContext, points: torch.Tensor, metric: str) -> Picks:
    """k-center greedy within each block (one job per block, on the actors when pooled)."""
    device = ctx.device if ctx.pool is None else torch.device("cpu")
    blocks = [(c, pos, k) for c, (pos, k) in enumerate(ctx.blocks()) if k > 0]
    firsts = [int(torch.randint(len(pos), (1,), generator=ctx.generator(c))) for c, pos, _ in blocks]
    jobs = [(points[pos].to(device), k, first, metric) for (_, pos, k), first in zip(blocks, firsts)]
    results = ctx.run_blocks(k_center_greedy, jobs, [len(pos) * k for _, pos, k in blocks])
    picks = torch.cat([pos[r[0].cpu()] for (_, pos, _), r in zip(blocks, results)])
    gains = torch.cat([r[1] for r in results])
    return Picks(picks, torch.ones(len(picks), dtype=torch.float64), gains)


@register_selector("kcenter", "k-Center Greedy: greedy max-min Euclidean distance on penultimate features")
def kcenter(ctx: SelectionContext) -> Picks:
    _, h = ctx.logits_features()
    return greedy_blocks(ctx, h, "euclidean")


@register_selector("contextual-diversity", "Contextual Diversity: k-Center Greedy with DeepCore's "
                                           "symmetric KL distance between softmax outputs")
def contextual_diversity(ctx: SelectionContext) -> Picks:
    z, _ = ctx.logits_features()
    return greedy_blocks(ctx, torch.log_softmax(z.double(), dim=1), "kl")
