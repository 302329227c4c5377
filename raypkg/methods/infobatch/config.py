"""``InfoBatchSettings``: InfoBatch's two knobs, free of torch (the command line reads them)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from raypkg.algorithms import MethodSettings
from raypkg.engine.config import setting
from raypkg.errors import UsageError


@dataclass
class InfoBatchSettings(MethodSettings):
    """InfoBatch (Qin et al., "InfoBatch: Lossless Training Speed Up by Unbiased Dynamic Data
    Pruning", ICLR 2024), with the paper's defaults: r = 0.5, delta = 0.875; mixed into a
    config that trains (`effray run infobatch`'s, or another method's with ``--with infobatch``)."""

    BATCH_PLAN: ClassVar[str | None] = "InfoBatch's pruned epochs"
    PLAN_READS_FILES: ClassVar[bool] = True  # streamed images: read by the plan, in process

    prune_ratio: float = setting(0.5, "r: the share of the well-learned examples (loss below the mean) pruned "
                                      "each epoch, at random; the kept ones weigh 1/(1-r).")
    delta: float = setting(0.875, "Prune during the first delta of the epochs; the rest train on all the data "
                                  "(annealing).")

    def checks(self) -> None:
        if not 0.0 <= self.prune_ratio < 1.0:
            raise UsageError(f"prune-ratio must be in [0, 1), got {self.prune_ratio:g}")
        if not 0.0 <= self.delta <= 1.0:
            raise UsageError(f"delta must be in [0, 1], got {self.delta:g}")

    def pruning_epochs(self) -> int:
        """Epochs 0 .. this - 1 prune (the reference's ``epoch < delta * num_epochs``)."""
        return math.ceil(self.delta * self.epochs)

