"""Adaptive gradient correction (AGC; "AGENT" in Lei et al., "Balance is Essence:
Accelerating Sparse Training via Adaptive Gradient Correction", CPAL 2024) as a callback.

SVRG-style (Johnson & Zhang 2013) with a balance coefficient (paper sec. 3, Alg. 1):
once per epoch a snapshot theta~ (weights and batch-norm buffers) and its gradient
g~ over the training set (or a sample of ``sample`` examples). For each minibatch B the
dense gradient is replaced, after backward and before SGD applies weight decay and
momentum, by

    g_hat = g_new - c * g_old + c * g~,

g_new the batch gradient at theta_t (what backward left), g_old the gradient of the same
batch's loss (same inputs, targets, weights) at theta~, taken with torch.autograd.grad on
the snapshot copy. c = gamma * c~, with c~ smoothed across epochs,
c~_s = (1 - alpha) c~_{s-1} + alpha c_hat_s, and
c_hat_s = Cov(l(B|theta_t), l(B|theta~)) / Var(l(B|theta~)) over epoch s's minibatch
losses (the variance-minimising control-variate weight). c~ starts at 1 (theta_t =
theta~ at the first snapshot, where the two losses coincide), so epoch 1 uses c = gamma.
``fixed_c`` pins c (c = 1: plain SVRG; c = 0: plain SGD).

Runs after ``SparseTraining`` in the callback list, so RigL grows from the uncorrected
gradient.

Under a mask (``masks``, the mask callback), the correction c * (g~ - g_old) acts on the
weights active at the snapshot and ever since: a weight regrown later in the epoch takes
its plain gradient until the next snapshot, and a weight pruned since leaves the correction
(its gradient stays 0 off the mask, which lets the sparse backend skip re-masking it). The
reference code (masked dense arithmetic) corrected a regrown weight with g~ and g_old taken
at the snapshot, where it was 0 and inactive; the sparse kernels have no gradient there
without paying the dense pass, so both backends now follow this one rule and give the
same steps (``raypkg.sparsity.backend``).
"""

from __future__ import annotations

import copy
import time
from typing import Any

import torch

from raypkg.engine.callbacks import Callback, TrainContext
from raypkg.engine.execution import autocast
from raypkg.engine.loop import weighted_cross_entropy
from raypkg.errors import UsageError
from raypkg.sparsity.masks import StaticMask, maskable_parameters

FULL_GRADIENT_CHUNK = 1024  # examples per forward pass of the snapshot gradient


