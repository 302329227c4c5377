"""Facility location: greedy maximisation of F(S) = sum_i max_{j in S} sim(i, j).

F is monotone submodular, so the greedy (add the j with the largest marginal gain
``sum_i max(0, sim(i, j) - cover_i)``) is within 1 - 1/e of the optimum (Nemhauser,
Wolsey, Fisher 1978). CRAIG (Mirzasoleiman et al., ICML 2020, Sec. 3) takes
sim = max(d) - d for Euclidean gradient distances d and weights each picked point by the
size of its cluster: the number of points for which it is the most similar pick.

Three exact greedy implementations with one tie-break, all in torch on whatever device
the tensors are on. Gains that are equal in exact arithmetic are common (sim is
symmetric: with j and l both uncovered, gain_j - gain_l is often a sum that cancels), and
rounding would then decide; so every gain within ``tie_rtol`` (relative) of the largest
counts as tied and the lowest position among them is picked:

- ``greedy_batched``: many small blocks padded into one [B, n, n] tensor, every block's
  step done at once (CREST's small per-class mini-batch coresets: Yang, Xie, Mirzasoleiman, "Towards
  sustainable learning: coresets for data-efficient deep learning", ICML 2023).
- ``greedy_dense``: one large block; gains are kept and only the rows whose cover grew
  are re-read after each pick (exact, no lazy heap), so a step costs O(changed * n)
  instead of O(n^2) (and fewer row reads than a lazy greedy's re-evaluations).
- ``greedy_stream``: classes too large for an n x n matrix: stochastic greedy
  (Mirzasoleiman et al., AAAI 2015) over distances computed in row chunks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch

from raypkg.errors import UsageError

SMALL_BLOCK = 512  # blocks up to this size go through the padded batched greedy
MAX_DENSE = 12_288  # larger blocks are never held as an n x n matrix


@dataclass
class FacilityLocationResult:
    """Picks (positions in the block, in greedy order), their marginal gains, cluster sizes."""

    picks: torch.Tensor  # long [k]
    gains: torch.Tensor  # float64 [k]
    weights: torch.Tensor  # float64 [k], cluster sizes (>= 1)

    @property
    def objective(self) -> torch.Tensor:
        """F after each pick: the running sum of the marginal gains."""
        return torch.cumsum(self.gains, 0)


def tie_rtol(dtype: torch.dtype) -> float:
    """Relative tolerance within which gains count as equal (rounding of the sim dtype)."""
    return 1e-9 if dtype == torch.float64 else 1e-5


def pick_best(gain: torch.Tensor, rtol: float) -> torch.Tensor:
    """Per row of ``gain`` (-inf = not allowed): the lowest position whose gain is within
    ``rtol`` of the row's largest."""
    top = gain.amax(-1, keepdim=True)
    tied = gain >= top - rtol * top.abs()
    return tied.to(torch.uint8).argmax(-1)


def _check_budget(budget: int, size: int, what: str = "block") -> int:
    if int(budget) != budget or budget < 0:
        raise UsageError(f"facility-location budget must be a non-negative integer, got {budget}")
    if budget > size:
        raise UsageError(f"budget {int(budget)} is larger than the {what} ({size} points)")
    return int(budget)


def similarity_from_distances(d: torch.Tensor, valid: torch.Tensor | None = None) -> torch.Tensor:
    """CRAIG's similarity max(d) - d (>= 0), per block for a batch [B, n, n] with ``valid`` [B, n]."""
    if d.dim() == 2:
        return d.max() - d
    mask = valid[:, :, None] & valid[:, None, :]
    top = d.masked_fill(~mask, float("-inf")).amax(dim=(1, 2), keepdim=True).clamp_min(0)
    return (top - d).masked_fill(~mask, 0.0)


def objective(sim: torch.Tensor, picks: Sequence[int]) -> float:
    """F(S) for one block (reference value for tests and benchmarks)."""
    if len(picks) == 0:
        return 0.0
    return sim[:, torch.as_tensor(list(picks), dtype=torch.long)].amax(1).clamp_min(0).double().sum().item()


