"""The one training loop: weighted loss, SGD, LR schedules, evaluation, callbacks.

It reads top to bottom like nanoGPT's: for each epoch, the batch plan's batches; for each
batch, set the LR, (augment), forward, weighted loss, backward, step. Methods act on it
through callbacks (``raypkg.engine.callbacks``) and batch plans (``raypkg.engine.plans``);
the same ``fit`` runs in-process and inside every Ray Train worker (``raypkg.engine.trainer``
picks which), so there is one place that trains a model on batches (DeltaGrad's replay steps
on a flat parameter vector: ``raypkg.methods.deltagrad.replay``)."""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raypkg.data.augment import CropFlip
from raypkg.data.base import IndexedDataset
from raypkg.engine.callbacks import Batch, Callback, TrainContext
from raypkg.engine.config import TrainConfig
from raypkg.engine.execution import autocast, compile_module, compiles, reproducible_kernels, to_memory_format
from raypkg.engine.loader import read_batches
from raypkg.engine.optim import make_optimizer
from raypkg.engine.plans import BatchPlan, ShuffledBatches, epoch_permutation  # noqa: F401 (re-exported)
from raypkg.errors import UsageError

# Epoch-row columns read off a clock: they differ between two runs that are otherwise equal.
CLOCK_COLUMNS = ("epoch_s", "epoch_end_time", "eval_s")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def pick_device(use_gpu: bool | None = None) -> torch.device:
    """CUDA when asked for (or when available and not refused), else CPU."""
    if use_gpu and not torch.cuda.is_available():
        raise UsageError("--gpu was asked for but no CUDA device is visible")
    if use_gpu is not False and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor | None = None,
                           label_smoothing: float = 0.0) -> torch.Tensor:
    """mean_i w_i * l_i over the batch; the plain mean when ``weights`` is None. With
    ``label_smoothing`` eps, l_i is the cross-entropy against 1 - eps on the label plus eps/C
    on every class (``raypkg.methods.label_smoothing``).

    Coreset weights are normalised to mean 1 over the whole subset before training
    (``raypkg.selection.weighting``), so the batch mean is an unbiased estimate of the
    weighted full loss and, under DDP, the average over ranks is the global weighted mean
    (not a per-rank normalisation)."""
    losses = F.cross_entropy(logits.float(), targets, reduction="none", label_smoothing=label_smoothing)
    if weights is None:
        return losses.mean()
    return (weights * losses).mean()


def piecewise_lr(lr: list[float], lrlen: list[int], epoch: float) -> float:
    """``lr[i]`` for ``lrlen[i]`` epochs, the last value after the end (and with no
    ``lrlen``, ``lr[0]`` throughout): the DeltaGrad README's ``--lr 0.1 0.05 --lrlen 10 10``."""
    ends = np.cumsum(lrlen)
    return float(lr[min(int(np.searchsorted(ends, math.floor(epoch), side="right")), len(lr) - 1)])


def lr_at(cfg: TrainConfig, epoch: float, total_epochs: int | None = None) -> float:
    """Learning rate at a fractional epoch under ``cfg``'s schedule and warm-up."""
    total = total_epochs or cfg.epochs
    base = cfg.lr[0]
    if cfg.schedule == "constant":
        lr = base
    elif cfg.schedule == "multistep":
        lr = base * cfg.gamma ** sum(epoch >= m for m in cfg.milestones)
    elif cfg.schedule == "cosine":
        lr = base * 0.5 * (1 + math.cos(math.pi * min(epoch / total, 1.0)))
    elif cfg.schedule == "linear":  # Budgeted Training's (Li et al., ICLR 2020) linear decay to 0 at the budget
        lr = base * max(0.0, 1.0 - epoch / total)
    else:
        lr = piecewise_lr(cfg.lr, cfg.lrlen, epoch)
    if cfg.lr_warmup_epochs and epoch < cfg.lr_warmup_epochs:
        lr *= (epoch + 1e-8) / cfg.lr_warmup_epochs
    return lr


@torch.no_grad()
def evaluate(model: nn.Module, data: IndexedDataset, device: torch.device | str | None = None,
             batch_size: int = 2048, precision: str = "fp32") -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``data`` (eval mode, at ``precision``)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(data), batch_size):
        x = data.x[start:start + batch_size].to(device, non_blocking=True)
        y = data.y[start:start + batch_size].to(device, non_blocking=True)
        with autocast(precision, device):
            logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    n = max(len(data), 1)
    return {"acc": correct / n, "loss": loss_sum / n}




