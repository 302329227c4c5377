"""``--sparse-backend masked|sparse|auto``: which masked layers run on the sparse CPU kernels
(``raypkg.sparsity.kernels``) during one fit.

masked: every layer computes densely with its zeros (the reference implementations' way).
sparse: every supported layer that is at least ``MIN_SPARSITY`` sparse runs on the kernels.
auto: of those, the ones whose forward + backward on one real batch is clearly faster on the
kernels than dense at the run's precision (``--precision``: a bf16 run compares each
layer's sparse fp32 kernels with its dense bf16 autocast); on a GPU, or without SparseProp
(one note line), masked. Each layer is measured and chosen as the engine's execution is
(``raypkg.engine.execution``: warm-ups, interleaved rounds, the kernels only when they beat
dense by the margin, apart), and the choice is cached for this machine, keyed by the
model, the layer, its sparsity, the batch and the precision, so the same command runs
the same layers on the kernels every time.
Under DDP rank 0 decides and broadcasts, so every rank runs the same arithmetic.
"""

from __future__ import annotations

import functools
import sys
from contextlib import nullcontext

import torch
from torch import nn

from raypkg.engine.execution import ExecutionCache, autocast, cache_key, decide
from raypkg.errors import UsageError
from raypkg.sparsity import kernels as K
from raypkg.sparsity.optim import PositionsSGD

MIN_SPARSITY = 0.8  # a layer runs sparse only when at least this share of its weights is masked


def masked_modules(model: nn.Module, masks: dict[str, torch.Tensor]) -> dict[str, nn.Module]:
    """The module of each mask whose parameter is a module's ``weight``, by module name."""
    modules = dict(model.named_modules())
    out = {}
    for name in masks:
        owner, _, attr = name.rpartition(".")
        if attr == "weight" and owner in modules:
            out[owner] = modules[owner]
    return out


@functools.cache
def note_runs_masked() -> None:
    """Said once a process, not at each start (a LiPT run starts once per shard)."""
    print("note: SparseProp is not installed; --sparse-backend auto runs masked", file=sys.stderr)


@functools.cache
def say_once(line: str) -> None:
    """``line`` on stderr the first time this process says it: a LiPT frontier starts each
    seed's masked execution 10 or more times (a start per shard and phase), each with the
    same ``sparse kernels: ...`` line."""
    print(line, file=sys.stderr, flush=True)


class SparseExecution:
    """The layers on the kernels for one model: chosen by ``start``, refreshed when the masks
    change, paused for steps that need dense gradients, undone by ``stop`` (the model leaves
    the fit as plain modules). While they run, ``PositionsSGD`` (in place of the engine's
    SGD) steps their weights at the mask's positions only (``raypkg.sparsity.optim``)."""

    def __init__(self, model: nn.Module, layers: dict[str, nn.Module], timings: dict[str, dict[str, float]],
                 optimizer: PositionsSGD | None = None):
        self.model, self.layers, self.timings = model, layers, timings
        self.optimizer = optimizer
        self.layouts: dict[str, K.Layout] = {}
        self.dense = False

    @classmethod
    def start(cls, ctx, masks: dict[str, torch.Tensor], mode: str) -> "SparseExecution":
        model = ctx.model
        if mode == "masked" or ctx.device.type != "cpu":
            if mode == "sparse":
                raise UsageError("--sparse-backend sparse runs on the CPU only (SparseProp's kernels); "
                                 "use --sparse-backend auto or masked with a GPU")
            return cls(model, {}, {})
        if K.kernels() is None:
            if mode == "sparse":
                raise UsageError("--sparse-backend sparse needs SparseProp (pip install sparseprop)")
            if ctx.is_main:
                note_runs_masked()
            return cls(model, {}, {})
        K.match_kernel_threads()
        modules = masked_modules(model, masks)
        candidates = {name: module for name, module in modules.items()
                      if K.supports(module) and 1 - float(masks[f"{name}.weight"].float().mean()) >= MIN_SPARSITY}
        timings: dict[str, dict[str, float]] = {}
        chosen = list(candidates)
        if mode == "auto" and candidates:
            timings = choose_layers(ctx, candidates, masks)
            chosen = [name for name in candidates if timings[name]["kernels"]]
        chosen = agree_on_rank_0(ctx, list(candidates), chosen)
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d) and chosen:
                K.swap_class(module, True)
        if chosen and type(ctx.optimizer) is torch.optim.SGD:  # the engine's: step the kernels' positions only
            ctx.optimizer = PositionsSGD.like(ctx.optimizer)  # (another optimizer steps densely)
        stepper = ctx.optimizer if isinstance(ctx.optimizer, PositionsSGD) else None
        execution = cls(model, {name: candidates[name] for name in chosen}, timings, stepper)
        for module in execution.layers.values():
            K.swap_class(module, True)
            contiguous_weight(module, execution.optimizer)
        execution.refresh(masks)
        return execution

    def refresh(self, masks: dict[str, torch.Tensor]) -> None:
        """New layouts after the masks changed."""
        self.layouts = {name: K.layout_for(module, masks[f"{name}.weight"]) for name, module in self.layers.items()}
        self.dense_step(self.dense)

    def dense_step(self, dense: bool) -> None:
        """Run the next steps on the dense path (exact dense gradients: RigL's growth) or not."""
        self.dense = dense
        for name, module in self.layers.items():
            module.sparse_layout = None if dense else self.layouts[name]
        if self.optimizer is not None:
            self.optimizer.active = {} if dense else {module.weight: self.layouts[name].positions
                                                      for name, module in self.layers.items()}

    def stop(self) -> None:
        for module in self.model.modules():
            K.swap_class(module, False)
        if self.optimizer is not None:
            self.optimizer.active = {}

    def describe(self, masks: dict[str, torch.Tensor]) -> str:
        """One line: how many masked layers run on the kernels, and which."""
        if not self.layers:
            why = (f"auto: dense was faster on each of the {len(self.timings)} it timed" if self.timings
                   else "masked backend")
            return f"sparse kernels: none of {len(masks)} masked layers ({why})"
        return (f"sparse kernels: {len(self.layers)} of {len(masks)} masked layers "
                f"({', '.join(self.layers)})")


