"""Dynamic sparse training with In-Time Over-Parameterization (SET-ITOP / RigL-ITOP) as an
engine callback.

Every ``update_frequency`` optimizer steps each masked layer drops ``ceil(rate * active)``
weights (``death``) and regrows the same number (``growth``) at inactive positions, so
layer densities stay fixed unless ``redistribution`` moves the regrowth budget between
layers. The death rate decays with a cosine from ``death_rate`` to ``FINAL_DEATH_RATE``
over all training steps (AGENT, Lei et al. CPAL 2024, and ITOP's prune-and-regrow); SET:
Mocanu et al. 2018; RigL: Evci et al. 2020, Alg. 1 (grow where the dense gradient is
largest); ITOP: Liu et al. 2021, sec. 3 (exploration rate R_s = |union of all masks| /
maskable parameters).

Under DDP rank 0 alone decides each update and broadcasts the new masks; every update
then checks that all ranks hold identical masks.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from raypkg.engine.callbacks import TrainContext
from raypkg.errors import UsageError
from raypkg.methods.sparse.config import DEATH_MODES, GROWTH_MODES, REDISTRIBUTION_MODES
from raypkg.sparsity.masks import StaticMask, broadcast_masks, check_masks_identical, maskable_parameters, masks_digest

FINAL_DEATH_RATE = 0.005


def check_choice(kind: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise UsageError(f"unknown {kind} {value!r}; choose from {', '.join(allowed)}")


def cosine_death_rate(step: int, total_steps: int, start: float, end: float = FINAL_DEATH_RATE) -> float:
    """Cosine decay from ``start`` (step 0) to ``end`` (step ``total_steps``), as
    CosineAnnealingLR with eta_min = ``end`` stepped once per optimizer step."""
    progress = min(step / max(total_steps, 1), 1.0)
    return end + 0.5 * (start - end) * (1 + math.cos(math.pi * progress))


def death_indices(weight: torch.Tensor, mask: torch.Tensor, count: int, mode: str) -> torch.Tensor:
    """Flat indices of the ``count`` active weights to drop.

    magnitude: the smallest |w|. SET (Mocanu et al. 2018): half of them the smallest
    non-negative weights, the other half the negative weights closest to zero (one side
    fills in when the other runs short)."""
    w, active = weight.flatten(), mask.flatten()
    if count <= 0:
        return torch.empty(0, dtype=torch.long, device=w.device)
    if mode == "magnitude":
        score = torch.where(active, w.abs(), torch.full_like(w, float("inf")))
        return torch.topk(score, count, largest=False, sorted=False).indices
    inf = torch.full_like(w, float("inf"))
    positive = torch.where(active & (w >= 0), w, inf)
    negative = torch.where(active & (w < 0), -w, inf)
    n_pos, n_neg = int((active & (w >= 0)).sum()), int((active & (w < 0)).sum())
    k_pos = min(math.ceil(count / 2), n_pos)
    k_neg = min(count - k_pos, n_neg)
    k_pos = min(count - k_neg, n_pos)
    return torch.cat([torch.topk(positive, k_pos, largest=False, sorted=False).indices,
                      torch.topk(negative, k_neg, largest=False, sorted=False).indices])


def growth_indices(mask: torch.Tensor, count: int, mode: str, *, score: torch.Tensor | None = None,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """Flat indices of ``count`` inactive positions of ``mask`` to switch on.

    random (SET): uniformly at random; gradient (RigL) / momentum: the largest |score|
    (the dense gradient, or the dense momentum) among inactive positions."""
    inactive = ~mask.flatten()
    if count <= 0:
        return torch.empty(0, dtype=torch.long, device=mask.device)
    if mode == "random":
        candidates = inactive.nonzero().flatten()
        pick = torch.randperm(len(candidates), generator=generator)[:count].to(candidates.device)
        return candidates[pick]
    values = torch.where(inactive, score.flatten().abs(), torch.full_like(score.flatten(), -1.0))
    return torch.topk(values, count, sorted=False).indices


def split_budget(total: int, shares: dict[str, float], capacity: dict[str, int]) -> dict[str, int]:
    """Integers summing to min(total, sum capacity), in proportion to ``shares`` and at
    most ``capacity[l]`` each: capped layers are filled and the rest is split again over
    the others (largest remainders get the rounding)."""
    out = {name: 0 for name in shares}
    left = min(total, sum(capacity.values()))
    open_layers = [name for name in shares if capacity[name] > 0]
    while left > 0 and open_layers:
        weight = sum(shares[name] for name in open_layers)
        if weight <= 0:
            wants = {name: left / len(open_layers) for name in open_layers}
        else:
            wants = {name: left * shares[name] / weight for name in open_layers}
        floors = {name: min(int(wants[name]), capacity[name] - out[name]) for name in open_layers}
        remainder = left - sum(floors.values())
        by_fraction = sorted(open_layers, key=lambda n: wants[n] - int(wants[n]), reverse=True)
        for name in by_fraction:
            if remainder <= 0:
                break
            if floors[name] < capacity[name] - out[name]:
                floors[name] += 1
                remainder -= 1
        for name in open_layers:
            out[name] += floors[name]
        left = min(total, sum(capacity.values())) - sum(out.values())
        open_layers = [name for name in open_layers if out[name] < capacity[name]]
    return out


class SparseTraining(StaticMask):
    """SET-ITOP / RigL-ITOP masks (see module docstring). Runs before ``AGCorrection`` in
    the callback list: its ``on_after_backward`` keeps the dense, uncorrected gradient of
    update steps for RigL's growth."""

    def __init__(self, density: float, init: str = "ERK", seed: int = 0, *, growth: str = "random",
                 death: str = "magnitude", redistribution: str = "none", death_rate: float = 0.5,
                 update_frequency: int = 100, scale_init: bool = False, backend: str = "masked"):
        super().__init__(density, init, seed, scale_init=scale_init, backend=backend)
        check_choice("growth", growth, GROWTH_MODES)
        check_choice("death", death, DEATH_MODES)
        check_choice("redistribution", redistribution, REDISTRIBUTION_MODES)
        if update_frequency < 1:
            raise UsageError(f"update frequency must be >= 1, got {update_frequency}")
        if not 0 <= death_rate < 1:
            raise UsageError(f"death rate must be in [0, 1), got {death_rate}")
        self.growth, self.death, self.redistribution = growth, death, redistribution
        self.death_rate, self.update_frequency = death_rate, update_frequency
        self.explored: dict[str, torch.Tensor] | None = None  # union of all masks so far (ITOP)
        self.updates: list[dict] = []  # one row per mask update: step, death rate, R_s, density
        self.generator_state: torch.Tensor | None = None
        self.rank_digests: list[int] = []  # every rank's mask digest at the last epoch end
        self.total_steps = 0
        self._scores: dict[str, torch.Tensor] = {}

    # --- setup -----------------------------------------------------------------------
    def on_fit_start(self, ctx: TrainContext) -> None:
        self.follow_steps(ctx)
        super().on_fit_start(ctx)
        if self.explored is None:
            self.explored = {name: mask.clone() for name, mask in self.masks.items()}
        self.explored = {name: m.to(self.masks[name].device) for name, m in self.explored.items()}
        self.generator = torch.Generator()
        self.generator.manual_seed(self.seed + 1)
        if self.generator_state is not None:
            self.generator.set_state(self.generator_state)
        needs_momentum = self.growth == "momentum" or self.redistribution == "magnitude"
        if needs_momentum and not any("momentum" in g and g["momentum"] > 0 for g in ctx.optimizer.param_groups):
            raise UsageError(f"growth {self.growth!r} / redistribution {self.redistribution!r} "
                             "need SGD momentum > 0")

    def follow_steps(self, ctx: TrainContext) -> None:
        """The training's length in optimizer steps (the death rate's cosine horizon and the
        last-update guard): the steps taken so far plus the plan's steps for the epochs left,
        counted again at every epoch's start, so that a plan whose epochs shrink as training
        goes (InfoBatch's pruning follows its scores) ends the horizon at the steps actually
        taken. For a fixed plan it is the same count at every epoch."""
        left = sum(ctx.plan.steps(e, ctx.rank, ctx.world_size) for e in range(ctx.epoch, ctx.cfg.epochs))
        self.total_steps = ctx.global_step + left

    def on_epoch_start(self, ctx: TrainContext) -> None:
        super().on_epoch_start(ctx)
        self.follow_steps(ctx)

    def is_update_step(self, step: int) -> bool:
        """Masks change after optimizer step number ``step`` (1-based) when it is a multiple
        of ``update_frequency`` and not the last step of training."""
        return step % self.update_frequency == 0 and step < self.total_steps

    # --- the dense signal for growth (before AGC edits the gradient) ------------------
    @torch.no_grad()
    def on_after_backward(self, ctx: TrainContext) -> None:
        if not self.is_update_step(ctx.global_step + 1) or self.growth == "random" or not ctx.is_main:
            return
        params = maskable_parameters(ctx.model)
        for name in self.masks:
            param = params[name]
            grad = param.grad if param.grad is not None else torch.zeros_like(param)
            if self.growth == "gradient":
                self._scores[name] = grad.detach().clone()
            else:  # the momentum buffer this step is about to produce, not yet masked
                group = next(g for g in ctx.optimizer.param_groups if any(p is param for p in g["params"]))
                buf = ctx.optimizer.state.get(param, {}).get("momentum_buffer")
                self._scores[name] = grad.clone() if buf is None else buf * group["momentum"] + grad

    # --- after the step: mask, then maybe prune and regrow ----------------------------
    def needs_dense_gradient(self, step: int) -> bool:
        """RigL's and momentum growth read the dense gradient of update steps."""
        return self.growth != "random" and self.is_update_step(step)

    def start_execution(self, ctx: TrainContext) -> None:
        super().start_execution(ctx)
        self.execution.dense_step(self.needs_dense_gradient(ctx.global_step + 1))

    def on_step_end(self, ctx: TrainContext) -> None:
        self.apply_masks(ctx, self.masks_after_step())
        if self.is_update_step(ctx.global_step):
            self.update_masks(ctx)
        self.execution.dense_step(self.needs_dense_gradient(ctx.global_step + 1))

    def update_masks(self, ctx: TrainContext) -> None:
        rate = cosine_death_rate(ctx.global_step, self.total_steps, self.death_rate)
        if ctx.is_main:
            kept, new = self.prune_and_regrow(ctx, rate)
        else:  # overwritten by rank 0's decision
            kept, new = dict(self.masks), dict(self.masks)
        self._scores = {}
        self.set_masks(ctx, broadcast_masks(ctx, kept), broadcast_masks(ctx, new))
        check_masks_identical(ctx, self.masks)
        self.generator_state = self.generator.get_state()
        self.updates.append({"step": ctx.global_step, "epoch": ctx.epoch + 1, "death_rate": rate,
                             "R_s": self.exploration_rate(), "density": self.real_density(ctx)})

    @torch.no_grad()
    def prune_and_regrow(self, ctx: TrainContext, rate: float) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Rank 0's decision: the kept masks (ceil(rate * active) dropped per layer) and
        the new masks (as many regrown per layer, or the total split by
        ``redistribution``, at positions inactive after the drop)."""
        params = maskable_parameters(ctx.model)
        pruned, removed = {}, {}
        for name, mask in self.masks.items():
            count = math.ceil(rate * int(mask.sum()))
            if mask.all() and self.redistribution == "none":
                count = 0  # a dense (ERK-saturated) layer has nowhere else to grow
            if not params[name].requires_grad:
                count = 0  # a frozen layer (raypkg.methods.layer_freezing) keeps its weights, so its mask
            drop = death_indices(params[name].detach(), mask, count, self.death)
            flat = mask.flatten().clone()
            flat[drop] = False
            pruned[name], removed[name] = flat.view_as(mask), len(drop)
        budget = self.regrowth_budget(ctx, pruned, removed)
        new = {}
        for name, mask in pruned.items():
            grow = growth_indices(mask, budget[name], self.growth, score=self._scores.get(name),
                                  generator=self.generator)
            flat = mask.flatten().clone()
            flat[grow] = True
            new[name] = flat.view_as(mask)
        return pruned, new

    def regrowth_budget(self, ctx: TrainContext, pruned: dict[str, torch.Tensor],
                        removed: dict[str, int]) -> dict[str, int]:
        """How many weights each layer regrows. none: what it lost. magnitude / nonzeros
        (Dettmers & Zettlemoyer 2019, sec. 3): the total removed, split in proportion to
        the layer's mean |momentum| over its active weights / its active count, never
        more than its inactive positions."""
        if self.redistribution == "none":
            return removed
        params = maskable_parameters(ctx.model)
        shares = {}
        for name, mask in pruned.items():
            if self.redistribution == "nonzeros":
                shares[name] = float(mask.sum())
            else:
                buf = ctx.optimizer.state.get(params[name], {}).get("momentum_buffer")
                shares[name] = 0.0 if buf is None or not mask.any() else float(buf[mask].abs().mean())
        capacity = {name: int((~mask).sum()) if params[name].requires_grad else 0 for name, mask in pruned.items()}
        return split_budget(sum(removed.values()), shares, capacity)

    @torch.no_grad()
    def set_masks(self, ctx: TrainContext, kept: dict[str, torch.Tensor], new: dict[str, torch.Tensor]) -> None:
        """Install ``new``: only ``kept`` positions keep their weight and momentum; every
        grown one (a just-dropped position regrown included) starts at 0 with 0
        momentum, as in RigL. The ITOP union takes in the new masks."""
        params = maskable_parameters(ctx.model)
        for name, mask in new.items():
            param = params[name]
            param.mul_(kept[name])
            buf = ctx.optimizer.state.get(param, {}).get("momentum_buffer")
            if buf is not None:
                buf.mul_(kept[name])
            self.explored[name] |= mask
        self.masks = new
        self.apply_masks(ctx)
        self.execution.refresh(new)

    # --- reporting -------------------------------------------------------------------
    def exploration_rate(self) -> float:
        """ITOP's R_s: |union of every mask so far| / maskable parameters."""
        return sum(int(m.sum()) for m in self.explored.values()) / sum(m.numel() for m in self.explored.values())

    def on_epoch_end(self, ctx: TrainContext, row: dict) -> None:
        super().on_epoch_end(ctx, row)
        row["R_s"] = self.exploration_rate()
        row["mask_updates"] = len(self.updates)
        # every rank's digest, gathered by a sum of one-hot vectors; kept for checks
        gathered = torch.zeros(ctx.world_size, dtype=torch.int64, device=ctx.device)
        gathered[ctx.rank] = masks_digest(self.masks)
        ctx.all_reduce(gathered)
        self.rank_digests = [int(v) for v in gathered.tolist()]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.explored is not None:
            state["explored"] = {name: m.detach().cpu().clone() for name, m in self.explored.items()}
        state.update(updates=[dict(u) for u in self.updates], rank_digests=list(self.rank_digests),
                     generator_state=self.generator_state)
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if state.get("explored") is not None:
            self.explored = {name: m.bool() for name, m in state["explored"].items()}
        self.updates = [dict(u) for u in state.get("updates", [])]
        self.rank_digests = list(state.get("rank_digests", []))
        self.generator_state = state.get("generator_state")
