"""The quasi-Hessian product B v of DeltaGrad: compact L-BFGS with a curvature safeguard.

Compact representation (Byrd, Nocedal, Schnabel 1994, Theorem 2.3), as restated in the
spec: from the newest m pairs S, Y in R^{p x m} (oldest first),

    sigma = y_m^T s_m / s_m^T s_m          (newest pair; clipped below at ``min_sigma``)
    A = S^T Y,  L = strictly lower part of A,  D = diag(diag(A))
    M = [[-D, L^T], [L, sigma S^T S]]      (2m x 2m)
    B v = sigma v - [Y, sigma S] M^{-1} [Y^T v ; sigma S^T v]

This equals m BFGS updates of B_0 = sigma I with the same pairs, oldest first
(tests/unit/test_deltagrad_core.py builds that dense matrix and compares). M is LU-factored
once per new pair and reused by every product until the next one; everything stays on
the pairs' device and dtype.
"""

from __future__ import annotations

from collections import deque

import torch


class CompactLBFGS:
    """B v for the pairs (S, Y) given as [p, k] tensors, oldest column first."""

    def __init__(self, S: torch.Tensor, Y: torch.Tensor, min_sigma: float = 1e-3):
        s_new, y_new = S[:, -1], Y[:, -1]
        self.sigma = max(float(y_new @ s_new) / float(s_new @ s_new), min_sigma)
        A = S.t() @ Y
        L = torch.tril(A, diagonal=-1)
        D = torch.diag(torch.diagonal(A))
        M = torch.cat([torch.cat([-D, L.t()], 1), torch.cat([L, self.sigma * (S.t() @ S)], 1)], 0)
        self.lu, self.pivots = torch.linalg.lu_factor(M)
        self.W = torch.cat([Y, self.sigma * S], 1)  # [p, 2k]

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        q = torch.linalg.lu_solve(self.lu, self.pivots, (self.W.t() @ v).unsqueeze(1)).squeeze(1)
        return self.sigma * v - self.W @ q


class CurvaturePairs:
    """The newest ``m`` accepted pairs (s, y) and the L-BFGS operator built from them.

    A pair with s^T y <= eps ||s||^2 is skipped (it would make B indefinite, or s is
    zero, as at the first iteration); ``operator`` is None until ``m`` pairs are held,
    and callers then take an explicit step instead.
    """

    def __init__(self, m: int, eps: float = 1e-8, min_sigma: float = 1e-3):
        self.m, self.eps, self.min_sigma = m, eps, min_sigma
        self.pairs: deque = deque(maxlen=m)
        self.operator: CompactLBFGS | None = None
        self.skipped = 0

    def add(self, s: torch.Tensor, y: torch.Tensor) -> bool:
        """Offer a pair; returns whether it was accepted (and the operator refreshed)."""
        if float(s @ y) <= self.eps * float(s @ s):
            self.skipped += 1
            return False
        self.pairs.append((s.clone(), y.clone()))
        if len(self.pairs) >= self.m:
            S = torch.stack([p[0] for p in self.pairs], 1)
            Y = torch.stack([p[1] for p in self.pairs], 1)
            self.operator = CompactLBFGS(S, Y, self.min_sigma)
        return True

    def __len__(self) -> int:
        return len(self.pairs)