class AGCorrection(Callback):
    def __init__(self, gamma: float = 0.1, alpha: float = 0.3, sample: int | None = None,
                 fixed_c: float | None = None, seed: int = 0, masks: StaticMask | None = None):
        if gamma < 0:
            raise UsageError(f"agc gamma must be >= 0, got {gamma}")
        if not 0 < alpha <= 1:
            raise UsageError(f"agc alpha must be in (0, 1], got {alpha}")
        if sample is not None and sample < 1:
            raise UsageError(f"agc sample must be a positive number of examples, got {sample}")
        self.gamma, self.alpha, self.sample, self.fixed_c, self.seed = gamma, alpha, sample, fixed_c, seed
        self.masks = masks
        self.snapshot_masks: list[torch.Tensor | None] = []  # per parameter: active at the snapshot and since
        self._masks_seen: dict[str, torch.Tensor] | None = None  # the mask callback's masks last followed
        self.c_smooth = 1.0  # c~
        self.c_log: list[dict] = []  # per epoch: c used, c_hat measured, c~ after smoothing
        self.snapshot: torch.nn.Module | None = None
        self.snapshot_grad: list[torch.Tensor] = []
        self._losses: list[tuple[float, float]] = []
        self.snapshot_s = 0.0

    @property
    def c(self) -> float:
        return self.fixed_c if self.fixed_c is not None else self.gamma * self.c_smooth

    # --- the snapshot and its (sampled) full gradient ---------------------------------
    def on_epoch_start(self, ctx: TrainContext) -> None:
        """theta~ = a copy of the model (parameters and buffers, so BN statistics too);
        g~ = the mean-loss gradient at theta~ over the training set or ``sample`` of it,
        summed over this rank's share and averaged over ranks."""
        started = time.perf_counter()
        self.snapshot = copy.deepcopy(ctx.model)
        self.snapshot.train(ctx.model.training)
        params = list(self.snapshot.parameters())
        n = len(ctx.train)
        order = torch.arange(n)
        if self.sample is not None and self.sample < n:
            g = torch.Generator().manual_seed(self.seed * 100_003 + ctx.epoch)
            order = torch.randperm(n, generator=g)[:self.sample]
        total = len(order)
        share = order[ctx.rank::ctx.world_size]
        aug_gen = (torch.Generator(device=ctx.device).manual_seed(self.seed * 7919 + 17 + ctx.epoch)
                   if ctx.augment else None)
        grad_sum = [torch.zeros_like(p) for p in params]
        # the snapshot's forward passes must not move its BN statistics: keep them
        buffers = {k: v.clone() for k, v in self.snapshot.state_dict().items() if "running" in k or "batches" in k}
        for start in range(0, len(share), FULL_GRADIENT_CHUNK):
            positions = share[start:start + FULL_GRADIENT_CHUNK]
            x = ctx.train.x[positions.to(ctx.train.x.device)].to(ctx.device)
            y = ctx.train.y[positions.to(ctx.train.y.device)].to(ctx.device)
            if ctx.augment:
                x = ctx.augment(x, generator=aug_gen)
            with autocast(ctx.cfg.precision, ctx.device):
                logits = self.snapshot(x)
            loss_sum = weighted_cross_entropy(logits, y) * len(y)
            for acc, g in zip(grad_sum, torch.autograd.grad(loss_sum, params, allow_unused=True)):
                if g is not None:
                    acc += g
        self.snapshot.load_state_dict(buffers, strict=False)
        flat = torch.cat([g.flatten() for g in grad_sum])
        ctx.all_reduce(flat)
        flat /= total
        self.snapshot_masks = self.masks_by_parameter(ctx)
        self._masks_seen = self.masks.masks if self.masks is not None else None
        self.snapshot_grad = [chunk.view_as(p) if mask is None else chunk.view_as(p) * mask
                              for chunk, p, mask in zip(flat.split([p.numel() for p in params]), params,
                                                        self.snapshot_masks)]
        self._losses = []
        if ctx.device.type == "cuda":
            torch.cuda.synchronize()
        self.snapshot_s = time.perf_counter() - started

    # --- the corrected gradient ---------------------------------------------------------
    def on_after_backward(self, ctx: TrainContext) -> None:
        """p.grad <- p.grad - c * g_old + c * g~, g_old the batch gradient at theta~
        (averaged over ranks like DDP averages p.grad)."""
        self.follow_mask_changes(ctx)
        batch = ctx.batch
        snap_params = list(self.snapshot.parameters())
        buffers = {k: v.clone() for k, v in self.snapshot.state_dict().items() if "running" in k or "batches" in k}
        with autocast(ctx.cfg.precision, ctx.device):
            logits = self.snapshot(batch.x)
        loss_old = weighted_cross_entropy(logits, batch.y, batch.weights)
        grads = torch.autograd.grad(loss_old, snap_params, allow_unused=True)
        self.snapshot.load_state_dict(buffers, strict=False)
        g_old = torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for g, p in zip(grads, snap_params)])
        ctx.all_reduce(g_old, op="mean")
        self._losses.append((float(batch.loss.detach()), float(loss_old.detach())))
        c = self.c
        offset = 0
        with torch.no_grad():
            for param, g_tilde, mask in zip(ctx.model.parameters(), self.snapshot_grad, self.snapshot_masks):
                n = param.numel()
                old = g_old[offset:offset + n].view_as(param)
                offset += n
                if mask is not None:
                    old = old * mask
                if param.grad is None:
                    param.grad = torch.zeros_like(param)
                param.grad.sub_(c * old).add_(c * g_tilde)

    def follow_mask_changes(self, ctx: TrainContext) -> None:
        """Drop the weights pruned since the snapshot from the correction (the mask callback
        replaces its masks dict whenever they change)."""
        if self.masks is None or self.masks.masks is self._masks_seen:
            return
        self._masks_seen = self.masks.masks
        now = self.masks_by_parameter(ctx)
        self.snapshot_masks = [then if then is None else then & mask for then, mask in zip(self.snapshot_masks, now)]
        self.snapshot_grad = [g if mask is None else g * mask
                              for g, mask in zip(self.snapshot_grad, self.snapshot_masks)]

    def masks_by_parameter(self, ctx: TrainContext) -> list[torch.Tensor | None]:
        """The mask callback's masks now, aligned with ``ctx.model.parameters()`` (None: unmasked)."""
        if self.masks is None or self.masks.masks is None:
            return [None] * len(list(ctx.model.parameters()))
        by_id = {id(param): self.masks.masks[name] for name, param in maskable_parameters(ctx.model).items()
                 if name in self.masks.masks}
        return [by_id.get(id(param)) for param in ctx.model.parameters()]

    # --- the balance coefficient ---------------------------------------------------------
    def on_epoch_end(self, ctx: TrainContext, row: dict) -> None:
        """c_hat = Cov(l_new, l_old) / Var(l_old) over the epoch's minibatch losses of all
        ranks; c~ <- (1 - alpha) c~ + alpha c_hat; the row gets the c this epoch used."""
        losses = torch.tensor(self._losses, dtype=torch.float64).reshape(-1, 2)
        new, old = losses[:, 0], losses[:, 1]
        moments = torch.stack([torch.tensor(float(len(losses)), dtype=torch.float64), new.sum(), old.sum(),
                               (new * old).sum(), (old * old).sum()]).to(ctx.device)
        count, s_new, s_old, s_cross, s_oo = ctx.all_reduce(moments).tolist()
        c_used = self.c
        cov = s_cross / count - (s_new / count) * (s_old / count)
        var = s_oo / count - (s_old / count) ** 2
        c_hat = cov / var if count > 1 and var > 1e-12 else float("nan")
        if c_hat == c_hat:  # not NaN: update the smoothed coefficient
            self.c_smooth = (1 - self.alpha) * self.c_smooth + self.alpha * c_hat
        row["agc_c"] = c_used
        row["agc_c_hat"] = c_hat
        row["agc_snapshot_s"] = self.snapshot_s  # outside the loop's epoch_s
        self.c_log.append({"epoch": ctx.epoch + 1, "agc_c": c_used, "agc_c_hat": c_hat, "agc_c_smooth": self.c_smooth})
        self.snapshot, self.snapshot_grad = None, []

    def state_dict(self) -> dict[str, Any]:
        return {"c_smooth": self.c_smooth, "c_log": [dict(r) for r in self.c_log]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.c_smooth = state.get("c_smooth", 1.0)
        self.c_log = [dict(r) for r in state.get("c_log", [])]