def training_state(ctx: TrainContext) -> dict[str, Any]:
    """Everything a restarted run needs, as plain data and tensors (``weights_only`` loads)."""
    return {"model": ctx.model.state_dict(), "optimizer": ctx.optimizer.state_dict(),
            "callbacks": [cb.state_dict() for cb in ctx.callbacks], "plan": ctx.plan.state_dict(),
            "epoch": ctx.epoch + 1, "global_step": ctx.global_step, "history": ctx.history}


def restore_training_state(ctx: TrainContext, state: dict[str, Any]) -> None:
    ctx.model.load_state_dict(state["model"])
    ctx.optimizer.load_state_dict(state["optimizer"])
    for cb, cb_state in zip(ctx.callbacks, state["callbacks"], strict=True):
        cb.load_state_dict(cb_state)
    ctx.plan.load_state_dict(state["plan"])
    ctx.epoch, ctx.global_step = state["epoch"], state["global_step"]
    ctx.history = list(state["history"])


def run_epoch(ctx: TrainContext) -> dict[str, float]:
    """One pass over the plan's batches for this rank; mean loss and accuracy over all ranks."""
    cfg, device, model = ctx.cfg, ctx.device, ctx.module
    model.train()
    ctx.steps_in_epoch = ctx.plan.steps(ctx.epoch, ctx.rank, ctx.world_size)
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + ctx.epoch) if ctx.augment else None
    # Each step's loss, size, predictions and labels, reduced once at the end of the epoch:
    # one kernel a step (the argmax) instead of six, which a launch-bound GPU step feels.
    losses, sizes, predictions, labels = [], [], [], []
    for step, planned in enumerate(read_batches(ctx.plan, ctx)):
        ctx.step_in_epoch = step
        ctx.lr = lr_at(cfg, ctx.epoch + step / max(ctx.steps_in_epoch, 1))
        for group in ctx.optimizer.param_groups:
            group["lr"] = ctx.lr
        x, y = planned.x.to(device, non_blocking=True), planned.y.to(device, non_blocking=True)
        w = None if planned.weights is None else planned.weights.to(device, non_blocking=True)
        if ctx.augment:
            x = ctx.augment(x, generator=gen)
        ctx.batch = Batch(planned.positions, x, y, w)
        for cb in ctx.callbacks:
            cb.on_batch_start(ctx)
        batch = ctx.batch  # a callback may have replaced it: fewer examples (selective backprop), smaller inputs
        with autocast(cfg.precision, device):
            batch.logits = model(batch.x)
        batch.loss = weighted_cross_entropy(batch.logits, batch.y, batch.weights)
        for cb in ctx.callbacks:
            cb.on_loss(ctx)
        loss = batch.loss  # the objective the step follows (a callback may have replaced it)
        ctx.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for cb in ctx.callbacks:
            cb.on_after_backward(ctx)
        ctx.optimizer.step()
        ctx.global_step += 1
        for cb in ctx.callbacks:
            cb.on_step_end(ctx)
        losses.append(loss.detach())
        sizes.append(len(batch.y))
        predictions.append(batch.logits.detach().argmax(1))
        labels.append(batch.y)
    ctx.batch = None
    loss_total, correct_total, n = ctx.all_reduce(epoch_totals(losses, sizes, predictions, labels, device)).tolist()
    return {"train_loss": loss_total / max(n, 1), "train_acc": correct_total / max(n, 1)}


def epoch_totals(losses: list[torch.Tensor], sizes: list[int], predictions: list[torch.Tensor],
                 labels: list[torch.Tensor], device: torch.device) -> torch.Tensor:
    """[the sum of each step's mean loss times its size, the correct predictions, the
    examples] of an epoch's steps, in float64."""
    if not losses:
        return torch.zeros(3, device=device, dtype=torch.float64)
    stacked = torch.stack(losses)
    loss_sum = (stacked * torch.tensor(sizes, device=device, dtype=stacked.dtype)).double().sum()
    correct = (torch.cat(predictions) == torch.cat(labels)).sum().double()
    return torch.stack([loss_sum, correct, torch.tensor(float(sum(sizes)), device=device, dtype=torch.float64)])


