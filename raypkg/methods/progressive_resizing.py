"""Progressive resizing (fast.ai's DAWNBench entries; Touvron et al., "Fixing the train-test
resolution discrepancy" (FixRes), NeurIPS 2019; Composer's ``ProgressiveResizing``): train on
down-scaled images early, when a convolution's cost is proportional to the pixels, grow them
to full size, and end with a full-size fine-tune. Evaluation is always at full size.

At the fraction of training t = (epoch + step / steps in the epoch) / epochs, with initial
scale a, delay d and fine-tune f (Composer's schedule):
    s(t) = a                                              for t < d,
    s(t) = a + (1 - a) min((t - d) / (1 - d - f), 1)      after,
so the scale grows linearly from a at t = d to 1 at t = 1 - f. Each side L becomes
round(s L / k) k, the nearest multiple of the increment k (halves up), never below k and
never above L. Initial scale 1 keeps every size: plain training, bit for bit.

One algorithm on the engine's loop (``raypkg.algorithms``): a callback replaces the step's
inputs at ``on_batch_start``, after the dataset's crop and flip. `effray run
progressive-resizing`, or ``--with progressive-resizing`` on any method's training. Free of
torch at import: the command line loads this module to build its flags.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from raypkg.algorithms import DATA, Algorithm, MethodSettings, method_point
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import setting
from raypkg.errors import UsageError, choose
from raypkg.recipe import BenchCase

MODES = ("resize", "crop")


@dataclass
class ProgressiveResizingSettings(MethodSettings):
    """Progressive resizing's knobs, mixed into a config that trains (`effray run progressive-resizing`'s,
    or another method's with ``--with progressive-resizing``)."""

    resize_initial_scale: float = setting(0.5, "a: the scale of each image side at the start, in (0, 1] (1: full "
                                               "size throughout, plain training).")
    resize_delay: float = setting(0.5, "d: the fraction of training at the initial scale before the sides grow.")
    resize_finetune: float = setting(0.2, "f: the fraction of training at the end on full-size images; the sides "
                                          "grow linearly from d to 1 - f.")
    resize_increment: int = setting(4, "k: each side is rounded to a multiple of k pixels, never below k.")
    resize_mode: str = setting("resize", "resize: bilinear, antialiased interpolation of the whole image; crop: one "
                                         "random window of the scaled size per batch.", choices=MODES)

    def checks(self) -> None:
        if not 0.0 < self.resize_initial_scale <= 1.0:
            raise UsageError(f"resize-initial-scale must be in (0, 1], got {self.resize_initial_scale:g}")
        for name in ("resize_delay", "resize_finetune"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise UsageError(f"{name.replace('_', '-')} must be in [0, 1], got {getattr(self, name):g}")
        if self.resize_delay + self.resize_finetune > 1.0:
            raise UsageError(f"resize-delay + resize-finetune must be at most 1 (fractions of one training), got "
                             f"{self.resize_delay:g} + {self.resize_finetune:g}")
        if self.resize_increment < 1:
            raise UsageError(f"resize-increment must be a positive integer, got {self.resize_increment}")
        choose("resize mode", self.resize_mode, MODES)


def scale_at(fraction: float, initial_scale: float, delay: float, finetune: float) -> float:
    """s(t): a until the delay, then linear to 1 at 1 - finetune, then 1 (Composer's schedule)."""
    ramp = 1.0 - delay - finetune
    if fraction < delay:
        return initial_scale
    grown = 1.0 if ramp <= 0 else min((fraction - delay) / ramp, 1.0)
    return initial_scale + (1.0 - initial_scale) * grown


def side_at(length: int, scale: float, increment: int) -> int:
    """A side of ``length`` pixels at ``scale``: the nearest multiple of ``increment`` (halves
    up), at least ``increment`` and at most ``length``; ``length`` itself at scale 1."""
    if scale >= 1.0:
        return length
    return min(length, max(increment, math.floor(length * scale / increment + 0.5) * increment))


def mean_pixel_fraction(initial_scale: float, delay: float, finetune: float) -> float:
    """The mean of s(t)^2 over t in [0, 1], sides unrounded: d a^2 + r (1 + a + a^2) / 3 + f
    with r = 1 - d - f (the integral of (a + (1 - a) u)^2 over u in [0, 1] is (1 + a + a^2) / 3)."""
    a, ramp = initial_scale, 1.0 - delay - finetune
    if a >= 1.0:
        return 1.0  # full size throughout (the sum below can round to 1 - 1e-16)
    return delay * a * a + ramp * (1.0 + a + a * a) / 3.0 + finetune


class ResizeBatch(Callback):
    """Replaces the step's inputs by the images at this point of training's size, and counts
    the steps and examples trained at each size (``sizes``: "HxW" -> [steps, examples])."""

    def __init__(self, cfg):
        self.initial_scale, self.delay, self.finetune = cfg.resize_initial_scale, cfg.resize_delay, cfg.resize_finetune
        self.increment, self.mode, self.seed, self.epochs = cfg.resize_increment, cfg.resize_mode, cfg.seed, cfg.epochs
        self.sizes: dict[str, list[int]] = {}

    def size(self, height: int, width: int, fraction: float) -> tuple[int, int]:
        scale = scale_at(fraction, self.initial_scale, self.delay, self.finetune)
        return side_at(height, scale, self.increment), side_at(width, scale, self.increment)

    def on_batch_start(self, ctx) -> None:
        batch = ctx.batch
        fraction = (ctx.epoch + ctx.step_in_epoch / max(ctx.steps_in_epoch, 1)) / self.epochs
        height, width = batch.x.shape[-2:]
        size = self.size(height, width, fraction)
        if size != (height, width):  # at full size the batch is left as it is: plain training's step
            batch.x = self.resized(batch.x, size, ctx.global_step)
        counts = self.sizes.setdefault(f"{size[0]}x{size[1]}", [0, 0])
        counts[0] += 1
        counts[1] += len(batch.y)

    def resized(self, x, size: tuple[int, int], step: int):
        import torch
        import torch.nn.functional as F

        if self.mode == "crop":  # one window for the whole batch, drawn from the seed and the step
            import numpy as np

            # mixed into 32 bits: torch's CPU generator keeps only a seed's low 32 bits
            gen = torch.Generator().manual_seed(int(np.random.SeedSequence([self.seed, step]).generate_state(1)[0]))
            top = int(torch.randint(x.shape[-2] - size[0] + 1, (1,), generator=gen))
            left = int(torch.randint(x.shape[-1] - size[1] + 1, (1,), generator=gen))
            out = x[..., top:top + size[0], left:left + size[1]]
        else:
            # Bilinear with antialiasing: a triangle filter as wide as the scale needs, so each
            # output pixel averages the pixels it covers (as PIL's resize does) and fine strokes
            # do not alias away below half size, where plain bilinear reads only 2x2 neighbours.
            out = F.interpolate(x, size=size, mode="bilinear", align_corners=False, antialias=True)
        channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        return out.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    def state_dict(self) -> dict:
        return {"sizes": {k: list(v) for k, v in self.sizes.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.sizes = {k: list(v) for k, v in state["sizes"].items()}


def resized_examples(cfg, summary: dict, n: int, per_example) -> tuple[int, float]:
    """Every epoch over the whole training set (less a dropped ragged batch); each example's
    forward and backward at the FLOPs of the size it trained at: the run's measured mean
    FLOP fraction."""
    from raypkg.engine.plans import trained_examples

    seen = cfg.epochs * trained_examples(n, cfg.batch_size, cfg.drop_last)
    return seen, seen * per_example() * summary["flops_fraction"]


class ProgressiveResizing(Algorithm):
    """Progressive resizing: train on down-scaled images first, then grow them to full size.

    Each side is scaled by a from the start until --resize-delay of training, grows
    linearly to full size at 1 - --resize-finetune and stays there; evaluation is at full
    size. With no flags: a = 0.5, d = 0.5, f = 0.2, sides rounded to multiples of 4
    (Composer's defaults), ResNet-20 on the embedded digits data (a model must take smaller
    images: one that pools globally). --resize-initial-scale 1 is plain training, bit for bit.

    \b
    Examples:
      effray run progressive-resizing
      effray run progressive-resizing --dataset digits-aug --epochs 10 --resize-initial-scale 0.5
      effray run infobatch --model resnet20 --with progressive-resizing --resize-mode crop
    """

    name, order = "progressive-resizing", DATA  # it changes the inputs, before any loss or mask
    settings = ProgressiveResizingSettings
    command_fields = (("model", str, setting("resnet20", "Model name (`effray models`), or a plug-in's import path "
                                             "MODULE:FACTORY: one that takes images smaller than the data's (resnet20 "
                                             "does: it pools globally).")),)
    bench_cases = (BenchCase("progressive-resizing", "progressive-resizing", ("progressive-resizing",), None,
                             config=method_point, examples=resized_examples, default=False, marker="<"),)

    def __init__(self, cfg, run):
        self.cfg = cfg
        self.image = tuple(run.data.input_shape)
        self.resize = ResizeBatch(cfg)
        self.callbacks = [self.resize]

    @staticmethod
    def check(cfg, data) -> str | None:
        """Images (C, H, W) only, and a model that takes them at the smallest size used: one
        forward pass of a fresh model at that size."""
        import torch

        from raypkg.models.registry import build_model

        shape = tuple(data.input_shape)
        if len(shape) != 3:
            raise UsageError(f"progressive-resizing resizes images: the data's samples have shape {shape}, not "
                             "(C, H, W)")
        smallest = tuple(side_at(side, cfg.resize_initial_scale, cfg.resize_increment) for side in shape[1:])
        if smallest == shape[1:] and cfg.resize_initial_scale < 1:  # scale 1 is plain training by choice
            raise UsageError(f"progressive-resizing at --resize-initial-scale {cfg.resize_initial_scale:g} and "
                             f"--resize-increment {cfg.resize_increment} keeps the {shape[1]}x{shape[2]} images at "
                             "full size (each side is rounded to a multiple of the increment, at most the side): "
                             "plain training; give a smaller --resize-increment or --resize-initial-scale")
        if smallest == shape[1:]:
            return None
        with torch.random.fork_rng(devices=[]):  # the global random state is left as it was
            model = build_model(cfg.model, shape, data.num_classes).eval()
        try:
            with torch.no_grad():
                out = model(torch.zeros(2, shape[0], *smallest))
        except Exception as e:
            first = str(e).splitlines()[0] if str(e) else ""
            raise UsageError(f"progressive-resizing: model {cfg.model} cannot take {smallest[0]}x{smallest[1]} images "
                             f"(the smallest at --resize-initial-scale {cfg.resize_initial_scale:g}): "
                             f"{type(e).__name__}: {first[:120]}; use a model that pools globally, e.g. resnet20"
                             ) from None
        if tuple(out.shape) != (2, data.num_classes):
            raise UsageError(f"progressive-resizing: model {cfg.model} gives logits of shape {tuple(out.shape)} on "
                             f"{smallest[0]}x{smallest[1]} images, not [batch, {data.num_classes}]")
        return None

    @staticmethod
    def stacked_flops(cfg, per_example):
        """An estimate from the config alone: each forward pass scaled by the mean of s(t)^2 over
        training time, sides unrounded (the input size is not in the config) and every epoch
        weighed alike (a plan that prunes early epochs trains more examples at full size)."""
        fraction = mean_pixel_fraction(cfg.resize_initial_scale, cfg.resize_delay, cfg.resize_finetune)
        return lambda density=1.0, init="ERK": per_example(density, init) * fraction

    def finish(self, run, trained) -> dict:
        """The settings, the steps and examples at each size, and their means over the examples:
        ``pixel_fraction`` (h w / (H W)) and ``flops_fraction`` (the model's forward FLOPs at
        h x w over those at H x W, counted by ``raypkg.models.flops.layer_flops``). On Ray
        Train the counts are rank 0's (every rank trains each step at the same size)."""
        from raypkg.models.flops import forward_flops, layer_flops

        cfg, (channels, height, width) = self.cfg, self.image
        sizes = {key: tuple(map(int, key.split("x"))) for key in self.resize.sizes}
        full = forward_flops(layer_flops(trained.model, self.image))
        flops = {key: forward_flops(layer_flops(trained.model, (channels, *hw))) / full for key, hw in sizes.items()}
        examples = sum(count[1] for count in self.resize.sizes.values())

        def mean(fraction) -> float:  # over the examples seen (1: none seen)
            return sum(self.resize.sizes[key][1] * fraction(key) for key in sizes) / examples if examples else 1.0

        return {"resize_initial_scale": cfg.resize_initial_scale, "resize_delay": cfg.resize_delay,
                "resize_finetune": cfg.resize_finetune, "resize_increment": cfg.resize_increment,
                "resize_mode": cfg.resize_mode, "input_size": f"{height}x{width}",
                "sizes": {key: {"steps": s, "examples": e} for key, (s, e) in self.resize.sizes.items()},
                "steps": sum(count[0] for count in self.resize.sizes.values()), "examples": examples,
                "pixel_fraction": mean(lambda key: sizes[key][0] * sizes[key][1] / (height * width)),
                "flops_fraction": mean(flops.get)}
