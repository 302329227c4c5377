"""Subset sizes: a fraction or a budget, split over classes by their share.

Every selection method asks for exactly ``k`` examples in total and, when balanced,
exactly ``k_c`` from class ``c``: ``k_c`` is ``k * n_c / N`` rounded by the largest-remainder
(Hamilton) method, so the ``k_c`` add up to ``k`` and no ``k_c`` exceeds ``n_c``.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from raypkg.errors import UsageError


def subset_size(n: int, fraction: float | None = None, budget: int | None = None) -> int:
    """``k`` from exactly one of ``fraction`` (0 < f <= 1: round(f * n), at least 1) or ``budget``."""
    if (fraction is None) == (budget is None):
        raise UsageError("give exactly one of --fraction and --budget")
    if fraction is not None:
        fraction = float(fraction)
        if not (0.0 < fraction <= 1.0) or math.isnan(fraction):
            raise UsageError(f"fraction must be in (0, 1], got {fraction:g}")
        return max(1, min(n, int(math.floor(fraction * n + 0.5))))
    if int(budget) != budget or budget < 1:
        raise UsageError(f"budget must be a positive integer, got {budget}")
    if budget > n:
        raise UsageError(f"budget {budget} is larger than the dataset ({n} examples)")
    return int(budget)


def largest_remainder(total: int, shares: Sequence[float]) -> list[int]:
    """Integers proportional to ``shares`` that add up to ``total`` (Hamilton's method).

    Each gets ``floor(total * share / sum)``; the leftover units go to the largest
    fractional parts, ties to the lower position.
    """
    weight = float(sum(shares))
    exact = [total * s / weight for s in shares]
    counts = [int(math.floor(e)) for e in exact]
    order = sorted(range(len(shares)), key=lambda i: (-(exact[i] - counts[i]), i))
    for i in order[: total - sum(counts)]:
        counts[i] += 1
    return counts


def class_counts(y: torch.Tensor, num_classes: int) -> list[int]:
    return torch.bincount(y.cpu(), minlength=num_classes).tolist()


def class_budgets(y: torch.Tensor, num_classes: int, k: int) -> list[int]:
    """Per-class budgets for a balanced selection of ``k`` examples (split by class share)."""
    return largest_remainder(k, class_counts(y, num_classes))


def check_class_budgets(y: torch.Tensor, num_classes: int, budgets: Sequence[int]) -> list[int]:
    """Validate explicit per-class budgets: one per class, each between 0 and the class size."""
    counts = class_counts(y, num_classes)
    if len(budgets) != num_classes:
        raise UsageError(f"per-class budgets need one value per class ({num_classes}), got {len(budgets)}")
    for c, (b, n) in enumerate(zip(budgets, counts)):
        if int(b) != b or b < 0:
            raise UsageError(f"budget for class {c} must be a non-negative integer, got {b}")
        if b > n:
            raise UsageError(f"budget {int(b)} is larger than class {c} ({n} examples)")
    if sum(budgets) == 0:
        raise UsageError("per-class budgets select nothing")
    return [int(b) for b in budgets]