def cluster_weights(sim: torch.Tensor, picks: torch.Tensor, valid: torch.Tensor | None = None,
                    by_column: torch.Tensor | None = None) -> torch.Tensor:
    """Cluster sizes: each (valid) row counts for its most similar pick (ties: the earlier
    pick); a picked point always counts for itself, so every weight is >= 1.
    ``by_column`` (sim transposed, contiguous; ``sim`` itself when symmetric) makes the
    picks' columns a row gather."""
    if len(picks) == 0:
        return torch.zeros(0, dtype=torch.float64)
    if by_column is not None:
        owner = by_column.index_select(0, picks.to(by_column.device)).argmax(0)
    else:
        owner = sim[:, picks].argmax(1)
    owner[picks] = torch.arange(len(picks), device=owner.device)
    if valid is not None:
        owner = owner[valid]
    return torch.bincount(owner, minlength=len(picks)).double()


def greedy_batched(sim: torch.Tensor, budgets: Sequence[int] | torch.Tensor,
                   valid: torch.Tensor | None = None) -> list[FacilityLocationResult]:
    """Greedy facility location on B padded blocks at once.

    ``sim`` [B, n, n] (sim[b, i, j]: how well pick j covers point i), ``valid`` [B, n]
    marks the real points of each block (padding never covers, is never covered, is
    never picked), ``budgets`` [B]. Each step evaluates every block's gains in one
    tensor op: relu(sim - cover).sum over the covered points.
    """
    b, n, _ = sim.shape
    device = sim.device
    valid = torch.ones(b, n, dtype=torch.bool, device=device) if valid is None else valid.to(device)
    budgets = torch.as_tensor(budgets, dtype=torch.long, device=device).reshape(b)
    sizes = valid.sum(1)
    for i in range(b):
        _check_budget(int(budgets[i]), int(sizes[i]))
    sim = sim.masked_fill(~valid[:, :, None], 0.0)
    kmax = int(budgets.max()) if b else 0
    cover = torch.zeros(b, n, dtype=sim.dtype, device=device)
    taken = ~valid.clone()
    picks = torch.full((b, kmax), -1, dtype=torch.long, device=device)
    gains = torch.zeros(b, kmax, dtype=torch.float64, device=device)
    rows = torch.arange(b, device=device)
    rtol = tie_rtol(sim.dtype)
    for t in range(kmax):
        active = budgets > t
        gain = (sim - cover[:, :, None]).clamp_min_(0).sum(1, dtype=torch.float64)
        gain.masked_fill_(taken, float("-inf"))
        best = pick_best(gain, rtol)
        best_gain = gain[rows, best]
        picks[:, t] = torch.where(active, best, picks[:, t])
        gains[:, t] = torch.where(active, best_gain, gains[:, t])
        taken[rows[active], best[active]] = True
        new_cover = torch.maximum(cover, sim[rows, :, best])
        cover = torch.where(active[:, None], new_cover, cover)
    out = []
    for i in range(b):
        k = int(budgets[i])
        p = picks[i, :k]
        out.append(FacilityLocationResult(p.cpu(), gains[i, :k].cpu(),
                                          cluster_weights(sim[i], p, valid[i]).cpu()))
    return out


