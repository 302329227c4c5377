"""LiPT step 1: K disjoint shards of the training set, one per shard model (Ro et al. 2023, Sec. 3).

Stratified by class and seeded: every class's positions are shuffled and cut into K
near-equal parts, so each shard sees every class in the training set's proportions. The
parts that get one extra example rotate from class to class, so shard sizes differ by at
most one beyond what the class counts force.
"""

from __future__ import annotations

import torch

from raypkg.errors import UsageError


def check_shards(y: torch.Tensor, num_classes: int, shards: int) -> None:
    """One line when K shards cannot each get an example of every class present."""
    n = len(y)
    if shards > n:
        raise UsageError(f"shards {shards} is larger than the training set ({n} examples)")
    counts = torch.bincount(y.cpu(), minlength=num_classes)
    present = counts[counts > 0]
    if len(present) and shards > int(present.min()):
        cls = int(torch.nonzero(counts == present.min())[0])
        raise UsageError(f"shards {shards} is larger than class {cls} allows ({int(present.min())} examples; "
                         "every shard gets every class)")


def stratified_shards(y: torch.Tensor, num_classes: int, shards: int, seed: int) -> list[torch.Tensor]:
    """K disjoint position tensors (sorted) that together cover ``range(len(y))``."""
    check_shards(y, num_classes, shards)
    y = y.cpu()
    g = torch.Generator().manual_seed(seed)
    parts: list[list[torch.Tensor]] = [[] for _ in range(shards)]
    offset = 0
    for c in range(num_classes):
        members = torch.nonzero(y == c).flatten()
        if len(members) == 0:
            continue
        members = members[torch.randperm(len(members), generator=g)]
        base, extra = divmod(len(members), shards)
        sizes = [base + ((k - offset) % shards < extra) for k in range(shards)]
        offset = (offset + extra) % shards
        for k, chunk in enumerate(torch.split(members, sizes)):
            parts[k].append(chunk)
    return [torch.sort(torch.cat(p)).values for p in parts]
