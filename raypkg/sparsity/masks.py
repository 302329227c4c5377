"""Sparse masks: random masks at the layer densities of ``raypkg.models.density`` (uniform or
ERK), and ``StaticMask``, the callback that keeps masked weights (and their momentum)
exactly 0. Shared by dynamic sparse training (``raypkg.methods.sparse.dst``) and LiPT.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from raypkg.engine.callbacks import Callback, TrainContext

# the layer densities live with the models (FLOP counts need them too); callers also import them here
from raypkg.models.density import erk_densities, layer_densities, maskable_parameters  # noqa: F401


def empty_layer(model: nn.Module, density: float, init: str = "ERK") -> tuple[str, int] | None:
    """The first masked layer of ``model`` (its name and weight count) that ``random_masks``
    would leave with no weight at ``density``, or None."""
    params = maskable_parameters(model)
    for name, d in layer_densities(model, density, init).items():
        if round(d * params[name].numel()) < 1:
            return name, params[name].numel()
    return None


def check_layers_keep_weights(cfg, data) -> None:
    """A density (``cfg.density``, ``cfg.sparse_init``) that leaves a masked layer of the model
    on ``data`` with no weight is refused, naming the smallest density that keeps one in
    every layer (the model is built on the meta device: no memory, no random numbers)."""
    from raypkg.errors import UsageError
    from raypkg.models.registry import build_model

    with torch.device("meta"):
        model = build_model(cfg.model, data.input_shape, data.num_classes)
    empty = empty_layer(model, cfg.density, cfg.sparse_init)
    if empty is None:
        return
    low, high = cfg.density, 1.0  # bisect: the layers' weights kept grow with the density
    for _ in range(50):
        middle = (low + high) / 2
        low, high = (low, middle) if empty_layer(model, middle, cfg.sparse_init) is None else (middle, high)
    digits = 10 ** (1 - math.floor(math.log10(high)))  # two significant digits, rounded up
    smallest = min(1.0, math.ceil(high * digits) / digits)
    raise UsageError(f"--density {cfg.density:g} leaves layer {empty[0]} ({empty[1]} weights, {cfg.sparse_init}) "
                     f"with no weight: the smallest density that keeps one in every layer is {smallest:g}")


def random_masks(model: nn.Module, density: float, init: str = "ERK",
                 generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Boolean masks (on each parameter's device): layer l has exactly round(d_l * N_l)
    entries on, at positions drawn by ``torch.randperm`` from ``generator`` (CPU)."""
    masks = {}
    params = maskable_parameters(model)
    for name, d in layer_densities(model, density, init).items():
        param = params[name]
        n = param.numel()
        on = torch.randperm(n, generator=generator)[:round(d * n)]
        flat = torch.zeros(n, dtype=torch.bool)
        flat[on] = True
        masks[name] = flat.view_as(param).to(param.device)
    return masks