@dataclass(frozen=True)
class Ranks:
    """Where a Ray Train worker's ``fit`` runs: its ``rank`` of ``world_size``, and ``module``,
    the DDP wrapper of the model that the forward pass runs (``raypkg.engine.ray_train``)."""

    module: nn.Module
    rank: int
    world_size: int


def fit(model: nn.Module, train: IndexedDataset, test: IndexedDataset | None, cfg: TrainConfig, *,
        plan: BatchPlan | None = None, callbacks: Sequence[Callback] = (), augment: CropFlip | None = None,
        resume: dict | None = None, ranks: Ranks | None = None, desc: str = "train") -> list[dict]:
    """Train ``model`` in place, on the device its parameters are on, for epochs [resumed
    epoch, cfg.epochs); one metrics row per epoch.

    ``plan`` chooses each step's batch (default: a seeded shuffle of ``train``; a
    ``ShuffledBatches`` with example weights makes the loss the weighted mean used for
    coreset training). ``callbacks`` act on the loop's events and may add columns to the
    rows. ``resume`` is a ``training_state`` to continue from. On Ray Train, ``ranks`` gives
    the DDP wrapper and the worker's rank: each epoch is split over the ranks, ``test`` is
    evaluated once per epoch on the rank that gets it (rank 0) and no progress bar shows.
    ``model`` runs in ``cfg``'s precision and memory format, and through ``torch.compile``
    where ``cfg.compile`` is on (the forward pass of the loop's steps; callbacks and
    evaluation run the module eagerly), decided by the caller (``raypkg.engine.execution``).
    """
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    if "auto" in (cfg.precision, cfg.memory_format):
        raise ValueError("fit runs a decided execution: decide precision and memory_format once, before training "
                         "(raypkg.engine.execution.resolve_for_data), or set them")
    reproducible_kernels(device)
    to_memory_format(model, cfg.memory_format)
    module = ranks.module if ranks else model
    if compiles(cfg, device):
        module = compile_module(module, device)
    plan = plan or ShuffledBatches(len(train), cfg.batch_size, cfg.seed)
    plan.drop_last = cfg.drop_last  # every plan cuts its batches through BatchPlan.batch_slices
    rank, world_size = (ranks.rank, ranks.world_size) if ranks else (0, 1)
    ctx = TrainContext(model=model, module=module, optimizer=make_optimizer(model, cfg),
                       cfg=cfg, device=device, train=train, plan=plan, augment=augment,
                       callbacks=list(callbacks), rank=rank, world_size=world_size,
                       distributed=world_size > 1)
    if resume is not None:
        restore_training_state(ctx, resume)
    for cb in ctx.callbacks:
        cb.on_fit_start(ctx)
    show = cfg.progress and ranks is None
    # Counted by hand, not by iterating the bar: an iterated bar counts its steps only when it
    # draws (at most every 0.1 s), so set_postfix drew "0/N" beside each epoch's loss through
    # a whole run of fast epochs (issue 65).
    bar = tqdm(total=cfg.epochs, initial=ctx.epoch, desc=desc, disable=not show, leave=False)
    for epoch in range(ctx.epoch, cfg.epochs):
        ctx.epoch = epoch
        for cb in ctx.callbacks:
            cb.on_epoch_start(ctx)
        t0 = time.perf_counter()
        row: dict[str, Any] = {"epoch": epoch + 1, **run_epoch(ctx)}
        if device.type == "cuda":
            torch.cuda.synchronize()
        row["epoch_s"] = time.perf_counter() - t0
        row["epoch_end_time"] = time.time()  # wall clock: time-to-accuracy (raypkg.tracking.tta), any process
        row["lr"] = ctx.lr
        if test is not None:
            t0 = time.perf_counter()
            for cb in ctx.callbacks:
                cb.on_eval_start(ctx)
            row.update({f"test_{k}": v for k, v in evaluate(model, test, device, precision=cfg.precision).items()})
            for cb in ctx.callbacks:
                cb.on_eval_end(ctx)
            row["eval_s"] = time.perf_counter() - t0
        ctx.history.append(row)
        for cb in ctx.callbacks:
            cb.on_epoch_end(ctx, row)
        bar.set_postfix({k: f"{row[k]:.3f}" for k in ("train_loss", "test_acc") if k in row}, refresh=False)
        bar.update()
    bar.close()
    for cb in ctx.callbacks:
        cb.on_fit_end(ctx)
    return ctx.history
