"""Layer freezing (Composer's ``LayerFreezing``; Brock et al. 2017, "FreezeOut"; Raghu et al.
2017, "Freeze Training"): the earliest layers stop training as training goes on, so the
backward pass no longer reaches them.

The schedule (Composer's): at the start of epoch e of E, with t = e / E of training done,
the frozen fraction is
    f(t) = 0                                      for t <= freeze_start,
    f(t) = level x (t - start) / (1 - start)      after,
and the first k = floor(f x L) of the model's L layers are frozen (requires_grad False). A
layer is one module holding parameters of its own (Linear, Conv, ...), in the order the
forward pass first calls it, with the normalisation modules called right after it (batch
norm kept with the layer it follows): ResNet-20 has 20, the MLP 2. A prefix in call order
takes its inputs from frozen layers only, so autograd computes neither its weight
gradients nor its input gradients: each example's backward costs 2 x the forward FLOPs of
the unfrozen layers, not of all. Frozen parameters get no gradient, so SGD skips them (no
weight decay, no momentum step); batch norm's running statistics keep updating, as in
Composer, which freezes parameters only. level 0 (or start 1) is plain training, bit for bit.

One algorithm on the engine's loop (``raypkg.algorithms``): `effray run layer-freezing`, or
``--with layer-freezing`` on any method's training. Free of torch at import: the command
line loads this module to build its flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from raypkg.algorithms import DATA, Algorithm, MethodSettings, method_point
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import setting
from raypkg.errors import UsageError
from raypkg.recipe import BenchCase

if TYPE_CHECKING:
    import torch
    from torch import nn

BACKWARD_FACTOR = 2  # a layer's backward: input and weight gradients, each about one forward (RigL, appendix H)


@dataclass
class LayerFreezingSettings(MethodSettings):
    """Layer freezing's two knobs, mixed into a config that trains (`effray run layer-freezing`'s, or
    another method's with ``--with layer-freezing``)."""

    freeze_start: float = setting(0.5, "The fraction of training before any layer freezes, in [0, 1] (1: none "
                                       "ever does, plain training).")
    freeze_level: float = setting(1.0, "The fraction of the layers frozen by the end of training, in [0, 1] (0: "
                                       "none, plain training).")

    def checks(self) -> None:
        for name in ("freeze_start", "freeze_level"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name):g}")
        check_freezes(self)
        if self.workers > 1:
            raise UsageError("layer-freezing trains in one process (--workers 0 or 1): DDP reduces the gradients of "
                             "the parameters that trained when it wrapped the model, and freezing changes them")
        if getattr(self, "agc", False):
            raise UsageError("layer-freezing does not stack with --agc: AGC's correction steps every parameter, a "
                             "frozen one too")


def frozen_fraction(epoch: int, epochs: int, start: float, level: float) -> float:
    """Composer's schedule at the start of ``epoch`` (0-based) of ``epochs``: 0 until t = epoch
    / epochs passes ``start``, then level x (t - start) / (1 - start)."""
    t = epoch / epochs
    return 0.0 if t <= start else level * (t - start) / (1.0 - start)


def frozen_layers(epoch: int, epochs: int, start: float, level: float, layers: int) -> int:
    """k = floor(f x L), to within 1e-9 (0.4 x 10 layers freezes 4, not 3.999...)."""
    return min(layers, math.floor(frozen_fraction(epoch, epochs, start, level) * layers + 1e-9))


def check_freezes(cfg, layers: int | None = None) -> None:
    """A schedule that freezes at least one layer by its last epoch, or a one-line UsageError
    (with ``layers``, the model's count: floor(f x L) >= 1; without, f > 0). --freeze-level 0
    and --freeze-start 1 are plain training by choice, and pass."""
    if cfg.freeze_level == 0 or cfg.freeze_start == 1:
        return
    last = frozen_fraction(cfg.epochs - 1, cfg.epochs, cfg.freeze_start, cfg.freeze_level)
    if last > 0 and (layers is None or frozen_layers(cfg.epochs - 1, cfg.epochs, cfg.freeze_start,
                                                     cfg.freeze_level, layers)):
        return
    if last == 0:
        raise UsageError(f"layer-freezing at --epochs {cfg.epochs} and --freeze-start {cfg.freeze_start:g} freezes no "
                         f"layer: no epoch starts after {cfg.freeze_start:g} of training (plain training); give more "
                         "--epochs or a smaller --freeze-start")
    raise UsageError(f"layer-freezing at --epochs {cfg.epochs}, --freeze-start {cfg.freeze_start:g} and --freeze-level "
                     f"{cfg.freeze_level:g} freezes none of model {cfg.model}'s {layers} layers: its last epoch "
                     f"freezes a fraction {last:.3g} of them, less than one (plain training); give more --epochs or "
                     "a smaller --freeze-start")


