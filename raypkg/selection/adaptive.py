"""Training on a subset that is selected again as training goes on: CORDS's adaptive data
subset selection (decile-team/cords, ``dataloader/SL/adaptive``; GradMatch, Killamsetty et
al., ICML 2021, Sec. 4), for `effray run coreset --reselect-every R [--warm-start KAPPA]`
and LiPT's `--reselect R`.

The loop is given the whole training split behind a ``SubsetPlan``; the ``Reselect``
callback replaces the plan's subset at the start of each round by selecting with the model
being trained, under the run's selection config (on Ray Train: on rank 0, broadcast to
every rank). The subset goes into every checkpoint, so a restarted Ray Train run resumes
with the subset it had.

CORDS's warm start (``AdaptiveDSSDataLoader``), for E epochs, kappa and fraction f:

    select_after = int(kappa * E),   warm = round(select_after * f)

epochs [0, warm) train on the full data; epochs [warm, select_after) take no step (they
pay the full-data epochs back: the run sees about as many examples as E subset epochs,
and the LR schedule still runs over E epochs, as CORDS steps its scheduler every epoch);
epochs [select_after, E) train on the subset. The first subset is the run's initial one
(uniform for `run coreset`: a model at initialisation knows nothing; LiPT's from its
merged model) and the rounds come at epochs R, 2R, ...; after a warm start the first
round is at select_after, from the warmed model, then every R epochs. (CORDS keeps its
initial random subset after a warm start until the next multiple of R.)
"""

from __future__ import annotations

import math
import time
from typing import Any

import torch

from raypkg.engine.callbacks import Callback, TrainContext
from raypkg.engine.plans import ShuffledBatches, rank_share
from raypkg.selection.cache import SelectionCache, state_digest
from raypkg.selection.pipeline import SELECTION_EXCLUDE, config_key, select_by_config
from raypkg.selection.registry import SelectionResult
from raypkg.selection.weighting import normalised_weights


def warm_start_epochs(epochs: int, kappa: float, fraction: float) -> tuple[int, int]:
    """(warm, select_after): CORDS's full-data epochs and the epoch the subset takes over."""
    if kappa <= 0:
        return 0, 0
    select_after = int(kappa * epochs)
    return round(select_after * fraction), select_after


