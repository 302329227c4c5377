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
        self._pending: list[int] = []  # columns added since the last solve
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
    def _index(self, cols) -> torch.Tensor:
        return torch.as_tensor(cols, dtype=torch.long, device=self.device)

    def _factor_rebuild(self) -> None:
        p = self._index(self.passive)
        if len(p):
            self._chol[:len(p), :len(p)] = torch.linalg.cholesky(self.q[p][:, p])

    def _factor_append(self, new: list[int]) -> None:
        """Append the variables ``new`` to P: one block row of the factor,
        L21 = L11^{-1} Q[P, new], L22 = chol(Q[new, new] - L21^T L21)."""
        p, s = len(self.passive), len(new)
        cols = self._index(new)
        q_nn = self.q[cols][:, cols]
        if p:
            low = torch.linalg.solve_triangular(self._chol[:p, :p], self.q[self._index(self.passive)][:, cols],
                                                upper=False)  # [p, s]
            self._chol[p:p + s, :p] = low.T
            q_nn = q_nn - low.T @ low
        factor, info = torch.linalg.cholesky_ex(q_nn)
        if int(info):  # Schur complement not PD by rounding only (Q >= lam I): nudge its diagonal
            eye = torch.eye(s, dtype=q_nn.dtype, device=self.device)
            factor = torch.linalg.cholesky(q_nn + eye * (self.lam * 1e-6))
        self._chol[p:p + s, p:p + s] = factor
        self.passive.extend(new)

    def _factor_keep(self, keep: list[bool]) -> None:
        """Drop variables from P: a dropped suffix just truncates the factor (the factor of
        a leading block is the leading block of the factor); otherwise rebuild it."""
        first_dropped = keep.index(False) if False in keep else len(keep)
        self.passive = [q for q, k in zip(self.passive, keep) if k]
        if any(keep[first_dropped:]):
            self._factor_rebuild()

    def _solve_passive(self) -> torch.Tensor:
        p = len(self.passive)
        rhs = self.b[self._index(self.passive)][:, None]
        return torch.cholesky_solve(rhs, self._chol[:p, :p], upper=False)[:, 0]

    # -- public ------------------------------------------------------------------------
    def add(self, k_col: torch.Tensor, k_diag: float, b_new: float, solve: bool = True) -> torch.Tensor:
        """Add a column: its kernel values with the existing columns ``k_col`` [m], its own
        squared norm ``k_diag``, and its correlation with the target ``b_new``; re-solve
        (unless ``solve`` is False: the columns added since the last solve then enter the
        passive set together, one block update of the factor)."""
        m = self.m
        self._grow(m + 1)
        self._q[m, :m] = k_col.to(self._q)
        self._q[:m, m] = k_col.to(self._q)
        self._q[m, m] = float(k_diag) + self.lam
        self._b[m] = float(b_new)
        self.m = m + 1
        self.x = torch.cat([self.x, self.x.new_zeros(1)])
        self._pending.append(m)
        return self.solve() if solve else self.x

    def gradient(self) -> torch.Tensor:
        """w = b - Q x (the negative gradient; KKT: w_j <= 0 wherever x_j = 0)."""
        return self.b - self.q @ self.x

    def solve(self, tol: float = 1e-12, max_iter: int | None = None) -> torch.Tensor:
        """Lawson-Hanson from the current (feasible) x; returns x.

        Columns added since the last solve first enter the passive set as one block if
        their correlation with the residual is positive (one factor update, one solve);
        the classical one-variable-at-a-time loop then finishes to the KKT point."""
        scale = max(float(self.b.abs().max()) if self.m else 1.0, 1e-300)
        max_iter = max_iter or 3 * self.m + 10
        banned: set[int] = set()
        w = self.gradient()
        enter = [j for j in self._pending if float(w[j]) > tol * scale]
        self._pending = []
        for _ in range(max_iter):
            if not enter:
                w = self.gradient()
                if self.passive:
                    w[self._index(self.passive)] = float("-inf")
                for j in banned:
                    w[j] = float("-inf")
                j = int(w.argmax()) if self.m else 0
                if not self.m or w[j] <= tol * scale:
                    break  # KKT holds
                enter = [j]
            self._factor_append(enter)
            entered, enter = enter, []
            while True:
                z = self._solve_passive()
                p = self._index(self.passive)
                if bool((z > 0).all()):
                    self.x.zero_()
                    self.x[p] = z
                    break
                xp = self.x[p]
                neg = torch.nonzero(z <= 0).squeeze(1)
                gap = xp[neg] - z[neg]  # >= 0 since x >= 0 and z <= 0 there
                ratios = torch.where(gap > 0, xp[neg] / gap.clamp_min(1e-300), torch.zeros_like(gap))
                first = int(neg[ratios.argmin()])  # the variable that hits zero first
                alpha = ratios.min().clamp(0, 1)
                xp = xp + alpha * (z - xp)
                keep = xp > tol * max(float(xp.abs().max()), 1e-300)
                keep[first] = False
                if float(alpha) == 0.0 and len(entered) == 1 and self.passive[first] == entered[0]:
                    banned.add(entered[0])  # it entered with w > 0 only numerically
                self.x.zero_()
                self.x[p[keep]] = xp[keep]
                self._factor_keep(keep.tolist())
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