def forward_layers(model: "nn.Module", example: "torch.Tensor") -> list[list[str]]:
    """The model's layers, each a list of module names: the modules holding parameters of
    their own in the order one forward pass of ``example`` first calls them, a
    normalisation module joining the layer it follows (eval mode, no gradient: nothing
    of the model's changes)."""
    import torch

    from raypkg.models.density import norm_types

    norms = norm_types()
    names = {module: name for name, module in model.named_modules()}
    called: list = []

    def record(module, args):
        if module not in called:
            called.append(module)

    owners = [m for m in model.modules() if next(m.parameters(recurse=False), None) is not None]
    hooks = [m.register_forward_pre_hook(record) for m in owners]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(example)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    layers: list[list[str]] = []
    for module in called:
        if layers and isinstance(module, norms):
            layers[-1].append(names[module])
        else:
            layers.append([names[module]])
    return layers


class FreezeLayers(Callback):
    """Freezes the first k layers at each epoch's start (and a resumed fit's start), counts
    the forward and backward FLOPs each step ran, and gives the model back as it came."""

    def __init__(self, start: float, level: float):
        self.start, self.level = start, level
        self.layers: list[list[str]] = []
        self.layer_flops: list[float] = []  # forward FLOPs per example of each layer
        self.trainable: dict = {}  # parameter -> requires_grad before the fit
        self.frozen = 0
        self.frozen_per_epoch: list[int] = []
        self.examples, self.forward_flops, self.backward_flops = 0, 0.0, 0.0

    def on_fit_start(self, ctx) -> None:
        from raypkg.models.flops import layer_flops

        model, example = ctx.model, ctx.train.x[:1].to(ctx.device)
        self.layers = forward_layers(model, example)
        flops = layer_flops(model, tuple(example.shape[1:]))
        self.layer_flops = [sum(flops.get(f"{name}.weight" if name else "weight", 0.0) for name in layer)
                            for layer in self.layers]
        self.trainable = {p: p.requires_grad for p in model.parameters()}
        self.freeze(ctx, self.frozen)  # a resumed fit: the layers its state froze

    def freeze(self, ctx, k: int) -> None:
        """The first ``k`` layers frozen, the others as they came."""
        modules = dict(ctx.model.named_modules())
        for i, layer in enumerate(self.layers):
            for name in layer:
                for p in modules[name].parameters(recurse=False):
                    p.requires_grad_(self.trainable[p] and i >= k)
        self.frozen = k

    def on_epoch_start(self, ctx) -> None:
        self.freeze(ctx, frozen_layers(ctx.epoch, ctx.cfg.epochs, self.start, self.level, len(self.layers)))
        self.frozen_per_epoch.append(self.frozen)

    def on_step_end(self, ctx) -> None:
        n = len(ctx.batch.y)
        self.examples += n
        self.forward_flops += n * sum(self.layer_flops)
        self.backward_flops += n * BACKWARD_FACTOR * sum(self.layer_flops[self.frozen:])

    def on_epoch_end(self, ctx, row: dict) -> None:
        row["frozen_layers"] = self.frozen

    def on_fit_end(self, ctx) -> None:
        self.freeze(ctx, 0)  # the trained model leaves with the trainability it came with

    def state_dict(self) -> dict:
        return {"layers": [list(layer) for layer in self.layers], "frozen": self.frozen,
                "frozen_per_epoch": list(self.frozen_per_epoch), "examples": self.examples,
                "forward_flops": self.forward_flops, "backward_flops": self.backward_flops}

    def load_state_dict(self, state: dict) -> None:
        """(On Ray Train the driver's copy gets the last checkpoint's state: ``finish`` reads it.)"""
        self.layers = [list(layer) for layer in state["layers"]]
        self.frozen, self.frozen_per_epoch = state["frozen"], list(state["frozen_per_epoch"])
        self.examples, self.forward_flops, self.backward_flops = (state["examples"], state["forward_flops"],
                                                                  state["backward_flops"])


