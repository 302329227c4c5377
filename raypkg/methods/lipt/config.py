"""``LiptConfig``: a coreset run whose selection model comes from LiPT's pre-training.

Ro et al., "Lowering the Pre-training Tax for Gradient-based Subset Training: A
Lightweight Distributed Pre-Training Toolkit", ICML 2023: K sparse models, each trained
for a few epochs on its own disjoint shard, merged into one model for selection. The
released flags: number of models (10), epochs per model (5), density / sparse init
(0.05, ERK), augmentation on/off, re-selection every k epochs. How the K masks relate
and how the K sparse models are averaged is ``merge`` (``raypkg.methods.lipt.merge``).
"""

from __future__ import annotations

from dataclasses import dataclass

from raypkg.engine.config import setting
from raypkg.errors import UsageError, choose
from raypkg.selection.config import CoresetConfig
from raypkg.sparsity.settings import MaskSettings

SCORES = ("merged", "ensemble")
MERGE_RULES = ("shared-mask", "keepers", "zeros")  # raypkg.methods.lipt.merge


@dataclass
class LiptConfig(MaskSettings, CoresetConfig):
    """Stage 1: ``shards`` models, ``pre_epochs`` epochs each on a disjoint shard with a
    random mask (``MaskSettings``: ``density``, ``sparse_init``, ``scale_init``; and
    RandAugment N=1 M=5 on images when ``randaugment``); stage 2: their average by the
    ``merge`` rule; stage 3: ``selection`` with it (GraNd: ``score``); stage 4: the subset
    for ``epochs``, re-selected every ``reselect_every`` epochs when given
    (``raypkg.selection.adaptive``)."""

    selection: str = setting("grand", "Selection method with the pre-trained model: grand, glister, gradmatch, "
                                      "craig.", flag="--selection/--method")
    shards: int = setting(10, "Number of shard models K (disjoint, class-stratified shards); may exceed --workers.")
    pre_epochs: int = setting(5, "Pre-training epochs of every shard model.")
    density: float = setting(0.05, "Density of each shard model's random mask, in (0, 1].")
    shared_init: bool = setting(True, "Start every shard model from the same initial weights (seeded by --seed), "
                                      "so that their average is a working model; off: each from its own seed.")
    randaugment: bool = setting(True, "RandAugment N=1 M=5 on every pre-training batch (image data only), "
                                      "after the dataset's crop/flip.")
    score: str = setting("merged", "GraNd: score with the merged model, or average the K shard models' "
                                   "scores in place of repeats.", choices=SCORES)
    merge: str = setting("shared-mask", "How the K sparse models merge: shared-mask (one ERK mask drawn from "
                                        "--seed, used by every shard; their plain average), keepers (each shard "
                                        "its own mask; every weight averaged over the shards that keep it) or "
                                        "zeros (own masks, averaged with their zeros: a weight kept by j of K "
                                        "shards shrinks by j/K).", choices=MERGE_RULES)
    bn_samples: int = setting(2048, "Training examples used to re-estimate batch-norm statistics after merging.")

    def validate(self) -> "LiptConfig":
        super().validate()
        from raypkg.selection.registry import get_selector

        if self.shards < 1:
            raise UsageError(f"shards must be >= 1, got {self.shards}")
        if self.pre_epochs < 1:
            raise UsageError(f"pre-epochs must be >= 1, got {self.pre_epochs}")
        self.check_mask_settings()
        choose("score", self.score, SCORES)
        choose("merge rule", self.merge, MERGE_RULES)
        if not get_selector(self.selection).needs_model:
            raise UsageError(f"LiPT pre-trains a model to select with; {self.selection!r} selects without one "
                             f"(effray run coreset --selection {self.selection})")
        if self.score == "ensemble" and not get_selector(self.selection).uses_repeats:
            raise UsageError(f"--score ensemble averages GraNd scores; {self.selection!r} uses the merged model")
        if self.repeats not in (None, 1):
            raise UsageError("--repeats is DeepCore's; LiPT uses the K shard models (--score ensemble)")
        if get_selector(self.selection).warmup_callback is not None:
            raise UsageError(f"{self.selection!r} scores what DeepCore's warm-up recorded; LiPT's shard models "
                             f"record nothing (effray run coreset --selection {self.selection})")
        if self.warm_start:
            raise UsageError("--warm-start is for effray run coreset; LiPT's shard pre-training is its warm start")
        if self.bn_samples < 1:
            raise UsageError(f"bn-samples must be >= 1, got {self.bn_samples}")
        return self

    def pretrain_settings(self) -> dict:
        """LiPT's pre-training is its own (shards, pre_epochs, density, score, merge in the
        summary's LiPT fields): DeepCore's warm-up epochs and repeats do not apply."""
        return {}

    @property
    def num_repeats(self) -> int:
        """Models GraNd averages: the K shard models with ``--score ensemble``, else the merged one."""
        return self.shards if self.score == "ensemble" else 1
