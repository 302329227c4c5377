"""GraNd (Paul, Ganguli, Dziugaite, NeurIPS 2021, Sec. 2): keep the examples with the
largest expected gradient norm early in training.

score_i = mean over R independently warmed-up models of ||e_i||, with e_i the closed-form
last-layer gradient (``embeddings``), whose norm ||g|| sqrt(1 + ||h||^2) never needs e.
The R models come from the caller (DeepCore: R = 10 full warm-ups; LiPT: K shard models).
The top-k (per class when balanced) are kept, ties to the lower position; weights 1.
"""

from __future__ import annotations

import torch

from raypkg.selection.embeddings import shard_mean_norms
from raypkg.selection.registry import Picks, SelectionContext, register_selector


def top_k(scores: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the k largest scores; equal scores keep their order (stable sort)."""
    return torch.sort(scores, descending=True, stable=True).indices[:k]


@register_selector("grand", "GraNd: top-k mean last-layer gradient norm over R warm-up repeats",
                   uses_repeats=True, streams=True, scores=True)
def grand(ctx: SelectionContext) -> Picks:
    scores = ctx.per_example.map(shard_mean_norms, ctx.models, ctx.kind, ctx.per_example.device, ctx.precision)
    picks = torch.cat([positions[top_k(scores[positions], k)] for positions, k in ctx.blocks()])
    return Picks(picks, torch.ones(len(picks), dtype=torch.float64), scores[picks], all_scores=scores)
