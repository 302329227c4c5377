"""Glister (Killamsetty et al., AAAI 2021, Sec. 4, Alg. 1): greedy subset selection that
maximises a Taylor approximation of the validation log-likelihood after one step.

The gain of adding example i is e_i . grad_val, where grad_val is the mean last-layer
gradient of the validation loss. After each pick (or each batch of ``batch`` picks) the
model is moved by the Taylor step theta <- theta0 - eta * sum_{j picked} e_j and grad_val
is recomputed there. For the last layer that step is exact: the features h of the
validation set do not depend on the last layer, so its logits move by
dz_v = -eta * sum_j g_j (1 + h_v . h_j) (``EmbeddingKind.logit_shift``) and
grad_val = mean_v [g'_v, g'_v h_v^T] with g'_v = softmax(z_v + dz_v) - onehot(y_v).

DeepCore's Glister never applies that update (it reuses the first grad_val), which
turns it into a static top-k on e_i . grad_val; here the update is real. Without a
validation set the class's own training examples serve as one (DeepCore's default);
with ``balance`` each class is selected against its own validation examples.
"""

from __future__ import annotations

import math

import torch

from raypkg.selection.embeddings import EmbeddingKind, logit_gradients
from raypkg.selection.registry import Picks, SelectionContext, register_selector

MAX_UPDATES_AUTO = 64


def glister_greedy(g: torch.Tensor, h: torch.Tensor, z_val: torch.Tensor, h_val: torch.Tensor,
                   y_val: torch.Tensor, budget: int, eta: float, batch: int = 1,
                   kind: EmbeddingKind = EmbeddingKind("full")) -> tuple[torch.Tensor, torch.Tensor]:
    """Greedy Glister on one block. Returns (positions in the block, gain at pick time).

    ``g``, ``h``: the candidates' logit gradients and features; ``z_val``, ``h_val``,
    ``y_val``: the validation logits, features and labels at theta0. ``batch`` picks are
    taken between two Taylor updates (1: after every pick); ties go to the lower position.
    """
    z_val = z_val.double()  # the logits and their Taylor shifts accumulate in float64
    emb = kind.embed(g, h)  # gains in the embedding's precision (float32 from the pipeline)
    taken = torch.zeros(len(g), dtype=torch.bool, device=g.device)
    dz = torch.zeros_like(z_val)
    picks, gains, count = [], [], 0
    while count < budget:
        grad_val = kind.mean_vector(logit_gradients(z_val + dz, y_val).to(h_val.dtype), h_val)
        gain = emb.dot(grad_val).masked_fill(taken, float("-inf"))
        take = torch.sort(gain, descending=True, stable=True).indices[:min(batch, budget - count)]
        picks.append(take)
        gains.append(gain[take])
        taken[take] = True
        count += len(take)
        if count < budget:
            dz += eta * kind.logit_shift(h_val, g[take], h[take])
    if not picks:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=torch.float64)
    return torch.cat(picks), torch.cat(gains)


def glister_job(g, h, z_val, h_val, y_val, budget, eta, batch, kind):
    """One class's Glister (module-level so that shard actors can run it)."""
    return glister_greedy(g, h, z_val, h_val, y_val, budget, eta, batch, kind)


@register_selector("glister", "Glister: greedy e_i . grad_val with the real Taylor update of the "
                              "validation gradient after every batch of picks",
                   options={"eta": None, "batch": 0})
def glister(ctx: SelectionContext) -> Picks:
    """Options: ``eta`` (Taylor step size; default the training lr), ``batch`` (picks per
    update; 0: ceil(budget / 64) per class, i.e. at most 64 updates)."""
    eta = float(ctx.options["eta"]) if ctx.options["eta"] is not None else ctx.lr
    z, h = ctx.logits_features()
    g = logit_gradients(z, ctx.data.y.cpu())
    if ctx.val is not None:
        z_v, h_v, y_v = ctx.val_logits_features()
    jobs, sizes, blocks = [], [], ctx.blocks()
    for c, (positions, k) in enumerate(blocks):
        if ctx.val is None:
            val_pos = positions
            zv, hv, yv = z[val_pos], h[val_pos], ctx.data.y.cpu()[val_pos]
        else:
            val_pos = torch.nonzero(y_v == c).squeeze(1) if ctx.balance else torch.arange(len(y_v))
            if len(val_pos) == 0:
                val_pos = torch.arange(len(y_v))
            zv, hv, yv = z_v[val_pos], h_v[val_pos], y_v[val_pos]
        batch = int(ctx.options["batch"]) or max(1, math.ceil(k / MAX_UPDATES_AUTO))
        jobs.append((g[positions], h[positions], zv, hv, yv, k, eta, batch, ctx.kind))
        sizes.append(len(positions) * max(1, k // batch))
    results = ctx.run_blocks(glister_job, jobs, sizes)
    picks = torch.cat([positions[p] for (positions, _), (p, _) in zip(blocks, results)])
    scores = torch.cat([s for _, s in results])
    return Picks(picks, torch.ones(len(picks), dtype=torch.float64), scores)
