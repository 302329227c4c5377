"""``InfoBatchSettings``: InfoBatch's two knobs; ``InfoBatchConfig``: the training config with them."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

from raypkg.engine.config import TrainConfig, setting
from raypkg.errors import UsageError


@dataclass
class InfoBatchSettings:
    """InfoBatch (Qin et al., "InfoBatch: Lossless Training Speed Up by Unbiased Dynamic Data
    Pruning", ICLR 2024), with the paper's defaults: r = 0.5, delta = 0.875; mixed into a
    config that trains (``InfoBatchConfig``, or another method's with ``--with infobatch``)."""

    BATCH_PLAN: ClassVar[str | None] = "InfoBatch's pruned epochs"
    PLAN_READS_FILES: ClassVar[bool] = True  # streamed images: read by the plan, in process
    NEEDS: ClassVar[dict] = {}

    prune_ratio: float = setting(0.5, "r: the share of the well-learned examples (loss below the mean) pruned "
                                      "each epoch, at random; the kept ones weigh 1/(1-r).")
    delta: float = setting(0.875, "Prune during the first delta of the epochs; the rest train on all the data "
                                  "(annealing).")

    def validate(self):
        super().validate()
        if not 0.0 <= self.prune_ratio < 1.0:
            raise UsageError(f"prune-ratio must be in [0, 1), got {self.prune_ratio:g}")
        if not 0.0 <= self.delta <= 1.0:
            raise UsageError(f"delta must be in [0, 1], got {self.delta:g}")
        return self

    def pruning_epochs(self) -> int:
        """Epochs 0 .. this - 1 prune (the reference's ``epoch < delta * num_epochs``)."""
        return math.ceil(self.delta * self.epochs)


@dataclass
class InfoBatchConfig(InfoBatchSettings, TrainConfig):
    """InfoBatch: each epoch prunes r of the well-learned examples at random and reweighs the rest.

    Well-learned: last seen loss below the mean. The kept ones weigh 1/(1-r), so an epoch's
    expected gradient is full data's; after --delta of the epochs all data trains. With no
    flags: r = 0.5, delta = 0.875 (the paper's), on the embedded digits data. summary.json
    has steps, full_steps and steps_saved; metrics.parquet the examples kept per epoch.

    \b
    Examples:
      effray run infobatch
      effray run infobatch --dataset digits-aug --model resnet20 --epochs 10 --lr 0.1
      effray run infobatch --prune-ratio 0.3 --delta 0.9 --workers 2
    """
