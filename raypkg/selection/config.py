"""``CoresetConfig``: the training config plus what a DeepCore-style coreset run adds."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from raypkg.engine.config import TrainConfig, setting
from raypkg.errors import UsageError, choose
from raypkg.selection.embedding_kinds import EMBEDDINGS

WEIGHTINGS = ("loss", "sample", "none")  # see raypkg.selection.weighting
GRAND_DEFAULT_REPEATS = 10  # DeepCore's R for GraNd
DEFAULT_FRACTION = 0.1  # when none of fraction, budget and class_budget is given


@dataclass
class CoresetConfig(TrainConfig):
    """Pre-train on the full data (``pretrain_epochs``, ``repeats`` times for GraNd), select
    ``fraction`` (or ``budget``) with ``selection``, train on the subset for ``epochs`` with
    its weights applied as ``weighting`` says (``raypkg.selection.weighting``)."""

    EXCLUSIVE = (("fraction", "budget", "class_budget"),)
    BATCH_PLAN = "the subset's batches"

    selection: str = setting("uniform", "Selection method: uniform, grand, glister, gradmatch, craig.",
                             flag="--selection/--method")
    fraction: float | None = setting(None, f"Fraction of the training set to keep, in (0, 1] (default "
                                           f"{DEFAULT_FRACTION} without --budget or --class-budget).")
    budget: int | None = setting(None, "Number of examples to keep (instead of --fraction).")
    class_budget: int | None = setting(None, "Examples to keep from every class (instead of --fraction).")
    balance: bool = setting(True, "Select per class, the budget split by class share.")
    pretrain_epochs: int = setting(5, "Full-data training epochs before selection (DeepCore's selection_epochs).",
                                   flag="--pretrain-epochs/--selection-epochs")
    repeats: int | None = setting(None, "GraNd: independent pre-trainings averaged (default 10 for grand).")
    selection_model: str | None = setting(None, "SVP (Coleman et al., ICLR 2020): a cheaper proxy model that warms "
                                                "up and scores the data instead of --model (e.g. lenet5 or mlp for "
                                                "resnet20), at the run's learning rate scaled by the two models' "
                                                "default rates; its seconds are the warm-up's. Default: --model.")
    actors: int = setting(0, "Shard actors for per-example work (0: in-process).")
    embedding: str = setting("full", "full: exact last-layer gradient; bias: g alone; proj: random projection.",
                             choices=EMBEDDINGS)
    proj_dim: int = setting(256, "Dimension of --embedding proj.")
    # method options, e.g. {eta: 0.05}; on the command line --option KEY=VALUE
    options: dict[str, Any] = setting(factory=dict, cli=False)
    cache: bool = setting(True, "Reuse cached pre-trained models and selections under OUT/.cache.")
    weighting: str | None = setting(None, "How the subset's weights train: loss (mean(w*l), w of mean 1), sample "
                                          "(draw with replacement by w), none (default: the method's, README).",
                                    choices=WEIGHTINGS)
    weight_cap: float | None = setting(None, "Clip weights at this multiple of their mean, inf: no cap "
                                             "(default: the method's, README).")
    stratify: str = setting("none", "ccs: re-pick a score-based selector's subset (grand, ...) by coverage-centric "
                                    "stratified sampling of its scores, per class (Zheng et al., ICLR 2023); "
                                    "none: its top-k.", choices=("none", "ccs"))
    ccs_beta: float | None = setting(None, "--stratify ccs: share of the hardest (highest-score) examples dropped "
                                           "first, in [0, 1) (default by the fraction kept: 0.3 below 0.15, 0.2 "
                                           "below 0.25, 0.1 below 0.3, else 0).")
    reselect_every: int | None = setting(None, "Select again every R epochs with the model being trained (CORDS's "
                                               "select_every; no DeepCore warm-up: the first subset is uniform, or "
                                               "--warm-start's). Default: select once.",
                                         flag="--reselect-every/--reselect")
    warm_start: float = setting(0.0, "With --reselect-every: CORDS's kappa. The first round(kappa*E*f) epochs train "
                                     "on the full data and the epochs up to int(kappa*E) are skipped, so the run "
                                     "costs E subset epochs; the first selection follows.")
    per_batch: bool = setting(False, "gradmatch, craig: select mini-batches of --batch-size (their mean gradient "
                                     "embeddings) instead of examples, as CORDS's GradMatchPB and CRAIGPB; "
                                     "batches mix classes, so the subset is not class-balanced.")

    def resolved(self) -> "CoresetConfig":
        """The selector's options, weighting and weight cap where not given; fraction 0.1
        when no size is given."""
        from raypkg.selection.registry import get_selector, resolve_options

        cfg = super().resolved()
        selector = get_selector(cfg.selection)
        sized = any(v is not None for v in (cfg.fraction, cfg.budget, cfg.class_budget))
        return dataclasses.replace(
            cfg, options=resolve_options(selector, cfg.options), fraction=cfg.fraction if sized else DEFAULT_FRACTION,
            weighting=cfg.weighting or selector.weighting,
            weight_cap=selector.weight_cap if cfg.weight_cap is None else cfg.weight_cap)

    def validate(self) -> "CoresetConfig":
        super().validate()
        from raypkg.selection.registry import (
            check_stratify,
            check_streams,
            get_selector,
            load_selectors,
            resolve_options,
        )

        selector = get_selector(self.selection)
        if self.data_path == "stream":  # before any pre-training (auto is checked once resolved)
            check_streams(self.selection)
        resolve_options(selector, self.options)
        choose("embedding", self.embedding, EMBEDDINGS)
        if sum(v is not None for v in (self.fraction, self.budget, self.class_budget)) > 1:
            raise UsageError("give exactly one of --fraction, --budget and --class-budget")
        if self.fraction is not None and not (0.0 < float(self.fraction) <= 1.0):
            raise UsageError(f"fraction must be in (0, 1], got {float(self.fraction):g}")
        if self.budget is not None and self.budget < 1:
            raise UsageError(f"budget must be a positive integer, got {self.budget}")
        if self.class_budget is not None and self.class_budget < 1:
            raise UsageError(f"class budget must be a positive integer, got {self.class_budget}")
        if self.pretrain_epochs < 0:
            raise UsageError(f"pretrain-epochs must be >= 0, got {self.pretrain_epochs}")
        if self.weighting is not None:
            choose("weighting", self.weighting, WEIGHTINGS)
        if self.weight_cap is not None and not float(self.weight_cap) >= 1:
            raise UsageError(f"weight-cap must be a number >= 1 (a multiple of the mean weight), got {self.weight_cap}")
        if self.repeats is not None and self.repeats < 1:
            raise UsageError(f"repeats must be >= 1, got {self.repeats}")
        if self.repeats not in (None, 1) and not selector.uses_repeats:
            repeating = " and ".join(sorted(name for name, s in load_selectors().items() if s.uses_repeats))
            raise UsageError(f"--repeats is for {repeating}; {self.selection!r} uses one warm-up")
        if self.actors < 0:
            raise UsageError(f"actors must be >= 0, got {self.actors}")
        check_stratify(selector, self.stratify, self.ccs_beta)
        if self.ccs_beta is not None:
            if self.fraction is not None and float(self.fraction) > 1.0 - float(self.ccs_beta):
                raise UsageError(f"--ccs-beta {self.ccs_beta:g} drops more than 1 - fraction "
                                 f"({1.0 - float(self.fraction):g}) of the data")
        if self.proj_dim < 1:
            raise UsageError(f"proj-dim must be >= 1, got {self.proj_dim}")
        self.check_reselection(selector)
        self.check_selection_model(selector)
        return self

    def check_selection_model(self, selector) -> None:
        """``--selection-model`` names a model, and a warm-up it replaces."""
        if self.selection_model is None:
            return
        from raypkg.models.registry import model_entry

        try:
            model_entry(self.selection_model)
        except UsageError as e:  # as --proxy-model's: the line names the flag
            raise UsageError(f"--selection-model: {e}") from None
        if not selector.needs_model:
            raise UsageError(f"--selection-model is for selectors that score with a model; {self.selection!r} "
                             "does not use one")
        if self.reselect_every is not None:
            raise UsageError("--selection-model warms up a proxy once; --reselect-every selects with the model "
                             "being trained")

    def scoring_config(self) -> "CoresetConfig":
        """The config of the model(s) that score the data: with ``--selection-model`` (SVP)
        that proxy, at the run's learning rate scaled by default_lr(proxy) / default_lr(model)
        (as ``proxy-selection``'s proxy trains); else this config."""
        if self.selection_model is None or self.selection_model == self.model:
            return self
        from raypkg.models.defaults import default_lr

        scale = default_lr(self.selection_model) / default_lr(str(self.model))
        return dataclasses.replace(self, model=self.selection_model, lr=[lr * scale for lr in self.lr])

    def check_reselection(self, selector) -> None:
        """``--reselect-every``, ``--warm-start`` and ``--per-batch`` (``raypkg.selection.adaptive``)."""
        if self.reselect_every is not None:
            if self.reselect_every < 1:
                raise UsageError(f"reselect-every must be >= 1 epochs, got {self.reselect_every}")
            if selector.epoch_plan is not None:
                raise UsageError(f"{self.selection!r} draws a fresh subset every epoch by itself: "
                                 "drop --reselect-every")
            if self.repeats not in (None, 1):
                raise UsageError("--reselect-every selects with the one model being trained: drop --repeats")
            if selector.warmup_callback is not None:
                raise UsageError(f"{self.selection!r} scores what DeepCore's warm-up recorded; --reselect-every "
                                 "selects with the model being trained, which records nothing")
            if self.data_path == "stream":
                raise UsageError("--reselect-every trains on the whole split in memory: use --data-path memory")
            if self.workers and self.actors:
                raise UsageError("--reselect-every with --workers selects on rank 0 of Ray Train: drop --actors")
        if not 0.0 <= float(self.warm_start) < 1.0:
            raise UsageError(f"warm-start must be in [0, 1), got {float(self.warm_start):g}")
        if self.reselect_every is not None:  # the first round (raypkg.selection.adaptive.Reselect)
            first = int(float(self.warm_start) * self.epochs) or self.reselect_every
            if first >= self.epochs:
                raise UsageError(f"--reselect-every {self.reselect_every}: the first selection round would come at "
                                 f"epoch {first + 1} of {self.epochs}, so {self.selection} would never select "
                                 "again; lower --reselect-every (or raise --epochs)")
        if self.warm_start and self.reselect_every is None:
            raise UsageError("--warm-start is the warm start of --reselect-every R: give both")
        if self.per_batch:
            from raypkg.selection.registry import load_selectors

            if not selector.per_batch:
                per_batch = ", ".join(sorted(name for name, s in load_selectors().items() if s.per_batch))
                raise UsageError(f"--per-batch selects mini-batches with {per_batch}; {self.selection!r} "
                                 "selects examples")
            if self.class_budget is not None:
                raise UsageError("--per-batch selects mini-batches, which mix classes: use --fraction or --budget")
            if self.data_path == "stream":
                raise UsageError("--per-batch averages gradients over mini-batches in memory: use --data-path memory")

    def pretrain_settings(self) -> dict:
        """What the summary records of this config's pre-training (DeepCore's warm-up;
        none for a selector without a model)."""

        warmed = self.deepcore_warmup
        return {"pretrain_epochs": self.pretrain_epochs if warmed else 0, "repeats": self.num_repeats if warmed else 0,
                **({"selection_model": self.selection_model} if warmed and self.selection_model else {})}

    @property
    def deepcore_warmup(self) -> bool:
        """Whether selection looks through DeepCore's full-data warm-up: a model-based selector
        that selects once (with --reselect-every it selects with the model being trained)."""
        from raypkg.selection.registry import get_selector

        return get_selector(self.selection).needs_model and self.reselect_every is None

    @property
    def num_repeats(self) -> int:
        from raypkg.selection.registry import get_selector

        if self.repeats is not None:
            return self.repeats
        return GRAND_DEFAULT_REPEATS if get_selector(self.selection).uses_repeats else 1


# What only training on the subset uses: `effray select` (warm up and select, no training) refuses them.
SUBSET_TRAINING = ("epochs", "workers", "weighting", "weight_cap", "reselect_every", "warm_start", "stack",
                   "target_acc")


@dataclass
class SelectConfig(CoresetConfig):
    """`effray select`: DeepCore's warm-up and the selection, no training on the subset. The
    settings only that training uses are refused (``NEEDS``), and are not its flags."""

    NEEDS = {**CoresetConfig.NEEDS, **{name: (lambda cfg: False, "trains on the subset; select only selects "
                                                                "(use `effray run coreset`)")
                                       for name in SUBSET_TRAINING},
             "target_acc": (lambda cfg: False, "times the subset's training to an accuracy; select only selects "
                                               "(use `effray run coreset`)")}

    def resolved(self) -> "SelectConfig":
        """CoresetConfig's, without the selector's training weighting and cap filled in (nothing
        trains: given ones stay, for ``NEEDS`` to refuse)."""
        return dataclasses.replace(super().resolved(), weighting=self.weighting, weight_cap=self.weight_cap)
