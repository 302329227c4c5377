"""``CrestCallback``: CREST's regions on the engine's loop (spec crest.md, steps 1-8).

At the fit's start and whenever the validity check fails, a region starts
(``start_region``): stratified random subsets of the candidates, one mini-batch coreset per
subset (``raypkg.methods.crest.selection``), weights normalised to mean 1 per coreset batch
(over all ranks), the quadratic model at w0 (``raypkg.methods.crest.quadratic``, one step of its
moving averages per coreset mini-batch), and the coresets handed to the ``CrestPlan``.
After every ``check_interval`` steps of a region, delta = w - w0 is read from the
parameters and the model's prediction compared with the true loss on the region's random
subsets (one eval-mode forward over their union); when the error exceeds
``check_thresh_factor`` times the true loss the next region starts before the next step.
Every ``drop_interval`` epochs, examples whose every loss seen in the last
``watch_interval`` epochs was below ``drop_thresh`` leave the candidates (never below
``min_train_size``).

The quadratic model and the check run the model in eval mode: BatchNorm uses its running
statistics (no batch statistics, no update of the running ones), so L0 at w0 and the
check's true loss are values of one and the same function of the weights.

With an actor pool (``--actors``) and ``overlap``, each region start also dispatches the
selection of the *next* region's coresets to the actors, from a snapshot of the weights
at this region's start, and training goes on; the next region starts with that result
(its coresets one region stale) and waits only if the actors are not done yet.

Under Ray Train DDP every rank runs this callback: rank r selects from its own block of
the region's disjoint random subsets; each coreset mini-batch's L_b, g_b, h_b, the true
loss and the learned-example records are averaged or maxed over the ranks, so every rank
takes the same decisions.
Side computations use the unwrapped model and ``torch.autograd.grad``, never ``.backward()``.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch.nn.functional as F

from raypkg.engine.callbacks import Callback, TrainContext
from raypkg.engine.execution import autocast
from raypkg.engine.loop import weighted_cross_entropy
from raypkg.methods.crest.plan import CrestPlan
from raypkg.methods.crest.quadratic import QuadraticModel, flat_params, gradient_and_hessian_diagonal, region_left
from raypkg.methods.crest.selection import (
    PendingCoresets,
    check_interval,
    coresets_per_region,
    minibatch_coresets,
    select_coresets,
    stratified_subsets,
    submit_coresets,
)

CHECK_FORWARD_MAX = 8192  # examples in one forward of the check (the union of P subsets fits in the usual case)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


@torch.no_grad()
def eval_losses(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str = "fp32",
                max_batch: int = CHECK_FORWARD_MAX) -> torch.Tensor:
    """Per-example cross-entropy in eval mode: one forward over all of ``x`` when it holds
    at most ``max_batch`` examples (else forwards of ``max_batch``). In eval mode no example
    affects another's output (BatchNorm uses its running statistics), so this equals the
    separate forwards of any split of ``x`` up to the order of floating-point sums."""
    was_training = model.training
    model.eval()
    try:
        with autocast(precision, x.device):
            return torch.cat([F.cross_entropy(model(x[i:i + max_batch]).float(), y[i:i + max_batch],
                                              reduction="none") for i in range(0, len(x), max_batch)])
    finally:
        model.train(was_training)


class CrestCallback(Callback):
    """CREST on the engine's loop, with its settings (a config with ``CrestSettings``), the training set's
    size and, for selection on shard actors, their ``actor_pool`` (in-process training only;
    not state). It makes the batch plan it fills (``plan``: pass it to the fit)."""

    def __init__(self, cfg, num_examples: int, actor_pool=None):
        self.cfg, self.n, self.actor_pool = cfg, num_examples, actor_pool
        self.plan = CrestPlan(num_examples, cfg.train_frac, cfg.batch_size)
        self.pending: PendingCoresets | None = None  # the next region's selection on the actors (not state)
        self.last_delta: torch.Tensor | None = None  # the last check's w - w0 (for tests; not state)
        self.quad = QuadraticModel()
        self.candidates = torch.ones(num_examples, dtype=torch.bool)  # the examples still in play
        self.last_seen = torch.full((num_examples,), -1, dtype=torch.long)  # epoch of the last observed loss
        self.last_high = torch.full((num_examples,), -1, dtype=torch.long)  # ... of the last loss >= drop_thresh
        self.last_loss = torch.zeros(num_examples)
        self.random_positions = torch.zeros(0, dtype=torch.long)  # this rank's random subsets (the check set)
        self.check_set: tuple[torch.Tensor, torch.Tensor] | None = None  # their (x, y), read once a region (not state)
        self.w0: torch.Tensor | None = None
        self.regions = 0
        self.region_steps = 0
        self.interval = 1
        self.ratio = 1.0  # first region's curvature norm / the latest one
        self.first_curvature = 0.0
        self.steps = 0
        self.checks: list[dict] = []  # one row per validity check
        self.dropped = 0
        self.selection_s = 0.0
        self.check_s = 0.0
        self.wait_s = 0.0  # of selection_s: waiting for the actors' coresets
        self.coreset_batches = 0  # mini-batches the quadratic models were fitted on (over all regions)

    # ------------------------------------------------------------------ hooks
    def on_fit_start(self, ctx: TrainContext) -> None:
        self.quad.approx_moment = self.cfg.approx_moment
        if not ctx.plan.positions:  # a fresh fit (a resumed one has its region in the plan's state)
            self.start_region(ctx)

    def on_after_backward(self, ctx: TrainContext) -> None:
        if self.cfg.reference_double_step:  # the reference's second loss.backward(): p.grad = 2g
            for param in ctx.model.parameters():
                if param.grad is not None:
                    param.grad.mul_(2)

    def on_step_end(self, ctx: TrainContext) -> None:
        self.steps += 1
        self.region_steps += 1
        if self.region_steps % self.interval == 0 and self.check(ctx):
            self.start_region(ctx)

    def on_epoch_end(self, ctx: TrainContext, row: dict) -> None:
        cfg = self.cfg
        if cfg.drop_learned and (ctx.epoch + 1) % cfg.drop_interval == 0:
            self.drop_learned(ctx)
        row.update({"crest_regions": self.regions, "crest_checks": len(self.checks),
                    "crest_check_interval": self.interval, "crest_candidates": int(self.candidates.sum()),
                    "crest_selection_s": self.selection_s, "crest_check_s": self.check_s})

    def on_fit_end(self, ctx: TrainContext) -> None:
        self.pending = None  # a selection still running for a region that will not come

    # ------------------------------------------------------------------ regions
    def random_subsets(self, ctx: TrainContext, region: int) -> list[torch.Tensor]:
        """This rank's random subsets for region ``region`` (spec step 1), drawn from the
        candidates as they are now, P x batch_num_mul x the latest curvature ratio of them (step 7)."""
        cfg = self.cfg
        in_play = torch.nonzero(self.candidates).squeeze(1)
        size = cfg.subset_size(self.n)
        count = coresets_per_region(cfg.num_minibatch_coreset, cfg.batch_num_mul, self.ratio,
                                    most=len(in_play) // (size * ctx.world_size))
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + 7_919 * region)  # the same on every rank
        subsets = stratified_subsets(in_play, ctx.train.y.cpu(), count * ctx.world_size, size, gen)
        return subsets[ctx.rank * count:(ctx.rank + 1) * count]

    def start_region(self, ctx: TrainContext) -> None:
        """Select this rank's coresets (or take those the actors selected during the last
        region), normalise their weights, fit the quadratic model; with ``overlap``, send
        the next region's selection to the actors."""
        cfg, plan, device = self.cfg, ctx.plan, ctx.device
        _sync(device)
        t0 = time.perf_counter()
        if self.pending is not None:  # selected from the weights at the last region's start
            mine, coresets = self.pending.subsets, self.pending.result()
            self.pending = None
            self.wait_s += time.perf_counter() - t0
        else:
            mine, coresets = self.random_subsets(ctx, self.regions), None
        self.random_positions, self.check_set = torch.cat(mine), None
        if coresets is None:
            coresets = self.select(ctx, mine)
        positions = [s[c.picks].to(ctx.train.x.device) for s, c in zip(mine, coresets)]  # index the data there
        weights = self.normalised_weights(ctx, [c.weights for c in coresets])
        self.observe(ctx.epoch, self.random_positions, torch.cat([c.losses for c in coresets]), cfg.drop_thresh)
        plan.set_coresets(positions, weights)
        self.fit_quadratic(ctx, positions, weights)
        if self.regions == 0:
            self.first_curvature = self.quad.curvature_norm()
        self.ratio = self.first_curvature / max(self.quad.curvature_norm(), 1e-12)
        self.interval = check_interval(cfg.num_minibatch_coreset, cfg.interval_mul, self.ratio)
        self.w0 = flat_params(self.params(ctx))
        self.regions += 1
        self.region_steps = 0
        if self.actor_pool is not None and cfg.overlap:  # the next region's coresets, while this one trains
            self.pending = submit_coresets(ctx.model, ctx.train.x, ctx.train.y, self.random_subsets(ctx, self.regions),
                                           cfg.batch_size, ctx.train.num_classes, self.actor_pool, ctx.cfg.precision)
        _sync(device)
        self.selection_s += time.perf_counter() - t0

    @staticmethod
    def normalised_weights(ctx: TrainContext, cluster_sizes: list[torch.Tensor]) -> list[torch.Tensor]:
        """Cluster sizes scaled to mean 1 per coreset batch; under DDP batch k's mean is taken
        over batch k of every rank (the batch the step's averaged gradient comes from)."""
        sums = torch.stack([w.sum() for w in cluster_sizes]).to(ctx.device)
        counts = torch.tensor([float(len(w)) for w in cluster_sizes], dtype=torch.float64, device=ctx.device)
        ctx.all_reduce(sums)
        ctx.all_reduce(counts)
        means = (sums / counts).cpu()
        return [(w / m).float() for w, m in zip(cluster_sizes, means)]

    def select(self, ctx: TrainContext, subsets: list[torch.Tensor]) -> list:
        """This rank's coresets of ``subsets``: on the actors, or in-process from the check
        set's rows (a forward per subset, one greedy for all of them)."""
        cfg, train = self.cfg, ctx.train
        if self.actor_pool is not None:
            return select_coresets(ctx.model, train.x, train.y, subsets, cfg.batch_size, train.num_classes,
                                   actor_pool=self.actor_pool, precision=ctx.cfg.precision)
        x, y = self.region_examples(ctx)
        sizes = [len(s) for s in subsets]
        return minibatch_coresets(ctx.model, x.split(sizes), y.split(sizes), cfg.batch_size, train.num_classes,
                                  ctx.cfg.precision)

    def region_examples(self, ctx: TrainContext) -> tuple[torch.Tensor, torch.Tensor]:
        """The (x, y) of this rank's random subsets, in their order: read from the
        training set once a region, for its selection and every check."""
        if self.check_set is None:
            at = self.random_positions.to(ctx.train.x.device)
            self.check_set = ctx.train.x[at], ctx.train.y[at]
        return self.check_set

    @staticmethod
    def params(ctx: TrainContext) -> list[torch.Tensor]:
        return [p for p in ctx.model.parameters() if p.requires_grad]

    def fit_quadratic(self, ctx: TrainContext, positions: list[torch.Tensor], weights: list[torch.Tensor]) -> None:
        """L0, g and the Hutchinson diagonal at w0, one coreset mini-batch at a time (eval
        mode, like the check's true loss): each mini-batch's (L_b, g_b, h_b), averaged over
        the ranks, steps the moving averages once. On the weighted coresets, or with
        ``approx_with_coreset`` off on the random subsets in unweighted mini-batches of B;
        with ``loss0_on_subsets`` L0 is the check's own true loss at w0."""
        cfg, model = self.cfg, ctx.model
        if cfg.approx_with_coreset:
            batches = list(zip(positions, weights))
        else:
            at = self.random_positions
            batches = [(at[i:i + cfg.batch_size], None) for i in range(0, len(at), cfg.batch_size)]
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_033 + 104_729 * self.regions + ctx.rank)
        params = self.params(ctx)
        n = sum(p.numel() for p in params)
        packed = torch.empty(1 + 2 * n, dtype=torch.float64, device=ctx.device)  # L_b, g_b, h_b: one all-reduce

        def estimates():
            for at, w in batches:
                at = at.to(ctx.train.x.device)
                x, y = ctx.train.x[at], ctx.train.y[at]
                w = None if w is None else w.to(ctx.device)
                def loss_at_params(x=x, y=y, w=w):
                    with autocast(ctx.cfg.precision, ctx.device):
                        logits = model(x)
                    return weighted_cross_entropy(logits, y, w)
                packed[0] = gradient_and_hessian_diagonal(loss_at_params, params, cfg.hessian_probes, gen,
                                                          out=packed[1:])[0]
                ctx.all_reduce(packed, "mean")
                yield float(packed[0]), packed[1:1 + n], packed[1 + n:]  # used before the next batch overwrites them

        was_training = model.training
        model.eval()
        try:
            self.quad.fit_region(estimates())
        finally:
            model.train(was_training)
        self.coreset_batches += len(batches)
        if cfg.loss0_on_subsets:
            self.quad.loss0 = self.true_loss(ctx)

    # ------------------------------------------------------------------ checks
    def true_loss(self, ctx: TrainContext) -> float:
        """Mean cross-entropy over the region's random subsets (all ranks'), from one
        eval-mode forward over their union."""
        x, y = self.region_examples(ctx)
        losses = eval_losses(ctx.model, x, y, ctx.cfg.precision)
        total = torch.stack([losses.double().sum(), torch.tensor(float(len(x)), dtype=torch.float64,
                                                                 device=losses.device)])
        ctx.all_reduce(total)
        return float(total[0] / total[1])

    def check(self, ctx: TrainContext) -> bool:
        """The validity check (spec step 6); True when the region is left."""
        _sync(ctx.device)
        t0 = time.perf_counter()
        delta = flat_params(self.params(ctx)) - self.w0
        self.last_delta = delta
        predicted = self.quad.predict(delta.to(self.quad.g.device))
        true = self.true_loss(ctx)
        left = region_left(true, predicted, self.cfg.check_thresh_factor)
        self.checks.append({"step": ctx.global_step, "epoch": ctx.epoch + 1, "region": self.regions,
                            "true_loss": true, "predicted_loss": predicted, "approx_error": abs(true - predicted),
                            "threshold": self.cfg.check_thresh_factor * true, "delta_norm": float(delta.norm()),
                            "check_interval": self.interval, "reselect": left})
        _sync(ctx.device)
        self.check_s += time.perf_counter() - t0
        return left

    # ------------------------------------------------------------------ learned examples
    def observe(self, epoch: int, positions: torch.Tensor, losses: torch.Tensor, thresh: float) -> None:
        self.last_seen[positions] = epoch
        self.last_loss[positions] = losses.float()
        self.last_high[positions[losses >= thresh]] = epoch

    def learned(self, epoch: int, watch_interval: int) -> torch.Tensor:
        """Candidates seen in the last ``watch_interval`` epochs with no loss >= drop_thresh there."""
        window_start = epoch + 1 - watch_interval
        return self.candidates & (self.last_seen >= window_start) & (self.last_high < window_start)

    def drop_learned(self, ctx: TrainContext) -> int:
        """Remove learned examples from the candidates, lowest last loss first, down to the floor."""
        for record, op in ((self.last_seen, "max"), (self.last_high, "max"), (self.last_loss, "max")):
            moved = ctx.all_reduce(record.to(ctx.device), op)
            record.copy_(moved.cpu())
        learned = torch.nonzero(self.learned(ctx.epoch, self.cfg.watch_interval)).squeeze(1)
        room = max(0, int(self.candidates.sum()) - self.cfg.min_candidates(self.n))
        if len(learned) > room:
            learned = learned[torch.argsort(self.last_loss[learned], stable=True)[:room]]
        self.candidates[learned] = False
        self.dropped += len(learned)
        return len(learned)

    # ------------------------------------------------------------------ state
    STATE = ("candidates", "last_seen", "last_high", "last_loss", "random_positions", "w0", "regions", "region_steps",
             "interval", "ratio", "first_curvature", "steps", "checks", "dropped", "selection_s", "check_s", "wait_s",
             "coreset_batches")

    def state_dict(self) -> dict[str, Any]:
        return {**{k: getattr(self, k) for k in self.STATE}, "quad": self.quad.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k in self.STATE:
            setattr(self, k, state[k])
        self.check_set = None  # read again from the restored random_positions
        self.quad.load_state_dict(state["quad"])

    def summary(self) -> dict[str, Any]:
        return {"regions": self.regions, "checks": len(self.checks),
                "reselections": sum(c["reselect"] for c in self.checks), "dropped": self.dropped,
                "candidates": int(self.candidates.sum()), "selection_s": self.selection_s, "check_s": self.check_s,
                "selection_wait_s": self.wait_s}