def greedy_dense(sim: torch.Tensor, budget: int, chunk_rows: int = 1024,
                 symmetric: bool | None = None) -> FacilityLocationResult:
    """Greedy facility location on one block [n, n], exact, with incremental gains.

    gain_j = sum_i relu(sim[i, j] - cover_i) is kept for every j. When a pick raises
    cover_i from a to a' only the changed rows i move the gains, each by
    -min(relu(sim[i, j] - a), a' - a); so a step reads just those rows (the new pick's
    cluster: about 4n rows over a whole run on CRAIG's data, against ~70n candidate
    evaluations of a lazy greedy). Rows are processed ``chunk_rows`` at a time in one
    preallocated buffer: no large temporary is allocated per step. A pick's column is
    read as a row of ``sim`` when it is symmetric (checked unless ``symmetric`` is given),
    else of a transposed copy, so that every read is contiguous.
    """
    n = sim.shape[0]
    budget = _check_budget(budget, n)
    device = sim.device
    if symmetric is None:
        symmetric = bool(torch.equal(sim, sim.T))
    by_column = sim if symmetric else sim.T.contiguous()  # by_column[j] = sim[:, j]
    buf = torch.empty(min(n, chunk_rows), n, dtype=sim.dtype, device=device)
    gains_now = torch.zeros(n, dtype=torch.float64, device=device)
    for start in range(0, n, chunk_rows):
        block = buf[:min(chunk_rows, n - start)]
        gains_now += torch.clamp_min(sim[start:start + chunk_rows], 0, out=block).sum(0)
    cover = torch.zeros(n, dtype=sim.dtype, device=device)
    picks = torch.empty(budget, dtype=torch.long, device=device)
    gains = torch.empty(budget, dtype=torch.float64, device=device)
    rtol = tie_rtol(sim.dtype)
    for t in range(budget):
        top = float(gains_now.max())  # picked points hold -inf, which the updates keep
        j = int(torch.argmax((gains_now >= top - rtol * abs(top)).to(torch.uint8)))
        picks[t], gains[t] = j, gains_now[j]
        gains_now[j] = float("-inf")
        column = by_column[j]
        changed = torch.nonzero(column > cover).squeeze(1)
        every_row = len(changed) == n  # e.g. the first pick: read sim in place, no gather
        for start in range(0, len(changed), chunk_rows):
            rows = changed[start:start + chunk_rows]
            block = buf[:len(rows)]
            old = cover.index_select(0, rows)
            if every_row:
                torch.sub(sim[start:start + len(rows)], old[:, None], out=block)
            else:
                torch.index_select(sim, 0, rows, out=block)
                block.sub_(old[:, None])
            block.clamp_min_(0)
            torch.minimum(block, (column.index_select(0, rows) - old)[:, None], out=block)
            gains_now -= block.sum(0)
        torch.maximum(cover, column, out=cover)
    return FacilityLocationResult(picks.cpu(), gains.cpu(), cluster_weights(sim, picks, by_column=by_column).cpu())


def greedy_stream(embedding, budget: int, seed: int = 0, epsilon: float = 0.01,
                  chunk: int = 2048) -> FacilityLocationResult:
    """Stochastic greedy over Euclidean distances computed on the fly (no n x n matrix).

    Each step draws ceil(n / k * ln(1 / epsilon)) candidates among the unpicked points
    and adds the best of them (expected (1 - 1/e - epsilon)-approximation). With
    sim = c - d and any c >= max(d), the gains sum_i relu(min_S d_i - d_ij) after the
    first pick do not depend on c, nor does the first pick (argmin_j sum_i d_ij); so no
    pass for max(d) is needed: c = 2 max ||e|| (triangle inequality) is used, and the
    first gain is reported with it.
    """
    n = len(embedding)
    budget = _check_budget(budget, n)
    gen = torch.Generator().manual_seed(int(seed) * 7_919 + 1)
    sample = min(n, max(1, math.ceil(n / max(budget, 1) * math.log(1.0 / epsilon))))
    nearest_d = None  # [n] distance to the closest pick
    owner = torch.full((n,), -1, dtype=torch.long)
    taken = torch.zeros(n, dtype=torch.bool)
    picks, gains = [], []
    c = None
    rtol = tie_rtol(embedding_dtype(embedding))

    def distances_to(cols: torch.Tensor) -> torch.Tensor:
        return embedding.distances(embedding.subset(cols), chunk=chunk).cpu().double()  # [n, s]

    for t in range(budget):
        free = torch.nonzero(~taken).squeeze(1)
        cand = free[torch.randperm(len(free), generator=gen)[:sample]].sort().values
        d = distances_to(cand)
        if c is None:
            c = 2.0 * float(embedding.norms().max())
            gain = (c - d).clamp_min(0).sum(0)
        else:
            gain = (nearest_d[:, None] - d).clamp_min(0).sum(0)
        best = int(pick_best(gain, rtol))
        j = int(cand[best])
        picks.append(j)
        gains.append(float(gain[best]))
        taken[j] = True
        col = d[:, best]
        closer = col < nearest_d if nearest_d is not None else torch.ones(n, dtype=torch.bool)
        nearest_d = col.clone() if nearest_d is None else torch.minimum(nearest_d, col)
        owner[closer] = t
        owner[j] = t
    weights = torch.bincount(owner, minlength=budget).double()
    return FacilityLocationResult(torch.tensor(picks, dtype=torch.long), torch.tensor(gains, dtype=torch.float64),
                                  weights)