class SubsetPlan(ShuffledBatches):
    """Batches of a subset of the ``n`` training positions, under a weighting scheme:
    ``loss`` (weights of mean 1 in the loss), ``sample`` (|S| weighted draws with
    replacement per epoch, unit weights) or ``none``. ``set_subset`` swaps the subset.
    Epochs before ``full_epochs`` train on all ``n`` (unweighted); epochs from there up to
    ``skip_until`` take no step (the warm start above)."""

    def __init__(self, n: int, positions: torch.Tensor, weights: torch.Tensor, scheme: str, cap: float | None,
                 batch_size: int, seed: int, full_epochs: int = 0, skip_until: int = 0):
        super().__init__(n, batch_size, seed)
        self.scheme, self.cap = scheme, cap
        self.full_epochs, self.skip_until = full_epochs, skip_until
        self.set_subset(positions, weights)

    def set_subset(self, positions: torch.Tensor, weights: torch.Tensor) -> None:
        self.positions = positions.cpu().long()
        self.raw_weights = weights.cpu().double()
        normalised = normalised_weights(self.raw_weights, self.cap)
        self.probabilities = normalised.double() / normalised.double().sum()
        self.weights = None
        if self.scheme == "loss":  # aligned with the full split's positions, read per batch
            self.weights = torch.zeros(self.n)
            self.weights[self.positions] = normalised

    def data_of(self, epoch: int) -> str:
        """What epoch ``epoch`` trains on: "full", "skipped" or "subset"."""
        return "full" if epoch < self.full_epochs else "skipped" if epoch < self.skip_until else "subset"

    def order(self, epoch: int, rank: int, world_size: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        m = len(self.positions)
        if self.scheme == "sample":
            picks = torch.multinomial(self.probabilities, m, replacement=True, generator=g)
        else:
            picks = torch.randperm(m, generator=g)
        return rank_share(self.positions[picks], rank, world_size)

    def steps(self, epoch: int, rank: int, world_size: int) -> int:
        size = {"full": self.n, "skipped": 0, "subset": len(self.positions)}[self.data_of(epoch)]
        return self.batch_count(math.ceil(size / world_size)) if size else 0

    def batches(self, ctx: TrainContext):
        data = self.data_of(ctx.epoch)
        if data == "full":
            full = ShuffledBatches(self.n, self.batch_size, self.seed)
            full.drop_last = self.drop_last
            yield from full.batches(ctx)
        elif data == "subset":
            yield from super().batches(ctx)

    def state_dict(self) -> dict[str, Any]:
        return {"positions": self.positions.clone(), "weights": self.raw_weights.clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state:
            self.set_subset(state["positions"], state["weights"])


class Reselect(Callback):
    """Selects again with the model being trained at the start of epochs ``first``,
    ``first + every``, ... (while the plan trains on its subset), with the run's selection
    config; the plan (a ``SubsetPlan``) gets the new subset. In-process, ``cache`` keys each
    round by the model's weights and the epoch, and ``pool`` (shard actors) does the
    per-example work. ``rounds`` records each round (epoch, seconds here, seconds charged:
    rank 0's selection, the original seconds for a cache hit) and ``picks`` its subset.
    Adds ``reselect_s`` (seconds selecting at this epoch's start) and ``subset_size`` to
    each row; a skipped epoch's train loss and accuracy are NaN."""

    def __init__(self, every: int, first: int | None = None, *, cache: SelectionCache | None = None, pool=None):
        self.every, self.first = every, every if first is None else first
        self.cache, self.pool = cache, pool
        self.seconds = 0.0
        self.rounds: list[dict] = []
        self.picks: list[tuple[torch.Tensor, torch.Tensor]] = []  # (positions, weights) of each round

    def is_round(self, epoch: int) -> bool:
        return epoch >= self.first and (epoch - self.first) % self.every == 0

    def on_epoch_start(self, ctx: TrainContext) -> None:
        self.seconds = 0.0
        if not self.is_round(ctx.epoch) or ctx.plan.data_of(ctx.epoch) != "subset":
            return
        t0 = time.perf_counter()
        size = len(ctx.plan.positions)
        positions = torch.zeros(size, dtype=torch.long, device=ctx.device)
        weights = torch.zeros(size, dtype=torch.float64, device=ctx.device)
        charged = 0.0  # rank 0's selection seconds (the original ones for a cache hit)
        if ctx.is_main:
            result, charged = self.select(ctx)
            positions.copy_(result.positions)
            weights.copy_(result.weights)
        ctx.broadcast(positions, src=0)
        ctx.broadcast(weights, src=0)
        ctx.plan.set_subset(positions.cpu(), weights.cpu())
        self.seconds = time.perf_counter() - t0
        self.rounds.append({"epoch": ctx.epoch + 1, "seconds": self.seconds, "charged_s": charged})
        self.picks.append((positions.cpu(), weights.cpu()))

    def select(self, ctx: TrainContext) -> tuple[SelectionResult, float]:
        """This round's selection and its seconds (the original ones when it came from the cache)."""
        cfg = ctx.cfg
        key = None
        if self.cache is not None:
            key = config_key(cfg, SELECTION_EXCLUDE, epoch=ctx.epoch, model=state_digest(ctx.model.state_dict()),
                             device=ctx.device.type)
            hit = self.cache.load_selection(key)
            if hit is not None:
                return hit[0], hit[1]["seconds"]
        t0 = time.perf_counter()
        result = select_by_config(cfg, ctx.model, ctx.train, ctx.device, self.pool, seed=cfg.seed + ctx.epoch,
                                  lr=ctx.lr)
        seconds = time.perf_counter() - t0
        if key is not None:
            self.cache.save_selection(key, result, seconds)
        return result, seconds

    def on_epoch_end(self, ctx: TrainContext, row: dict) -> None:
        row["reselect_s"] = self.seconds
        row["subset_size"] = len(ctx.plan.positions)
        if ctx.plan.data_of(ctx.epoch) == "skipped":
            row["train_loss"] = row["train_acc"] = float("nan")

    def state_dict(self) -> dict[str, Any]:
        return {"rounds": list(self.rounds), "picks": list(self.picks)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rounds, self.picks = list(state["rounds"]), list(state["picks"])

    def table(self, index: torch.Tensor, labels: torch.Tensor) -> dict[str, Any]:
        """Every round's subset as one table: round, epoch (1-based), index, weight, label."""
        columns: dict[str, list] = {"round": [], "epoch": [], "index": [], "weight": [], "label": []}
        for r, (info, (positions, weights)) in enumerate(zip(self.rounds, self.picks)):
            columns["round"] += [r] * len(positions)
            columns["epoch"] += [info["epoch"]] * len(positions)
            columns["index"] += index[positions].tolist()
            columns["weight"] += weights.tolist()
            columns["label"] += labels[positions].tolist()
        return columns