def broadcast_masks(ctx: TrainContext, masks: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rank 0's masks on every rank (in place of each rank's own); a no-op in-process.
    Collectives move uint8 copies on ``ctx.device`` (NCCL wants device tensors)."""
    if not ctx.distributed:
        return masks
    out = {}
    for name, mask in masks.items():
        buf = mask.to(ctx.device, torch.uint8)
        ctx.broadcast(buf, src=0)
        out[name] = buf.bool().to(mask.device)
    return out


def masks_digest(masks: dict[str, torch.Tensor]) -> int:
    """An order-sensitive integer fingerprint of boolean masks (for cross-rank checks)."""
    import hashlib

    h = hashlib.sha256()
    for name, mask in masks.items():
        h.update(name.encode())
        h.update(mask.detach().cpu().contiguous().numpy().tobytes())
    return int.from_bytes(h.digest()[:7], "little")  # fits in an int64 tensor


def check_masks_identical(ctx: TrainContext, masks: dict[str, torch.Tensor]) -> None:
    """Raise if any rank's masks differ from the others' (all-reduce of the digest: its
    max equals its min, i.e. -max(-digest), only when every rank holds the same)."""
    if not ctx.distributed:
        return
    digest = torch.tensor([masks_digest(masks), -masks_digest(masks)], dtype=torch.int64, device=ctx.device)
    ctx.all_reduce(digest, op="max")
    if digest[0].item() != -digest[1].item():
        raise RuntimeError(f"sparse masks differ between ranks (rank {ctx.rank}, step {ctx.global_step})")


class StaticMask(Callback):
    """A fixed random mask at ``density`` (``init`` distribution), drawn at fit start from
    ``torch.Generator().manual_seed(seed)`` on rank 0 and broadcast; after every optimizer
    step the masked weights and their momentum buffers are multiplied by the mask, so they
    stay exactly 0 (spec "Masks"). The masks are the callback's state, so a resumed run
    keeps them. Adds the real density of the maskable weights to each epoch's row.

    ``scale_init``: when the masks are drawn, multiply layer l's initial weights by
    1 / sqrt(d_l), so each unit's fan-in variance is that of the dense init (the
    sparse-aware init of Evci et al., "Gradient Flow in Sparse Neural Networks and How
    Lottery Tickets Win", AAAI 2022, sec. 4). Networks without normalisation (LeNet-5,
    MLPs) barely train at 5% density without it; with batch norm it changes little.

    ``backend``: how the masked layers compute (``raypkg.sparsity.backend``: masked, sparse or
    auto); ``sparse_layers`` lists the layers that ran on the sparse kernels."""

    def __init__(self, density: float, init: str = "ERK", seed: int = 0, *, scale_init: bool = False,
                 backend: str = "masked"):
        self.density, self.init, self.seed, self.scale_init = density, init, seed, scale_init
        self.backend = backend
        self.masks: dict[str, torch.Tensor] | None = None
        self.execution = None
        self.sparse_layers: list[str] = []
        self.sparse_timings: dict[str, dict[str, float]] = {}  # auto: per layer, dense and sparse ms

    # --- building and applying -------------------------------------------------------
    def build_masks(self, ctx: TrainContext) -> dict[str, torch.Tensor]:
        generator = torch.Generator().manual_seed(self.seed)
        return random_masks(ctx.model, self.density, self.init, generator)

    def on_fit_start(self, ctx: TrainContext) -> None:
        params = maskable_parameters(ctx.model)
        if self.masks is None:  # a fresh run (a resumed one restored its masks and weights)
            self.masks = broadcast_masks(ctx, self.build_masks(ctx))
            if self.scale_init:
                self.rescale_weights(ctx)
        self.masks = {name: mask.to(params[name].device) for name, mask in self.masks.items()}
        check_masks_identical(ctx, self.masks)
        self.apply_masks(ctx)
        self.start_execution(ctx)

    def start_execution(self, ctx: TrainContext) -> None:
        from raypkg.sparsity.backend import SparseExecution, say_once

        self.execution = SparseExecution.start(ctx, self.masks, self.backend)
        self.sparse_layers = list(self.execution.layers)
        self.sparse_timings = self.execution.timings
        if self.backend != "masked" and ctx.is_main:
            say_once(self.execution.describe(self.masks))

    def on_fit_end(self, ctx: TrainContext) -> None:
        self.execution.stop()
        self.execution = None

    @torch.no_grad()
    def rescale_weights(self, ctx: TrainContext) -> None:
        params = maskable_parameters(ctx.model)
        for name, mask in self.masks.items():
            kept = float(mask.sum()) / mask.numel()
            if 0 < kept < 1:
                params[name].mul_(kept ** -0.5)

    @torch.no_grad()
    def apply_masks(self, ctx: TrainContext, masks: dict[str, torch.Tensor] | None = None) -> None:
        """weights *= mask and momentum_buffer *= mask, for every masked tensor (or ``masks``)."""
        params = maskable_parameters(ctx.model)
        for name, mask in (self.masks if masks is None else masks).items():
            param = params[name]
            param.mul_(mask)
            buf = ctx.optimizer.state.get(param, {}).get("momentum_buffer")
            if buf is not None:
                buf.mul_(mask)

    def masks_after_step(self) -> dict[str, torch.Tensor]:
        """The masks the step just taken needs applied. A layer that ran on the sparse kernels
        got a gradient that is exactly 0 off its mask (the backward scatters into zeros), so
        SGD's update there, -lr * (momentum * 0 + 0 + weight_decay * 0), keeps its weights and
        momentum at 0: multiplying by the mask again would change nothing."""
        if self.execution is None or self.execution.dense or not self.execution.layers:
            return self.masks
        on_kernels = {f"{name}.weight" for name in self.execution.layers}
        return {name: mask for name, mask in self.masks.items() if name not in on_kernels}

    def on_step_end(self, ctx: TrainContext) -> None:
        self.apply_masks(ctx, self.masks_after_step())

    # --- reporting -------------------------------------------------------------------
    @torch.no_grad()
    def real_density(self, ctx: TrainContext) -> float:
        """Fraction of nonzero entries over all maskable weights (not the masks' count)."""
        params = maskable_parameters(ctx.model).values()
        return sum(int((p != 0).sum()) for p in params) / sum(p.numel() for p in params)

    def on_epoch_end(self, ctx: TrainContext, row: dict) -> None:
        row["density"] = self.real_density(ctx)

    # --- state -----------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        if self.masks is None:
            return {}
        return {"masks": {name: mask.detach().cpu().clone() for name, mask in self.masks.items()},
                "sparse_layers": list(self.sparse_layers), "sparse_timings": dict(self.sparse_timings)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("masks") is not None:
            self.masks = {name: mask.bool() for name, mask in state["masks"].items()}
        self.sparse_layers = list(state.get("sparse_layers", []))
        self.sparse_timings = dict(state.get("sparse_timings", {}))
