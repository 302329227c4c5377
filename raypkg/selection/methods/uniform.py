"""Uniform random selection: the baseline every coreset method must beat (DeepCore: Guo, Zhao, Bai, DEXA 2022)."""

from __future__ import annotations

import torch

from raypkg.selection.registry import Picks, SelectionContext, register_selector


@register_selector("uniform", "uniform random subset (per class when balanced), weights 1; no model",
                   needs_model=False, streams=True)
def uniform(ctx: SelectionContext) -> Picks:
    gen = ctx.generator()
    picks = [positions[torch.randperm(len(positions), generator=gen)[:k]] for positions, k in ctx.blocks()]
    return Picks(torch.cat(picks), torch.ones(ctx.k, dtype=torch.float64))
