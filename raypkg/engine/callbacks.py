"""Callbacks: how a method acts on the one training loop (as Composer's algorithms act on events).

The loop (``raypkg.engine.loop.fit``) calls, in this order::

    on_fit_start
    for each epoch:
        on_epoch_start
        for each batch of the plan:
            on_batch_start         # ctx.batch (positions, inputs after augmentation, targets, weights)
                                   # may be replaced: fewer examples (selective backprop), smaller inputs
            forward, loss
            on_loss                # ctx.batch.loss may be replaced (label smoothing)
            backward
            on_after_backward      # gradients are there and may be edited (AGC)
            optimizer.step()
            on_step_end            # parameters were updated (sparse masks)
        on_eval_start, evaluate the test split, on_eval_end   # (where there is one) EMA swaps its weights in
        on_epoch_end(row)          # may add columns to the epoch's metrics row
    on_fit_end

Every hook gets the ``TrainContext``. A callback's ``state_dict()`` goes into every
checkpoint and comes back through ``load_state_dict()`` when a Ray Train worker restarts,
so it must hold plain data and tensors only (checkpoints load with ``weights_only=True``).
The loop knows no method: sparse masks, AGC, CREST's checks, tracking and Ray Train's
checkpoints are all callbacks.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # torch is imported where it is used, so that a method's module loads without it (raypkg.method_registry)
    import torch
    from torch import nn

    from raypkg.data.augment import CropFlip
    from raypkg.data.base import IndexedDataset
    from raypkg.engine.config import TrainConfig
    from raypkg.engine.plans import BatchPlan


class Callback:
    """No-op hooks; a method overrides the ones it needs."""

    def on_fit_start(self, ctx: "TrainContext") -> None: ...
    def on_epoch_start(self, ctx: "TrainContext") -> None: ...
    def on_batch_start(self, ctx: "TrainContext") -> None: ...
    def on_loss(self, ctx: "TrainContext") -> None: ...
    def on_after_backward(self, ctx: "TrainContext") -> None: ...
    def on_step_end(self, ctx: "TrainContext") -> None: ...
    def on_eval_start(self, ctx: "TrainContext") -> None: ...
    def on_eval_end(self, ctx: "TrainContext") -> None: ...
    def on_epoch_end(self, ctx: "TrainContext", row: dict) -> None: ...
    def on_fit_end(self, ctx: "TrainContext") -> None: ...

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


@dataclass
class Batch:
    """The step's batch: positions in the training split, inputs after augmentation,
    targets, per-example weights (None: unweighted), and after the forward pass the
    logits and the (weighted mean) loss."""

    positions: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    weights: torch.Tensor | None = None
    logits: torch.Tensor | None = None
    loss: torch.Tensor | None = None


@dataclass
class TrainContext:
    """What hooks see. ``model`` is the unwrapped module (masks and snapshots act on it);
    ``module`` is what the forward pass runs (the DDP wrapper on Ray Train)."""

    model: nn.Module
    module: nn.Module
    optimizer: torch.optim.Optimizer
    cfg: "TrainConfig"
    device: torch.device
    train: "IndexedDataset"
    plan: "BatchPlan"
    augment: "CropFlip | None" = None
    callbacks: list[Callback] = field(default_factory=list)
    rank: int = 0
    world_size: int = 1
    distributed: bool = False  # a torch.distributed process group spans the ranks
    epoch: int = 0
    global_step: int = 0
    step_in_epoch: int = 0
    steps_in_epoch: int = 0
    lr: float = 0.0
    batch: Batch | None = None
    history: list[dict] = field(default_factory=list)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def all_reduce(self, tensor: torch.Tensor, op: str = "sum") -> torch.Tensor:
        """Sum (or mean/max) ``tensor`` over the ranks, in place; a no-op in-process."""
        if self.distributed:
            import torch.distributed as dist

            reduce_op = {"sum": dist.ReduceOp.SUM, "mean": dist.ReduceOp.SUM, "max": dist.ReduceOp.MAX}[op]
            dist.all_reduce(tensor, op=reduce_op)
            if op == "mean":
                tensor /= self.world_size
        return tensor

    def broadcast(self, tensor: torch.Tensor, src: int = 0) -> torch.Tensor:
        """Overwrite ``tensor`` on every rank with rank ``src``'s, in place; a no-op in-process."""
        if self.distributed:
            import torch.distributed as dist

            dist.broadcast(tensor, src=src)
        return tensor
