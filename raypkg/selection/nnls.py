"""Non-negative ridge least squares over a growing set of columns (GradMatch's refit).

GradMatch (Killamsetty et al., ICML 2021, Alg. 1) refits the weights of the picked
gradients after every OMP step:

    min_{x >= 0}  ||A_S^T x - t||^2 + lam ||x||^2

Written with the Gram matrix Q = A_S A_S^T + lam I and b = A_S t this is the quadratic
program min_{x >= 0} 1/2 x^T Q x - b^T x, so only dot products of embeddings are needed
(``Embedding.kernel``). ``GramNNLS`` solves it with the Lawson-Hanson active-set method
(Lawson & Hanson 1974, ch. 23) in its normal-equation form, warm-started from the
previous solution each time a column is added; the Cholesky factor of the passive block
grows by one row per added column (O(p^2)) and is rebuilt only when a variable leaves
the passive set.
"""

from __future__ import annotations

import torch


class GramNNLS:
    """min_{x >= 0} 1/2 x^T Q x - b^T x, Q = K + lam I, columns added one at a time (float64)."""

    def __init__(self, lam: float, capacity: int = 64, device: torch.device | str = "cpu"):
        if lam <= 0:
            raise ValueError("GramNNLS needs a positive ridge lam (Q must be positive definite)")
        self.lam = float(lam)
        self.device = torch.device(device)
        self.m = 0
        self._q = torch.zeros(capacity, capacity, dtype=torch.float64, device=self.device)
        self._b = torch.zeros(capacity, dtype=torch.float64, device=self.device)
        self.x = torch.zeros(0, dtype=torch.float64, device=self.device)
        self.passive: list[int] = []  # column numbers with x > 0, in the order of _chol
        self._chol = torch.zeros(capacity, capacity, dtype=torch.float64, device=self.device)

    # -- storage -----------------------------------------------------------------------
    @property
    def q(self) -> torch.Tensor:
        return self._q[:self.m, :self.m]

    @property
    def b(self) -> torch.Tensor:
        return self._b[:self.m]

    def _grow(self, size: int) -> None:
        cap = self._q.shape[0]
        if size <= cap:
            return
        new = max(size, 2 * cap)
        for name in ("_q", "_chol"):
            old = getattr(self, name)
            buf = torch.zeros(new, new, dtype=torch.float64, device=self.device)
            buf[:cap, :cap] = old
            setattr(self, name, buf)
        b = torch.zeros(new, dtype=torch.float64, device=self.device)
        b[:cap] = self._b
        self._b = b

    # -- Cholesky factor of Q[P, P] ----------------------------------------------------
    def _factor_rebuild(self) -> None:
        p = torch.tensor(self.passive, dtype=torch.long, device=self.device)
        if len(p):
            self._chol[:len(p), :len(p)] = torch.linalg.cholesky(self.q[p][:, p])

    def _factor_append(self, j: int) -> None:
        p = len(self.passive)
        col = self.q[torch.tensor(self.passive, dtype=torch.long, device=self.device), j] if p else None
        if p:
            low = torch.linalg.solve_triangular(self._chol[:p, :p], col[:, None], upper=False)[:, 0]
            diag2 = self.q[j, j] - low.dot(low)
            self._chol[p, :p] = low
        else:
            diag2 = self.q[j, j]
        self._chol[p, p] = diag2.clamp_min(self.lam * 1e-6).sqrt()
        self.passive.append(j)

    def _solve_passive(self) -> torch.Tensor:
        p = len(self.passive)
        rhs = self.b[torch.tensor(self.passive, dtype=torch.long, device=self.device)][:, None]
        return torch.cholesky_solve(rhs, self._chol[:p, :p], upper=False)[:, 0]

    # -- public ------------------------------------------------------------------------
    def add(self, k_col: torch.Tensor, k_diag: float, b_new: float) -> torch.Tensor:
        """Add a column: its kernel values with the existing columns ``k_col`` [m], its own
        squared norm ``k_diag``, and its correlation with the target ``b_new``; re-solve."""
        m = self.m
        self._grow(m + 1)
        self._q[m, :m] = k_col.to(self._q)
        self._q[:m, m] = k_col.to(self._q)
        self._q[m, m] = float(k_diag) + self.lam
        self._b[m] = float(b_new)
        self.m = m + 1
        self.x = torch.cat([self.x, self.x.new_zeros(1)])
        return self.solve()

    def gradient(self) -> torch.Tensor:
        """w = b - Q x (the negative gradient; KKT: w_j <= 0 wherever x_j = 0)."""
        return self.b - self.q @ self.x

    def solve(self, tol: float = 1e-12, max_iter: int | None = None) -> torch.Tensor:
        """Lawson-Hanson from the current (feasible) x; returns x."""
        scale = max(float(self.b.abs().max()) if self.m else 1.0, 1e-300)
        max_iter = max_iter or 3 * self.m + 10
        banned: set[int] = set()
        for _ in range(max_iter):
            w = self.gradient()
            if self.passive:
                w[torch.tensor(self.passive, dtype=torch.long, device=self.device)] = float("-inf")
            for j in banned:
                w[j] = float("-inf")
            j = int(w.argmax()) if self.m else 0
            if not self.m or w[j] <= tol * scale:
                break  # KKT holds
            self._factor_append(j)
            while True:
                z = self._solve_passive()
                if bool((z > 0).all()):
                    self.x.zero_()
                    self.x[torch.tensor(self.passive, dtype=torch.long, device=self.device)] = z
                    break
                p = torch.tensor(self.passive, dtype=torch.long, device=self.device)
                xp = self.x[p]
                neg = torch.nonzero(z <= 0).squeeze(1)
                gap = xp[neg] - z[neg]  # >= 0 since x >= 0 and z <= 0 there
                ratios = torch.where(gap > 0, xp[neg] / gap.clamp_min(1e-300), torch.zeros_like(gap))
                first = int(neg[ratios.argmin()])  # the variable that hits zero first
                alpha = ratios.min().clamp(0, 1)
                xp = xp + alpha * (z - xp)
                keep = xp > tol * max(float(xp.abs().max()), 1e-300)
                keep[first] = False
                if float(alpha) == 0.0 and first == len(self.passive) - 1:
                    banned.add(self.passive[-1])  # it entered with w > 0 only numerically
                self.x.zero_()
                self.x[p[keep]] = xp[keep]
                self.passive = [q for q, k in zip(self.passive, keep.tolist()) if k]
                self._factor_rebuild()
                if not self.passive:
                    break
        return self.x


def nnls_ridge(q: torch.Tensor, b: torch.Tensor, lam: float) -> torch.Tensor:
    """One-shot solve of min_{x >= 0} 1/2 x^T (q + lam I) x - b^T x (adds columns in order)."""
    solver = GramNNLS(lam, capacity=len(b), device=q.device)
    q = q.to(torch.float64)
    for j in range(len(b)):
        solver.add(q[j, :j], float(q[j, j]), float(b[j]))
    return solver.x