def embedding_dtype(embedding) -> torch.dtype:
    return embedding.sq_norms()[:0].dtype


def pad_blocks(sims: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack square blocks of different sizes into [B, n_max, n_max] plus a valid mask."""
    n = max((s.shape[0] for s in sims), default=0)
    ref = sims[0]
    out = ref.new_zeros(len(sims), n, n)
    valid = torch.zeros(len(sims), n, dtype=torch.bool, device=ref.device)
    for i, s in enumerate(sims):
        out[i, :len(s), :len(s)] = s
        valid[i, :len(s)] = True
    return out, valid


def facility_location(sims: Sequence[torch.Tensor], budgets: Sequence[int],
                      small_block: int = SMALL_BLOCK) -> list[FacilityLocationResult]:
    """Greedy facility location on several blocks: small ones padded and batched on the
    device in one go, larger ones one at a time with the incremental greedy."""
    if len(sims) != len(budgets):
        raise ValueError("one budget per block")
    results: list[FacilityLocationResult | None] = [None] * len(sims)
    small = [i for i, s in enumerate(sims) if s.shape[0] <= small_block]
    if small:
        batch, valid = pad_blocks([sims[i] for i in small])
        for i, res in zip(small, greedy_batched(batch, [budgets[i] for i in small], valid)):
            results[i] = res
    for i, s in enumerate(sims):
        if results[i] is None:
            results[i] = greedy_dense(s, budgets[i])
    return results  # type: ignore[return-value]


def embedding_facility_location(embeddings: Sequence, budgets: Sequence[int], *, seed: int = 0,
                                small_block: int = SMALL_BLOCK, max_dense: int = MAX_DENSE,
                                chunk: int = 2048, dtype: torch.dtype = torch.float32
                                ) -> list[FacilityLocationResult]:
    """CRAIG's per-block selection from embeddings: distances (in row chunks), sim =
    max(d) - d, greedy, cluster-size weights. Small blocks are batched on the device,
    blocks above ``max_dense`` points go through the streaming stochastic greedy."""
    out: list[FacilityLocationResult | None] = [None] * len(embeddings)
    for emb, k in zip(embeddings, budgets):
        _check_budget(k, len(emb), "class")
    small = [i for i, emb in enumerate(embeddings) if len(emb) <= small_block]
    if small:
        sims = [similarity_from_distances(embeddings[i].to(dtype).distances(chunk=chunk)) for i in small]
        batch, valid = pad_blocks(sims)
        for i, res in zip(small, greedy_batched(batch, [budgets[i] for i in small], valid)):
            out[i] = res
    for i, (emb, k) in enumerate(zip(embeddings, budgets)):
        if out[i] is not None:
            continue
        if len(emb) > max_dense:  # one large block at a time: at most one n x n matrix alive
            out[i] = greedy_stream(emb.to(dtype), k, seed=seed + i, chunk=chunk)
        else:
            sim = similarity_from_distances(emb.to(dtype).distances(chunk=chunk))  # exactly symmetric
            out[i] = greedy_dense(sim, k, symmetric=True)
    return out  # type: ignore[return-value]
