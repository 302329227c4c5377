"""EL2N (Paul, Ganguli, Dziugaite, "Deep Learning on a Data Diet", NeurIPS 2021, Sec. 2):
keep the examples with the largest expected error norm early in training,

    score_i = mean over R warmed-up models of || softmax(z_i) - onehot(y_i) ||_2,

the norm of the logit gradient g_i (``embeddings.logit_gradients``). Like GraNd
(``grand.py``, DeepCore ``deepcore/methods/grand.py``: DeepCore has no EL2N) the R models
are the caller's independent warm-ups (``--repeats``; the paper averages 10 initialisations).
The top-k (per class when balanced) are kept, ties to the lower position; weights 1.
Scores are computed batch by batch on each shard (shard actors when a pool is given), so
only one float per example is held and streamed data works.
"""

from __future__ import annotations

import torch

from raypkg.selection.embeddings import shard_mean_scores
from raypkg.selection.methods.grand import top_k
from raypkg.selection.registry import Picks, SelectionContext, register_selector


def error_norm(g: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """||softmax(z) - onehot(y)|| = ||g||, per row."""
    return g.double().norm(dim=1)


@register_selector("el2n", "EL2N: top-k mean ||softmax - onehot|| over R warm-up repeats",
                   uses_repeats=True, streams=True, scores=True)
def el2n(ctx: SelectionContext) -> Picks:
    scores = ctx.per_example.map(shard_mean_scores, ctx.models, error_norm, ctx.per_example.device,
                                  ctx.precision)
    picks = torch.cat([positions[top_k(scores[positions], k)] for positions, k in ctx.blocks()])
    return Picks(picks, torch.ones(len(picks), dtype=torch.float64), scores[picks], all_scores=scores)
