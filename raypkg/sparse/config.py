"""``SparseConfig``: the training config plus the knobs of the AGENT/ITOP README."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from raypkg.engine.config import TrainConfig
from raypkg.errors import UsageError
from raypkg.sparse.dst import DEATH_MODES, GROWTH_MODES, REDISTRIBUTION_MODES, check_choice
from raypkg.sparse.masks import SPARSE_INITS, check_density


def _number(x: float) -> float | int:
    return int(x) if float(x).is_integer() else x


@dataclass
class SparseConfig(TrainConfig):
    """Dense training unless ``sparse``; SET when growth is random, RigL when gradient;
    ``agc`` adds adaptive gradient correction. Defaults follow the paper's setup (spec
    "Training setup"): SGD with Nesterov momentum 0.9, wd 5e-4, LR x0.1 at 1/2 and 3/4
    of training (multistep; the milestones default to those epochs)."""

    schedule: str = "multistep"
    nesterov: bool = True
    sparse: bool = False
    sparse_init: str = "ERK"
    density: float = 0.05
    scale_init: bool = True  # initial weights x 1/sqrt(layer density) (see StaticMask)
    growth: str = "random"
    death: str = "magnitude"
    redistribution: str = "none"
    death_rate: float = 0.5
    update_frequency: int = 100  # optimizer steps between mask updates
    multiplier: int = 1  # stretches epochs and the LR schedule; the update interval stays
    agc: bool = False
    agc_gamma: float = 0.1
    agc_alpha: float = 0.3
    agc_sample: int | None = None  # None: the snapshot gradient over the whole training set

    def validate(self) -> "SparseConfig":
        if self.schedule == "multistep" and not self.milestones:
            self.milestones = [_number(self.epochs / 2), _number(3 * self.epochs / 4)]
        super().validate()
        check_density(self.density)
        if self.sparse_init not in SPARSE_INITS:
            raise UsageError(f"unknown sparse init {self.sparse_init!r}; choose from {', '.join(SPARSE_INITS)}")
        check_choice("growth", self.growth, GROWTH_MODES)
        check_choice("death", self.death, DEATH_MODES)
        check_choice("redistribution", self.redistribution, REDISTRIBUTION_MODES)
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
        return self

    def stretched(self) -> "SparseConfig":
        """The config that trains: epochs and LR milestones (or lrlen) times ``multiplier``
        (ITOP's extended training); multiplier 1 in the result, so stretching is once."""
        m = self.multiplier
        if m == 1:
            return self
        return dataclasses.replace(self, epochs=self.epochs * m, milestones=[_number(x * m) for x in self.milestones],
                                   lrlen=[n * m for n in self.lrlen], multiplier=1)
