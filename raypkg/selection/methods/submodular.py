"""Submodular selection (DeepCore: Guo, Zhao, Bai, DEXA 2022, Sec. 3.7; the functions as in
Iyer, Khargonkar, Bilmes, Asnani, ALT 2021): per class, the greedy maximiser of a
submodular function of the similarity between the examples' penultimate features h
(``SelectionContext.logits_features``).

Similarity, DeepCore's ``cossim``: s_ij = (1 + cos(h_i, h_j)) / 2, in [0, 1] (a zero h
counts as cosine 0). ``--option space=gradients`` takes the cosine of the last-layer
gradient embeddings (``--embedding``) instead, which is what DeepCore's code uses.
With S the picks and V the class:

- facility-location: F(S) = sum_{i in V} max_{j in S} s_ij;
- graphcut: F(S) = sum_{i in V, j in S} s_ij - lam sum_{i, j in S} s_ij, so
  gain(x | S) = sum_{i in V} s_ix - lam (s_xx + 2 sum_{j in S} s_jx)  (``--option lam``, 1);
- logdet: F(S) = log det L_S with L = s + ridge I (``--option ridge``, 1: gains >= 0 and
  finite once |S| passes the features' rank), gain(x | S) = log(L_xx - L_xS L_S^-1 L_Sx),
  the Schur complement, kept for every x by an incremental Cholesky factor (Chen, Zhang,
  Zhou, NeurIPS 2018, Alg. 1).

Optimizers, DeepCore's (``--option optimizer``; default lazy, DeepCore's command-line default):

- naive: each step evaluates every unpicked gain (NaiveGreedy);
- lazy: Minoux's lazy greedy (LazyGreedy): stale gains are upper bounds; the top one is
  re-evaluated until the top is fresh; the same picks as naive for a submodular F;
- stochastic: each step the best of ceil(n / k ln(1 / eps)) random unpicked points,
  eps = 0.01 (StochasticGreedy; Mirzasoleiman et al., AAAI 2015);
- approximate-lazy: lazy, but the top point is taken once its fresh gain reaches 0.9 x its
  stale bound (ApproximateLazyGreedy; for a negative bound, within 10% below it).

Gains within ``tie_rtol`` of the best count as equal; the lowest position wins. Facility
location with naive or lazy runs the exact incremental greedy of
``raypkg.selection.facility_location`` (the same picks). Weights are 1 (DeepCore trains the
subset unweighted); a pick's score is its marginal gain.

Memory: one class at a time (a job per class, on the shard actors with ``--actors``), its
n_c x n_c similarity block in float32: 6,000 examples (a 60k set over 10 classes) hold
144 MB; never N x N over all classes. logdet adds an n_c x k_c Cholesky factor.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from raypkg.errors import UsageError, choose
from raypkg.selection.embeddings import Embedding
from raypkg.selection.facility_location import facility_location, pick_best, tie_rtol
from raypkg.selection.registry import Picks, SelectionContext, register_selector

OPTIMIZERS = ("naive", "lazy", "stochastic", "approximate-lazy")
SPACES = ("features", "gradients")
STOCHASTIC_EPSILON = 0.01
APPROXIMATE_BETA = 0.9  # DeepCore's ApproximateLazyGreedy


def cosine_similarity(x: torch.Tensor | Embedding) -> torch.Tensor:
    """(1 + cos) / 2 between the rows of ``x`` (features, or an embedding's dot products)."""
    if isinstance(x, Embedding):
        norms = x.norms().clamp_min(1e-12)
        gram = x.kernel(x) / norms[:, None] / norms[None, :]
    else:
        u = F.normalize(x, dim=1)
        gram = u @ u.T
    return gram.mul_(0.5).add_(0.5)


# ---------------------------------------------------------------------------- functions
# Each keeps the state of the picks so far: ``gains(candidates)`` -> float64 marginal
# gains, ``add(j)`` records a pick.

class FacilityLocation:
    def __init__(self, sim: torch.Tensor):
        self.sim, self.cover = sim, torch.zeros(len(sim), dtype=sim.dtype, device=sim.device)

    def gains(self, cand: torch.Tensor) -> torch.Tensor:  # sim is symmetric: its rows are columns
        return (self.sim[cand] - self.cover).clamp_min_(0).sum(1, dtype=torch.float64)

    def add(self, j: int) -> None:
        torch.maximum(self.cover, self.sim[j], out=self.cover)


class GraphCut:
    def __init__(self, sim: torch.Tensor, lam: float = 1.0):
        self.sim, self.lam = sim, float(lam)
        self.base = sim.sum(0, dtype=torch.float64) - self.lam * sim.diagonal().double()
        self.inside = torch.zeros(len(sim), dtype=torch.float64, device=sim.device)  # sum_{j in S} s_jx

    def gains(self, cand: torch.Tensor) -> torch.Tensor:
        return self.base[cand] - 2.0 * self.lam * self.inside[cand]

    def add(self, j: int) -> None:
        self.inside += self.sim[j].double()


class LogDeterminant:
    """d2[x] = L_xx - L_xS L_S^-1 L_Sx = L_xx - ||c_x||^2 with c the rows of the Cholesky
    factor of L_S extended to every x; a pick j adds the column e = (L_j - c c_j) / sqrt(d2_j)."""

    def __init__(self, sim: torch.Tensor, budget: int, ridge: float = 1.0):
        self.sim, self.ridge = sim, float(ridge)
        self.d2 = sim.diagonal().double() + self.ridge
        self.c = torch.zeros(len(sim), max(int(budget), 1), dtype=sim.dtype, device=sim.device)
        self.t = 0

    def gains(self, cand: torch.Tensor) -> torch.Tensor:
        return self.d2[cand].clamp_min(1e-300).log()

    def add(self, j: int) -> None:
        c = self.c[:, :self.t]
        e = (self.sim[j] - c @ c[j]).double()
        e[j] += self.ridge
        e /= self.d2[j].clamp_min(1e-300).sqrt()
        self.c[:, self.t] = e.to(self.c.dtype)
        self.d2 -= e * e
        self.t += 1


# ---------------------------------------------------------------------------- optimizers
# ``fn`` one of the functions above over n points; each returns (picks, gains) in order.

def naive_greedy(fn, n: int, budget: int, rtol: float, sample: int | None = None,
                 generator: torch.Generator | None = None, **_) -> tuple[list[int], list[float]]:
    """Each step the best gain among the unpicked points, or among ``sample`` of them drawn
    at random (stochastic greedy)."""
    free = torch.ones(n, dtype=torch.bool)
    picks, gains = [], []
    for _ in range(budget):
        cand = torch.nonzero(free).squeeze(1)
        if sample is not None:
            cand = cand[torch.randperm(len(cand), generator=generator)[:sample]].sort().values
        gain = fn.gains(cand.to(_device(fn))).cpu()
        best = int(pick_best(gain, rtol))
        j = int(cand[best])
        picks.append(j)
        gains.append(float(gain[best]))
        free[j] = False
        fn.add(j)
    return picks, gains


def lazy_greedy(fn, n: int, budget: int, rtol: float, approximate: float | None = None, batch: int = 32,
                **_) -> tuple[list[int], list[float]]:
    """Lazy greedy; ``approximate=beta``: DeepCore's approximate variant (see above). The
    top stale bound is re-evaluated together with the next ``batch - 1`` largest stale ones
    (one tensor op instead of one per point; it only tightens bounds, the rule is unchanged)."""
    bound = fn.gains(torch.arange(n, device=_device(fn))).cpu()
    fresh = torch.ones(n, dtype=torch.bool)  # bound[x] is x's gain given the current picks
    picks, gains = [], []
    for _ in range(budget):
        while True:
            j = int(pick_best(bound, rtol))
            top = float(bound[j])
            if fresh[j]:
                break
            stale = bound.masked_fill(fresh, float("-inf"))
            cand = torch.cat([torch.tensor([j]), stale.topk(min(batch, n)).indices]).unique()
            cand = cand[~fresh[cand] & (bound[cand] > float("-inf"))]
            bound[cand] = fn.gains(cand.to(_device(fn))).cpu()
            fresh[cand] = True
            if approximate is not None and float(bound[j]) >= top - (1.0 - approximate) * abs(top):
                break
        picks.append(j)
        gains.append(float(bound[j]))
        bound[j] = float("-inf")
        fresh[:] = False
        fn.add(j)
    return picks, gains


def stochastic_greedy(fn, n: int, budget: int, rtol: float, generator: torch.Generator | None = None,
                      epsilon: float = STOCHASTIC_EPSILON, **_) -> tuple[list[int], list[float]]:
    sample = max(1, math.ceil(n / max(budget, 1) * math.log(1.0 / epsilon)))
    return naive_greedy(fn, n, budget, rtol, sample=sample, generator=generator)


def _device(fn) -> torch.device:
    return fn.sim.device


def maximize(fn, n: int, budget: int, optimizer: str, rtol: float, generator: torch.Generator | None = None
             ) -> tuple[list[int], list[float]]:
    """Greedy maximisation of ``fn`` with one of DeepCore's optimizers."""
    if optimizer == "naive":
        return naive_greedy(fn, n, budget, rtol)
    if optimizer == "lazy":
        return lazy_greedy(fn, n, budget, rtol)
    if optimizer == "approximate-lazy":
        return lazy_greedy(fn, n, budget, rtol, approximate=APPROXIMATE_BETA)
    return stochastic_greedy(fn, n, budget, rtol, generator=generator)


def submodular_greedy(sim: torch.Tensor, budget: int, function: str, optimizer: str = "lazy",
                      lam: float = 1.0, ridge: float = 1.0, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(picks [budget] in greedy order, their marginal gains) of ``function`` on one block."""
    n = len(sim)
    if not 0 <= budget <= n:
        raise UsageError(f"budget {budget} is larger than the class ({n} points)")
    rtol = tie_rtol(sim.dtype)
    if function == "facility-location" and optimizer in ("naive", "lazy"):
        result = facility_location([sim], [budget])[0]  # the exact greedy, incremental gains
        return result.picks, result.gains
    fn = {"facility-location": lambda: FacilityLocation(sim), "graphcut": lambda: GraphCut(sim, lam),
          "logdet": lambda: LogDeterminant(sim, budget, ridge)}[function]()
    gen = torch.Generator().manual_seed(int(seed) * 7_919 + 3)
    picks, gains = maximize(fn, n, budget, optimizer, rtol, gen)
    return torch.tensor(picks, dtype=torch.long), torch.tensor(gains, dtype=torch.float64)


def submodular_job(x, budget: int, function: str, optimizer: str, lam: float, ridge: float,
                   seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One class: similarity block and greedy (module-level so that shard actors can run it)."""
    return submodular_greedy(cosine_similarity(x), budget, function, optimizer, lam, ridge, seed)


def check_submodular_options(opts: dict) -> None:
    choose("submodular optimizer", str(opts["optimizer"]), OPTIMIZERS)
    choose("similarity space", str(opts["space"]), SPACES)
    if float(opts.get("ridge", 1.0)) <= 0:
        raise UsageError(f"logdet ridge must be > 0, got {opts['ridge']}")


def submodular_selector(function: str):
    def select_fn(ctx: SelectionContext) -> Picks:
        opts = ctx.options
        optimizer, space = str(opts["optimizer"]), str(opts["space"])
        lam, ridge = float(opts.get("lam", 1.0)), float(opts.get("ridge", 1.0))
        blocks = [(pos, k) for pos, k in ctx.blocks() if k > 0]
        device = ctx.device if ctx.pool is None else torch.device("cpu")
        if space == "features":
            h = ctx.logits_features()[1]
            xs = [h[pos].to(device) for pos, _ in blocks]
        else:
            g, h = ctx.grads()
            xs = [ctx.kind.embed(g[pos].to(device), h[pos].to(device)) for pos, _ in blocks]
        jobs = [(x, k, function, optimizer, lam, ridge, ctx.seed + c) for c, (x, (_, k)) in
                enumerate(zip(xs, blocks))]
        results = ctx.run_blocks(submodular_job, jobs, [len(pos) ** 2 for pos, _ in blocks])
        picks = torch.cat([pos[p] for (pos, _), (p, _) in zip(blocks, results)]) if blocks else \
            torch.zeros(0, dtype=torch.long)
        gains = torch.cat([g for _, g in results]) if blocks else torch.zeros(0, dtype=torch.float64)
        return Picks(picks, torch.ones(len(picks), dtype=torch.float64), gains)

    return select_fn


DEFAULTS = {"optimizer": "lazy", "space": "features"}
register_selector("facility-location", "submodular facility location on (1 + cos) / 2 of penultimate "
                  "features, per class (DeepCore), weights 1",
                  options=DEFAULTS, check_options=check_submodular_options)(submodular_selector("facility-location"))
register_selector("graphcut", "submodular graph cut on (1 + cos) / 2 of penultimate features, per class "
                  "(DeepCore), weights 1", options={**DEFAULTS, "lam": 1.0},
                  check_options=check_submodular_options)(submodular_selector("graphcut"))
register_selector("logdet", "submodular log-determinant of (1 + cos) / 2 + ridge I on penultimate features, "
                  "per class (DeepCore), weights 1", options={**DEFAULTS, "ridge": 1.0},
                  check_options=check_submodular_options)(submodular_selector("logdet"))
