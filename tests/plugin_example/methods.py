"""Methods defined outside effray (issue 81), named by import path in the tests
(``plugin_example.methods:Hardest``): one that works, and one for each refusal."""

from dataclasses import dataclass, replace

from raypkg.algorithms import DATA, Algorithm, MethodSettings
from raypkg.engine.callbacks import Callback
from raypkg.engine.config import setting
from raypkg.errors import UsageError


@dataclass
class HardestSettings(MethodSettings):
    keep: float = setting(0.5, "The fraction of each batch trained: its highest-loss examples.")

    def checks(self) -> None:
        if not 0 < self.keep <= 1:
            raise UsageError(f"keep must be in (0, 1], got {self.keep:g}")


class KeepHardest(Callback):
    def __init__(self, keep: float):
        self.keep = keep

    def on_batch_start(self, ctx) -> None:
        import torch
        import torch.nn.functional as F

        batch = ctx.batch
        with torch.no_grad():
            losses = F.cross_entropy(ctx.model(batch.x), batch.y, reduction="none")
        kept = losses.topk(max(1, round(self.keep * len(batch.y)))).indices
        pick = lambda t: None if t is None else t[kept.to(t.device)]  # noqa: E731
        ctx.batch = replace(batch, positions=pick(batch.positions), x=pick(batch.x), y=pick(batch.y),
                            weights=pick(batch.weights))


class Hardest(Algorithm):
    """Hardest k: train each batch's --keep x B highest-loss examples only."""

    order = DATA
    settings = HardestSettings

    def __init__(self, cfg, run):
        self.cfg, self.callbacks = cfg, [KeepHardest(cfg.keep)]

    def finish(self, run, trained) -> dict:
        return {"keep": self.cfg.keep}


# ------------------------------------------------------------------------- refused

class NotAnAlgorithm:
    """A class of its own, not an Algorithm."""


def not_a_class():
    """A function."""


class UndecoratedSettings(MethodSettings):
    keep: float = 0.5


class Undecorated(Hardest):
    settings = UndecoratedSettings


@dataclass
class EpochsSettings(MethodSettings):
    epochs: int = setting(3, "Clashes with the training config's --epochs.")


class ClashesWithEpochs(Hardest):
    settings = EpochsSettings


@dataclass
class SmoothingSettings(MethodSettings):
    smoothing: float = setting(0.2, "Clashes with label smoothing's --smoothing.")


class ClashesWithLabelSmoothing(Hardest):
    settings = SmoothingSettings


@dataclass
class PlanSettings(MethodSettings):
    BATCH_PLAN = "a plan of its own"
    plan_size: int = setting(2, "Brings a batch plan.")


class BringsAPlan(Hardest):
    settings = PlanSettings


class RaisesInTraining(Hardest):
    def __init__(self, cfg, run):
        self.cfg, self.callbacks = cfg, [Breaks()]


class Breaks(Callback):
    def on_after_backward(self, ctx) -> None:
        if ctx.global_step == 1:
            raise ValueError("the plug-in's own bug")
