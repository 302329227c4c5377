"""CCS, coverage-centric coreset selection (Zheng, Liu, Lai, Prakash, ICLR 2023, Sec. 4,
Algorithm 1): a stratified sample over a score-based selector's per-example scores
instead of its top-k, so that a small subset still covers easy, middle and hard examples.

Per block (each class when balanced, so the class budgets stay exact; the paper works on
the whole set at once), with the scores read as difficulty (higher = harder, the order a
score selector's top-k takes them in):

1. drop the floor(beta * n) hardest examples (highest scores; equal scores: the lower
   position goes first), at most n - k so that the budget always fits;
2. split [min, max] of the remaining scores into ``strata`` ranges of equal width (the
   paper: k = 50; the maximum goes into the last one);
3. split the budget (Algorithm 1, ``strata_allocation``): the stratum with the fewest
   examples first, each gets min(|B|, floor(m / #strata left)) of the m still to place;
4. draw each stratum's share uniformly without replacement. The picks' weights are 1.

beta, when not given (``--ccs-beta``), by the kept fraction f = k / n (``paper_beta``): the
paper's per-dataset table of hard cutoff rates could not be read here, so the values are
the authors' own commands (github.com/haizhongzheng/Coverage-centric-coreset-selection,
README: ``--mis-ratio 0.3`` at 90% pruning on CIFAR-10 and ImageNet, 0.2 at 80% on
ImageNet) and beta = 0 at low pruning rates, where CCS is meant to match the top-k:
beta = 0.3 for f < 0.15, 0.2 for f < 0.25, 0.1 for f < 0.3 (between those, our choice),
0 for f >= 0.3.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Sequence

import torch

from raypkg.errors import UsageError

if TYPE_CHECKING:  # the registry's select calls this module: its types are hints here
    from raypkg.selection.registry import Picks, SelectionContext

STRATIFY = ("none", "ccs")
CCS_STRATA = 50  # the paper's k


def paper_beta(fraction: float) -> float:
    """The hard cutoff rate for a kept fraction (see the module docstring for the source)."""
    if fraction < 0.15:
        return 0.3
    if fraction < 0.25:
        return 0.2
    if fraction < 0.3:
        return 0.1
    return 0.0


def strata_allocation(sizes: Sequence[int], budget: int) -> list[int]:
    """Algorithm 1's split of ``budget`` over strata of ``sizes``: the smallest stratum
    first (equal sizes: the lower stratum first), each gets min(|B|, floor(m / #left))."""
    if budget > sum(sizes):
        raise ValueError(f"a budget of {budget} from strata of {sum(sizes)} examples")
    order = sorted(range(len(sizes)), key=lambda i: (sizes[i], i))
    out, left = [0] * len(sizes), int(budget)
    for done, i in enumerate(order):
        out[i] = min(int(sizes[i]), left // (len(sizes) - done))
        left -= out[i]
    return out  # sums to budget: every floor is made up by the larger strata after it


def ccs_positions(scores: torch.Tensor, positions: torch.Tensor, k: int, beta: float, strata: int = CCS_STRATA,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """CCS's k picks from one block: ``scores[i]`` is the difficulty of ``positions[i]``."""
    n = len(positions)
    if k > n:
        raise UsageError(f"a budget of {k} from {n} examples")
    if k == 0:
        return positions[:0]
    drop = min(math.floor(beta * n + 1e-9), n - k)
    keep = torch.sort(scores, descending=True, stable=True).indices[drop:]
    s = scores[keep].double()
    width = (s.max() - s.min()) / strata
    bins = torch.zeros(len(s), dtype=torch.long) if width == 0 else \
        ((s - s.min()) / width).floor().long().clamp_(0, strata - 1)
    shares = strata_allocation(torch.bincount(bins, minlength=strata).tolist(), k)
    picks = []
    for b, share in enumerate(shares):
        if share:
            members = keep[bins == b]
            picks.append(members[torch.randperm(len(members), generator=generator)[:share]])
    return positions[torch.cat(picks)]


def ccs_picks(ctx: SelectionContext, picks: Picks, method: str, beta: float) -> Picks:
    """Re-pick every block of ``ctx`` by CCS over the selector's ``all_scores``."""
    if picks.all_scores is None:
        raise AssertionError(f"{method} is registered with scores but returned none")
    scores = picks.all_scores.cpu()
    gen = ctx.generator(stream=29)
    chosen = torch.cat([ccs_positions(scores[pos], pos, k, beta, CCS_STRATA, gen) for pos, k in ctx.blocks()])
    return dataclasses.replace(picks, positions=chosen, weights=torch.ones(len(chosen), dtype=torch.float64),
                               scores=scores[chosen])
