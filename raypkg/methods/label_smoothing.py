"""Label smoothing (Szegedy et al., "Rethinking the Inception Architecture", CVPR 2016, sec. 7):
train against the target q_k = (1 - eps) [k = y] + eps / C instead of the one-hot label, so
the loss is (1 - eps) CE(p, y) + eps * mean_k(-log p_k). Composer counts it among its speed-up
methods (fewer epochs to a target accuracy); Müller et al. (NeurIPS 2019) explain why it can
help and when it hurts (distillation). eps = 0 is plain training, bit for bit.

One algorithm on the engine's loop (``raypkg.algorithms``): a callback replaces the step's
loss (``on_loss``), keeping the plan's example weights. `effray run label-smoothing`, or
``--with label-smoothing`` on any method's training. The epoch rows' ``train_loss`` is the
smoothed objective; ``test_loss`` stays plain cross-entropy.

Free of torch at import: the command line loads this module to build its flags.
"""

from __future__ import annotations

from dataclasses import dataclass

from raypkg.algorithms import LOSS, Algorithm, MethodSettings, method_point
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import setting
from raypkg.errors import UsageError
from raypkg.recipe import BenchCase, dense_examples


@dataclass
class LabelSmoothingSettings(MethodSettings):
    """Label smoothing's one knob, mixed into a config that trains (`effray run label-smoothing`'s,
    or another method's with ``--with label-smoothing``)."""

    smoothing: float = setting(0.1, "eps: the share of each target spread evenly over the classes (0: the one-hot "
                                    "label, plain training).")

    def checks(self) -> None:
        if not 0.0 <= self.smoothing < 1.0:
            raise UsageError(f"smoothing must be in [0, 1), got {self.smoothing:g}")


class SmoothedLoss(Callback):
    """Replaces the step's loss by the smoothed one, with the same example weights."""

    def __init__(self, smoothing: float):
        from raypkg.engine.loop import weighted_cross_entropy

        self.smoothing, self.loss = smoothing, weighted_cross_entropy

    def on_loss(self, ctx) -> None:
        batch = ctx.batch
        batch.loss = self.loss(batch.logits, batch.y, batch.weights, label_smoothing=self.smoothing)


class LabelSmoothing(Algorithm):
    """Label smoothing: train against 1 - eps on the label and eps/C on every class.

    The loss is (1 - eps) times the cross-entropy plus eps times the mean over the classes of
    -log p (Szegedy et al. 2016). With no flags: eps = 0.1 (Composer's default), on the
    embedded digits data. --smoothing 0 is plain training, bit for bit.

    \b
    Examples:
      effray run label-smoothing
      effray run label-smoothing --dataset digits-aug --model resnet20 --epochs 10 --smoothing 0.1
      effray run infobatch --with label-smoothing --smoothing 0.05
    """

    name, order = "label-smoothing", LOSS
    settings = LabelSmoothingSettings
    bench_cases = (BenchCase("label-smoothing", "label-smoothing", ("label-smoothing",), None, config=method_point,
                             examples=dense_examples, default=False, marker="x"),)

    def __init__(self, cfg, run):
        self.cfg = cfg
        self.callbacks = [SmoothedLoss(cfg.smoothing)]

    def finish(self, run, trained) -> dict:
        return {"smoothing": self.cfg.smoothing}
