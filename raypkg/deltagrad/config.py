"""``DeltaGradConfig``: the one config of `effray unlearn train`, its tune trials and its bench.

Kept free of torch so that building the command line stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass

from raypkg.engine.config import RunConfig, check_lr_lists, setting
from raypkg.errors import UsageError, choose

DTYPE_NAMES = ("float64", "float32")  # raypkg.deltagrad.trajectory.DTYPES maps them to torch dtypes


@dataclass
class DeltaGradConfig(RunConfig):
    """`effray unlearn train`: plain SGD (or GD) whose trajectory DeltaGrad replays
    (Wu, Dobriban, Davidson, ICML 2020, Algorithm 1). Momentum and augmentation break exact
    replay, so they exist only to be refused with a clear line."""

    model: str = setting("logreg", "logreg, mlp or lenet300-100 (fed flattened features).")
    epochs: int = setting(20, "Epochs.")
    batch_size: int = setting(256, "Mini-batch size; 0 = full-batch GD.")
    lr: list[float] = setting(help="Learning rate(s), e.g. `--lr 0.1 0.05 --lrlen 10 10`.", factory=lambda: [0.1])
    lrlen: list[int] = setting(help="Epochs for each --lr value.", factory=list)
    weight_decay: float = setting(1e-4, "L2 coefficient beta.", flag="--weight-decay/--wd")
    momentum: float = setting(0.0, "Must be 0: momentum breaks exact replay.")
    augment: bool = setting(False, "Must be off: augmentation breaks exact replay.")
    holdout: float = setting(0.0, "Fraction of the training split left out (the pool for `add`).")
    dtype: str = setting("float64", "Parameters and cache.", choices=DTYPE_NAMES)

    def __post_init__(self) -> None:
        for key in ("lr", "lrlen"):
            value = getattr(self, key)
            setattr(self, key, list(value) if isinstance(value, (list, tuple)) else [value])

    def validate(self) -> "DeltaGradConfig":
        super().validate()
        choose("dtype", self.dtype, DTYPE_NAMES)
        if self.epochs <= 0:
            raise UsageError(f"epochs must be a positive integer, got {self.epochs}")
        if self.batch_size < 0:
            raise UsageError(f"batch-size must be >= 0 (0 = full-batch GD), got {self.batch_size}")
        if self.momentum != 0:
            raise UsageError(f"--momentum {self.momentum}: DeltaGrad replays plain SGD, and momentum "
                             "breaks exact replay; use --momentum 0")
        if self.augment:
            raise UsageError("--augment: random augmentation breaks exact replay; DeltaGrad needs it off")
        check_lr_lists(self.lr, self.lrlen)
        if self.weight_decay < 0:
            raise UsageError(f"weight decay must be >= 0, got {self.weight_decay}")
        if not 0 <= self.holdout < 1:
            raise UsageError(f"--holdout must be in [0, 1), got {self.holdout}")
        if self.data_path == "stream":
            raise UsageError("--data-path stream: DeltaGrad replays full-batch gradients over features it "
                             "holds in memory; use --data-path memory")
        return self

    def data_options(self) -> dict:
        """DeltaGrad's models take flattened features, whatever ``flat`` says."""
        return {**super().data_options(), "flat": True, "data_path": "memory"}
