"""How a weighted coreset trains: the schemes of the papers, chosen with ``--weighting``.

CRAIG's and GradMatch's weights are skewed (one CRAIG pick can stand for thousands of
examples, the median for one), and per-batch ``sum(w l) / sum(w)`` turns most steps into
single-example steps. The schemes:

- ``loss``: weights capped (``weight_cap``, in units of the mean weight) and normalised
  to mean 1 over the subset; each batch's loss is ``mean(w * l)`` (CREST, Yang et al.
  2023, Sec. 4: cluster-size weights normalised over the selection). Under DDP the
  normalisation is global, since it happens once before the subset is split by rank.
- ``sample``: each epoch draws |S| examples with replacement in proportion to the
  (capped) weights and trains them with unit weights: the multiset that repeats pick i
  w_i times (Mirzasoleiman et al. 2020, Sec. 4), without the variance of big weights in
  one batch.
- ``none``: the picks with unit weights.
"""

from __future__ import annotations

import math

import torch

from raypkg.engine.plans import BatchPlan, WeightedSampling


def normalised_weights(weights: torch.Tensor, cap: float | None = None) -> torch.Tensor:
    """``weights`` scaled to mean 1; with ``cap``, ``min(s * w, cap)`` with the scale s that
    keeps the mean at 1, so that no weight ends above ``cap`` times the mean."""
    w = weights.double() / weights.double().mean()
    if cap is None or math.isinf(cap) or w.max() <= cap:
        return w.float()
    # With the j largest weights at the cap, s = (n - j * cap) / (sum of the others); the
    # smallest j for which the (j+1)-th largest weight stays under the cap is the answer.
    n = len(w)
    ordered = w.sort(descending=True).values
    rest = ordered.flip(0).cumsum(0).flip(0)  # rest[j] = sum of ordered[j:]
    j = torch.arange(n, dtype=torch.float64)
    scale = (n - j * cap) / rest
    first = int(torch.nonzero(ordered * scale <= cap)[0])
    return (w * scale[first]).clamp(max=cap).float()


def training_weights(weights: torch.Tensor, scheme: str, cap: float | None, batch_size: int,
                     seed: int) -> tuple[torch.Tensor | None, BatchPlan | None]:
    """(per-example loss weights, batch plan) for training on a subset under ``scheme``;
    None for either means the engine's default (unit weights, shuffled batches)."""
    if scheme == "none":
        return None, None
    w = normalised_weights(weights, cap)
    if scheme == "loss":
        return w, None
    if scheme == "sample":
        return None, WeightedSampling(w, batch_size, seed)
    raise ValueError(f"unknown weighting {scheme!r}")
