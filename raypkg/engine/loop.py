"""The training loop every method shares: weighted loss, SGD, LR schedules, evaluation.

It reads top to bottom like nanoGPT's: for each epoch, a seeded permutation; for each
batch, set the LR, (augment), forward, weighted loss, backward, step. The same function
runs in-process and inside a Ray Train worker (``rank``/``world_size`` shard each
epoch's permutation the way DistributedSampler does).
"""

from __future__ import annotations

import math
import random
import time
from contextlib import nullcontext
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from raypkg.data.augment import CropFlip
from raypkg.data.base import IndexedDataset
from raypkg.engine.config import TrainConfig
from raypkg.errors import UsageError


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


def weighted_cross_entropy(logits: torch.Tensor, targets: torch.Tensor,
                           weights: torch.Tensor | None = None) -> torch.Tensor:
    """sum_i w_i * l_i / sum_i w_i (selection.md); the plain mean when ``weights`` is None."""
    losses = F.cross_entropy(logits.float(), targets, reduction="none")
    if weights is None:
        return losses.mean()
    return (weights * losses).sum() / weights.sum()


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
    else:  # piecewise: lr[i] for lrlen[i] epochs, the last value after the end
        ends = np.cumsum(cfg.lrlen)
        lr = cfg.lr[min(int(np.searchsorted(ends, math.floor(epoch), side="right")), len(cfg.lr) - 1)]
    if cfg.warmup_epochs and epoch < cfg.warmup_epochs:
        lr *= (epoch + 1e-8) / cfg.warmup_epochs
    return lr


def make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.SGD:
    return torch.optim.SGD(model.parameters(), lr=cfg.lr[0], momentum=cfg.momentum,
                           nesterov=cfg.nesterov and cfg.momentum > 0, weight_decay=cfg.weight_decay)


def epoch_permutation(n: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """This rank's share of epoch ``epoch``'s shuffle, as DistributedSampler would give it.

    The permutation depends only on (seed, epoch), so a run resumed from a checkpoint at
    an epoch boundary sees the same batches it would have seen without the failure.
    """
    g = torch.Generator().manual_seed(seed * 100_003 + epoch)
    perm = torch.randperm(n, generator=g)
    if world_size > 1:
        padded = math.ceil(n / world_size) * world_size
        perm = torch.cat([perm, perm[: padded - n]])[rank::world_size]
    return perm


@torch.no_grad()
def evaluate(model: nn.Module, data: IndexedDataset, device: torch.device | str | None = None,
             batch_size: int = 2048) -> dict[str, float]:
    """Accuracy and mean cross-entropy of ``model`` on ``data`` (eval mode)."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    correct, loss_sum = 0, 0.0
    for start in range(0, len(data), batch_size):
        x = data.x[start:start + batch_size].to(device, non_blocking=True)
        y = data.y[start:start + batch_size].to(device, non_blocking=True)
        logits = model(x).float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
    model.train(was_training)
    n = max(len(data), 1)
    return {"acc": correct / n, "loss": loss_sum / n}


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, train: IndexedDataset,
                cfg: TrainConfig, epoch: int, *, device: torch.device,
                weights: torch.Tensor | None = None, augment: CropFlip | None = None,
                rank: int = 0, world_size: int = 1, total_epochs: int | None = None) -> dict[str, float]:
    """One pass over this rank's share of ``train``; returns mean loss and accuracy."""
    model.train()
    perm = epoch_permutation(len(train), cfg.seed, epoch, rank, world_size)
    steps = math.ceil(len(perm) / cfg.batch_size)
    use_amp = cfg.amp and device.type == "cuda"
    gen = torch.Generator(device=device).manual_seed(cfg.seed * 7919 + epoch) if augment else None
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for step in range(steps):
        idx = perm[step * cfg.batch_size:(step + 1) * cfg.batch_size]
        for group in optimizer.param_groups:
            group["lr"] = lr_at(cfg, epoch + step / steps, total_epochs)
        x = train.x[idx].to(device, non_blocking=True)
        y = train.y[idx].to(device, non_blocking=True)
        w = weights[idx].to(device, non_blocking=True) if weights is not None else None
        if augment:
            x = augment(x, generator=gen)
        with torch.autocast("cuda", dtype=torch.bfloat16) if use_amp else nullcontext():
            logits = model(x)
        loss = weighted_cross_entropy(logits, y, w)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        loss_sum += loss.detach() * len(idx)
        correct += (logits.detach().argmax(1) == y).sum()
    n = max(len(perm), 1)
    return {"train_loss": loss_sum.item() / n, "train_acc": correct.item() / n}


def fit(model: nn.Module, train: IndexedDataset, test: IndexedDataset | None, cfg: TrainConfig, *,
        device: torch.device | None = None, weights: torch.Tensor | None = None,
        augment: CropFlip | None = None, optimizer: torch.optim.Optimizer | None = None,
        start_epoch: int = 0, on_epoch: Callable[[dict], None] | None = None,
        progress: bool | None = None, desc: str = "train") -> list[dict]:
    """Train ``model`` in place for epochs [start_epoch, cfg.epochs); one metrics row per epoch.

    ``weights`` (aligned with ``train``'s positions) make the loss the weighted mean
    used for coreset training. ``on_epoch`` sees each row (tracking, checkpoints).
    """
    from tqdm.auto import tqdm

    device = device or next(model.parameters()).device
    optimizer = optimizer or make_optimizer(model, cfg)
    show = cfg.progress if progress is None else progress
    rows = []
    bar = tqdm(range(start_epoch, cfg.epochs), desc=desc, disable=not show, leave=False)
    for epoch in bar:
        t0 = time.perf_counter()
        row = {"epoch": epoch + 1, **train_epoch(model, optimizer, train, cfg, epoch, device=device,
                                                  weights=weights, augment=augment)}
        if device.type == "cuda":
            torch.cuda.synchronize()
        row["epoch_s"] = time.perf_counter() - t0
        row["lr"] = optimizer.param_groups[0]["lr"]
        if test is not None:
            row.update({f"test_{k}": v for k, v in evaluate(model, test, device).items()})
        rows.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.3f}", acc=f"{row.get('test_acc', float('nan')):.3f}")
        if on_epoch is not None:
            on_epoch(row)
    return rows