def train_work(backward_share: float) -> float:
    """A training step's work in training steps of plain training: (forward + b x backward) / 3,
    b the share of the backward pass that ran (1: plain training)."""
    return (1 + BACKWARD_FACTOR * backward_share) / (1 + BACKWARD_FACTOR)


def freezing_examples(cfg, summary: dict, n: int, per_example) -> tuple[int, float]:
    """The examples the run forwarded, each charged its forward pass and the backward pass it
    really ran (the run's ``backward_share``), in forward FLOPs: the frontier's 3 x stays right."""
    seen = summary["examples_seen"]
    return seen, seen * per_example() * train_work(summary["backward_share"])


class LayerFreezing(Algorithm):
    """Layer freezing: the earliest layers stop training as training goes on.

    After --freeze-start of training, the first floor(f x L) of the model's L layers are
    frozen at each epoch's start, f growing linearly to --freeze-level at the end (Composer's
    schedule; Brock et al. 2017). Their backward pass is skipped. With no flags: start 0.5,
    level 1 (Composer's defaults), on the embedded digits data. --freeze-level 0 is plain
    training, bit for bit.

    \b
    Examples:
      effray run layer-freezing
      effray run layer-freezing --dataset digits-aug --model resnet20 --epochs 10 --freeze-start 0.3
      effray run infobatch --with layer-freezing --freeze-level 0.5
    """

    name, order = "layer-freezing", DATA  # first: it decides which layers the step's backward reaches
    settings = LayerFreezingSettings
    metrics = ("frozen_layers",)
    bench_cases = (BenchCase("layer-freezing", "layer-freezing", ("layer-freezing",), None, config=method_point,
                             examples=freezing_examples, default=False, marker="p"),)

    def __init__(self, cfg, run):
        self.cfg = cfg
        self.freezing = FreezeLayers(cfg.freeze_start, cfg.freeze_level)
        self.callbacks = [self.freezing]

    @staticmethod
    def check(cfg, data) -> str | None:
        """The schedule freezes at least one of the model's layers (a fresh model's forward pass
        on one example counts them)."""
        import torch

        from raypkg.models.registry import build_model

        with torch.random.fork_rng(devices=[]):  # the global random state is left as it was
            model = build_model(cfg.model, data.input_shape, data.num_classes)
        check_freezes(cfg, len(forward_layers(model, data.train.x[:1].float())))
        return None

    @staticmethod
    def headline(summary: dict) -> str:
        return (f"froze up to {max(summary['frozen_per_epoch'], default=0)} of {summary['layers']} layers; "
                f"training work {train_work(summary['backward_share']):.1%} of plain training's")

    @staticmethod
    def stacked_flops(cfg, per_example):
        """An estimate from the config alone (the frontier's FLOPs of a stack): the schedule's
        mean frozen fraction over the epochs, as if FLOPs were spread evenly over the layers
        and k were not rounded down to whole layers."""
        frozen = sum(frozen_fraction(e, cfg.epochs, cfg.freeze_start, cfg.freeze_level)
                     for e in range(cfg.epochs)) / cfg.epochs
        return lambda density=1.0, init="ERK": per_example(density, init) * train_work(1.0 - frozen)

    def finish(self, run, trained) -> dict:
        """The schedule, the layers, and the run's work: examples forwarded, forward and backward
        FLOPs (dense, at the model's layer FLOPs) and the backward share (1: plain training)."""
        f = self.freezing
        return {"freeze_start": self.cfg.freeze_start, "freeze_level": self.cfg.freeze_level, "layers": len(f.layers),
                "frozen_per_epoch": list(f.frozen_per_epoch), "examples_seen": f.examples,
                "forward_flops": f.forward_flops, "backward_flops": f.backward_flops,
                "backward_share": f.backward_flops / (BACKWARD_FACTOR * f.forward_flops) if f.forward_flops else 1.0}
