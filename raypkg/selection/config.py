"""``CoresetConfig``: the training config plus what a DeepCore-style coreset run adds."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from raypkg.engine.config import TrainConfig
from raypkg.errors import UsageError, choose

EMBEDDINGS = ("full", "bias", "proj")  # see raypkg.selection.embeddings
GRAND_DEFAULT_REPEATS = 10  # DeepCore's R for GraNd


@dataclass
class CoresetConfig(TrainConfig):
    """Warm-up on the full data (``selection_epochs``, ``repeats`` times for GraNd), select
    ``fraction`` (or ``budget``) with ``selection``, train on the weighted subset for
    ``epochs``. ``warmup_epochs`` stays the LR warm-up of TrainConfig; the CLI calls the
    pre-selection training ``--warmup-epochs`` and the LR one ``--lr-warmup-epochs``."""

    selection: str = "uniform"
    fraction: float | None = 0.1
    budget: int | None = None
    class_budget: int | None = None  # the same number from every class
    balance: bool = True
    selection_epochs: int = 5  # full-data warm-up before selecting (DeepCore's selection_epochs)
    repeats: int | None = None  # warm-ups averaged by GraNd; default 10 for grand, 1 otherwise
    actors: int = 0  # shard actors for per-example work; 0: in-process
    embedding: str = "full"  # full | bias | proj (see selection.embeddings)
    proj_dim: int = 256
    options: dict[str, Any] = field(default_factory=dict)  # method options, e.g. {eta: 0.05}
    cache: bool = True  # reuse warm-ups and selections under <out>/.cache

    def validate(self) -> "CoresetConfig":
        super().validate()
        from raypkg.selection.registry import get_selector, resolve_options

        selector = get_selector(self.selection)
        self.options = resolve_options(selector, self.options)
        choose("embedding", self.embedding, EMBEDDINGS)
        if self.budget is not None or self.class_budget is not None:
            self.fraction = None
        if sum(v is not None for v in (self.fraction, self.budget, self.class_budget)) != 1:
            raise UsageError("give exactly one of --fraction, --budget and --class-budget")
        if self.fraction is not None and not (0.0 < float(self.fraction) <= 1.0):
            raise UsageError(f"fraction must be in (0, 1], got {float(self.fraction):g}")
        if self.budget is not None and self.budget < 1:
            raise UsageError(f"budget must be a positive integer, got {self.budget}")
        if self.class_budget is not None and self.class_budget < 1:
            raise UsageError(f"class budget must be a positive integer, got {self.class_budget}")
        if self.selection_epochs < 0:
            raise UsageError(f"warm-up epochs must be >= 0, got {self.selection_epochs}")
        if self.repeats is not None and self.repeats < 1:
            raise UsageError(f"repeats must be >= 1, got {self.repeats}")
        if self.repeats not in (None, 1) and not selector.uses_repeats:
            raise UsageError(f"--repeats is for grand; {self.selection!r} uses one warm-up")
        if self.actors < 0:
            raise UsageError(f"actors must be >= 0, got {self.actors}")
        if self.proj_dim < 1:
            raise UsageError(f"proj-dim must be >= 1, got {self.proj_dim}")
        return self

    @property
    def num_repeats(self) -> int:
        from raypkg.selection.registry import get_selector

        if self.repeats is not None:
            return self.repeats
        return GRAND_DEFAULT_REPEATS if get_selector(self.selection).uses_repeats else 1
