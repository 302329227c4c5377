"""Uncertainty sampling (DeepCore ``deepcore/methods/uncertainty.py``, class ``Uncertainty``;
the scores of Coleman et al., "Selection via Proxy", ICLR 2020, Sec. 3.2), on the softmax
p = softmax(z) of the warmed-up model:

    least-confidence   s_i = 1 - max_c p_ic
    entropy            s_i = -sum_c p_ic log p_ic
    margin             s_i = -(p_i(1) - p_i(2))   (p_i(1) >= p_i(2): the top two of p_i)

and the k highest scores are kept. The margin is stored negated so that all three read
"higher = more uncertain" (the order a CCS stratification, ``stratify.py``, and the other
score selectors' top-k take scores in); keeping its k highest is keeping the k smallest
margins. All three keep the most uncertain examples, the end DeepCore keeps in its class-balanced
branch (its default, ``--balance True``): ``argsort(scores)[:k]``, the lowest of its own
scores max_c z_c, sum_c p_c log(p_c + 1e-6) and p_(1) - p_(2). Here that end is kept with or
without balance; DeepCore's unbalanced branch (``argsort(scores)[::-1][:k]``) keeps the
opposite, most confident, end. Two more differences from DeepCore, both the papers' forms:
least confidence is 1 - max softmax (DeepCore ranks by the largest raw logit, which orders
examples differently), and the entropy has no +1e-6 inside the log.
Within a block (a class when balanced) equal scores keep their order; weights are 1.
"""

from __future__ import annotations

import torch

from raypkg.selection.methods.grand import top_k
from raypkg.selection.registry import Picks, SelectionContext, register_selector


def uncertainty_scores(z: torch.Tensor, method: str) -> torch.Tensor:
    """The score of every row of logits ``z`` [N, C] (float64), as in the module docstring."""
    logp = torch.log_softmax(z.double(), dim=1)
    p = logp.exp()
    if method == "least-confidence":
        return 1.0 - p.max(dim=1).values
    if method == "entropy":
        return -(p * logp).sum(dim=1)
    if method == "margin":
        top = p.topk(2, dim=1).values
        return top[:, 1] - top[:, 0]  # minus the margin: higher = more uncertain
    raise ValueError(f"unknown uncertainty score {method!r}")


def uncertainty_picks(ctx: SelectionContext, method: str) -> Picks:
    z, _ = ctx.logits_features()
    scores = uncertainty_scores(z, method)
    picks = torch.cat([pos[top_k(scores[pos], k)] for pos, k in ctx.blocks()])
    return Picks(picks, torch.ones(len(picks), dtype=torch.float64), scores[picks], all_scores=scores)


@register_selector("least-confidence", "uncertainty: the k highest 1 - max softmax (least confident)",
                   scores=True)
def least_confidence(ctx: SelectionContext) -> Picks:
    return uncertainty_picks(ctx, "least-confidence")


@register_selector("entropy", "uncertainty: the k highest softmax entropies", scores=True)
def entropy(ctx: SelectionContext) -> Picks:
    return uncertainty_picks(ctx, "entropy")


@register_selector("margin", "uncertainty: the k smallest margins between the top two softmax probabilities "
                             "(score: minus the margin)", scores=True)
def margin(ctx: SelectionContext) -> Picks:
    return uncertainty_picks(ctx, "margin")
