"""EMA: an exponential moving average of the weights (Polyak and Juditsky 1992; Composer's
``EMA``), evaluated each epoch and kept as the final model.

After every optimizer step the average moves towards the weights,
    a <- d a + (1 - d) w,   with d = 0.5 ** (1 / (H x steps per epoch)),
so its memory halves every H epochs (``--ema-half-life``). Batch norm's running statistics
are averaged the same way, its step counter copied. Each epoch's test row is the average's
(``on_eval_start`` swaps it in, ``on_eval_end`` swaps the trained weights back, so training
never sees it); the run's final model, evaluated and saved, is the average. H = 0 keeps
a = w: plain training, bit for bit.

One algorithm on the engine's loop (``raypkg.algorithms``): `effray run ema`, or ``--with
ema`` on any method's training. Free of torch at import: the command line loads this module
to build its flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from raypkg.algorithms import AVERAGE, Algorithm, MethodSettings, method_point
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import setting
from raypkg.errors import UsageError
from raypkg.recipe import BenchCase, dense_examples


@dataclass
class EmaSettings(MethodSettings):
    """EMA's one knob, mixed into a config that trains (`effray run ema`'s, or another method's with
    ``--with ema``)."""

    ema_half_life: float = setting(0.25, "H: epochs over which the average's memory halves (0: the average is the "
                                         "weights, plain training).")

    def checks(self) -> None:
        if not self.ema_half_life >= 0:
            raise UsageError(f"ema-half-life must be >= 0, got {self.ema_half_life:g}")
        if self.ema_half_life >= self.epochs:  # the initial weights keep 0.5 ** (epochs / H) of the average
            raise UsageError(f"ema-half-life {self.ema_half_life:g} is not below the training's {self.epochs} "
                             f"epoch(s): the final average would keep {0.5 ** (self.epochs / self.ema_half_life):.0%} "
                             "of the initial weights; give a half-life below --epochs (0: plain training)")


class WeightAverage(Callback):
    """The average (``average``: a state dict like the model's) and the swaps around evaluation."""

    def __init__(self, half_life: float):
        self.half_life = half_life
        self.average: dict = {}
        self.trained: dict = {}  # the trained weights while the average is swapped in

    def on_fit_start(self, ctx) -> None:
        if self.average:  # a resumed run brought its average back (load_state_dict, on the CPU)
            self.average = {k: v.to(ctx.device) for k, v in self.average.items()}
        else:
            self.average = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}

    def on_epoch_start(self, ctx) -> None:
        steps = self.half_life * max(ctx.steps_in_epoch, 1)
        self.decay = 0.5 ** (1.0 / steps) if steps > 0 else 0.0

    def on_step_end(self, ctx) -> None:
        import torch

        with torch.no_grad():
            for name, value in ctx.model.state_dict().items():
                average = self.average[name]
                if self.decay == 0.0 or not value.is_floating_point():  # H = 0, and batch norm's step counter
                    average.copy_(value)
                else:
                    average.lerp_(value, 1.0 - self.decay)  # a + (1 - d)(w - a) = d a + (1 - d) w

    def on_eval_start(self, ctx) -> None:
        self.trained = {k: v.detach().clone() for k, v in ctx.model.state_dict().items()}
        ctx.model.load_state_dict(self.average)

    def on_eval_end(self, ctx) -> None:
        ctx.model.load_state_dict(self.trained)
        self.trained = {}

    def state_dict(self) -> dict:
        return {"average": {k: v.detach().cpu().clone() for k, v in self.average.items()}}

    def load_state_dict(self, state: dict) -> None:
        self.average = {k: v.clone() for k, v in state["average"].items()}


class Ema(Algorithm):
    """EMA: train as usual, evaluate and keep an exponential moving average of the weights.

    After each step the average moves towards the weights; its memory halves every
    --ema-half-life epochs. Each epoch's test accuracy and the final model are the
    average's. With no flags: H = 0.25 epochs, on the embedded digits data. H = 0 is plain
    training, bit for bit.

    \b
    Examples:
      effray run ema
      effray run ema --dataset digits-aug --model resnet20 --epochs 10 --ema-half-life 0.5
      effray run infobatch --with ema
    """

    name, order = "ema", AVERAGE  # last: it averages the weights the masks left
    settings = EmaSettings
    bench_cases = (BenchCase("ema", "ema", ("ema",), None, config=method_point,
                             examples=dense_examples, default=False, marker="h"),)

    def __init__(self, cfg, run):
        self.cfg = cfg
        self.average = WeightAverage(cfg.ema_half_life)
        self.callbacks = [self.average]

    def finish(self, run, trained) -> dict:
        """The final model becomes the average (in-process and from Ray Train's last checkpoint alike)."""
        trained.model.load_state_dict(self.average.average)
        return {"ema_half_life": self.cfg.ema_half_life}