def contiguous_weight(module: nn.Module, optimizer: torch.optim.Optimizer | None) -> None:
    """A kernel layer's weight (and its momentum) in the plain layout, whatever the run's
    ``--memory-format``: the kernels and ``PositionsSGD.active`` index it flat."""
    weight = module.weight
    if not weight.is_contiguous():
        weight.data = weight.data.contiguous()
    state = optimizer.state.get(weight, {}) if optimizer is not None else {}
    if state.get("momentum_buffer") is not None:
        state["momentum_buffer"] = state["momentum_buffer"].contiguous()


def agree_on_rank_0(ctx, candidates: list[str], chosen: list[str]) -> list[str]:
    """Rank 0's choice on every rank (a no-op in-process)."""
    flags = torch.tensor([name in chosen for name in candidates], dtype=torch.uint8, device=ctx.device)
    ctx.broadcast(flags, src=0)
    return [name for name, on in zip(candidates, flags.tolist()) if on]


DENSE, SPARSE = ("dense", "masked"), ("sparse", "kernels")  # a layer's two candidates, the simpler first


def choose_layers(ctx, candidates: dict[str, nn.Module], masks: dict[str, torch.Tensor],
                  cache: ExecutionCache | None = None) -> dict[str, dict]:
    """Each candidate layer's choice (``kernels``) and median forward + backward ms, dense and
    sparse, on its input from one real training batch (the sparse one fed the batch-innermost
    layout it gets inside the network): measured and chosen as ``decide`` does, cached."""
    inputs: dict[str, torch.Tensor] = {}

    def keep_input(name):
        def hook(module, args, output):
            inputs[name] = args[0].detach()
        return hook

    hooks = [module.register_forward_hook(keep_input(name)) for name, module in candidates.items()]
    was_training = ctx.model.training
    ctx.model.eval()  # the probe forward must not move batch-norm statistics
    try:
        with torch.no_grad(), autocast(ctx.cfg.precision, ctx.device):
            ctx.model(ctx.train.x[:ctx.cfg.batch_size].to(ctx.device))
    finally:
        ctx.model.train(was_training)
        for hook in hooks:
            hook.remove()
    timings = {}
    for name, module in candidates.items():
        x = inputs[name]
        sparsity = 1 - float(masks[f"{name}.weight"].float().mean())
        layout = K.layout_for(module, masks[f"{name}.weight"])
        weight = module.weight.detach().clone().requires_grad_()
        if isinstance(module, nn.Conv2d):
            def dense(x):
                return torch.nn.functional.conv2d(x, weight, None, module.stride, module.padding)

            def sparse(x):
                return K.SparseConv2dFn.apply(x, weight, None, layout, module.stride[0], module.padding[0])
            x_inner = x.permute(1, 2, 3, 0).contiguous().permute(3, 0, 1, 2)
        else:
            def dense(x):
                return torch.nn.functional.linear(x, weight)

            def sparse(x):
                return K.SparseLinearFn.apply(x, weight, None, layout)
            x_inner = x.t().contiguous().t()
        steps = {DENSE: forward_backward(dense, x, ctx.cfg.precision), SPARSE: forward_backward(sparse, x_inner.float())}
        key = cache_key(f"{ctx.cfg.model}:{name}@sparsity={sparsity:.3f}:{ctx.cfg.precision}", tuple(x.shape[1:]),
                        len(x), ctx.device, [DENSE, SPARSE])
        choice = decide(key, lambda: nullcontext(steps), cache)
        timings[name] = {"dense_ms": choice.medians_ms["dense/masked"], "sparse_ms": choice.medians_ms["sparse/kernels"],
                         "kernels": choice.precision == "sparse", "source": choice.source}
    return timings


def forward_backward(layer, x: torch.Tensor, precision: str = "fp32"):
    """One forward + backward of ``layer`` on ``x`` at ``precision`` (the kernels: fp32)."""
    x = x.clone().requires_grad_() if x.is_contiguous() else x.detach().requires_grad_()

    def step():
        with autocast(precision, x.device):
            out = layer(x)
        out.float().sum().backward()
    return step
