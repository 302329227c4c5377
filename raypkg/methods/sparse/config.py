"""``SparseSettings``: the knobs of the AGENT/ITOP README, on ``MaskSettings`` (the random
mask's settings it shares with LiPT's shard models: ``raypkg.sparsity.settings``), free of
torch; ``SparseConfig``: `effray run sparse`'s config, the training config with them and
defaults of its own (the paper's schedule)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from raypkg.algorithms import MethodSettings
from raypkg.engine.config import SCHEDULES, TrainConfig, setting
from raypkg.errors import UsageError, choose
from raypkg.sparsity.settings import MaskSettings

# The choices live here, free of torch, so that building the command line stays fast.
GROWTH_MODES = ("random", "gradient", "momentum")
DEATH_MODES = ("magnitude", "SET")
REDISTRIBUTION_MODES = ("none", "magnitude", "nonzeros")
# The settings that act only with --agc, and those only with sparse masks (not --dense).
AGC_SETTINGS = ("agc_gamma", "agc_alpha", "agc_sample")
MASK_SETTINGS = ("sparse_init", "density", "scale_init", "growth", "death", "redistribution", "death_rate",
                 "update_frequency", "sparse_backend")


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


@dataclass
class SparseSettings(MaskSettings, MethodSettings):
    """Sparse training's own settings, mixed into a config that trains (``SparseConfig``, or
    another method's with ``--with sparse``): sparse masks unless ``sparse`` is off
    (``--dense``, the baseline); RigL when growth is gradient (the default), SET when
    random; ``agc`` adds adaptive gradient correction."""

    NEEDS = {**{name: (lambda cfg: cfg.agc, "needs --agc") for name in AGC_SETTINGS},
             **{name: (lambda cfg: cfg.sparse, "sets the sparse masks; --dense trains without them "
                                               "(drop one of the two)") for name in MASK_SETTINGS}}

    sparse: bool = setting(True, "Sparse training (the default); --dense trains the dense baseline.",
                           flag="--sparse/--dense")
    growth: str = setting("gradient", "Regrowth: gradient = RigL, random = SET, momentum.", choices=GROWTH_MODES)
    death: str = setting("magnitude", "Pruning.", choices=DEATH_MODES)
    redistribution: str = setting("none", "Regrowth budget between layers.", choices=REDISTRIBUTION_MODES)
    death_rate: float = setting(0.5, "Initial pruning rate, cosine-decayed.")
    update_frequency: int = setting(100, "Optimizer steps between mask updates.")
    multiplier: int = setting(1, "Stretch epochs and the LR schedule m times; the update interval stays.")
    agc: bool = setting(False, "Adaptive gradient correction (AGENT).")
    agc_gamma: float = setting(0.1, "AGC scale gamma of the balance coefficient.")
    agc_alpha: float = setting(0.3, "AGC smoothing alpha of the balance coefficient.")
    agc_sample: int | None = setting(None, "AGC: examples sampled for the snapshot gradient (default: the whole "
                                           "training set).")

    def checks(self) -> None:
        self.check_mask_settings()
        choose("growth", self.growth, GROWTH_MODES)
        choose("death", self.death, DEATH_MODES)
        choose("redistribution", self.redistribution, REDISTRIBUTION_MODES)
        if self.update_frequency < 1:
            raise UsageError(f"update frequency must be >= 1, got {self.update_frequency}")
        if not 0 <= self.death_rate < 1:
            raise UsageError(f"death rate must be in [0, 1), got {self.death_rate}")
        if self.multiplier < 1:
            raise UsageError(f"multiplier must be a positive integer, got {self.multiplier}")
        if self.sparse and (self.growth == "momentum" or self.redistribution == "magnitude") and self.momentum <= 0:
            raise UsageError(f"growth {self.growth!r} / redistribution {self.redistribution!r} need momentum > 0")
        if self.agc_gamma < 0:
            raise UsageError(f"agc gamma must be >= 0, got {self.agc_gamma}")
        if not 0 < self.agc_alpha <= 1:
            raise UsageError(f"agc alpha must be in (0, 1], got {self.agc_alpha}")
        if self.agc_sample is not None and self.agc_sample < 1:
            raise UsageError(f"AGC needs a snapshot gradient source: --agc-sample must be >= 1 example "
                             f"(or absent for the whole training set), got {self.agc_sample}")

    def for_training(self):
        return super().for_training().stretched()

    def stretched(self):
        """The config that trains: epochs and LR milestones (or lrlen) times ``multiplier``
        (ITOP's extended training); multiplier 1 in the result, so stretching is once."""
        m = self.multiplier
        if m == 1:
            return self
        return dataclasses.replace(self, epochs=self.epochs * m, milestones=[_number(x * m) for x in self.milestones],
                                   lrlen=[n * m for n in self.lrlen], multiplier=1)


@dataclass
class SparseConfig(SparseSettings, TrainConfig):
    """`effray run sparse`: the training config with sparse training's settings. Defaults
    follow the paper's setup (spec "Training setup"): SGD with Nesterov momentum 0.9, wd
    5e-4, LR x0.1 at 1/2 and 3/4 of training (multistep; the milestones default to those
    epochs). With ``--with sparse``, the other method's training defaults hold."""

    schedule: str = setting("multistep", "LR schedule (default: x0.1 at 1/2 and 3/4 of training).",
                            choices=SCHEDULES)
    nesterov: bool = setting(True, "Nesterov momentum.")

    def resolved(self) -> "SparseConfig":
        """Multistep milestones default to 1/2 and 3/4 of the epochs."""
        cfg = super().resolved()
        if cfg.schedule != "multistep" or cfg.milestones:
            return cfg
        return dataclasses.replace(cfg, milestones=[_number(cfg.epochs / 2), _number(3 * cfg.epochs / 4)])
